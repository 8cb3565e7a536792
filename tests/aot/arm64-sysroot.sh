#!/usr/bin/env bash
# Prepares what running the linux-arm64 binary under qemu on an x86-64 machine needs, and prints
# the sysroot's path: qemu-user-static, Debian's arm64 libc (libc6-dev-arm64-cross, under
# /usr/aarch64-linux-gnu) and arm64 libssl, which .NET loads for TLS. libssl is not installed:
# its arm64 package is downloaded and unpacked into .cache/arm64-root (this needs the arm64
# architecture in apt's list, added here). As root; CI runs it through ./test.sh --aot.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
sysroot="$root/.cache/arm64-root"
if [[ -f "$sysroot/usr/lib/aarch64-linux-gnu/libssl.so.3" ]] && command -v qemu-aarch64-static >/dev/null && [[ -d /usr/aarch64-linux-gnu/lib ]]; then
  echo "$sysroot"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "arm64-sysroot.sh: needs root to install qemu-user-static and libc6-dev-arm64-cross" >&2
  exit 1
fi
packages=()
command -v qemu-aarch64-static >/dev/null || packages+=(qemu-user-static)
[[ -d /usr/aarch64-linux-gnu/lib ]] || packages+=(libc6-dev-arm64-cross)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -q >/dev/null
if [[ ${#packages[@]} -gt 0 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >/dev/null
fi
work="$(mktemp -d)"
chmod 777 "$work" # apt downloads as its own user
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q libssl3:arm64 >/dev/null)
mkdir -p "$sysroot"
dpkg -x "$work"/libssl3_*_arm64.deb "$sysroot"
echo "$sysroot"
