#!/usr/bin/env bash
# Runs every test suite: unit, store conformance, Wasm runtime and the integration tests
# that start real server and agent processes. Needs only the .NET SDK (CI also installs
# the few apt packages below).
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# In CI (as root), install what some tests need so they run instead of skipping: the
# wasm32-wasi C toolchain (the test that rebuilds the committed sample modules) and
# Prometheus's promtool (the tests that check both /metrics endpoints). Elsewhere, nothing
# is installed.
if [[ "${CI:-}" == "true" && "$(id -u)" == "0" ]] && { [[ ! -f /usr/lib/wasm32-wasi/libc.a ]] || ! command -v promtool >/dev/null; }; then
  packages=(clang lld wasi-libc libclang-rt-dev-wasm32 prometheus)
  # Install only: no package may start a service (the prometheus package would serve on :9090).
  policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=/usr/sbin/policy-rc.d
  fi
  (apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null 2>&1; }) \
    || echo "warning: could not install ${packages[*]}; the tests that need them will fail or skip" >&2
  if [[ -n "$policy" ]]; then rm -f "$policy"; fi
fi
dotnet build Outpost.slnx -c Release
dotnet test Outpost.slnx -c Release --no-build "$@"
