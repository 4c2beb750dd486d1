#!/usr/bin/env bash
# test-deps.sh — find, or install with apt-get, the programs the tests run
# for real (they never skip for want of one):
#   pgbouncer   the scheduler's PgBouncer test (Debian package pgbouncer)
# Prints what it installs; fails saying how to install what it cannot.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

have pgbouncer || missing+=(pgbouncer)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: installing ${missing[*]} with apt-get" >&2
	if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1; then
		exit 0
	fi
	echo "test-deps: apt-get could not install ${missing[*]}" >&2
fi
echo "test-deps: the tests need ${missing[*]}; install it (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run make test again" >&2
exit 1
