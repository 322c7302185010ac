#!/usr/bin/env bash
# Builds the test cluster's binaries (etcd, kube-apiserver, kubectl, helm,
# kube-controller-manager, kube-scheduler, kwok) from Go modules and caches each binary by version under
#   ${TETHER_CACHE:-$HOME/.cache/tether}/bin/<name>-<version>
# A binary already in the cache is reused, so a warm run takes well under a
# second. Versions come from versions.env next to this script.
#
# Why build from source: these machines reach the Go module proxy but no
# download site for Kubernetes binaries, and there is no Docker or kind.
#
# Usage: build.sh [--print-bin-dir]
#   --print-bin-dir  only print the bin directory (nothing is built)
# Environment:
#   TETHER_CACHE   cache root (default $HOME/.cache/tether)
#   BUILD_NICE     niceness for the go builds (default 10: the build shares
#                  the CPU with whatever else runs)
#   GOFLAGS        passed through (e.g. -p=1 to build with a single job)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${TETHER_CACHE:-$HOME/.cache/tether}"
bin="$cache/bin"
if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$bin"
  exit 0
fi

nice_level="${BUILD_NICE:-10}"
mkdir -p "$bin" "$cache/build"

# One build at a time per cache: two runs (two checkouts, or make test next to
# make cluster-up) would compile the same packages twice on the same cores and
# write the same wrapper modules. The second waits, then reuses what the first built.
if command -v flock >/dev/null; then
  exec 9>"$cache/build.lock"
  if ! flock -n 9; then
    echo "[build.sh] another build.sh is running on $cache; waiting for it" >&2
    flock 9
  fi
fi

log() { echo "[build.sh] $*" >&2; }

command -v go >/dev/null || { log "go is not installed (need go >= 1.26)"; exit 1; }

# Binaries are statically linked and path-independent so a cache can be moved
# between machines of the same OS/arch.
export CGO_ENABLED=0
# Never let a module's toolchain line switch the Go toolchain behind our back:
# an error is easier to understand than a surprise download.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

gobuild() { nice -n "$nice_level" go build -trimpath "$@"; }

have() { [[ -x "$bin/$1" ]]; }

# Installs a freshly built file atomically, so an interrupted build never
# leaves a half-written binary that the next run would take for a good one.
install_bin() {
  local src="$1" name="$2"
  chmod 0755 "$src"
  mv -f "$src" "$bin/$name"
  log "installed $bin/$name"
}

# ---------------------------------------------------------------------------
# kube-apiserver + kubectl
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires the staging
# modules at v0.0.0 and replaces them with ./staging paths. A wrapper module
# requires k8s.io/kubernetes and replaces each staging module with its
# published v0.X.Y (the list is read from that version's own go.mod).
# ---------------------------------------------------------------------------
# The same wrapper module builds kube-controller-manager and kube-scheduler;
# each binary is built only if it is missing from the cache.
build_kubernetes() {
  local v="$KUBERNETES_VERSION"
  local cmds=(kube-apiserver kubectl kube-controller-manager kube-scheduler)
  local missing=() c
  for c in "${cmds[@]}"; do have "$c-$v" || missing+=("$c"); done
  if ((${#missing[@]} == 0)); then
    log "reuse ${cmds[*]/%/-$v} in $bin"
    return
  fi
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local staging_version="v0.${v#v1.}"
  local dir="$cache/build/kubernetes-$v"
  mkdir -p "$dir"
  log "building ${missing[*]} $v in $dir (cold: many minutes on 2 cores)"

  local kmod
  kmod="$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -f "$kmod" ]] || { log "could not download k8s.io/kubernetes@$v go.mod"; exit 1; }
  local go_line
  go_line="$(grep -m1 '^go ' "$kmod")"

  {
    echo "module tether.local/kubernetes-build"
    echo
    echo "$go_line"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # Lines look like: `	k8s.io/api => ./staging/src/k8s.io/api`
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, ver }' \
      ver="$staging_version" "$kmod"
    # Non-staging replaces of k8s.io/kubernetes (if any) would be ignored in a
    # dependency, so carry them over too.
    awk '$2 == "=>" && $3 !~ /^\.\// && $1 != "replace" { printf "\t%s %s %s %s\n", $1, $2, $3, $4 }' "$kmod"
    echo ")"
  } >"$dir/go.mod"
  # A wrapper file keeps `go get` from pruning the requirement.
  cat >"$dir/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF

  (
    cd "$dir"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kubectl@$v" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$v" "k8s.io/kubernetes/cmd/kube-scheduler@$v"
    # The same -X flags as hack/lib/version.sh, so /version and
    # `kubectl version` report the real release (helm checks it).
    local ld="-s -w"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    for c in "${missing[@]}"; do
      local t0=$SECONDS
      gobuild -ldflags "$ld" -o "$dir/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      log "$c built in $((SECONDS - t0)) s"
    done
  )
  for c in "${missing[@]}"; do install_bin "$dir/$c.tmp" "$c-$v"; done
}

# ---------------------------------------------------------------------------
# etcd
# go.etcd.io/etcd/server/v3 is the etcd main package, but its go.mod has local
# replaces, so `go install …@version` refuses it. A wrapper module without
# replaces resolves the sibling modules to their published versions.
# ---------------------------------------------------------------------------
build_etcd() {
  local v="$ETCD_VERSION"
  local name="etcd-$v"
  if have "$name"; then
    log "reuse $bin/$name"
    return
  fi
  local dir="$cache/build/etcd-$v"
  mkdir -p "$dir"
  log "building etcd $v in $dir"
  local emod go_line
  emod="$(go mod download -json "go.etcd.io/etcd/server/v3@$v" | sed -n 's/.*"GoMod": "\(.*\)",*$/\1/p')"
  go_line="$(grep -m1 '^go ' "$emod")"
  printf 'module tether.local/etcd-build\n\n%s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$go_line" "$v" >"$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$dir/tools.go"
  (
    cd "$dir"
    go get "go.etcd.io/etcd/server/v3@$v"
    # etcd's own build sets GitSHA only; the version string is in the source.
    local t0=$SECONDS
    gobuild -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" -o "$dir/etcd.tmp" go.etcd.io/etcd/server/v3
    log "etcd built in $((SECONDS - t0)) s"
  )
  install_bin "$dir/etcd.tmp" "$name"
}

# ---------------------------------------------------------------------------
# helm: its go.mod has no replaces, so `go install` works directly.
# ---------------------------------------------------------------------------
build_helm() {
  local v="$HELM_VERSION"
  local name="helm-$v"
  if have "$name"; then
    log "reuse $bin/$name"
    return
  fi
  local major="${v%%.*}"
  local dir="$cache/build/helm-$v"
  mkdir -p "$dir"
  log "building helm $v"
  # helm derives the Kubernetes version it targets from the client-go in its
  # build info, so only its own version needs ldflags (as in helm's Makefile).
  local p="helm.sh/helm/$major/internal/version"
  local t0=$SECONDS
  GOBIN="$dir" nice -n "$nice_level" go install -trimpath \
    -ldflags "-s -w -X $p.version=$v -X $p.metadata= -X $p.gitTreeState=clean" \
    "helm.sh/helm/$major/cmd/helm@$v"
  log "helm built in $((SECONDS - t0)) s"
  install_bin "$dir/helm" "$name"
}

# ---------------------------------------------------------------------------
# kwok: keeps simulated Nodes alive and moves Pods through their lifecycle.
# Its go.mod has no replaces, so `go install` works directly. The stage files
# the harness uses come from the same module version (see stages_dir below).
# ---------------------------------------------------------------------------
build_kwok() {
  local v="$KWOK_VERSION"
  local name="kwok-$v"
  if have "$name"; then
    log "reuse $bin/$name"
  else
    local dir="$cache/build/kwok-$v"
    mkdir -p "$dir"
    log "building kwok $v"
    local t0=$SECONDS
    GOBIN="$dir" nice -n "$nice_level" go install -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v}" \
      "sigs.k8s.io/kwok/cmd/kwok@$v"
    log "kwok built in $((SECONDS - t0)) s"
    install_bin "$dir/kwok" "$name"
  fi
  # KWOK's stock stage files (node fast + heartbeat-with-lease, pod general),
  # copied next to the binary so the harness needs no Go module cache.
  local stages="$bin/kwok-stages-$v"
  if [[ ! -d "$stages" ]]; then
    local src
    src="$(go mod download -json "sigs.k8s.io/kwok@$v" | sed -n 's/.*"Dir": "\(.*\)",*$/\1/p')"
    [[ -d "$src/kustomize/stage" ]] || { log "no stage files in sigs.k8s.io/kwok@$v"; exit 1; }
    rm -rf "$stages.tmp"
    mkdir -p "$stages.tmp"
    local f
    for f in "$src"/kustomize/stage/{node/fast,node/heartbeat-with-lease,pod/general}/*.yaml; do
      [[ "$(basename "$f")" == kustomization.yaml ]] || cp "$f" "$stages.tmp/"
    done
    chmod -R u+w "$stages.tmp"
    mv "$stages.tmp" "$stages"
    log "installed $stages"
  fi
}

# ---------------------------------------------------------------------------
# prometheus-operator CRDs: no binary, only the three CRDs the Helm chart's
# optional ServiceMonitor, PodMonitor and PrometheusRule need, copied from the
# module (example/prometheus-operator-crd/) like KWOK's stage files.
# ---------------------------------------------------------------------------
fetch_monitoring_crds() {
  local v="$PROMETHEUS_OPERATOR_VERSION"
  local dest="$bin/monitoring-crds-$v"
  if [[ -d "$dest" ]]; then
    log "reuse $dest"
    return
  fi
  local src
  src="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$v" | sed -n 's/.*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$src/example/prometheus-operator-crd" ]] || { log "no CRDs in prometheus-operator@$v"; exit 1; }
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  local k
  for k in servicemonitors podmonitors prometheusrules; do
    cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml" "$dest.tmp/"
  done
  chmod -R u+w "$dest.tmp"
  mv "$dest.tmp" "$dest"
  log "installed $dest"
}

start=$SECONDS
fetch_monitoring_crds
build_etcd
build_helm
build_kubernetes
build_kwok
log "done in $((SECONDS - start)) s; binaries in $bin"
