#!/usr/bin/env bash
# Makes the Dockerfile's base image, docker.io/library/node:24-slim, locally,
# because no container registry can be pulled from here. It stands in for the
# official image with the same shape: Debian bookworm (minbase), node and npm
# in /usr/local, a `node` user (uid 1000), PATH and NODE_VERSION set.
#
#   test/image/make-base-image.sh        # no-op when the image exists
#
# Needs root, debootstrap and buildah (Debian packages; scripts/ensure-debs.sh
# installs them) and a Debian mirror. Storage: vfs (no overlay module needed).
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=docker.io/library/node:24-slim
BUILDAH=(buildah --storage-driver vfs)
NODE_BIN="$(readlink -f node_modules/.bin/node)"
NPM_DIR="${NPM_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")}"
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

die() { echo "make-base-image: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and buildah's chroot)"
command -v debootstrap >/dev/null || die "debootstrap missing: scripts/ensure-debs.sh debootstrap"
command -v buildah >/dev/null || die "buildah missing: scripts/ensure-debs.sh buildah"
[ -x "$NODE_BIN" ] || die "no Node 24 at node_modules/.bin/node: run make deps"
[ -f "$NPM_DIR/bin/npm-cli.js" ] || die "npm not found at $NPM_DIR (set NPM_DIR)"

if "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  exit 0
fi

node_version="$("$NODE_BIN" --version)"
case "$node_version" in v24.*) ;; *) die "node_modules/.bin/node is $node_version, need v24" ;; esac

work="$(mktemp -d /var/tmp/tether-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "make-base-image: debootstrap bookworm (minbase) from $MIRROR" >&2
start=$SECONDS
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# Slim like the official -slim images: no apt lists, docs or man pages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/*
install -D -m 0755 "$NODE_BIN" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$NPM_DIR" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

ctr="$("${BUILDAH[@]}" from --pull=never scratch)"
"${BUILDAH[@]}" copy "$ctr" "$root/" / >/dev/null
"${BUILDAH[@]}" config \
  --env "NODE_VERSION=${node_version#v}" \
  --env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --cmd node \
  --label "org.opencontainers.image.description=local stand-in for the official $BASE" \
  "$ctr"
"${BUILDAH[@]}" commit --rm "$ctr" "$BASE" >/dev/null
echo "make-base-image: $BASE made in $((SECONDS - start)) s (node $node_version)" >&2
