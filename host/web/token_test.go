package web

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestTheAdminTokenIsMadeOnceWithMode0600(t *testing.T) {
	root := t.TempDir()
	var out bytes.Buffer
	tok, err := EnsureToken(root, "127.0.0.1:8080", &out, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %04o, want 0600", fi.Mode().Perm())
	}
	if len(tok) != 64 || strings.Count(out.String(), tok) != 1 {
		t.Fatalf("token %q, printed %q", tok, out.String())
	}
	out.Reset()
	again, err := EnsureToken(root, "[::1]:9000", &out, hclog.NewNullLogger())
	if err != nil || again != tok || out.Len() != 0 {
		t.Fatalf("second start: token %q (want the same), printed %q, err %v", again, out.String(), err)
	}
	// With the file present a public address is allowed.
	if _, err := EnsureToken(root, "0.0.0.0:8080", &out, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
}

func TestANonLoopbackAddressIsRefusedWithoutATokenFile(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.0.2.7:80", "example.com:80"} {
		t.Run(addr, func(t *testing.T) {
			root := t.TempDir()
			_, err := EnsureToken(root, addr, nil, hclog.NewNullLogger())
			if err == nil || !strings.Contains(err.Error(), "which is not a loopback address, before the admin token exists") {
				t.Fatalf("err %v", err)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("the refused start wrote %v", entries)
			}
		})
	}
}

func TestATokenFileOthersCanReadIsRefused(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, TokenFile)
	if err := os.WriteFile(path, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureToken(root, "127.0.0.1:8080", nil, hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "has mode 0644: other users may read it; run `chmod 600") {
		t.Fatalf("err %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("the file's mode changed to %04o", fi.Mode().Perm())
	}
}
