#!/usr/bin/env bash
# Builds hello.wasm from hello.c. Needs Debian's clang, lld, wasi-libc and
# libclang-rt-dev-wasm32; the built module is committed so that running
# Outpost never needs a C toolchain.
set -euo pipefail
cd "$(dirname "$0")"
CLANG="${CLANG:-$(command -v clang || command -v clang-14)}"
"$CLANG" --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror \
  -Wl,--strip-all -o hello.wasm hello.c
echo "built $(pwd)/hello.wasm ($(stat -c %s hello.wasm) bytes)"
