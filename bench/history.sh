#!/usr/bin/env bash
# bench/history.sh: the time to compute the schema of every version of a
# pack of 10 tables with 20 steps each (the History RPC: what `host pack
# build` records and what CheckSchema compares a table with), on SQLite (in
# memory) and PostgreSQL (a scratch schema in a rolled-back transaction),
# against running the same 200 steps on the same scratch database without
# reading any schema (a fresh install), in the same run; and CheckSchema of
# the upgraded pack, which computes no history for tables as registered.
# Writes bench/results/history.txt. BENCHTIME sets the iterations (default
# 10x). The PostgreSQL figures need PACKHOST_TEST_PG_DSN (make bench sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/history.txt
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

go test -count=1 -run XXX -bench 'BenchmarkHistory' -benchtime "${BENCHTIME:-10x}" -timeout 30m ./internal/packrt/ 2>&1 | tee "$raw"
grep -q '^ok' "$raw" || {
	echo "bench/history.sh: the benchmark failed" >&2
	exit 1
}
{
	echo "# schema history of 10 tables x 20 steps against running the steps, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	grep -E '^(goos|goarch|cpu|Benchmark)' "$raw"
	awk '
		/^BenchmarkHistory\// {
			split($1, a, "/"); d = a[2]; k = a[3]; sub(/-[0-9]+$/, "", k)
			t[d, k] = $3; ds[d] = 1
		}
		END {
			split("sqlite postgres", order, " ")
			for (i = 1; i <= 2; i++) { d = order[i]; if (!(d in ds)) continue
				h = t[d, "history"] / 1e6; s = t[d, "steps_only"] / 1e6
				printf "%-8s  every version %7.1f ms  steps only %7.1f ms  ratio %4.2fx  (target under 1000 ms: %s)  check_schema of 10 ok tables %5.1f ms\n",
					d, h, s, h / s, (h < 1000 ? "met" : "missed"), t[d, "check_schema"] / 1e6
			}
		}' "$raw"
} >"$out"
echo
cat "$out"
