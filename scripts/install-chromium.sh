#!/usr/bin/env bash
# install-chromium.sh
#
# Makes sure Debian's chromium is installed at /usr/bin/chromium, for the
# browser tests of the e2e module (`make test` runs this before them):
#   1. does nothing when /usr/bin/chromium is there (safe to run again);
#   2. otherwise installs Debian's chromium package with apt-get, as root or
#      through sudo, non-interactively;
#   3. fails with a message saying what to do when it cannot.
set -euo pipefail

me=install-chromium
want=/usr/bin/chromium

die() {
	echo "$me: $*" >&2
	exit 1
}

[ -x "$want" ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 ||
		die "$want not found, and cannot install the chromium package (not root, no sudo); install it as root: apt-get install chromium"
	sudo="sudo"
fi
command -v apt-get >/dev/null 2>&1 ||
	die "$want not found and apt-get is not available; install Chromium so that $want runs it"

echo "$me: $want not found; installing the chromium package" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
	die "apt-get update failed (output above)"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 ||
	die "apt-get install chromium failed (output above)"
[ -x "$want" ] || die "the chromium package was installed but $want is still missing"
echo "$me: installed $("$want" --version 2>/dev/null || echo chromium)" >&2
