package sdktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/packhost/packhost/internal/naming"
	"github.com/packhost/packhost/internal/packerr"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/plugins/sdk"
)

// Backup writes a backup of the pack's tables into dir, as the host does
// before an upgrade.
func (c *Conn) Backup(ctx context.Context, dir string) error {
	stream, err := c.client.Backup(ctx, &packpb.BackupRequest{Dir: dir, CreatedAt: naming.Stamp(time.Now())})
	if err != nil {
		return packerr.FromStatus(err)
	}
	return drain(stream)
}

// Restore verifies the backup in dir and brings it back in one
// transaction, as `host db restore` does.
func (c *Conn) Restore(ctx context.Context, dir string) error {
	stream, err := c.client.Restore(ctx, &packpb.RestoreRequest{Dir: dir})
	if err != nil {
		return packerr.FromStatus(err)
	}
	return drain(stream)
}

func drain(stream interface {
	Recv() (*packpb.Progress, error)
}) error {
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return packerr.FromStatus(err)
		}
	}
}

// CheckBackupRestore proves the pack's tables survive a backup and restore:
// on each database it installs the pack, lets fill write rows (nil writes
// none), backs up, deletes every row, restores, and compares every row and
// each table's state with what was there before.
func CheckBackupRestore(t *testing.T, pack sdk.Pack, fill func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	ForEachDatabase(t, func(t *testing.T, db Database) {
		t.Helper()
		ctx := context.Background()
		c := Start(t, pack, db)
		if err := c.Upgrade(ctx); err != nil {
			t.Fatalf("install %s: %v", pack.ID, err)
		}
		if fill != nil {
			fill(t, db.Gorm)
		}
		before := snapshot(t, db.Gorm, pack)
		statesBefore, err := c.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := c.Backup(ctx, dir); err != nil {
			t.Fatalf("backup: %v", err)
		}
		for _, tb := range pack.Tables {
			if err := db.Gorm.Exec("DELETE FROM " + tb.Name).Error; err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Restore(ctx, dir); err != nil {
			t.Fatalf("restore: %v", err)
		}
		after := snapshot(t, db.Gorm, pack)
		for _, tb := range pack.Tables {
			if b, a := before[tb.Name], after[tb.Name]; strings.Join(b, "\n") != strings.Join(a, "\n") {
				t.Errorf("table %s: %d rows before the backup, %d after the restore; first difference:\n%s",
					tb.Name, len(b), len(a), firstDifference(b, a))
			}
		}
		statesAfter, err := c.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range statesBefore {
			if statesBefore[i] != statesAfter[i] {
				t.Errorf("table %s: state %+v before, %+v after the restore", statesBefore[i].Name, statesBefore[i], statesAfter[i])
			}
		}
	})
}

// snapshot reads every row of every table of the pack as text, sorted.
func snapshot(t *testing.T, db *gorm.DB, pack sdk.Pack) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range pack.Tables {
		rows, err := db.Raw("SELECT * FROM " + tb.Name).Rows()
		if err != nil {
			t.Fatalf("read %s: %v", tb.Name, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				t.Fatal(err)
			}
			var parts []string
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				if tm, ok := v.(time.Time); ok {
					v = tm.UTC().Format(time.RFC3339Nano)
				}
				parts = append(parts, fmt.Sprintf("%s=%v", cols[i], v))
			}
			lines = append(lines, strings.Join(parts, " "))
		}
		rows.Close()
		sort.Strings(lines)
		out[tb.Name] = lines
	}
	return out
}

func firstDifference(a, b []string) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return "- " + x + "\n+ " + y
		}
	}
	return ""
}
