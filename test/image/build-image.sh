#!/usr/bin/env bash
# Builds the project's Dockerfile with buildah (no Docker engine here), on the
# locally made base image (make-base-image.sh), into vfs storage.
#
#   test/image/build-image.sh [TAG]     # default TAG: localhost/tether:dev
#
# Prints the image id on stdout. Needs root (chroot isolation).
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG="${1:-localhost/tether:dev}"
test/image/make-base-image.sh
# --pull=never: the base must be the local stand-in; nothing is fetched.
# --isolation chroot: no runc/user namespaces needed. RUN steps use the host
# network (npm ci reaches the npm registry).
# The host's CA bundle goes in as a build secret (never into a layer): npm
# may sit behind a TLS-intercepting proxy that only that bundle trusts.
secret=()
ca="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
[ -f "$ca" ] && secret=(--secret "id=npm-ca,src=$ca")
buildah --storage-driver vfs bud --pull=never --isolation chroot --layers=false \
  "${secret[@]}" --quiet --tag "$TAG" --file Dockerfile . >&2
buildah --storage-driver vfs inspect --type image --format '{{.FromImageID}}' "$TAG"
