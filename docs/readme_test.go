package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packhost/packhost/internal/packtest"
)

// The README's pack compiles, and stays small: a pack with one table and
// two versions is at most 40 lines of Go.
func TestTheReadmesPackBuildsInFewLines(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(packtest.ModuleRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```go\n")
	if !ok {
		t.Fatal("the README has no Go block")
	}
	src, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the README's Go block is not closed")
	}
	lines := 0
	for _, l := range strings.Split(src, "\n") {
		if strings.TrimSpace(l) != "" {
			lines++
		}
	}
	if lines > 40 {
		t.Errorf("the README's pack has %d lines, more than 40", lines)
	}
	if !strings.Contains(src, "Steps: []sdk.Step{") || strings.Count(src, "Summary:") != 2 {
		t.Errorf("the README's pack should show one table with two versions:\n%s", src)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/readme\n\ngo 1.26\n\nrequire github.com/packhost/packhost v0.0.0\n\nreplace github.com/packhost/packhost => " + packtest.ModuleRoot() + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "pack"), ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's pack does not build: %v\n%s", err, out)
	}
	t.Logf("the README's pack: %d lines of Go", lines)
}
