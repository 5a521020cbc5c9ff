// Package docs holds the project's guides. Its test runs every command of
// writing-a-pack.md, so the guide cannot rot.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/packhost/packhost/internal/packtest"
)

func TestMain(m *testing.M) { packtest.Main(m) }

// block is one fenced block of the guide: commands to run, or a file to
// write (marked by <!-- file: PATH --> on the line before it).
type block struct {
	lang, file, body string
	line             int
}

func parseGuide(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []block
	var cur *block
	pendingFile := ""
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "<!-- file: "):
			pendingFile = strings.TrimSuffix(strings.TrimPrefix(line, "<!-- file: "), " -->")
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{lang: strings.TrimPrefix(line, "```"), file: pendingFile, line: n}
			pendingFile = ""
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("%s: the block opened at line %d is not closed", path, cur.line)
	}
	return out
}

// prelude makes `host run` serve until the page answers, show it, and stop
// the host with Ctrl-C (SIGINT); every other host command runs as written.
const prelude = `set -euo pipefail
host() {
	if [ "${1:-}" != run ]; then command host "$@"; return; fi
	shift
	local log; log=$(mktemp -d)
	command host run "$@" --addr 127.0.0.1:0 >"$log/out" 2>"$log/err" &
	local pid=$! i rc
	for i in $(seq 1 1200); do
		if grep -q 'serving' "$log/err"; then
			local port; port=$(grep -o 'http://127.0.0.1:[0-9]*/' "$log/err" | head -1 | grep -o '[0-9]*/$' | tr -d /)
			exec 3<>"/dev/tcp/127.0.0.1/$port"
			printf 'GET /hello/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
			echo "PAGE: $(tail -n 1 <&3)"
			exec 3<&-
			kill -INT "$pid"; rc=0; wait "$pid" || rc=$?
			cat "$log/out"; cat "$log/err" >&2
			echo "host run exited $rc"
			return "$rc"
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			rc=0; wait "$pid" || rc=$?
			cat "$log/out"; cat "$log/err" >&2
			echo "host run exited $rc before serving"
			return 1
		fi
		sleep 0.1
	done
	kill -KILL "$pid"
	echo "host run did not serve within 2 minutes"
	return 1
}
`

func TestTheGuideRunsAsWritten(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the guide's script needs bash and /dev/tcp")
	}
	blocks := parseGuide(t, "writing-a-pack.md")
	var script strings.Builder
	script.WriteString(prelude)
	ran := 0
	for _, b := range blocks {
		switch {
		case b.file != "":
			fmt.Fprintf(&script, "\n# writing-a-pack.md:%d\ncat > %s <<'GUIDE_EOF'\n%sGUIDE_EOF\n", b.line, b.file, b.body)
		case b.lang == "sh":
			fmt.Fprintf(&script, "\n# writing-a-pack.md:%d\necho '+ writing-a-pack.md:%d'\n%s", b.line, b.line, b.body)
			ran++
		}
	}
	if ran < 5 {
		t.Fatalf("found only %d command blocks in the guide", ran)
	}

	host := packtest.Host(t)
	bin := t.TempDir()
	if err := os.Symlink(host, filepath.Join(bin, "host")); err != nil {
		t.Fatal(err)
	}
	// What `make build` leaves: the core pack's update zip.
	zips := t.TempDir()
	core := packtest.Build(t, "plugins/core", nil)
	res := packtest.RunHost(t, "pack", "build", "--out", zips, core)
	if res.Code != 0 {
		t.Fatalf("build the core zip: %s%s", res.Stdout, res.Stderr)
	}
	coreZip, _ := filepath.Glob(filepath.Join(zips, "core-*.zip"))
	if len(coreZip) != 1 {
		t.Fatalf("no core zip in %s", zips)
	}

	work := t.TempDir()
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"PACKHOST="+packtest.ModuleRoot(),
		"CORE_ZIP="+coreZip[0],
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOFLAGS=-mod=mod",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the guide failed: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"PAGE: Hello from the hello pack",
		"PAGE: Hello (en) from the hello pack",
		"installed hello 1.0.0 (was not installed)",
		"installed hello 1.1.0 (was 1.0.0)",
		"greetings  2          2     ok",
		"history: 1 table(s), 1 version(s), recorded on sqlite",
		"kept the history of the earlier releases 1.0.0 (hello-1.0.0.zip)",
		"lint of the steps new since 1.0.0: no findings",
		"table greetings 1 -> 2: adds greetings.language (default en)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the guide's output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
