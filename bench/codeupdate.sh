#!/usr/bin/env bash
# System backup before a code update: packhost's parallel zip against
# Info-ZIP's `zip -qr` on the same generated system directory, same run.
# Writes bench/results/codeupdate.txt. PACKHOST_BENCH_MB sets the size
# (default 500).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v zip >/dev/null || { echo "codeupdate: zip (Info-ZIP) is not installed: apt-get install zip"; exit 1; }
mb=${PACKHOST_BENCH_MB:-500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/sysbackup.test" ./host/sysbackup
mkdir -p "$work/tree" bench/results
PACKHOST_BENCH_MB=$mb PACKHOST_BENCH_TREE="$work/tree" "$work/sysbackup.test" -test.run '^TestMakeBenchTree$' >/dev/null
size=$(du -sb "$work/tree" | cut -f1)
sync

t0=$(date +%s.%N)
(cd "$work/tree" && zip -qr "$work/infozip.zip" .)
t1=$(date +%s.%N)
zip_secs=$(echo "$t1 - $t0" | bc -l)
zip_bytes=$(stat -c %s "$work/infozip.zip")
rm -f "$work/infozip.zip"

line=$(PACKHOST_BENCH_TREE="$work/tree" "$work/sysbackup.test" -test.run '^TestBackupBenchTree$' | grep '^seconds=')
ph_secs=${line#seconds=}; ph_secs=${ph_secs%% *}
ph_bytes=${line##*bytes=}

ratio=$(echo "$zip_secs / $ph_secs" | bc -l)
{
	echo "system backup of a ${size}-byte system directory ($(nproc) CPUs), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf "  zip -qr (Info-ZIP)   %7.2f s  %12d bytes\n" "$zip_secs" "$zip_bytes"
	printf "  packhost backup      %7.2f s  %12d bytes\n" "$ph_secs" "$ph_bytes"
	printf "  speed-up             %7.2fx (target 2x)\n" "$ratio"
} | tee bench/results/codeupdate.txt
