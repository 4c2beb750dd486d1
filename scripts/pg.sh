#!/usr/bin/env bash
# pg.sh — find or start the PostgreSQL that `make run` and `make test` use.
#
#   scripts/pg.sh url-test   print a server URL for the tests: $DATABASE_URL if
#                            set, else postgres@127.0.0.1:5432 if it answers,
#                            else the test cluster under .data/pg-test (started now)
#   scripts/pg.sh url-run    print the URL of database "poolgate" in the
#                            local cluster under .data/pg (started now)
#   scripts/pg.sh stop       stop both clusters
#
# Two clusters, because they deserve different care. The one `make run`
# uses holds someone's accounts and queue, so it runs with fsync on (a power
# cut must not corrupt it); it listens on 127.0.0.1:$POOLGATE_PG_PORT
# (default 54329). The one only tests use is thrown away at will, so it runs
# with fsync off for speed, on $POOLGATE_PG_TEST_PORT (default 54330).
# $POOLGATE_DATA_DIR (default .data) holds both. Both trust user postgres
# on loopback. initdb refuses to run as root, so as root
# the cluster is owned by the "postgres" user (or "nobody" when there is none);
# if that user cannot reach .data/ (a checkout under /root, say), the data
# lives in /tmp and .data/pg links to it.
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${POOLGATE_PG_PORT:-54329}"
TEST_PORT="${POOLGATE_PG_TEST_PORT:-54330}"
DATA="${POOLGATE_DATA_DIR:-$PWD/.data}"

die() { echo "pg.sh: $*" >&2; exit 1; }

pg_bin() {
	local tool=$1 dir
	if command -v "$tool" >/dev/null 2>&1; then command -v "$tool"; return; fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/pgsql/bin; do
		[ -x "$dir/$tool" ] && { echo "$dir/$tool"; return; }
	done
	die "cannot find $tool: install PostgreSQL (Debian/Ubuntu: apt-get install postgresql), or set DATABASE_URL to a server you have"
}

answers() { # url
	"$(pg_bin psql)" "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

# as_owner runs a command as the cluster's owner: ourselves, or an
# unprivileged user when we are root.
OWNER=""
if [ "$(id -u)" = 0 ]; then
	if id postgres >/dev/null 2>&1; then OWNER=postgres; else OWNER=nobody; fi
fi
as_owner() {
	if [ -z "$OWNER" ]; then "$@"; return; fi
	# From /, since the owner may not be able to enter our working directory.
	if command -v runuser >/dev/null 2>&1; then (cd / && runuser -u "$OWNER" -- "$@")
	else (cd / && su -s /bin/sh "$OWNER" -c "$(printf '%q ' "$@")"); fi
}

data_dir() { # link
	local link=$1
	mkdir -p "$DATA"
	if [ ! -e "$link" ]; then
		mkdir -p "$link"
		if [ -n "$OWNER" ]; then
			chown "$OWNER" "$link"
			if ! as_owner test -w "$link"; then
				# The owner cannot traverse our path; keep the data where it can.
				rmdir "$link"
				local tmp
				tmp="${TMPDIR:-/tmp}/poolgate-pg-$(printf '%s' "$link" | cksum | cut -d' ' -f1)"
				mkdir -p "$tmp" && chown "$OWNER" "$tmp" && chmod 700 "$tmp"
				ln -s "$tmp" "$link"
			fi
		fi
	fi
	readlink -f "$link"
}

start_local() { # link port fsync(on|off)
	local link=$1 port=$2 fsync=$3 dir url log
	dir=$(data_dir "$link")
	url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	exec 9>"$DATA/pg.lock"
	flock 9 # one starter at a time (parallel make invocations)
	if [ ! -f "$dir/PG_VERSION" ]; then
		echo "pg.sh: creating a PostgreSQL cluster in $dir (fsync=$fsync)" >&2
		as_owner "$(pg_bin initdb)" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null \
			|| die "initdb failed in $dir"
	fi
	local opts="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='' -c max_connections=300 -c fsync=$fsync"
	if as_owner "$(pg_bin pg_ctl)" -D "$dir" status >/dev/null 2>&1; then
		# Started by an older pg.sh with fsync off? Restart it as it should run.
		if answers "$url" && [ "$("$(pg_bin psql)" "$url" -Atqc 'SHOW fsync')" != "$fsync" ]; then
			echo "pg.sh: restarting the cluster in $dir with fsync=$fsync" >&2
			as_owner "$(pg_bin pg_ctl)" -D "$dir" -m fast -w -t 60 -o "$opts" restart >/dev/null 9>&- \
				|| die "PostgreSQL did not restart on 127.0.0.1:$port; see $dir/server.log"
		fi
	else
		log="$dir/server.log"
		echo "pg.sh: starting PostgreSQL on 127.0.0.1:$port, fsync=$fsync (log: $log)" >&2
		# 9>&-: the server must not inherit the starters' lock, or every
		# later pg.sh would wait for it until the server stops.
		as_owner "$(pg_bin pg_ctl)" -D "$dir" -l "$log" -w -t 60 -o "$opts" start >/dev/null 9>&- \
			|| die "PostgreSQL did not start on 127.0.0.1:$port; see $log (is the port taken? set POOLGATE_PG_PORT or POOLGATE_PG_TEST_PORT)"
	fi
	answers "$url" || die "the cluster in $dir runs but does not answer on 127.0.0.1:$port (port taken by another server? set POOLGATE_PG_PORT or POOLGATE_PG_TEST_PORT)"
	echo "$url"
}

stop_local() { # link
	[ -e "$1/PG_VERSION" ] || return 0
	as_owner "$(pg_bin pg_ctl)" -D "$(readlink -f "$1")" -m fast stop
}

case "${1:-}" in
url-test)
	if [ -n "${DATABASE_URL:-}" ]; then
		answers "$DATABASE_URL" || die "DATABASE_URL is set but that database does not answer"
		echo "$DATABASE_URL"
	elif answers "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"; then
		echo "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	else
		start_local "$DATA/pg-test" "$TEST_PORT" off
	fi
	;;
url-run)
	url=$(start_local "$DATA/pg" "$PORT" on)
	psql=$(pg_bin psql)
	if [ "$("$psql" "$url" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'poolgate'")" != 1 ]; then
		"$psql" "$url" -qc 'CREATE DATABASE poolgate' >/dev/null
	fi
	echo "postgres://postgres@127.0.0.1:$PORT/poolgate?sslmode=disable"
	;;
stop)
	stop_local "$DATA/pg"
	stop_local "$DATA/pg-test"
	;;
*)
	die "usage: scripts/pg.sh url-test | url-run | stop"
	;;
esac
