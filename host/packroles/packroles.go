// Package packroles gives every pack a database role of its own on
// PostgreSQL, so that third-party code reaches only its own tables and
// its own rows of the meta tables.
//
// For each pack on a database there are two roles:
//
//   - the owner, ph_<database>_<pack> (NOLOGIN), owns the pack's tables;
//   - the login, ph_<hash>_login, is what the pack connects as: one per
//     system directory and machine (so that several systems may share a
//     database), a member of the owner, which it acts as (the connection
//     sets role to it), with a password derived from the system's secret
//     (data/pack-roles.key, readable only by the host's user) that a
//     serving host renews at every start.
//
// Setup, run by the host as the operator's role whenever it starts the
// packs to change or serve the system, makes the roles and keeps them to
// what each pack declares: its tables (owned), the tables of other packs
// it reads (SELECT and REFERENCES, nothing else), CREATE on the public
// schema (for its own tables; an event trigger refuses a table a pack does
// not declare) and on the database (for the scratch schema its history is
// computed in, rolled back). The meta tables pack_settings and
// schema_registry get row-level security: a pack sees and writes its own
// rows only.
//
// On SQLite none of this exists: a pack opens the database file, and
// isolation between packs needs PostgreSQL.
package packroles

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/meta"
)

// Roles are a pack's roles on one database.
type Roles struct {
	PackID string
	Owner  string
	Login  string
}

var plain = regexp.MustCompile(`[^a-z0-9_]`)

func short(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

// For names the roles of pack on database for the system directory
// system (its absolute path) on this machine.
func For(database, packID, system string) Roles {
	owner := "ph_" + short(database)[:8] + "_" + plain.ReplaceAllString(packID, "_")
	if len(owner) > 63 {
		owner = "ph_" + short(database)[:8] + "_" + short(packID)[:16]
	}
	host, _ := os.Hostname()
	return Roles{PackID: packID, Owner: owner, Login: "ph_" + short(database, packID, host, system)[:16] + "_login"}
}

// KeyFile is the system's secret, relative to the system directory.
const KeyFile = "data/pack-roles.key"

// ErrNoKey is returned by LoadKey when no host has made the roles yet.
var ErrNoKey = errors.New("the packs' database roles are not set up yet")

// LoadKey reads the system's secret; it never writes.
func LoadKey(root string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(root, KeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", KeyFile, err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s is not 32 bytes of hex; remove it and start the host again to make a new one", KeyFile)
	}
	return k, nil
}

// NewKey writes a new random secret (0600), replacing the old one: every
// login password changes with it.
func NewKey(root string) ([]byte, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	path := filepath.Join(root, KeyFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", KeyFile, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write %s: %w", KeyFile, err)
	}
	return k, nil
}

// Password is the login role's password under key.
func Password(key []byte, login string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(login))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Target is what the pack connects with: base's server and database, as
// its login role with its password, acting as its owner role.
func Target(base dbconn.Target, r Roles, password string) (dbconn.Target, error) {
	u, err := url.Parse(base.DSN)
	if err != nil {
		return base, errors.New("--db: not a valid postgres URL")
	}
	u.User = url.UserPassword(r.Login, password)
	q := u.Query()
	q.Set("options", "-crole="+r.Owner)
	u.RawQuery = q.Encode()
	t := base
	t.DSN = u.String()
	return t, nil
}

// DatabaseName is the name of the database a PostgreSQL target reaches.
func DatabaseName(t dbconn.Target) string {
	u, err := url.Parse(t.DSN)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// Pack is what Setup needs of a pack: the tables it owns and the tables of
// other packs it reads ("pack.table").
type Pack struct {
	ID     string
	Tables []string
	Reads  []string
}

// lockKey serialises Setup across hosts ("pkhostrl" in ASCII).
const lockKey int64 = 0x706b686f73747266

// Setup makes and fits the roles of packs on db (the operator's
// connection to the PostgreSQL database named database), for the system
// system with key. Run again, it only renews the passwords and fits the
// grants to what the packs declare now.
func Setup(ctx context.Context, db *gorm.DB, database, system string, key []byte, list []Pack) error {
	if db.Dialector.Name() != "postgres" {
		return nil
	}
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", lockKey).Error; err != nil {
			return err
		}
		var super bool
		if err := tx.Raw("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super).Error; err != nil {
			return err
		}
		if err := common(tx, super); err != nil {
			return err
		}
		// Every pack's owner role on this database: those of the packs
		// here and those any system recorded before.
		owners := map[string]string{} // pack -> owner role
		var known []struct{ PackID, Owner string }
		if err := tx.Raw(`SELECT DISTINCT pack_id, owner FROM packhost_roles`).Scan(&known).Error; err != nil {
			return err
		}
		// An owner's name depends on the database's: rows naming another
		// (a database copied or renamed) are stale, and their tables are
		// handed to the owners of this name below.
		for _, k := range known {
			owners[k.PackID] = For(database, k.PackID, system).Owner
			if k.Owner != owners[k.PackID] {
				if err := tx.Exec(`DELETE FROM packhost_roles WHERE owner = ?`, k.Owner).Error; err != nil {
					return err
				}
			}
		}
		for _, p := range list {
			owners[p.ID] = For(database, p.ID, system).Owner
		}
		for _, p := range list {
			r := For(database, p.ID, system)
			if err := setupPack(tx, database, r, Password(key, r.Login), p, owners, super); err != nil {
				return fmt.Errorf("pack %s: %w", p.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set up the packs' database roles: %w", err)
	}
	return nil
}

func ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// common makes what every pack's roles rely on: the host's tables naming
// the pack roles and their tables, the function that tells which pack a
// session is, row-level security on the meta tables, and (when the host
// is a superuser) the event trigger refusing tables a pack does not
// declare.
func common(tx *gorm.DB, super bool) error {
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS packhost_roles (login text PRIMARY KEY, owner text NOT NULL, pack_id text NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS packhost_tables (pack_id text NOT NULL, table_name text NOT NULL, PRIMARY KEY (pack_id, table_name))`,
		`REVOKE ALL ON packhost_roles, packhost_tables FROM PUBLIC`,
		`CREATE OR REPLACE FUNCTION packhost_current_pack() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
			SET search_path = pg_catalog, public
			AS $$ SELECT pack_id FROM public.packhost_roles WHERE login = session_user $$`,
		// Anyone may ask which pack it is: the answer is its own, or none.
		`GRANT EXECUTE ON FUNCTION packhost_current_pack() TO PUBLIC`,
	}
	for _, t := range []string{meta.SettingsTable, meta.RegistryTable} {
		stmts = append(stmts, `ALTER TABLE `+t+` ENABLE ROW LEVEL SECURITY`)
	}
	for _, s := range stmts {
		if err := tx.Exec(s).Error; err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	for _, t := range []string{meta.SettingsTable, meta.RegistryTable} {
		var n int64
		if err := tx.Raw(`SELECT count(*) FROM pg_policies WHERE schemaname = current_schema() AND tablename = ? AND policyname = 'packhost_own_rows'`, t).Scan(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			if err := tx.Exec(`CREATE POLICY packhost_own_rows ON ` + t + ` USING (pack_id = packhost_current_pack()) WITH CHECK (pack_id = packhost_current_pack())`).Error; err != nil {
				return fmt.Errorf("row-level security on %s: %w", t, err)
			}
		}
	}
	if !super {
		return nil
	}
	guard := []string{
		`CREATE OR REPLACE FUNCTION packhost_guard() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
			SET search_path = pg_catalog, public AS $$
		DECLARE
			cmd record;
			pack text;
			rel text;
		BEGIN
			SELECT r.pack_id INTO pack FROM public.packhost_roles r WHERE r.login = session_user;
			IF pack IS NULL THEN
				RETURN;
			END IF;
			FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
				IF cmd.object_type IN ('table', 'view', 'materialized view', 'foreign table') AND cmd.schema_name = 'public' THEN
					SELECT c.relname INTO rel FROM pg_class c WHERE c.oid = cmd.objid;
					IF NOT EXISTS (SELECT 1 FROM public.packhost_tables t WHERE t.pack_id = pack AND t.table_name = rel) THEN
						RAISE EXCEPTION 'permission denied: pack % does not declare a table %', pack, rel
							USING ERRCODE = 'insufficient_privilege',
							HINT = 'a pack makes only the tables it declares; declare it in a step of a new release';
					END IF;
				END IF;
			END LOOP;
		END $$`,
	}
	for _, s := range guard {
		if err := tx.Exec(s).Error; err != nil {
			return fmt.Errorf("the table guard: %w", err)
		}
	}
	var n int64
	if err := tx.Raw(`SELECT count(*) FROM pg_event_trigger WHERE evtname = 'packhost_guard'`).Scan(&n).Error; err != nil {
		return err
	}
	if n == 0 {
		if err := tx.Exec(`CREATE EVENT TRIGGER packhost_guard ON ddl_command_end EXECUTE FUNCTION packhost_guard()`).Error; err != nil {
			return fmt.Errorf("the table guard: %w", err)
		}
	}
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

func roleExists(tx *gorm.DB, name string) (bool, error) {
	var n int64
	err := tx.Raw(`SELECT count(*) FROM pg_roles WHERE rolname = ?`, name).Scan(&n).Error
	return n > 0, err
}

// setupPack makes p's roles and fits their grants.
func setupPack(tx *gorm.DB, database string, r Roles, password string, p Pack, owners map[string]string, super bool) error {
	ok, err := roleExists(tx, r.Owner)
	if err != nil {
		return err
	}
	exec := func(s string) error {
		if err := tx.Exec(s).Error; err != nil {
			return fmt.Errorf("%s: %w", firstLine(strings.ReplaceAll(s, literal(password), "'...'")), err)
		}
		return nil
	}
	if !ok {
		if err := exec(`CREATE ROLE ` + ident(r.Owner) + ` NOLOGIN`); err != nil {
			return err
		}
	}
	if !super {
		// The host acts as the owner to hand it tables.
		if err := exec(`GRANT ` + ident(r.Owner) + ` TO CURRENT_USER`); err != nil {
			return err
		}
	}
	if ok, err = roleExists(tx, r.Login); err != nil {
		return err
	}
	if !ok {
		if err := exec(`CREATE ROLE ` + ident(r.Login) + ` LOGIN IN ROLE ` + ident(r.Owner)); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	for _, s := range []string{
		`ALTER ROLE ` + ident(r.Login) + ` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD ` + literal(password),
		`COMMENT ON ROLE ` + ident(r.Owner) + ` IS ` + literal("packhost: owner of the tables of pack "+p.ID),
		`COMMENT ON ROLE ` + ident(r.Login) + ` IS ` + literal("packhost: pack "+p.ID+" of a system on "+host),
		`GRANT USAGE, CREATE ON SCHEMA public TO ` + ident(r.Owner),
		`GRANT CONNECT, TEMPORARY, CREATE ON DATABASE ` + ident(database) + ` TO ` + ident(r.Owner),
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ` + meta.SettingsTable + `, ` + meta.RegistryTable + ` TO ` + ident(r.Owner),
		`INSERT INTO packhost_roles (login, owner, pack_id) VALUES (` + literal(r.Login) + `, ` + literal(r.Owner) + `, ` + literal(p.ID) + `)
			ON CONFLICT (login) DO UPDATE SET owner = EXCLUDED.owner, pack_id = EXCLUDED.pack_id`,
		`DELETE FROM packhost_tables WHERE pack_id = ` + literal(p.ID),
	} {
		if err := exec(s); err != nil {
			return err
		}
	}
	for _, t := range p.Tables {
		if err := exec(`INSERT INTO packhost_tables (pack_id, table_name) VALUES (` + literal(p.ID) + `, ` + literal(t) + `)`); err != nil {
			return err
		}
	}
	// The pack's existing tables: owned by its owner, unless another
	// pack's owner has them (a claim the report shows; never taken).
	packOwners := map[string]bool{}
	for _, o := range owners {
		packOwners[o] = true
	}
	for _, t := range p.Tables {
		var owner string
		if err := tx.Raw(`SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind IN ('r', 'p')`, t).Scan(&owner).Error; err != nil {
			return err
		}
		if owner == "" || owner == r.Owner || packOwners[owner] {
			continue
		}
		if err := exec(`ALTER TABLE ` + ident(t) + ` OWNER TO ` + ident(r.Owner)); err != nil {
			return err
		}
	}
	// Reads: SELECT and REFERENCES on what it declares, nothing on the
	// other packs' tables it does not.
	reads := map[string]bool{}
	for _, rd := range p.Reads {
		pack, table, ok := strings.Cut(rd, ".")
		if !ok || owners[pack] == "" {
			continue
		}
		reads[table] = true
	}
	var others []struct{ Relname, Owner string }
	if err := tx.Raw(`SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) <> ?`, r.Owner).Scan(&others).Error; err != nil {
		return err
	}
	sort.Slice(others, func(i, j int) bool { return others[i].Relname < others[j].Relname })
	for _, o := range others {
		if !packOwners[o.Owner] {
			continue // the host's and the operator's tables: never granted
		}
		if reads[o.Relname] {
			if err := exec(`GRANT SELECT, REFERENCES ON ` + ident(o.Relname) + ` TO ` + ident(r.Owner)); err != nil {
				return err
			}
		} else if err := exec(`REVOKE ALL ON ` + ident(o.Relname) + ` FROM ` + ident(r.Owner)); err != nil {
			return err
		}
	}
	return nil
}

// Forget removes what Setup made for pack on this system when the pack is
// no longer there (an install of a new pack rolled back): its rows in the
// host's tables and its login role; and its owner role too when no other
// system's login uses it. Its tables must be gone already.
func Forget(ctx context.Context, tx *gorm.DB, database, packID, system string) error {
	if tx.Dialector.Name() != "postgres" {
		return nil
	}
	var present int64
	if err := tx.Raw(`SELECT count(*) FROM pg_class WHERE relname = 'packhost_roles' AND relnamespace = current_schema()::regnamespace`).Scan(&present).Error; err != nil || present == 0 {
		return err
	}
	r := For(database, packID, system)
	stmts := []string{
		`DELETE FROM packhost_roles WHERE login = ` + literal(r.Login),
		`DROP ROLE IF EXISTS ` + ident(r.Login),
	}
	for _, s := range stmts {
		if err := tx.WithContext(ctx).Exec(s).Error; err != nil {
			return fmt.Errorf("forget the roles of pack %s: %w", packID, err)
		}
	}
	var others int64
	if err := tx.Raw(`SELECT count(*) FROM packhost_roles WHERE pack_id = ?`, packID).Scan(&others).Error; err != nil {
		return err
	}
	if others > 0 {
		return nil
	}
	if err := tx.Exec(`DELETE FROM packhost_tables WHERE pack_id = ?`, packID).Error; err != nil {
		return err
	}
	ok, err := roleExists(tx, r.Owner)
	if err != nil || !ok {
		return err
	}
	for _, s := range []string{`DROP OWNED BY ` + ident(r.Owner), `DROP ROLE ` + ident(r.Owner)} {
		if err := tx.WithContext(ctx).Exec(s).Error; err != nil {
			return fmt.Errorf("forget the roles of pack %s: %w", packID, err)
		}
	}
	return nil
}
