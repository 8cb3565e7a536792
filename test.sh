#!/usr/bin/env bash
# Runs every test suite: unit, store conformance, Wasm runtime and the integration tests
# that start real server and agent processes. Needs only the .NET SDK (CI also installs
# the few apt packages below).
#
#   ./test.sh                 the suite (what CI runs: .ci/run)
#   ./test.sh --stress        the same suite while CPU hogs oversubscribe the cores 3x
#                             (STRESS_FACTOR=N for N x), so a test that depends on the
#                             scheduler fails here before it fails in CI
#   ./test.sh --aot           then builds the release binaries (./build.sh) and runs the tests
#                             marked Category=aot against them: the integration smoke tests with
#                             the NativeAOT linux-x64 binary as server, agent and client, and the
#                             linux-arm64 binary under qemu as a node. CI always does (CI=true).
#   ./test.sh [--stress] [--aot] ARGS  ARGS go to `dotnet test` (e.g. --filter FullyQualifiedName~Lease)
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

stress=0
aot=0
[[ "${CI:-}" == "true" ]] && aot=1
while [[ "${1:-}" == "--stress" || "${1:-}" == "--aot" ]]; do
  [[ "$1" == "--stress" ]] && stress=1
  [[ "$1" == "--aot" ]] && aot=1
  shift
done

# In CI (as root), install what some tests need so they run instead of skipping: the
# wasm32-wasi C toolchain (the test that rebuilds the committed sample modules, and the WASI
# tests' C programs), Node.js (whose node:wasi those programs are compared with), and
# PostgreSQL (the store's conformance suite and servers on --datastore start a throwaway
# one as the postgres user), Prometheus's promtool (the tests that check both /metrics endpoints), dig (the mesh's
# DNS test); runc, skopeo and gcc (the container tests run the C sample, statically linked, with
# runc and push images with skopeo); Chromium and NSS's certutil (the dashboard's browser tests
# drive the system's Chromium, trusting the fleet's CA through an NSS database of their own);
# for --stress, stress-ng. Elsewhere, nothing is installed.
packages=()
[[ -f /usr/lib/wasm32-wasi/libc.a ]] || packages+=(clang lld wasi-libc libclang-rt-dev-wasm32)
command -v node >/dev/null || packages+=(nodejs)
command -v promtool >/dev/null || packages+=(prometheus)
command -v dig >/dev/null || packages+=(dnsutils)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
command -v runc >/dev/null || packages+=(runc)
command -v skopeo >/dev/null || packages+=(skopeo)
[[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] && command -v gcc >/dev/null || packages+=(gcc libc6-dev)
command -v chromium >/dev/null || packages+=(chromium)
command -v certutil >/dev/null || packages+=(libnss3-tools)
[[ "$stress" == 1 ]] && ! command -v stress-ng >/dev/null && packages+=(stress-ng)
if [[ "${CI:-}" == "true" && "$(id -u)" == "0" && ${#packages[@]} -gt 0 ]]; then
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

hogs=()
stop_hogs() {
  if [[ ${#hogs[@]} -gt 0 ]]; then
    kill "${hogs[@]}" 2>/dev/null || true
    wait "${hogs[@]}" 2>/dev/null || true
  fi
}
trap stop_hogs EXIT
if [[ "$stress" == 1 ]]; then
  cores="$(nproc)"
  count=$(( cores * ${STRESS_FACTOR:-3} ))
  if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$count" --quiet &
    hogs+=($!)
    echo "stress: stress-ng --cpu $count on $cores cores"
  else
    for _ in $(seq "$count"); do
      ( while :; do :; done ) &
      hogs+=($!)
    done
    echo "stress: $count busy loops on $cores cores (stress-ng is not installed)"
  fi
fi

started=$SECONDS
status=0
dotnet test Outpost.slnx -c Release --no-build "$@" || status=$?
echo "tests took $(( SECONDS - started )) s$([[ "$stress" == 1 ]] && echo " under stress")"

if [[ "$aot" == 1 ]]; then
  started=$SECONDS
  ./build.sh linux-x64 linux-arm64
  echo "release binaries built in $(( SECONDS - started )) s"
  started=$SECONDS
  libs="$(mktemp -d)"
  # One extraction of the native libraries for all the test processes, not one per test HOME.
  OUTPOST_BINARY="$PWD/dist/linux-x64/outpost" OUTPOST_LIB_DIR="$libs" \
    OUTPOST_ARM64_BINARY="$PWD/dist/linux-arm64/outpost" OUTPOST_ARM64_SYSROOT="$(tests/aot/arm64-sysroot.sh)" \
    dotnet test tests/Outpost.IntegrationTests -c Release --no-build --filter "Category=aot" || status=$?
  rm -rf "$libs"
  echo "release-binary tests took $(( SECONDS - started )) s$([[ "$stress" == 1 ]] && echo " under stress")"
fi
exit "$status"
