# Test cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok, kubectl, helm built from Go modules, cached by version in $${TETHER_CACHE:-~/.cache/tether}).
# Included by the top-level Makefile, which defines NODE, VITEST and the
# `deps` (node_modules) and `debs` (openssl, …) targets used below.

CONTROL_PLANE_DIR := test/control-plane

.PHONY: tools cluster-up cluster-down cluster-status control-plane-up control-plane-down test-e2e

## tools: build (cold: many minutes) or reuse (warm: seconds) the control-plane binaries
tools:
	@$(CONTROL_PLANE_DIR)/build.sh

## cluster-up: start the test cluster by hand, in its own network namespace;
## prints how to enter it (test/cluster/cluster.sh shell)
cluster-up: deps debs tools
	@test/cluster/cluster.sh up

## cluster-down: stop the test cluster started by cluster-up
cluster-down: deps
	@test/cluster/cluster.sh down

cluster-status: deps
	@test/cluster/cluster.sh status

## control-plane-up/-down: only etcd + kube-apiserver, on the host's loopback
control-plane-up: deps debs tools
	@$(CONTROL_PLANE_DIR)/cluster.sh up

control-plane-down: deps
	@$(CONTROL_PLANE_DIR)/cluster.sh down

## test-e2e: e2e tests against a fresh test cluster, all inside a private
## network namespace (pod IPs are local there and never leave the machine)
test-e2e: deps debs tools
	test/cluster/in-netns.sh $(VITEST) run --project e2e
