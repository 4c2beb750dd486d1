#!/usr/bin/env bash
# pg.sh — find or start the PostgreSQL that `make run` and `make test` use.
#
#   scripts/pg.sh url-test   print a server URL for the tests: $DATABASE_URL if
#                            set, else postgres@127.0.0.1:5432 if it answers,
#                            else a throwaway cluster under .data/ (started now)
#   scripts/pg.sh url-run    print the URL of database "poolgate" in the
#                            throwaway cluster under .data/ (started now)
#   scripts/pg.sh stop       stop the throwaway cluster
#
# The throwaway cluster listens on 127.0.0.1:$POOLGATE_PG_PORT (default 54329)
# with trust auth for user postgres. initdb refuses to run as root, so as root
# the cluster is owned by the "postgres" user (or "nobody" when there is none);
# if that user cannot reach .data/ (a checkout under /root, say), the data
# lives in /tmp and .data/pg links to it.
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${POOLGATE_PG_PORT:-54329}"
DATA_LINK="$PWD/.data/pg"

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

data_dir() {
	mkdir -p "$PWD/.data"
	if [ ! -e "$DATA_LINK" ]; then
		mkdir -p "$DATA_LINK"
		if [ -n "$OWNER" ]; then
			chown "$OWNER" "$DATA_LINK"
			if ! as_owner test -w "$DATA_LINK"; then
				# The owner cannot traverse our path; keep the data where it can.
				rmdir "$DATA_LINK"
				local tmp
				tmp="${TMPDIR:-/tmp}/poolgate-pg-$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)"
				mkdir -p "$tmp" && chown "$OWNER" "$tmp" && chmod 700 "$tmp"
				ln -s "$tmp" "$DATA_LINK"
			fi
		fi
	fi
	readlink -f "$DATA_LINK"
}

start_local() {
	local dir url log
	dir=$(data_dir)
	url="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
	exec 9>"$PWD/.data/pg.lock"
	flock 9 # one starter at a time (parallel make invocations)
	if [ ! -f "$dir/PG_VERSION" ]; then
		echo "pg.sh: creating a throwaway PostgreSQL cluster in $dir" >&2
		as_owner "$(pg_bin initdb)" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null \
			|| die "initdb failed in $dir"
	fi
	if ! as_owner "$(pg_bin pg_ctl)" -D "$dir" status >/dev/null 2>&1; then
		log="$dir/server.log"
		echo "pg.sh: starting PostgreSQL on 127.0.0.1:$PORT (log: $log)" >&2
		as_owner "$(pg_bin pg_ctl)" -D "$dir" -l "$log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories='' -c max_connections=300 -c fsync=off" start >/dev/null \
			|| die "PostgreSQL did not start on 127.0.0.1:$PORT; see $log (is the port taken? set POOLGATE_PG_PORT)"
	fi
	answers "$url" || die "the cluster in $dir runs but does not answer on 127.0.0.1:$PORT (port taken by another server? set POOLGATE_PG_PORT)"
	echo "$url"
}

case "${1:-}" in
url-test)
	if [ -n "${DATABASE_URL:-}" ]; then
		answers "$DATABASE_URL" || die "DATABASE_URL is set but that database does not answer"
		echo "$DATABASE_URL"
	elif answers "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"; then
		echo "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	else
		start_local
	fi
	;;
url-run)
	url=$(start_local)
	psql=$(pg_bin psql)
	if [ "$("$psql" "$url" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'poolgate'")" != 1 ]; then
		"$psql" "$url" -qc 'CREATE DATABASE poolgate' >/dev/null
	fi
	echo "postgres://postgres@127.0.0.1:$PORT/poolgate?sslmode=disable"
	;;
stop)
	[ -e "$DATA_LINK/PG_VERSION" ] || { echo "pg.sh: no local cluster" >&2; exit 0; }
	as_owner "$(pg_bin pg_ctl)" -D "$(readlink -f "$DATA_LINK")" -m fast stop
	;;
*)
	die "usage: scripts/pg.sh url-test | url-run | stop"
	;;
esac
