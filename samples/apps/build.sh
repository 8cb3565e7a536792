#!/usr/bin/env bash
# Builds every sample app (samples/apps/*/*.c) into a .wasm next to its source, or into
# OUT_DIR when given (the tests build there and compare with the committed modules).
# Needs Debian's clang, lld, wasi-libc and libclang-rt-dev-wasm32; the built modules are
# committed so that running Outpost never needs a C toolchain.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-}"
CLANG="${CLANG:-$(command -v clang || command -v clang-14 || true)}"
[[ -n "$CLANG" ]] || { echo "clang not found: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2; exit 1; }
for src in "$here"/*/*.c; do
  app="$(basename "$(dirname "$src")")"
  if [[ -n "$out" ]]; then target="$out/$app.wasm"; else target="$(dirname "$src")/$app.wasm"; fi
  "$CLANG" --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror \
    -I "$here/../../sdk/c" -Wl,--strip-all -o "$target" "$src"
  echo "built $app.wasm ($(stat -c %s "$target") bytes)"
done
