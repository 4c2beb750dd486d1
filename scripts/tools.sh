#!/usr/bin/env bash
# tools.sh — find, or install, a tool make test needs, and print its path.
#
#   scripts/tools.sh npx        Node's npx, which runs @redocly/cli (the OpenAPI linter)
#   scripts/tools.sh promtool   Prometheus's promtool (checks the /metrics exposition)
#   scripts/tools.sh pgbouncer  PgBouncer (the scheduler's test in transaction mode)
#
# A tool on PATH is used as it is. Otherwise, as root with apt-get (the
# project's machines and CI), it installs the Debian package; elsewhere it
# fails and says what to install.
set -euo pipefail

die() { echo "tools.sh: $*" >&2; exit 1; }

# found prints the tool's path: on PATH, or in an sbin directory that a
# non-login shell may leave off it.
found() {
	command -v "$1" 2>/dev/null && return
	local d
	for d in /usr/sbin /usr/local/sbin; do [ -x "$d/$1" ] && { echo "$d/$1"; return; }; done
	return 1
}

find_or_install() { # tool package
	local tool=$1 pkg=$2
	if found "$tool"; then return; fi
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "tools.sh: installing $pkg for $tool (apt-get)" >&2
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkg; } >&2 \
			|| die "apt-get install $pkg failed; install it by hand (it provides $tool)"
		found "$tool" || die "$pkg installed, but $tool is still not on PATH"
		return
	fi
	die "$tool is not installed: install it (Debian/Ubuntu: sudo apt-get install $pkg) and run make test again"
}

case "${1:-}" in
npx) find_or_install npx "nodejs npm" ;;
promtool) find_or_install promtool prometheus ;;
pgbouncer) find_or_install pgbouncer pgbouncer ;;
*) die "usage: scripts/tools.sh npx | promtool | pgbouncer" ;;
esac
