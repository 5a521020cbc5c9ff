#!/usr/bin/env bash
# bench/backup.sh: backup and restore of a 1,000,000-row table through a
# pack, against pg_dump -Fc -t TABLE and pg_restore of the same table, in
# the same run. Runs under scripts/with-postgres.sh (it needs
# PACKHOST_TEST_PG_DSN):
#
#   bash scripts/with-postgres.sh bash bench/backup.sh
#
# Writes the go test -bench output and the ratios to
# bench/results/backup.txt (a ratio under 1 means packhost was faster).
set -euo pipefail

cd "$(dirname "$0")/.."
[ -n "${PACKHOST_TEST_PG_DSN:-}" ] || {
	echo "bench/backup.sh: PACKHOST_TEST_PG_DSN is not set; run it as: bash scripts/with-postgres.sh bash bench/backup.sh" >&2
	exit 2
}

# pg_dump and pg_restore next to the initdb that started the server, so the
# client is not older than the server.
if [ -z "${PACKHOST_PG_BIN:-}" ]; then
	if d=$(command -v initdb 2>/dev/null); then
		PACKHOST_PG_BIN=$(dirname "$(readlink -f "$d")")
	else
		PACKHOST_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -rn | head -n1)
	fi
fi
[ -x "$PACKHOST_PG_BIN/pg_dump" ] && [ -x "$PACKHOST_PG_BIN/pg_restore" ] || {
	echo "bench/backup.sh: pg_dump/pg_restore not found in '$PACKHOST_PG_BIN'; set PACKHOST_PG_BIN" >&2
	exit 1
}
export PACKHOST_PG_BIN

mkdir -p bench/results
out=bench/results/backup.txt
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

go test -count=1 -run XXX -bench 'BenchmarkPostgresMillionRows' -benchtime "${BENCHTIME:-3x}" -timeout 30m \
	./host/backup/ 2>&1 | grep -v '^\s*[0-9T:.-]*Z \[' | tee "$raw"

ns() { awk -v n="BenchmarkPostgresMillionRows/$1-" 'index($1, n) == 1 { print $3 }' "$raw"; }
b=$(ns backup) d=$(ns pg_dump) r=$(ns restore) p=$(ns pg_restore)
[ -n "$b" ] && [ -n "$d" ] && [ -n "$r" ] && [ -n "$p" ] || {
	echo "bench/backup.sh: the benchmark did not report all four figures" >&2
	exit 1
}
{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $("$PACKHOST_PG_BIN/pg_dump" --version), $(nproc) CPUs"
	grep -E '^(goos|goarch|cpu|Benchmark)' "$raw"
	awk -v b="$b" -v d="$d" -v r="$r" -v p="$p" 'BEGIN {
		printf "backup  / pg_dump    = %.2f (%.2fs vs %.2fs)\n", b / d, b / 1e9, d / 1e9
		printf "restore / pg_restore = %.2f (%.2fs vs %.2fs)\n", r / p, r / 1e9, p / 1e9
	}'
} >"$out"
echo
cat "$out"
