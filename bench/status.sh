#!/usr/bin/env bash
# bench/status.sh: `host status` wall time with 1, 10 and 20 installed packs
# (the core pack and copies of testdata/packs/notes with their own ids,
# every table upgraded in a fresh embedded SQLite database, so CheckSchema
# compares real schemas) against its floor: exec'ing as many hello-world Go
# binaries in parallel, in the same run; against a serving host (status
# asks it), and cold (status starts every pack) without and with the
# verified-binary cache. Writes bench/results/status.txt.
# BENCHTIME sets the iterations (default 10x).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/status.txt
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

go test -count=1 -run XXX -bench 'BenchmarkStatus' -benchtime "${BENCHTIME:-10x}" -timeout 30m ./bench/ 2>&1 |
	grep -v '^\s*[0-9T:.-]*Z \[' | tee "$raw"
grep -q '^ok' "$raw" || {
	echo "bench/status.sh: the benchmark failed" >&2
	exit 1
}
{
	echo "# host status against its floor, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	grep -E '^(goos|goarch|cpu|Benchmark)' "$raw"
	awk '
		/^BenchmarkStatus\/packs=/ {
			split($1, a, "/"); n = substr(a[2], 7) + 0; kind = a[3]; sub(/-[0-9]+$/, "", kind)
			t[n, kind] = $3; ns[n] = 1
		}
		END {
			for (n = 1; n <= 64; n++) if (n in ns) {
				f = t[n, "floor"]
				r = t[n, "host_status_serving"] / f
				printf "packs=%02d  floor %6.1f ms | serving host %7.1f ms = %5.2fx%s | cold %7.1f ms = %5.2fx | cold, hashes cached %7.1f ms = %5.2fx\n", n, f / 1e6,
					t[n, "host_status_serving"] / 1e6, r, (n == 20 ? sprintf(" (target 3x: %s)", r <= 3 ? "met" : "missed") : ""),
					t[n, "host_status"] / 1e6, t[n, "host_status"] / f,
					t[n, "host_status_cached"] / 1e6, t[n, "host_status_cached"] / f
			}
		}' "$raw"
} >"$out"
echo
cat "$out"
