#!/usr/bin/env bash
# Runs every test suite: unit, store conformance, Wasm runtime and the integration tests
# that start real server and agent processes. Needs only the .NET SDK.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build Outpost.slnx -c Release
dotnet test Outpost.slnx -c Release --no-build "$@"
