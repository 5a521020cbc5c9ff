package install

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/meta"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/schema"
	"github.com/packhost/packhost/internal/ziptest"
)

// target is the database the system s uses.
func (s sys) target() dbconn.Target {
	s.t.Helper()
	t, err := dbconn.ParseFlag(s.db, filepath.Join(s.root, "data", "host.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	return t
}

// dbSnapshot maps every table of the database to its schema text and row
// count, and every pack_settings and schema_registry row to its values.
func dbSnapshot(t testing.TB, target dbconn.Target) map[string]string {
	t.Helper()
	db, err := dbconn.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer dbconn.Close(db)
	out := map[string]string{}
	tables, err := db.Migrator().GetTables()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(tables)
	for _, name := range tables {
		text, ok, err := schema.Describe(t.Context(), db, name)
		if err != nil || !ok {
			t.Fatalf("describe %s: exists %v, %v", name, ok, err)
		}
		var n int64
		if err := db.Table(name).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		out["table "+name] = fmt.Sprintf("%d rows\n%s", n, text)
	}
	var settings []meta.Setting
	if err := db.Find(&settings).Error; err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		out["pack_settings "+s.PackID+" "+s.Key] = s.Value + " @ " + s.UpdatedAt.UTC().String()
	}
	var regs []meta.Registration
	if err := db.Find(&regs).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		out[fmt.Sprintf("schema_registry %s %s v%d", r.PackID, r.TableName_, r.TableVersion)] = r.PackID + " @ " + r.CreatedAt.UTC().String() + "\n" + r.SchemaText
	}
	return out
}

// trustKey writes key's public half as root's trusted key "admin" and
// returns the file.
func trustKey(t testing.TB, root string, key ed25519.PrivateKey) string {
	t.Helper()
	dir := filepath.Join(root, system.TrustedKeysDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "admin.pub")
	pub := key.Public().(ed25519.PublicKey)
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunInstallUpdatesRefusesHostileZips drops each hostile zip into the
// Updates_Pending of a system with core and notes 1.2.0 installed and its
// tables upgraded, and runs `host run --install-updates`: the host must
// exit 1 naming the reason, and leave every file of the system directory
// and the database (tables, schema texts, meta rows) as they were.
//
// One system serves every case of a database: each case adds its zip (and
// a trusted key when it needs one), checks, and takes them away again, so
// the next case starts from the same system. The database is compared with
// the state before the first case.
func TestRunInstallUpdatesRefusesHostileZips(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		flag := "" // SQLite: the system's own data/host.db
		if db.Target.Driver == dbconn.Postgres {
			flag = db.Target.DSN
		}
		s := newSystem(t, flag)
		target := s.target()
		baseline := dbSnapshot(t, target)
		if baseline["table notes"] == "" || baseline["pack_settings notes schema_version:notes"] == "" {
			t.Fatalf("the notes table is not installed: %v", baseline)
		}
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		zipPath := filepath.Join(s.root, system.PendingDir, "notes-1.3.0.zip")
		for _, tc := range ziptest.HostileCases(ziptest.HostileVersions{Installed: "1.2.0", Version: "1.3.0", Limit: updatezip.DefaultLimits.MaxUncompressed}) {
			t.Run(tc.Name, func(t *testing.T) {
				var keyFile string
				if tc.Keys {
					keyFile = trustKey(t, s.root, key)
				}
				tc.Make(t, zipPath, key)
				defer func() {
					os.Remove(zipPath)
					if keyFile != "" {
						os.RemoveAll(filepath.Dir(keyFile))
					}
				}()
				before := ziptest.Snapshot(t, s.root)
				r := packtest.RunHost(t, "run", "--install-updates", "--addr", "127.0.0.1:0", "--root", s.root, "--db", s.db)
				out := r.Stdout + r.Stderr
				if r.Code != 1 {
					t.Fatalf("exit %d, want 1:\n%s", r.Code, out)
				}
				for _, want := range []string{"notes-1.3.0.zip", tc.Problem, "nothing was installed"} {
					if !strings.Contains(out, want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
				ziptest.AssertSame(t, before, ziptest.Snapshot(t, s.root))
				ziptest.AssertSame(t, baseline, dbSnapshot(t, target))
			})
		}
	})
}
