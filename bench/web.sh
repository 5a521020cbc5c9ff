#!/usr/bin/env bash
# bench/web.sh: pack pages through the host against the same handler served
# straight by net/http, in the same run (see host/web/bench_test.go):
#   - requests/s with wrk (Debian's, installed when missing) to a small page
#     and to a 1 KiB POST, through the host with and without its request
#     limits;
#   - WebSocket echo round trips/s.
# Figures go to bench/results/web.txt. BENCH_SECONDS (default 5) sets the
# length of each measurement, BENCH_ROUNDS (default 3) the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
if ! command -v wrk >/dev/null; then
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null
fi
out=bench/results/web.txt
{
	echo "# web: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
	echo "# $(wrk --version 2>&1 | head -1)"
	echo "# BENCH_SECONDS=${BENCH_SECONDS:-5} BENCH_ROUNDS=${BENCH_ROUNDS:-3}"
	go test -run XXX -bench 'BenchmarkPackPage|BenchmarkWebSocketEcho' -benchtime 1x -count 1 -timeout 30m ./host/web
	echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
} 2>&1 | tee "$out"
grep -q '^ok' "$out"
