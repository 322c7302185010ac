#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing.
# Idempotent: a second run with everything present does nothing (and needs no root).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ensure-debs: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts some daemons on install; the project runs its own on loopback.
for svc in nginx haproxy redis-server redis-sentinel prometheus; do
  if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then
    ($SUDO systemctl stop "$svc" 2>/dev/null || $SUDO service "$svc" stop 2>/dev/null || true) >/dev/null
  fi
done
