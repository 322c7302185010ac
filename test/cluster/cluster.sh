#!/usr/bin/env bash
# The test cluster by hand (make cluster-up / cluster-down):
#
#   test/cluster/cluster.sh up        # build/reuse binaries, start the cluster in its own network namespace
#   test/cluster/cluster.sh shell     # a shell inside that namespace, KUBECONFIG and kubectl set
#   test/cluster/cluster.sh exec CMD  # one command inside it, e.g. `exec kubectl get pods -A`
#   test/cluster/cluster.sh status
#   test/cluster/cluster.sh down      # stop everything, remove the namespace
#
# Everything (API server, pods' processes) listens inside the namespace, so
# kubectl and curl to pod IPs work only from inside it (shell / exec, or
# `nsenter -t <pid> -n` as printed by `up`).
# State: ${TETHER_CLUSTER_DIR:-${TETHER_CACHE:-$HOME/.cache/tether}/test-cluster}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${TETHER_CLUSTER_DIR:-${TETHER_CACHE:-$HOME/.cache/tether}/test-cluster}"
node="$root/node_modules/.bin/node"
[[ -x "$node" ]] || node="$(command -v node)"

log() { echo "[cluster.sh] $*" >&2; }

holder_pid() {
  [[ -f "$dir/ready.json" ]] || return 1
  local pid
  pid="$(sed -n 's/^  "pid": \([0-9]*\),$/\1/p' "$dir/ready.json")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q 'cli.ts' "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

kubeconfig() { sed -n 's/^  "adminKubeconfig": "\(.*\)",$/\1/p' "$dir/ready.json"; }

# nsenter into the holder's namespaces: as root the network one is enough;
# otherwise the user namespace of `unshare -rn` too.
enter() {
  local pid="$1"
  shift
  local ns=(-n)
  [[ "$(id -u)" == 0 ]] || ns=(-U -n --preserve-credentials)
  exec nsenter -t "$pid" "${ns[@]}" env KUBECONFIG="$(kubeconfig)" PATH="$dir/bin:$PATH" "$@"
}

case "${1:-}" in
  up)
    if pid="$(holder_pid)"; then
      log "already running (holder pid $pid)"
    else
      "$root/test/control-plane/build.sh" >&2
      rm -rf "$dir"
      mkdir -p "$dir/bin"
      bin="$("$root/test/control-plane/build.sh" --print-bin-dir)"
      # shellcheck source=../control-plane/versions.env
      source "$root/test/control-plane/versions.env"
      ln -sf "$bin/kubectl-$KUBERNETES_VERSION" "$dir/bin/kubectl"
      ln -sf "$bin/helm-$HELM_VERSION" "$dir/bin/helm"
      log "starting the cluster (log: $dir/holder.log)"
      setsid "$here/in-netns.sh" "$node" "$here/cli.ts" serve "$dir" >"$dir/holder.log" 2>&1 </dev/null &
      started=$!
      for _ in $(seq 1 600); do
        [[ -f "$dir/ready.json" ]] && break
        if ! kill -0 "$started" 2>/dev/null; then
          tail -n 30 "$dir/holder.log" >&2
          log "the cluster did not start"
          exit 1
        fi
        sleep 0.5
      done
      pid="$(holder_pid)" || { tail -n 30 "$dir/holder.log" >&2; log "not ready after 300 s"; exit 1; }
    fi
    cat >&2 <<MSG
[cluster.sh] test cluster running; its network namespace is held by pid $pid.
  shell inside it:   test/cluster/cluster.sh shell      (or: nsenter -t $pid -n bash)
  one command:       test/cluster/cluster.sh exec kubectl get nodes
  try:               kubectl create deployment web --image=tether-test-backend:dev --replicas=3 -- \\
                       node test/cluster/test-backend.ts   # (args are ignored: see README)
  KUBECONFIG=$(kubeconfig)
  pod logs:          $dir/cluster/run/pods/
  stop:              make cluster-down
MSG
    ;;
  shell)
    pid="$(holder_pid)" || { log "not running (make cluster-up)"; exit 1; }
    enter "$pid" "${SHELL:-bash}"
    ;;
  exec)
    shift
    pid="$(holder_pid)" || { log "not running (make cluster-up)"; exit 1; }
    enter "$pid" "$@"
    ;;
  status)
    if pid="$(holder_pid)"; then
      echo "running: holder pid $pid, KUBECONFIG=$(kubeconfig)"
    else
      echo "not running"
      exit 1
    fi
    ;;
  down)
    if pid="$(holder_pid)"; then
      netns="$(readlink "/proc/$pid/ns/net")"
      kill -TERM "$pid"
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        log "holder $pid still running after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      # Whatever still runs in the cluster's private namespace was started by
      # the cluster (nothing else can be in it): end it, so nothing is left.
      if [[ "$netns" != "$(readlink /proc/1/ns/net)" ]]; then
        for p in /proc/[0-9]*; do
          if [[ "$(readlink "$p/ns/net" 2>/dev/null)" == "$netns" ]]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
        done
      fi
      log "stopped (holder pid $pid)"
    else
      log "not running"
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 up|shell|exec CMD...|status|down" >&2
    exit 2
    ;;
esac
