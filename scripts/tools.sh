#!/usr/bin/env bash
# tools.sh — find, or install, a tool make test needs, and print its path.
#
#   scripts/tools.sh npx        Node's npx, which runs @redocly/cli (the OpenAPI linter)
#   scripts/tools.sh promtool   Prometheus's promtool (checks the /metrics exposition)
#
# A tool on PATH is used as it is. Otherwise, as root with apt-get (the
# project's machines and CI), it installs the Debian package; elsewhere it
# fails and says what to install.
set -euo pipefail

die() { echo "tools.sh: $*" >&2; exit 1; }

find_or_install() { # tool package
	local tool=$1 pkg=$2
	if command -v "$tool" >/dev/null 2>&1; then command -v "$tool"; return; fi
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "tools.sh: installing $pkg for $tool (apt-get)" >&2
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkg; } >&2 \
			|| die "apt-get install $pkg failed; install it by hand (it provides $tool)"
		command -v "$tool" >/dev/null 2>&1 || die "$pkg installed, but $tool is still not on PATH"
		command -v "$tool"
		return
	fi
	die "$tool is not installed: install it (Debian/Ubuntu: sudo apt-get install $pkg) and run make test again"
}

case "${1:-}" in
npx) find_or_install npx "nodejs npm" ;;
promtool) find_or_install promtool prometheus ;;
*) die "usage: scripts/tools.sh npx | promtool" ;;
esac
