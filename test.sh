#!/usr/bin/env bash
# Runs every test suite: unit, store conformance, Wasm runtime and the integration tests
# that start real server and agent processes. Needs only the .NET SDK.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# In CI (as root), install the wasm32-wasi C toolchain so the test that rebuilds the
# committed sample modules runs instead of skipping. Elsewhere, nothing is installed.
if [[ "${CI:-}" == "true" && "$(id -u)" == "0" && ! -f /usr/lib/wasm32-wasi/libc.a ]]; then
  (apt-get install -y --no-install-recommends clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null 2>&1; }) \
    || echo "warning: could not install the wasm32-wasi toolchain; the sample rebuild check will be skipped" >&2
fi
dotnet build Outpost.slnx -c Release
dotnet test Outpost.slnx -c Release --no-build "$@"
