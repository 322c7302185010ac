# Tether: make demo (the main job, no cluster) and make test (every test).
# Everything runs on the Node 24 pinned in package.json (node_modules/.bin/node).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
NODE := node_modules/.bin/node
VITEST := $(NODE) node_modules/vitest/vitest.mjs
TSC := $(NODE) node_modules/typescript/bin/tsc
BIOME := node_modules/.bin/biome
# Debian packages the tests and benchmarks start for real.
TEST_DEBS := curl openssl ca-certificates prometheus iproute2 util-linux redis-server redis-sentinel
BENCH_DEBS := wrk haproxy nginx
# The loopback replicated session store of make demo (part 7) and make bench-session-store.
STORE_DEBS := redis-server redis-sentinel
# The image test builds the Dockerfile without a Docker engine.
IMAGE_DEBS := buildah debootstrap

.PHONY: all deps debs demo build typecheck lint format test test-unit test-integration test-image image bench bench-readme faults-bench bench-session-store clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   - run the sticky proxy on three local backends and print a report (no cluster)"
	@echo "make test   - install what is needed, type-check, lint, run unit, integration and e2e tests"
	@echo "other: build lint typecheck test-unit test-integration test-e2e bench bench-readme tools cluster-up cluster-down clean"
	@echo "operator: manifests run bench-operator demo-cluster"

# npm ci whenever the lock file changed; the marker keeps warm runs instant.
node_modules/.tether-deps: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@$(NODE) -e 'const m=+process.versions.node.split(".")[0]; if (m<24) { console.error("node_modules/.bin/node is " + process.version + ", need 24"); process.exit(1) } console.log("node " + process.version)'
	@touch $@

deps: node_modules/.tether-deps

debs:
	@scripts/ensure-debs.sh $(TEST_DEBS)

build: deps
	$(TSC) -p tsconfig.build.json

typecheck: deps
	$(TSC) -p tsconfig.json --noEmit

lint: deps
	$(BIOME) check .

format: deps
	$(BIOME) check --write .

test-unit: deps
	$(VITEST) run --project unit

test-integration: deps debs
	$(VITEST) run --project integration

test: deps debs typecheck lint test-unit test-integration test-e2e test-image

## image: the container image (Dockerfile) built with buildah into vfs storage, tagged localhost/tether:dev
image: deps
	@scripts/ensure-debs.sh $(IMAGE_DEBS)
	test/image/build-image.sh localhost/tether:dev

## test-image: build the image and run both bins' --help in it as the non-root user
test-image: deps
	@scripts/ensure-debs.sh $(IMAGE_DEBS)
	$(VITEST) run --project image

demo: deps
	@scripts/ensure-debs.sh $(STORE_DEBS)
	$(NODE) demo/run-demo.ts

# Tether against HAProxy, the Node peers and a bare forwarder: throughput,
# paced latency (vegeta, built by bench/ensure-vegeta.sh), memory, workers.
# BENCH_ONLY=throughput,paced,memory,workers and the rest: see bench/run-bench.ts.
# The memory step holds 10,000 connections: the soft open-file limit goes up to the hard one.
bench: deps
	@scripts/ensure-debs.sh $(BENCH_DEBS)
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; $(NODE) bench/run-bench.ts

## bench-readme: the README's benchmark tables from bench/results/latest.json (the last make bench)
bench-readme: deps
	$(NODE) bench/render-readme.ts

# Failed idempotent requests when an endpoint is SIGKILLed or races keep-alive
# closes, ~100k requests a run (not in make test). FAULTS_RUNS, FAULTS_REQUESTS, …
faults-bench: deps
	$(NODE) bench/faults-under-load.ts

# Session writes/s and p50/p99, Async vs Sync (WAIT), on a loopback
# redis-server + redis-sentinel store (not in make test). SESSION_BENCH_RUNS, …
bench-session-store: deps
	@scripts/ensure-debs.sh $(STORE_DEBS)
	$(NODE) bench/session-store-bench.ts

clean:
	rm -rf dist coverage

include mk/cluster.mk
include mk/operator.mk
