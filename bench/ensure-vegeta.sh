#!/usr/bin/env bash
# Builds vegeta (the paced HTTP load generator `make bench` uses for latency at
# a fixed request rate: wrk cannot pace) from its Go module, and caches it by
# version under
#   ${TETHER_CACHE:-$HOME/.cache/tether}/bin/vegeta-<version>
# as test/control-plane/build.sh does for the cluster binaries. A warm run
# only checks the file and prints its path.
#
# Usage: ensure-vegeta.sh            prints the binary's path on stdout (last line)
# Environment:
#   VEGETA_VERSION  module version (default v12.13.0)
#   TETHER_CACHE    cache root (default $HOME/.cache/tether)
#   BUILD_NICE      niceness of the go build (default 10)
#   GOFLAGS, GOPROXY  passed through to go
set -euo pipefail

version="${VEGETA_VERSION:-v12.13.0}"
cache="${TETHER_CACHE:-$HOME/.cache/tether}"
bin="$cache/bin"
name="vegeta-$version"
log() { echo "[ensure-vegeta] $*" >&2; }

if [[ -x "$bin/$name" ]]; then
  echo "$bin/$name"
  exit 0
fi

mkdir -p "$bin" "$cache/build"
# One build at a time per cache (the same lock as build.sh: both run go
# builds on the same two cores); the second waits, then reuses the binary.
if command -v flock >/dev/null; then
  exec 9>"$cache/build.lock"
  if ! flock -n 9; then
    log "another build holds $cache/build.lock; waiting for it"
    flock 9
  fi
  if [[ -x "$bin/$name" ]]; then
    echo "$bin/$name"
    exit 0
  fi
fi

command -v go >/dev/null || { log "go is not installed (needed to build vegeta $version)"; exit 1; }
# Static and path-independent, like the cluster binaries; never let the
# module's toolchain line download another Go behind our back.
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

dir="$cache/build/vegeta-$version"
mkdir -p "$dir"
log "building vegeta $version (github.com/tsenart/vegeta/v12)"
t0=$SECONDS
# vegeta's go.mod has no replaces, so `go install module@version` works directly.
# Its main.Version is what `vegeta -version` prints.
GOBIN="$dir" nice -n "${BUILD_NICE:-10}" go install -trimpath \
  -ldflags "-s -w -X main.Version=$version" \
  "github.com/tsenart/vegeta/v12@$version"
log "built in $((SECONDS - t0)) s"
# Installed atomically: an interrupted build never leaves a half-written binary.
chmod 0755 "$dir/vegeta"
mv -f "$dir/vegeta" "$bin/$name"
log "installed $bin/$name"
echo "$bin/$name"
