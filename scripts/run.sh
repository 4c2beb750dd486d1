#!/usr/bin/env bash
# run.sh — what `make run` does: a database, a secret key, migrations, the
# upstream simulator, and the server in the foreground (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data

if [ -z "${DATABASE_URL:-}" ]; then
	DATABASE_URL="$(scripts/pg.sh url-run)"
fi
export DATABASE_URL

# The cookie encryption key. Losing it makes stored cookies unreadable, so
# the local one is kept in .data/secret.key across runs.
if [ -z "${POOLGATE_SECRET_KEY:-}" ]; then
	if [ ! -s .data/secret.key ]; then
		(umask 077; head -c 32 /dev/urandom | base64 > .data/secret.key)
	fi
	POOLGATE_SECRET_KEY="$(cat .data/secret.key)"
fi
export POOLGATE_SECRET_KEY

bin/poolgate migrate

export POOLGATE_SIM_ADDR="${POOLGATE_SIM_ADDR:-127.0.0.1:8090}"
if [ -z "${POOLGATE_UPSTREAM_URL:-}" ]; then
	bin/poolgate sim &
	SIM_PID=$!
	trap 'kill $SIM_PID 2>/dev/null || true' EXIT
	export POOLGATE_UPSTREAM_URL="http://$POOLGATE_SIM_ADDR"
	# The simulator's jobs take seconds, not the minute real ones take:
	# learn their length instead of waiting for the production table's.
	export POOLGATE_POLL_EXPECTED="${POOLGATE_POLL_EXPECTED:-none}"
fi

ADDR="${POOLGATE_ADDR:-127.0.0.1:8080}"
cat <<MSG

poolgate is starting on http://$ADDR (upstream: $POOLGATE_UPSTREAM_URL)
Get an admin API key (shown once) from another terminal:

  DATABASE_URL='$DATABASE_URL' bin/poolgate keys create --tenant local --name admin

MSG
bin/poolgate serve
