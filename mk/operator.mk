# The operator (operator/, crds/): generated manifests, running it, its demo and benchmark.
# Included by the top-level Makefile (NODE, deps).

.PHONY: manifests run

## manifests: regenerate crds/ and operator/rbac.yaml from the zod schemas and the RBAC list,
## and their copies in charts/tether/files/
manifests: deps
	$(NODE) operator/src/crd/write-manifests.ts
	$(NODE) operator/src/crd/write-chart-files.ts

## run: the operator against the current kubeconfig (kubebuilder's `make run`); ARGS for more flags
run: deps
	$(NODE) bin/tether-operator.js $(ARGS)

.PHONY: bench-operator
## bench-operator: EndpointSlice change → every proxy serving it (median/p99), 1 pool and BENCH_POOLS (1000) pools × 3
bench-operator: deps debs tools
	$(NODE) bench/operator-bench.ts

.PHONY: demo-cluster
## demo-cluster: the test cluster, the CRD, the operator, a backend and a pool; sticky traffic through a rollout
demo-cluster: deps debs tools
	test/cluster/in-netns.sh $(NODE) demo/cluster-demo.ts
