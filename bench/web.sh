#!/usr/bin/env bash
# Requests per second to a pack page through the host against the same
# handler served straight by net/http, on loopback, in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
go test -run XXX -bench BenchmarkPackPage -benchtime 20000x -count 3 ./host/web | tee bench/results/web.txt
