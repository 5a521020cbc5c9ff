#!/usr/bin/env bash
# with-postgres.sh CMD ARGS...
#
# Runs CMD against a throw-away PostgreSQL server:
#   1. finds initdb and pg_ctl (PATH, else the newest /usr/lib/postgresql/*/bin),
#      installing Debian's postgresql package when they are missing;
#   2. creates a temporary data directory and starts a server on a free
#      loopback TCP port (fsync off: the data is thrown away);
#   3. exports PACKHOST_TEST_PG_DSN (a superuser DSN for the postgres database)
#      and PACKHOST_REQUIRE_PG=1, so that database tests fail instead of
#      skipping when the server cannot be reached;
#   4. runs CMD and exits with its exit code.
# The server is stopped and the directory removed on every exit: success,
# failure, Ctrl-C (INT), TERM and HUP. A signal is forwarded to CMD first.
#
# Example:
#   scripts/with-postgres.sh go test ./internal/...
#   scripts/with-postgres.sh sh -c 'psql "$PACKHOST_TEST_PG_DSN" -c "select version()"'
set -euo pipefail

me=with-postgres

die() {
	echo "$me: $*" >&2
	exit 1
}

[ "$#" -gt 0 ] || {
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
}

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1

# pg_bin sets PG_BIN to a directory holding both initdb and pg_ctl.
pg_bin() {
	PG_BIN=""
	local d
	if d=$(command -v initdb 2>/dev/null); then
		# Resolve symlinks so initdb and pg_ctl come from the same version.
		d=$(dirname "$(readlink -f "$d")")
		if [ -x "$d/pg_ctl" ]; then
			PG_BIN=$d
			return 0
		fi
	fi
	# Newest version first: sort the version directories numerically.
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -rn); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			PG_BIN=$d
			return 0
		fi
	done
	return 1
}

install_postgres() {
	local sudo=""
	if [ "$is_root" -ne 1 ]; then
		command -v sudo >/dev/null 2>&1 ||
			die "initdb/pg_ctl not found, and cannot install postgresql (not root, no sudo); install PostgreSQL or put its bin directory on PATH"
		sudo="sudo"
	fi
	command -v apt-get >/dev/null 2>&1 ||
		die "initdb/pg_ctl not found and apt-get is not available; install PostgreSQL or put its bin directory on PATH"
	echo "$me: initdb/pg_ctl not found; installing the postgresql package" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

if ! pg_bin; then
	install_postgres
	pg_bin || die "postgresql was installed but initdb/pg_ctl are still not found"
fi

# as_pg runs a command as the user that owns the cluster: postgres refuses
# to run as root.
as_pg() {
	if [ "$is_root" -eq 1 ]; then
		if command -v runuser >/dev/null 2>&1; then
			runuser -u postgres -- "$@"
		else
			local q
			q=$(printf '%q ' "$@")
			su postgres -s /bin/sh -c "$q"
		fi
	else
		"$@"
	fi
}

if [ "$is_root" -eq 1 ]; then
	id postgres >/dev/null 2>&1 ||
		die "running as root but there is no postgres user to run the server as; create one (useradd --system postgres) or run as a normal user"
fi

# free_port prints a loopback TCP port nobody listens on right now.
free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return 0
	fi
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

dir=""
started=0
child=""

cleanup() {
	if [ "$started" -eq 1 ]; then
		started=0
		(cd / && as_pg "$PG_BIN/pg_ctl" stop -D "$dir/data" -m immediate -w -s) >/dev/null 2>&1 || true
	fi
	if [ -n "$dir" ]; then
		rm -rf -- "$dir"
		dir=""
	fi
}

on_signal() {
	local sig=$1 code=$2
	trap '' INT TERM HUP
	if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
		kill -s "$sig" "$child" 2>/dev/null || true
		# Give the command a few seconds to clean up after itself.
		local i
		for i in $(seq 1 100); do
			kill -0 "$child" 2>/dev/null || break
			sleep 0.1
		done
		kill -s KILL "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	cleanup
	exit "$code"
}

trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

dir=$(mktemp -d "${TMPDIR:-/tmp}/packhost-pg.XXXXXX")
if [ "$is_root" -eq 1 ]; then
	chown postgres "$dir"
	if ! runuser -u postgres -- test -w "$dir" 2>/dev/null; then
		# TMPDIR is somewhere the postgres user cannot reach (e.g. under /root).
		rm -rf -- "$dir"
		dir=$(mktemp -d /tmp/packhost-pg.XXXXXX)
		chown postgres "$dir"
	fi
fi

(cd "$dir" && as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 >"$dir/initdb.log" 2>&1) || {
	cat "$dir/initdb.log" >&2
	die "initdb failed (output above)"
}

# The port is free when picked but another process may take it before the
# server binds it (many runs in parallel): retry with a new port.
port=""
for attempt in 1 2 3 4 5; do
	port=$(free_port) || die "no free TCP port found on 127.0.0.1"
	if (cd "$dir" && as_pg "$PG_BIN/pg_ctl" start -w -t 60 -s -D "$dir/data" -l "$dir/server.log" \
		-o "-k $dir -h 127.0.0.1 -p $port -F -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200") >/dev/null 2>&1; then
		started=1
		break
	fi
	# pg_ctl may have given up while the server is still coming up.
	(cd / && as_pg "$PG_BIN/pg_ctl" stop -D "$dir/data" -m immediate -w -s) >/dev/null 2>&1 || true
done
if [ "$started" -ne 1 ]; then
	tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
	die "could not start PostgreSQL from $PG_BIN (server log above)"
fi

version=$("$PG_BIN/postgres" --version 2>/dev/null | awk '{print $3}') || true
echo "$me: PostgreSQL $version started on 127.0.0.1:$port (data in $dir)" >&2

export PACKHOST_TEST_PG_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
export PACKHOST_REQUIRE_PG=1

# Run CMD in the background and wait, so that a signal sent to this script
# alone is handled at once (bash defers traps while a foreground command
# runs). The subshell restores INT/QUIT, which bash ignores for background
# commands, and keeps this script's stdin.
set +e
(
	trap - INT QUIT
	exec "$@"
) <&0 &
child=$!
wait "$child"
rc=$?
child=""
set -e
exit "$rc"
