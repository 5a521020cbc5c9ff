package install

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/crashpoint"
	"github.com/packhost/packhost/internal/dbconn"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
	"github.com/packhost/packhost/internal/tablestate"
	"github.com/packhost/packhost/internal/ziptest"
)

// copyOf returns a copy of the prepared system tmpl for one test: the
// system directory copied with cp -a and, on PostgreSQL, the database
// copied with CREATE DATABASE ... TEMPLATE (dropped at the test's end).
// tmpl's database must have no open connection.
func copyOf(t *testing.T, tmpl sys) sys {
	t.Helper()
	s := tmpl
	s.t = t
	s.root = t.TempDir()
	if out, err := exec.Command("cp", "-a", tmpl.root+"/.", s.root).CombinedOutput(); err != nil {
		t.Fatalf("copy system: %v\n%s", err, out)
	}
	if tmpl.db == "" {
		return s
	}
	admin, err := dbconn.Open(dbconn.Target{Driver: dbconn.Postgres, DSN: os.Getenv(dbtest.EnvPGDSN)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dbconn.Close(admin) })
	u, err := url.Parse(tmpl.db)
	if err != nil {
		t.Fatal(err)
	}
	from := strings.TrimPrefix(u.Path, "/")
	dbCopies++
	name := fmt.Sprintf("%s_c%d", from, dbCopies)
	if err := admin.Exec(fmt.Sprintf(`CREATE DATABASE %q TEMPLATE %q`, name, from)).Error; err != nil {
		t.Fatalf("copy database %s: %v", from, err)
	}
	t.Cleanup(func() {
		if err := admin.Exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name)).Error; err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	s.db = u.String()
	return s
}

// dbCopies numbers the database copies copyOf makes (the template's name
// is random, so <template>_c<n> is unique on the server).
var dbCopies int

// templateSystem is newSystem on db: on SQLite in the system's own
// data/host.db (so that copying the directory copies the database), on
// PostgreSQL in db's database, whose test connection is closed so that it
// can serve as a template.
func templateSystem(t *testing.T, db dbtest.DB) sys {
	t.Helper()
	if db.Target.Driver == dbconn.SQLite {
		return newSystem(t, "")
	}
	if err := dbconn.Close(db.Gorm); err != nil {
		t.Fatal(err)
	}
	return newSystem(t, db.Target.DSN)
}

// wantPack checks that pack id is wholly version: its installed manifest,
// the version the running binary reports, and its tables at table, ok.
func (s sys) wantPack(id, version string, table int) {
	s.t.Helper()
	m, err := manifest.Load(filepath.Join(s.root, "packs", id, manifest.FileName))
	if err != nil {
		s.t.Fatal(err)
	}
	if m.Version != version {
		s.t.Errorf("%s %s installed, want %s", id, m.Version, version)
	}
	for _, p := range s.status().Packs {
		if p.ID != id {
			continue
		}
		if !p.Running || p.Version != version {
			s.t.Errorf("%s running=%v version %s (%s), want %s running", id, p.Running, p.Version, p.Error, version)
		}
		if len(p.Tables) == 0 {
			s.t.Errorf("%s reports no table", id)
		}
		for _, tb := range p.Tables {
			if tb.InstalledVersion != table || tb.State != tablestate.OK {
				s.t.Errorf("%s: table %s at %d (%s), want %d ok", id, tb.Name, tb.InstalledVersion, tb.State, table)
			}
		}
		return
	}
	s.t.Errorf("%s not in the status report", id)
}

// TestCrashAtEveryStepLeavesAWholeVersion kills the host with SIGKILL at
// each step of an install of notes 1.2.0 -> 1.3.0, restarts it, and checks
// that notes is wholly 1.2.0 or wholly 1.3.0 with its table at that
// version. Each step starts from a copy of one prepared system (and, on
// PostgreSQL, of its database).
func TestCrashAtEveryStepLeavesAWholeVersion(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		tmpl := templateSystem(t, db)
		zip3 := buildZip(t, tmpl.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		for _, step := range CrashSteps {
			t.Run("killed "+step, func(t *testing.T) {
				s := copyOf(t, tmpl)
				code, out := s.install([]string{crashpoint.Env + "=" + step}, nil, zip3)
				if code != -1 {
					t.Fatalf("exit %d, want the host killed at %s:\n%s", code, step, out)
				}
				if code, out := s.install(nil, []string{"--recover-only"}); code != 0 {
					t.Fatalf("restart: exit %d\n%s", code, out)
				}
				s.wantClean()
				m, err := manifest.Load(filepath.Join(s.root, "packs", "notes", manifest.FileName))
				if err != nil {
					t.Fatal(err)
				}
				pending := pendingNames(t, s.root, system.PendingDir)
				switch m.Version {
				case "1.3.0":
					s.wantNotes("1.3.0", 3)
					if len(pending) != 0 {
						t.Errorf("installed, yet still pending: %v", pending)
					}
				case "1.2.0":
					s.wantNotes("1.2.0", 2)
					if len(pending) != 1 {
						t.Errorf("undone, yet pending holds %v", pending)
					}
				default:
					t.Fatalf("notes %s installed", m.Version)
				}
				t.Logf("killed %s: notes %s", step, m.Version)
			})
		}
	})
}

// TestCrashBetweenTwoPacksUpgrades installs notes and memo (the notes
// test pack under another id, with its own table) 1.2.0 -> 1.3.0 in one
// run and kills the host after the first pack's tables were upgraded and
// before the second's: after a restart both packs are wholly 1.2.0, both
// tables at 2 (the first restored from the backup), both zips pending.
func TestCrashBetweenTwoPacksUpgrades(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, db dbtest.DB) {
		s := templateSystem(t, db)
		memo2 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"id": "memo", "release": "2"}))
		if code, out := s.install(nil, []string{"--no-backup"}, memo2); code != 0 {
			t.Fatalf("install memo 1.2.0: exit %d\n%s", code, out)
		}
		s.wantPack("memo", "1.2.0", 2)
		before := dbSnapshot(t, s.target())
		notes3 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"release": "3"}))
		memo3 := buildZip(t, s.host, packtest.Build(t, "testdata/packs/notes", map[string]string{"id": "memo", "release": "3"}))

		code, out := s.install([]string{crashpoint.Env + "=" + CrashBetweenPackUpgrades}, nil, notes3, memo3)
		if code != -1 {
			t.Fatalf("exit %d, want the host killed between the two upgrades:\n%s", code, out)
		}
		// The kill came between the two: one table at 3, the other at 2.
		mid := dbSnapshot(t, s.target())
		versions := mid["pack_settings memo schema_version:notes_memo"] + " / " + mid["pack_settings notes schema_version:notes"]
		upgraded := 0
		for _, k := range []string{"pack_settings memo schema_version:notes_memo", "pack_settings notes schema_version:notes"} {
			if strings.HasPrefix(mid[k], "3 ") {
				upgraded++
			} else if !strings.HasPrefix(mid[k], "2 ") {
				t.Fatalf("%s = %q at the kill", k, mid[k])
			}
		}
		if upgraded != 1 {
			t.Fatalf("at the kill the versions were %s, want one pack upgraded and not the other", versions)
		}

		if code, out := s.install(nil, []string{"--recover-only"}); code != 0 || !strings.Contains(out, "undone") {
			t.Fatalf("restart: exit %d, want the install undone:\n%s", code, out)
		}
		s.wantClean()
		s.wantPack("notes", "1.2.0", 2)
		s.wantPack("memo", "1.2.0", 2)
		// Every table, meta row and schema text as before the install (the
		// times a restore writes aside).
		ziptest.AssertSame(t, withoutTimes(before), withoutTimes(dbSnapshot(t, s.target())))
		if p := pendingNames(t, s.root, system.PendingDir); len(p) != 2 {
			t.Errorf("pending: %v, want both zips", p)
		}
	})
}

var timeOfRow = regexp.MustCompile(` @ [^\n]*`)

// withoutTimes drops the updated_at and created_at of dbSnapshot's rows.
func withoutTimes(snap map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range snap {
		out[k] = timeOfRow.ReplaceAllString(v, "")
	}
	return out
}
