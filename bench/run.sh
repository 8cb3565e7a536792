#!/usr/bin/env bash
# Benchmarks, separate from the tests. Usage: bench/run.sh <scenario>
# The last line of every scenario is its figures as key=value pairs.
#
#   coldstart per-request cost of a fresh pooled instance of hello.wasm (WAGI in,
#             response out), in-process; baselines: the host work without an
#             instance, and the same engine without the pooling allocator.
#   converge  time from `outpost apply` returning to the app answering 200 on a
#             node's gateway, and from `outpost delete` returning to 404; the
#             baseline is a no-op client round trip (`outpost get apps`) measured
#             in the same run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scenario="${1:-}"
runs="${RUNS:-15}"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

case "$scenario" in
  coldstart)
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" coldstart "${ITERATIONS:-20000}"
    ;;
  converge)
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    outpost=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    work="$(mktemp -d)"
    trap 'kill $up_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    server_port=$((20000 + RANDOM % 10000))
    gateway_port=$((server_port + 1))
    "${outpost[@]}" up --agents 1 --data-dir "$work/fleet" --server-port "$server_port" --gateway-port "$gateway_port" \
      --manifests "$root/samples/manifests" >"$work/up.log" 2>&1 &
    up_pid=$!
    for _ in $(seq 1 120); do grep -q 'fleet up' "$work/up.log" && break; sleep 0.5; done
    cp "$root/samples/apps/hello/hello.wasm" "$work/hello.wasm"
    gw="http://127.0.0.1:$gateway_port"
    : >"$work/apply.txt"; : >"$work/delete.txt"; : >"$work/baseline.txt"
    for i in $(seq 1 "$runs"); do
      cat >"$work/app.yaml" <<YAML
apiVersion: outpost.dev/v1
kind: Application
metadata:
  name: bench-$i
spec:
  module:
    path: hello.wasm
  triggers:
    http:
      route: /bench-$i
YAML
      t0=$(now_ms); "${outpost[@]}" get apps >/dev/null; echo $(( $(now_ms) - t0 )) >>"$work/baseline.txt"
      "${outpost[@]}" apply -f "$work/app.yaml" >/dev/null
      t0=$(now_ms)
      until [ "$(curl -s -o /dev/null -w '%{http_code}' "$gw/bench-$i")" = 200 ]; do sleep 0.005; done
      echo $(( $(now_ms) - t0 )) >>"$work/apply.txt"
      "${outpost[@]}" delete app "bench-$i" >/dev/null
      t0=$(now_ms)
      until [ "$(curl -s -o /dev/null -w '%{http_code}' "$gw/bench-$i")" = 404 ]; do sleep 0.005; done
      echo $(( $(now_ms) - t0 )) >>"$work/delete.txt"
    done
    echo "converge runs=$runs apply_to_200_p50_ms=$(median <"$work/apply.txt") apply_to_200_max_ms=$(sort -n "$work/apply.txt" | tail -1) delete_to_404_p50_ms=$(median <"$work/delete.txt") delete_to_404_max_ms=$(sort -n "$work/delete.txt" | tail -1) baseline_client_roundtrip_p50_ms=$(median <"$work/baseline.txt")"
    ;;
  *)
    echo "usage: bench/run.sh coldstart|converge" >&2
    exit 2
    ;;
esac
