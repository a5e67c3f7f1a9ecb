#!/usr/bin/env bash
# Set up revive on Debian 12 (or newer): the system packages its stages call,
# then a virtual environment in .venv with the pinned Python dependencies.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

packages=(
  qemu-system-x86 qemu-utils   # the VMs and their disk images
  qemu-system-arm               # arm64 guests ([guest] arch = "arm64")
  qemu-system-misc opensbi      # riscv64 guests, and the firmware their board boots
  zstd                          # compressed machine state ([vm] save = "zstd")
  samba                         # smbd behind QEMU's smb= shares
  ovmf                          # UEFI firmware for Windows guests (firmware = "uefi")
  mmdebstrap uidmap             # the Debian guest's root, made without a VM (uidmap: as non-root)
  mtools dosfstools             # readers that check the answer floppy (tests)
  xorriso genisoimage           # readers that check the ISOs (tests)
  cpio busybox                  # read initramfs images back, run the guest's shell (tests)
  binutils                      # readelf checks the ELF reader (tests)
  graphviz                      # docs/graph.svg, the picture of the task graph (tests)
  python3-venv python3-pip      # the virtual environment
)

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
