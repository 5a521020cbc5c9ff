#!/usr/bin/env bash
# bench/run.sh [SECTION...]: packhost's benchmarks (`make bench`).
#
# Runs every section below, or only the ones named, one after the other,
# and goes on when one fails; exits 1 at the end if any failed. Each section
# writes its figures to bench/results/<section>.txt. `make bench` runs this
# under scripts/with-postgres.sh, so PACKHOST_TEST_PG_DSN is set for the
# sections that need PostgreSQL.
#
# To add a benchmark: write a Go benchmark in its package (or a script in
# bench/) that writes bench/results/<name>.txt, and add a line to SECTIONS.
set -uo pipefail
cd "$(dirname "$0")/.."

# name          command
SECTIONS=(
	"status       bash bench/status.sh"
	"codeupdate   bash bench/codeupdate.sh"
	"backup       bash bench/backup.sh"
	"web          bash bench/web.sh"
	"history      bash bench/history.sh"
)

want=("$@")
known=()
for s in "${SECTIONS[@]}"; do known+=("${s%% *}"); done
for w in "${want[@]}"; do
	case " ${known[*]} " in
	*" $w "*) ;;
	*)
		echo "bench/run.sh: unknown section $w; sections: ${known[*]}" >&2
		exit 2
		;;
	esac
done

mkdir -p bench/results
failed=()
for s in "${SECTIONS[@]}"; do
	name=${s%% *}
	cmd=$(echo "${s#"$name"}" | sed 's/^ *//')
	if [ "${#want[@]}" -gt 0 ] && [[ " ${want[*]} " != *" $name "* ]]; then
		continue
	fi
	echo "== $name: $cmd"
	start=$(date +%s)
	if bash -c "$cmd"; then
		echo "== $name: done in $(($(date +%s) - start))s"
	else
		echo "== $name: FAILED (exit $?)" >&2
		failed+=("$name")
	fi
done
if [ "${#failed[@]}" -gt 0 ]; then
	echo "bench/run.sh: failed sections: ${failed[*]}" >&2
	exit 1
fi
