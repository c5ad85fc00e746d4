#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for layerkit: the container tools the tests compare against
# (installed with apt-get when missing and we are root) and a venv with layerkit and its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="podman buildah skopeo umoci runc bubblewrap docker-registry busybox-static chromium openssl"
missing=""
for pkg in $TOOLS; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q $missing
  else
    echo "Missing Debian packages:$missing (run: sudo apt-get install$missing)" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# An editable install follows the code by itself: reinstall only when the dependencies (pyproject.toml)
# changed since the last setup, so a second `make demo` costs what the tour costs.
stamp=.venv/.layerkit-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
