#!/usr/bin/env bash
# Builds the component samples (samples/components/*) and the test components
# (tests/Outpost.Wasm.Tests/Components/*) into the .wasm files committed beside them, so that
# running Outpost and its tests never needs these tools. Needs node and npm (the tools come
# from npm: @bytecodealliance/jco and componentize-js, pinned in package.json), and Debian's
# clang, lld and wasi-libc for the C ones.
#
# The WASI 0.2 WIT comes from jco's package; sdk/wit/outpost.wit is Outpost's own. The C proxy
# components target wasi:http@0.2.0 (as Spin and `wasmtime serve` apps do); componentize-js
# targets the version its engine was built for (0.2.10). Outpost links any 0.2.x.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CLANG="${CLANG:-$(command -v clang || command -v clang-14 || true)}"
[[ -n "$CLANG" ]] || { echo "clang not found: apt-get install clang lld wasi-libc" >&2; exit 1; }
command -v npm > /dev/null || { echo "npm not found: apt-get install npm" >&2; exit 1; }

cd "$here"
[[ -d node_modules/@bytecodealliance/jco ]] || npm install --no-audit --no-fund --loglevel=error
builtin="$here/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12"
adapter="$here/node_modules/@bytecodealliance/jco/lib/wasi_snapshot_preview1.command.wasm"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A WIT folder for WASI 0.2.VERSION: jco's WASI WIT at that version, Outpost's beside it, and WORLD.
wit() {
  local version="$1" world="$2" dir="$work/wit-$1-$RANDOM"
  mkdir -p "$dir/deps/outpost"
  cp -r "$builtin"/. "$dir/deps/"
  find "$dir/deps" -name '*.wit' -exec sed -i "s/0\.2\.12/$version/g" {} +
  cp "$root/sdk/wit/outpost.wit" "$dir/deps/outpost/"
  printf '%s\n' "$world" > "$dir/world.wit"
  echo "$dir"
}

proxy_c() { # SOURCE OUTPUT
  "$CLANG" --target=wasm32 -nostdlib -O2 -Wall -Wextra -Werror -I "$root/sdk/c" \
    -Wl,--no-entry -Wl,--strip-all -o "$work/core.wasm" "$1"
  node tools.mjs embed "$work/core.wasm" "$(wit 0.2.0 'package outpost:samples; world proxy { include wasi:http/proxy@0.2.0; }')" proxy "$2"
  echo "built $(basename "$2") ($(stat -c %s "$2") bytes)"
}

proxy_c http-c/http-c.c http-c/http-c.wasm
proxy_c "$root/tests/Outpost.Wasm.Tests/Components/probe/probe.c" "$root/tests/Outpost.Wasm.Tests/Modules/components/probe.wasm"

for wat in "$root"/tests/Outpost.Wasm.Tests/Components/hostile/*.wat; do
  node tools.mjs wat "$wat" "$root/tests/Outpost.Wasm.Tests/Modules/components/$(basename "$wat" .wat).wasm"
done
echo "built the hostile test components"

"$CLANG" --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror -Wl,--strip-all -o "$work/ticker.wasm" ticker-c/ticker-c.c
node tools.mjs embed "$work/ticker.wasm" "$(wit 0.2.0 'package outpost:samples; world ticker { import outpost:edge/publish@0.1.0; }')" ticker ticker-c/ticker-c.wasm "$adapter"
echo "built ticker-c.wasm ($(stat -c %s ticker-c/ticker-c.wasm) bytes)"

node tools.mjs js http-js/http-js.js "$(wit 0.2.10 'package outpost:samples; world http-js { include wasi:http/proxy@0.2.10; import outpost:edge/config@0.1.0; }')" http-js http-js/http-js.wasm
echo "built http-js.wasm ($(stat -c %s http-js/http-js.wasm) bytes)"
