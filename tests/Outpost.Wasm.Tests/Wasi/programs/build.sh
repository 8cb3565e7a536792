#!/usr/bin/env bash
# build.sh OUT_DIR - compiles every programs/*.c (this directory) into OUT_DIR/NAME.wasm,
# wasm32-wasi commands built with Debian's clang 14 and wasi-libc:
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
# CLANG=... picks another clang. Exit 2 when the toolchain is missing, 1 when a program fails to build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out="$1"

CLANG="${CLANG:-}"
if [[ -z "$CLANG" ]]; then
    for c in clang clang-14; do
        if command -v "$c" >/dev/null 2>&1; then CLANG="$c"; break; fi
    done
fi
missing=()
[[ -n "$CLANG" ]] && command -v "$CLANG" >/dev/null 2>&1 || missing+=("clang${CLANG:+ ($CLANG)} (package clang)")
command -v wasm-ld >/dev/null 2>&1 || command -v wasm-ld-14 >/dev/null 2>&1 || missing+=("wasm-ld (package lld)")
[[ -f /usr/include/wasm32-wasi/stdio.h && -f /usr/lib/wasm32-wasi/libc.a ]] || missing+=("wasi-libc in /usr (package wasi-libc)")
if ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null; then
    missing+=("compiler-rt for wasm32 (package libclang-rt-dev-wasm32)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "build.sh: cannot build the WASI test programs, missing:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "install with: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2
    exit 2
fi

mkdir -p "$out"
status=0
for src in "$here"/*.c; do
    name="$(basename "$src" .c)"
    if ! "$CLANG" --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror -I "$here/../../../../sdk/c" \
            -o "$out/$name.wasm" "$src"; then
        echo "build.sh: $name.c failed to build" >&2
        status=1
    fi
done
exit $status
