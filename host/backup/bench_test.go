package backup_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/packhost/packhost/host/backup"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/internal/dbtest"
	"github.com/packhost/packhost/internal/packtest"
)

// pgTool finds a PostgreSQL client program: in PACKHOST_PG_BIN, next to
// initdb on PATH, on PATH, or in the newest /usr/lib/postgresql/*/bin.
func pgTool(b *testing.B, name string) string {
	b.Helper()
	if d := os.Getenv("PACKHOST_PG_BIN"); d != "" {
		return filepath.Join(d, name)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if c := filepath.Join(filepath.Dir(real), name); fileExists(c) {
				return c
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if c := filepath.Join(d, name); fileExists(c) {
			return c
		}
	}
	b.Skipf("%s not found; set PACKHOST_PG_BIN", name)
	return ""
}

func versionOf(dir string) int {
	var v int
	fmt.Sscanf(filepath.Base(filepath.Dir(dir)), "%d", &v)
	return v
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func run(b *testing.B, name string, args ...string) {
	b.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// BenchmarkPostgresMillionRows backs up and restores a 1,000,000-row table
// through the pack, and does the same with pg_dump -Fc -t and pg_restore,
// in the same run on the same table. Compare the ns/op of backup with
// pg_dump and of restore with pg_restore (bench/backup.sh prints the
// ratios).
func BenchmarkPostgresMillionRows(b *testing.B) {
	db := dbtest.Postgres(b)
	pgDump, pgRestore := pgTool(b, "pg_dump"), pgTool(b, "pg_restore")
	root := b.TempDir()
	packtest.Install(b, root, packtest.Build(b, "testdata/packs/notes", nil))
	sys, err := system.Open(context.Background(), system.Options{Root: root, DBFlag: db.Target.DSN, StartTimeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	notes := sys.Pack("notes")
	if notes == nil {
		b.Fatalf("notes did not start: %v", sys.Failed)
	}
	if err := notes.Upgrade(context.Background(), nil, nil); err != nil {
		b.Fatal(err)
	}
	fillBig(b, db, bigRows)
	if err := db.Gorm.Exec("VACUUM ANALYZE notes").Error; err != nil {
		b.Fatal(err)
	}
	dir := sys.Path(system.BackupsDir)
	dumpFile := filepath.Join(b.TempDir(), "notes.dump")
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var lastBackup string

	b.Run("backup", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			at = at.Add(time.Second)
			p, err := backup.Pack(context.Background(), dir, notes, at, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			if lastBackup != "" {
				os.RemoveAll(lastBackup)
			}
			lastBackup = p
		}
		b.ReportMetric(float64(dirSize(lastBackup))/1e6, "MB")
	})
	b.Run("pg_dump", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			os.Remove(dumpFile)
			run(b, pgDump, "-Fc", "-t", "notes", "-f", dumpFile, "-d", db.Target.DSN)
		}
		fi, _ := os.Stat(dumpFile)
		b.ReportMetric(float64(fi.Size())/1e6, "MB")
	})
	b.Run("restore", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := backup.Restore(context.Background(), sys.Packs, lastBackup, false, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pg_restore", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			run(b, pgRestore, "--clean", "--if-exists", "--single-transaction", "-d", db.Target.DSN, dumpFile)
		}
	})
}
