#!/usr/bin/env bash
# Runs a command inside a private network namespace made for it, where the
# test cluster's pod range is local:
#
#   test/cluster/in-netns.sh CMD [ARG...]
#
# The namespace has only `lo`, up, and `ip route add local $TETHER_POD_RANGE
# dev lo`, so every address of the range (default 10.244.0.0/16) is this
# machine's own and nothing sent to one can leave the machine: there is no
# other interface and no route out. The namespace ends with CMD.
#
# As root: `unshare -n`. Otherwise: `unshare -rn` (a user namespace too, where
# the kernel allows it). If neither works, it says why and exits 3: nothing
# is run in the host's network namespace, where a pod address would be routed
# off the machine.
#
# Environment: TETHER_POD_RANGE (default 10.244.0.0/16).
set -euo pipefail

range="${TETHER_POD_RANGE:-10.244.0.0/16}"
self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

die() {
  echo "in-netns.sh: $*" >&2
  exit 3
}

if [[ "${1:-}" == "--inside" ]]; then
  shift
  # Refuse to go on in the namespace of PID 1: the route below would then
  # change the host's routing table.
  if [[ "$(readlink /proc/self/ns/net)" == "$(readlink /proc/1/ns/net 2>/dev/null || true)" ]]; then
    die "still in the host's network namespace; refusing to add routes there"
  fi
  ip link set lo up || die "cannot bring lo up in the new namespace"
  ip route add local "$range" dev lo || die "cannot make $range local (ip route add local $range dev lo)"
  export TETHER_NETNS=1 TETHER_POD_RANGE="$range"
  exec "$@"
fi

(($# > 0)) || die "usage: in-netns.sh CMD [ARG...]"
command -v unshare >/dev/null || die "unshare not found (util-linux)"
command -v ip >/dev/null || die "ip not found (iproute2)"

if [[ "$(id -u)" == 0 ]]; then
  err="$(unshare -n -- true 2>&1)" && exec unshare -n -- "$self" --inside "$@"
  first="unshare -n: ${err:-failed}"
else
  first="not root"
fi
err="$(unshare -rn -- true 2>&1)" && exec unshare -rn -- "$self" --inside "$@"
die "no permission to create a network namespace ($first; unshare -rn: ${err:-failed}). \
The test cluster needs one: run as root, or allow unprivileged user namespaces \
(sysctl user.max_user_namespaces > 0, kernel.apparmor_restrict_unprivileged_userns=0)."
