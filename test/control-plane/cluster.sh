#!/usr/bin/env bash
# Starts or stops the test control plane (etcd + kube-apiserver on loopback)
# by hand, for a developer or user who wants to poke at it.
#
#   test/control-plane/cluster.sh up      # builds/reuses binaries, starts, prints `export KUBECONFIG=…`
#   test/control-plane/cluster.sh down    # stops it and removes its directory
#   test/control-plane/cluster.sh status
#
#   eval "$(test/control-plane/cluster.sh up)"; kubectl get ns
#
# State lives in ${TETHER_CLUSTER_DIR:-${TETHER_CACHE:-$HOME/.cache/tether}/cluster}.
# Only `export KUBECONFIG=…` goes to stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${TETHER_CLUSTER_DIR:-${TETHER_CACHE:-$HOME/.cache/tether}/cluster}"

# The repository pins Node in node_modules; fall back to one on PATH.
node="$root/node_modules/.bin/node"
[[ -x "$node" ]] || node="$(command -v node)"

case "${1:-}" in
  up)
    "$here/build.sh" >&2
    "$node" "$here/cli.ts" up "$dir"
    bin="$("$here/build.sh" --print-bin-dir)"
    # shellcheck source=versions.env
    source "$here/versions.env"
    echo "[cluster.sh] pinned clients: $bin/kubectl-$KUBERNETES_VERSION, $bin/helm-$HELM_VERSION" >&2
    ;;
  down | status)
    "$node" "$here/cli.ts" "$1" "$dir"
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
