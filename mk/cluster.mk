# Test control plane (etcd + kube-apiserver + kubectl + helm built from Go
# modules, cached by version in $${TETHER_CACHE:-~/.cache/tether}).
# Included by the top-level Makefile, which defines NODE, VITEST and the
# `deps` (node_modules) and `debs` (openssl, …) targets used below.

CONTROL_PLANE_DIR := test/control-plane

.PHONY: tools cluster-up cluster-down cluster-status test-e2e

## tools: build (cold: many minutes) or reuse (warm: seconds) the control-plane binaries
tools:
	@$(CONTROL_PLANE_DIR)/build.sh

## cluster-up: start a control plane by hand; prints the KUBECONFIG to export
cluster-up: deps debs tools
	@$(CONTROL_PLANE_DIR)/cluster.sh up

## cluster-down: stop the control plane started by cluster-up
cluster-down: deps
	@$(CONTROL_PLANE_DIR)/cluster.sh down

cluster-status: deps
	@$(CONTROL_PLANE_DIR)/cluster.sh status

## test-e2e: e2e tests against a fresh test cluster, all inside a private
## network namespace (pod IPs are local there and never leave the machine)
test-e2e: deps debs tools
	test/cluster/in-netns.sh $(VITEST) run --project e2e
