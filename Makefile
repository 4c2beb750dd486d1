# The two commands a newcomer needs:
#   make run    start Postgres (a throwaway local cluster unless DATABASE_URL
#               is set), the upstream simulator and the server
#   make test   go vet + the whole test suite with -race against real Postgres
.PHONY: run test build vet fuzz clean stop-db

GO ?= go

build:
	$(GO) build -o bin/poolgate ./cmd/server

run: build
	@scripts/run.sh

test:
	@url="$$(scripts/pg.sh url-test)" || { echo "make test: no PostgreSQL could be reached or started (see above)" >&2; exit 1; }; \
	set -e; \
	$(GO) vet ./...; \
	DATABASE_URL="$$url" $(GO) test -race -count=1 ./...

# fuzz runs every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in FuzzParse FuzzParseLTX FuzzDecodeJWT; do \
		$(GO) test ./internal/cookies -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

stop-db:
	@scripts/pg.sh stop

clean: stop-db
	rm -rf bin .data
