#!/usr/bin/env bash
# Set up revive on Debian 12 (or newer): the system packages its stages call,
# then a virtual environment in .venv with the pinned Python dependencies.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

# The list is revive/system-packages.txt (the revive command checks the same
# list): every line's package, for the stages, the tests and this script.
mapfile -t packages < <(sed 's/#.*//' revive/system-packages.txt | awk 'NF {print $1}')
((${#packages[@]})) || { echo "setup: no packages read from revive/system-packages.txt" >&2; exit 1; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The tiny guest's packages are fetched with apt-get download; its lists
# must know them.
if ! apt-cache show busybox-static >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
# The revive command itself, editable: .venv/bin/revive runs this clone's code.
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "setup: done; run .venv/bin/doit build (or .venv/bin/revive build)"
