# The two commands a newcomer needs:
#   make run    start Postgres (a throwaway local cluster unless DATABASE_URL
#               is set), the upstream simulator and the server
#   make test   go vet + the whole test suite with -race against real Postgres
.PHONY: run test build vet fuzz clean stop-db bench bench-compare chaos lint-openapi

GO ?= go

build:
	$(GO) build -o bin/poolgate ./cmd/server

run: build
	@scripts/run.sh

test:
	@url="$$(scripts/pg.sh url-test)" || { echo "make test: no PostgreSQL could be reached or started (see above)" >&2; exit 1; }; \
	set -e; \
	$(GO) vet ./...; \
	$(GO) mod tidy -diff || { echo "make test: go.mod/go.sum are not tidy (the diff is above); run go mod tidy" >&2; exit 1; }; \
	if $(GO) list -deps ./cmd/server | grep -qx testing; then echo "make test: cmd/server links the testing package; keep test tooling out of the binary" >&2; exit 1; fi; \
	$(MAKE) --no-print-directory lint-openapi; \
	scripts/tools.sh promtool >/dev/null; \
	scripts/tools.sh pgbouncer >/dev/null; \
	scripts/tools.sh ffmpeg >/dev/null; \
	scripts/tools.sh s3server >/dev/null; \
	DATABASE_URL="$$url" $(GO) test -race -count=1 ./...

# lint-openapi lints the API document with Redocly's recommended rules
# (redocly.yaml says which are off and why): 0 errors and 0 warnings.
REDOCLY ?= @redocly/cli@2.77.0
lint-openapi:
	@npx="$$(scripts/tools.sh npx)"; mkdir -p bin; \
	"$$npx" --yes $(REDOCLY) lint internal/api/openapi.yaml >bin/redocly.out 2>&1 \
		&& ! grep -Eq "You have [0-9]+ warning" bin/redocly.out \
		|| { cat bin/redocly.out >&2; echo "make test: internal/api/openapi.yaml fails the OpenAPI lint (above)" >&2; exit 1; }

# fuzz runs every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in FuzzParse FuzzParseLTX FuzzDecodeJWT; do \
		$(GO) test ./internal/cookies -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; \
	done
	@for t in FuzzJobRequest FuzzQueueTimeout; do \
		$(GO) test ./internal/api -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

# bench runs the benchmark scenarios of BENCHMARKS.md against a real
# Postgres (in databases it creates and drops) and prints a table, then one
# JSON line. BENCH_JOBS scales scenario 1 (the issue's figure is 100000; on
# a small machine start with 10000); BENCH_RUNS > 1 reports medians;
# BENCH_FLAGS passes anything else (poolgate bench -h).
BENCH_JOBS ?= 100000
BENCH_RUNS ?= 1
BENCH_FLAGS ?=
bench: build
	@url="$$(scripts/pg.sh url-test)" || { echo "make bench: no PostgreSQL could be reached or started (see above)" >&2; exit 1; }; \
	DATABASE_URL="$$url" bin/poolgate bench -jobs $(BENCH_JOBS) -runs $(BENCH_RUNS) $(BENCH_FLAGS)

# bench-compare runs River's equivalent of scenario 1 (bench/river, its own
# Go module) and ours on the same server, and prints the ratio. Both insert
# alike: 4 producers, batches of 1,000 (River's InsertMany, our CreateMany,
# i.e. POST /v1/jobs/batch).
RIVER_FLAGS ?=
bench-compare: build
	@url="$$(scripts/pg.sh url-test)" || { echo "make bench-compare: no PostgreSQL could be reached or started (see above)" >&2; exit 1; }; \
	set -e; \
	(cd bench/river && DATABASE_URL="$$url" $(GO) run . -jobs $(BENCH_JOBS) -runs $(BENCH_RUNS) $(RIVER_FLAGS) >../../bin/river-bench.out); \
	cat bin/river-bench.out; \
	DATABASE_URL="$$url" bin/poolgate bench -scenarios throughput -jobs $(BENCH_JOBS) -runs $(BENCH_RUNS) -insert-batch 1000 -producers 4 $(BENCH_FLAGS) -compare bin/river-bench.out

# chaos runs three servers and the simulator on loopback under a steady
# load, SIGKILLs and restarts servers at random (and restarts Postgres once
# when it started its own throwaway cluster), then checks the invariants.
# About 70 s; CHAOS_FLAGS passes flags (go run ./cmd/chaos -h).
CHAOS_FLAGS ?=
chaos: build
	@$(GO) build -o bin/chaos ./cmd/chaos && bin/chaos $(CHAOS_FLAGS)

stop-db:
	@scripts/pg.sh stop

clean: stop-db
	rm -rf bin .data
