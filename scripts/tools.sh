#!/usr/bin/env bash
# tools.sh — find, or install, a tool make test needs, and print its path.
#
#   scripts/tools.sh npx        Node's npx, which runs @redocly/cli (the OpenAPI linter)
#   scripts/tools.sh promtool   Prometheus's promtool (checks the /metrics exposition)
#   scripts/tools.sh pgbouncer  PgBouncer (the scheduler's test in transaction mode)
#   scripts/tools.sh ffmpeg     ffmpeg and ffprobe (make and check the MP4s results tests store)
#   scripts/tools.sh s3server   versitygw, an S3-compatible server (Apache-2.0) on a
#                               posix directory, for the S3 result store's tests
#
# A tool on PATH is used as it is. Otherwise, as root with apt-get (the
# project's machines and CI), it installs the Debian package; elsewhere it
# fails and says what to install. s3server is no Debian package: it is built
# from source with go install (through the Go module proxy, a minute or two
# the first time) into a cache directory, $POOLGATE_TOOLS or
# ~/.cache/poolgate/tools, and reused from there.
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

# versitygw's version; the cached binary's name carries it, so changing it
# here builds the new one.
VERSITYGW_VERSION=v1.8.0

s3server() {
	local dir="${POOLGATE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/poolgate/tools}"
	local bin="$dir/versitygw-$VERSITYGW_VERSION"
	if [ -x "$bin" ]; then echo "$bin"; return; fi
	command -v go >/dev/null 2>&1 || die "go is needed to build versitygw (the S3 test server)"
	mkdir -p "$dir" || die "cannot create $dir"
	local tmp
	tmp="$(mktemp -d "$dir/build.XXXXXX")"
	echo "tools.sh: building versitygw $VERSITYGW_VERSION into $dir (go install; once)" >&2
	GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2 \
		|| { rm -rf "$tmp"; die "go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION failed"; }
	mv "$tmp/versitygw" "$bin" && rm -rf "$tmp"
	echo "$bin"
}

case "${1:-}" in
npx) find_or_install npx "nodejs npm" ;;
promtool) find_or_install promtool prometheus ;;
pgbouncer) find_or_install pgbouncer pgbouncer ;;
ffmpeg) find_or_install ffmpeg ffmpeg >/dev/null && find_or_install ffprobe ffmpeg >/dev/null && found ffmpeg ;;
s3server) s3server ;;
*) die "usage: scripts/tools.sh npx | promtool | pgbouncer | ffmpeg | s3server" ;;
esac
