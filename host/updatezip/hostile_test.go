package updatezip_test

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packhost/packhost/host/manifest"
	"github.com/packhost/packhost/host/system"
	"github.com/packhost/packhost/host/trust"
	"github.com/packhost/packhost/host/updatezip"
	"github.com/packhost/packhost/internal/ziptest"
)

func TestInspectRefusesHostileZips(t *testing.T) {
	for _, tc := range ziptest.HostileCases(ziptest.HostileVersions{Installed: "1.1.0", Version: "1.2.0", Limit: 512 << 10}) {
		t.Run(tc.Name, func(t *testing.T) {
			root, key := ziptest.InstalledNotes(t, tc.Keys)
			tc.Make(t, filepath.Join(root, system.PendingDir, "notes-1.2.0.zip"), key)
			before := ziptest.Snapshot(t, root)
			zips, err := updatezip.Inspect(root, updatezip.Options{HostVersion: "0.1.0", Limits: updatezip.Limits{MaxUncompressed: 512 << 10, MaxRatio: 100}})
			if err != nil {
				t.Fatal(err)
			}
			if len(zips) != 1 {
				t.Fatalf("got %d zips, want 1", len(zips))
			}
			z := zips[0]
			if z.OK() {
				t.Fatalf("zip accepted, want a problem containing %q", tc.Problem)
			}
			all := strings.Join(z.Problems, "; ")
			if !strings.Contains(all, tc.Problem) {
				t.Errorf("problems %q do not contain %q", all, tc.Problem)
			}
			if err := z.Err(); err == nil || !strings.Contains(err.Error(), "the zip was left in Updates_Pending") {
				t.Errorf("Err() = %v", err)
			}
			ziptest.AssertSame(t, before, ziptest.Snapshot(t, root))
		})
	}
}

func TestInspectAcceptsAGoodZip(t *testing.T) {
	for _, keys := range []bool{false, true} {
		t.Run(fmt.Sprintf("with trusted keys %v", keys), func(t *testing.T) {
			root, key := ziptest.InstalledNotes(t, keys)
			bin := []byte("#!/bin/sh\necho pack\n")
			m := ziptest.GoodManifest("notes", "1.2.0", bin)
			m.WhatsNew = "Pinned notes."
			m.DBChanges = []manifest.DBChange{{Table: "notes", From: 0, To: 1, Summary: "creates notes"}, {Table: "notes", From: 1, To: 2, Summary: "adds pinned"}}
			e := []ziptest.Entry{ziptest.ManifestEntry(t, m), {Name: m.Binaries[manifest.Platform()].Path, Data: bin, Mode: 0o755}, {Name: "bin/", Mode: fs.ModeDir | 0o755}}
			if keys {
				e = append(e, ziptest.Entry{Name: updatezip.SigFileName, Data: trust.SignManifest(key, e[0].Data)})
			}
			ziptest.WriteZip(t, filepath.Join(root, system.PendingDir, "notes-1.2.0.zip"), e)
			zips, err := updatezip.Inspect(root, updatezip.Options{HostVersion: "0.1.0"})
			if err != nil {
				t.Fatal(err)
			}
			z := zips[0]
			if !z.OK() {
				t.Fatalf("problems: %v", z.Problems)
			}
			r := z.Report()
			if r.PackID != "notes" || r.Version != "1.2.0" || r.InstalledVersion != "1.1.0" || r.WhatsNew != "Pinned notes." || len(r.DBChanges) != 2 {
				t.Errorf("report %+v", r)
			}
			wantSig, wantBy := updatezip.SigUnsigned, ""
			if keys {
				wantSig, wantBy = updatezip.SigSigned, "admin"
			}
			if r.Signature != wantSig || r.SignedBy != wantBy {
				t.Errorf("signature %q by %q, want %q by %q", r.Signature, r.SignedBy, wantSig, wantBy)
			}
		})
	}
}
