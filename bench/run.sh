#!/usr/bin/env bash
# Benchmarks, separate from the tests. Usage: bench/run.sh <scenario>
# The last line of every scenario is its figures as key=value pairs.
#
#   coldstart per-request cost of a fresh pooled instance of hello.wasm (WAGI in,
#             response out), in-process; baselines: the host work without an
#             instance, and the same engine without the pooling allocator.
#   http      wrk (-t2 -c64) against three servers of GET /hello in one run: an agent
#             gateway running hello.wasm in a fresh instance per request, plain
#             Kestrel returning the same bytes, and Node.js instantiating the same
#             .wasm per request; ratios are gateway/kestrel and gateway/node.
#             LOGS=1: hello also logs every request, shipped to the (same-box) server.
#             AGENT=aot: the fleet is the release binary (dist/linux-x64/outpost, built
#             by ./build.sh when missing) instead of the JIT build.
#   ready     how long a published (ReadyToRun) agent takes, from start, to load its
#             apps from local state: with the precompiled cache warm (a restart)
#             against the same start with the cache emptied (every module compiled),
#             median of RUNS starts each, with the server stopped (offline).
#   sync      edge-to-cloud figures with real processes: records/s shipped for 200-byte
#             records (RECORDS, default 300,000, so a freshly started agent's warm-up is
#             a small part of the window; durable on both sides, over TLS; baseline: the
#             server store's ingest alone),
#             bytes of a one-field change among 100 apps vs the full snapshot, and bytes
#             per second on the wire for an idle connected node (counted at a TCP proxy).
#   rollback  with a fleet of AGENTS (default 100) real agents on this machine: fleet, the
#             time from `rollout undo` until every node reports the old revision serving
#             (baseline: the same fleet taking an ordinary new revision); edge, on a node
#             whose new revision passes its probe and then answers 500, the time from the
#             last 500 to the first 200 from the old revision, swapped back by the node on
#             its own (baseline: one request round trip); medians of RUNS (default 5),
#             after WARMUPS (default 3) untimed fleet updates; the published ReadyToRun build.
#   footprint the release binary (./build.sh, NativeAOT) against the JIT build (`dotnet
#             outpost.dll`) in the same run: the size of the one file for linux-x64 and
#             linux-arm64; an agent's RSS serving the three samples after IDLE (default 60)
#             seconds idle; agent start to the first 200 from its gateway, serving from local
#             state with the server down; a client round trip (`outpost get nodes`, process
#             start included); the server's RSS with AGENTS (default 100) idle agents (AOT
#             agents both times). Medians of RUNS (default 15) where timed.
#   mesh      with a server and two agents (edge-1 holds the service addresses, edge-2 runs the
#             endpoint): requests/s of a 4 KB answer through /proxy/services and at the service
#             address on edge-1 (relayed by the server), against the node's gateway directly; bulk
#             MB/s (MB, default 256; median of RUNS, default 3) and connections/s through
#             `outpost port-forward` (CLI, server, wire, node) against the same TCP sink directly;
#             and how long a new service takes to answer at its address on edge-1.
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
median_f() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

case "$scenario" in
  coldstart)
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" coldstart "${ITERATIONS:-20000}"
    ;;
  http)
    command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
    command -v node >/dev/null || { apt-get install -y nodejs >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y nodejs >/dev/null; }; }
    duration="${DURATION:-10}"
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    work="$(mktemp -d)"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    base=$((20000 + RANDOM % 10000))
    gateway=$((base + 1)); kestrel=$((base + 2)); nodeport=$((base + 3))
    # LOGS=1: hello writes a log line per request (LOG_REQUESTS=1, as the sample does), shipped to the
    # server in the same process; by default the line is taken out and the gateway alone is measured.
    manifests="$root/samples/manifests"
    if [[ "${LOGS:-0}" != "1" ]]; then
      mkdir -p "$work/manifests/apps" && cp -r "$root/samples/apps/hello" "$work/manifests/apps/"
      sed '/LOG_REQUESTS/d; s|\.\./apps/hello|apps/hello|' "$root/samples/manifests/hello.yaml" >"$work/manifests/hello.yaml"
      manifests="$work/manifests"
    fi
    fleet=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    if [[ "${AGENT:-jit}" == aot ]]; then
      [[ -x "$root/dist/linux-x64/outpost" ]] || "$root/build.sh" linux-x64 >&2
      fleet=("$root/dist/linux-x64/outpost")
      export OUTPOST_LIB_DIR="$work/lib"
    fi
    "${fleet[@]}" up --agents 1 --data-dir "$work/fleet" --server-port "$base" \
      --gateway-port "$gateway" --manifests "$manifests" >"$work/up.log" 2>&1 & pids+=($!)
    dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" kestrel "$kestrel" >"$work/kestrel.log" 2>&1 & pids+=($!)
    node "$root/bench/node/server.mjs" "$root/samples/apps/hello/hello.wasm" "$nodeport" >"$work/node.log" 2>&1 & pids+=($!)
    for url in "http://127.0.0.1:$gateway/hello" "http://127.0.0.1:$kestrel/hello" "http://127.0.0.1:$nodeport/hello"; do
      for _ in $(seq 1 120); do curl -sf -o /dev/null "$url" && break; sleep 0.5; done
      curl -sf "$url" >/dev/null || { echo "not serving: $url" >&2; cat "$work"/*.log >&2; exit 1; }
    done
    measure() { # url -> "rps p99_ms"
      wrk -t2 -c64 -d3s "$1" >/dev/null # warm-up: JIT, pools, connections
      wrk -t2 -c64 -d"${duration}s" --latency "$1" >"$work/wrk.txt"
      rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
      p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v=v*1000}; print v}' "$work/wrk.txt")
      echo "$rps $p99"
    }
    read -r g_rps g_p99 < <(measure "http://127.0.0.1:$gateway/hello")
    read -r k_rps _ < <(measure "http://127.0.0.1:$kestrel/hello")
    read -r n_rps _ < <(measure "http://127.0.0.1:$nodeport/hello")
    echo "gateway ${g_rps} req/s (p99 ${g_p99} ms), plain kestrel ${k_rps} req/s, node ${n_rps} req/s (wrk -t2 -c64 -d${duration}s each)"
    echo "http agent=${AGENT:-jit} logs=${LOGS:-0} gateway_rps=${g_rps} kestrel_rps=${k_rps} ratio=$(awk -v a="$g_rps" -v b="$k_rps" 'BEGIN {printf "%.2f", a/b}') node_rps=${n_rps} node_ratio=$(awk -v a="$g_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a/b}') p99_ms=${g_p99}"
    ;;
  ready)
    work="$(mktemp -d)"
    # Measured on the binary an edge node would run: published, ReadyToRun.
    dotnet publish "$root/src/Outpost" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
      -o "$work/bin" -nologo -v q >/dev/null
    outpost=("$work/bin/outpost")
    server_pid=""; agent_pid=""
    trap 'kill $server_pid $agent_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    "${outpost[@]}" server --data-dir "$work/server" --listen 127.0.0.1:0 >"$work/server.log" 2>&1 & server_pid=$!
    for _ in $(seq 1 120); do grep -q '^server:' "$work/server.log" && break; sleep 0.5; done
    url=$(awk '/^server:/ {print $2}' "$work/server.log")
    export OUTPOST_CONFIG="$work/server/config.yaml"
    token=$("${outpost[@]}" token create)
    "${outpost[@]}" apply -f "$root/samples/manifests" >/dev/null
    "${outpost[@]}" agent --server "$url" --token "$token" --name edge-1 --data-dir "$work/agent" --gateway 127.0.0.1:0 >"$work/agent.log" 2>&1 & agent_pid=$!
    for _ in $(seq 1 120); do grep -q 'Applied fleet revision' "$work/agent.log" && break; sleep 0.5; done
    kill -TERM $agent_pid $server_pid; wait $agent_pid $server_pid 2>/dev/null || true
    start_once() { # cache|nocache -> "ms apps fromcache"
      [[ "$1" == nocache ]] && rm -rf "$work/agent/compiled"
      "${outpost[@]}" agent --server "$url" --name edge-1 --data-dir "$work/agent" --gateway 127.0.0.1:0 >"$work/agent.log" 2>&1 & agent_pid=$!
      for _ in $(seq 1 200); do grep -q 'Serving .* apps from local state' "$work/agent.log" && break; sleep 0.05; done
      kill -TERM $agent_pid; wait $agent_pid 2>/dev/null || true
      sed -n 's/.*Serving \([0-9]*\) apps from local state, loaded in \([0-9.]*\) ms (\([0-9]*\) from.*/\2 \1 \3/p' "$work/agent.log"
    }
    : >"$work/cached.txt"; : >"$work/compiled.txt"
    for _ in $(seq 1 "${RUNS:-7}"); do
      start_once nocache >>"$work/compiled.txt"
      start_once cache >>"$work/cached.txt"
    done
    apps=$(awk 'NR==1 {print $2}' "$work/cached.txt")
    fromcache=$(awk 'NR==1 {print $3}' "$work/cached.txt")
    cached=$(awk '{print $1}' "$work/cached.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    compiled=$(awk '{print $1}' "$work/compiled.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "ready apps=$apps from_cache=$fromcache cached_p50_ms=$cached compiled_p50_ms=$compiled ratio=$(awk -v a="$compiled" -v b="$cached" 'BEGIN {printf "%.1f", a/b}')"
    ;;
  sync)
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" sync \
      "$root/src/Outpost/bin/Release/net10.0/outpost.dll" "$root/samples" "${RECORDS:-300000}" "${IDLE_SECONDS:-60}"
    ;;
  rollback)
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # The binary an edge node would run: published, ReadyToRun; with TIERED=0 (the default
    # here) also without tiered compilation, so an agent never recompiles its update path at
    # run time (with it, each of the first few dozen updates costs an agent ~100 ms of CPU
    # instead of ~15 ms, which a hundred agents on two cores turn into seconds). TIERED=1
    # measures the runtime's default.
    dotnet publish "$root/src/Outpost" -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
      -p:TieredCompilation="$([[ "${TIERED:-0}" == 1 ]] && echo true || echo false)" -o "$work/bin" -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" rollback \
      "$work/bin/outpost.dll" "$root/samples" "${AGENTS:-100}" "${RUNS:-5}" "${WARMUPS:-3}"
    ;;
  footprint)
    "$root/build.sh" >&2
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    aot=("$root/dist/linux-x64/outpost")
    jit=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    bench=(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll")
    work="$(mktemp -d)"
    pids=()
    stop_all() { if [[ ${#pids[@]} -gt 0 ]]; then kill -TERM "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; fi; pids=(); }
    trap 'stop_all; rm -rf "$work"' EXIT
    export HOME="$work/home" OUTPOST_LIB_DIR="$work/lib"
    mkdir -p "$HOME"
    mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
    rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
    x64_mb=$(mb "$(stat -c %s "$root/dist/linux-x64/outpost")")
    arm64_mb=$(mb "$(stat -c %s "$root/dist/linux-arm64/outpost")")
    port=$((20000 + RANDOM % 10000)); url="https://127.0.0.1:$port"
    start_server() { # binary... -> starts it on $port
      "$@" server --data-dir "$work/server" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 & pids+=($!); server_pid=$!
      for _ in $(seq 1 240); do grep -q '^server:' "$work/server.log" && return; sleep 0.25; done
      echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1
    }
    start_server "${aot[@]}"
    export OUTPOST_CONFIG="$work/server/config.yaml"
    token=$("${aot[@]}" token create)
    "${aot[@]}" apply -f "$root/samples/manifests" >/dev/null
    # Agent RSS: one release agent and one JIT agent, each serving the three samples, then idle.
    ga=$((port + 1)); gj=$((port + 2))
    "${aot[@]}" agent --server "$url" --token "$token" --name aot-1 --data-dir "$work/aot-1" --gateway "127.0.0.1:$ga" >"$work/aot-1.log" 2>&1 & pids+=($!); aot_agent=$!
    "${jit[@]}" agent --server "$url" --token "$token" --name jit-1 --data-dir "$work/jit-1" --gateway "127.0.0.1:$gj" >"$work/jit-1.log" 2>&1 & pids+=($!); jit_agent=$!
    for g in $ga $gj; do
      for app in hello echo sensor; do
        for _ in $(seq 1 240); do curl -sf -o /dev/null "http://127.0.0.1:$g/$app" && break; sleep 0.25; done
        curl -sf -o /dev/null "http://127.0.0.1:$g/$app" || { echo "gateway $g does not serve /$app" >&2; exit 1; }
      done
    done
    sleep "${IDLE:-60}"
    agent_rss=$(rss_mb $aot_agent); agent_rss_jit=$(rss_mb $jit_agent)
    stop_all
    # Start to serving from local state, offline (the server is stopped too).
    : >"$work/ready.txt"; : >"$work/ready_jit.txt"
    for _ in $(seq 1 "$runs"); do
      "${bench[@]}" firstanswer "http://127.0.0.1:$ga/hello" "${aot[0]}" agent --server "$url" --name aot-1 --data-dir "$work/aot-1" --gateway "127.0.0.1:$ga" >>"$work/ready.txt"
      "${bench[@]}" firstanswer "http://127.0.0.1:$gj/hello" dotnet "${jit[1]}" agent --server "$url" --name jit-1 --data-dir "$work/jit-1" --gateway "127.0.0.1:$gj" >>"$work/ready_jit.txt"
    done
    ready=$(median <"$work/ready.txt"); ready_jit=$(median <"$work/ready_jit.txt")
    # A client round trip, process start included.
    start_server "${aot[@]}"
    : >"$work/cli.txt"; : >"$work/cli_jit.txt"
    for _ in $(seq 1 "$runs"); do
      t0=$(date +%s%N); "${aot[@]}" get nodes >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )) >>"$work/cli.txt"
      t0=$(date +%s%N); "${jit[@]}" get nodes >/dev/null; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )) >>"$work/cli_jit.txt"
    done
    cli=$(median <"$work/cli.txt"); cli_jit=$(median <"$work/cli_jit.txt")
    stop_all
    # The server with AGENTS idle release agents: the release server, then the JIT one.
    server_rss_with_agents() { # binary... -> RSS MB once every agent is Ready and the fleet idled
      rm -rf "$work/server" "$work"/edge-*
      start_server "$@"
      local t; t=$("${aot[@]}" token create)
      for i in $(seq 1 "${AGENTS:-100}"); do
        "${aot[@]}" agent --server "$url" --token "$t" --name "edge-$i" --data-dir "$work/edge-$i" --gateway 127.0.0.1:0 >/dev/null 2>&1 & pids+=($!)
      done
      for _ in $(seq 1 600); do
        [[ $("${aot[@]}" get nodes 2>/dev/null | grep -c ' Ready ') -ge ${AGENTS:-100} ]] && break
        sleep 1
      done
      sleep "${IDLE_FLEET:-30}"
      rss_mb "$server_pid"
      stop_all
    }
    server_rss=$(server_rss_with_agents "${aot[@]}")
    server_rss_jit=$(server_rss_with_agents "${jit[@]}")
    echo "sizes: linux-x64 ${x64_mb} MB, linux-arm64 ${arm64_mb} MB; agent RSS idle with 3 apps: ${agent_rss} MB (JIT ${agent_rss_jit} MB)"
    echo "offline start to first 200: ${ready} ms (JIT ${ready_jit} ms); get nodes round trip: ${cli} ms (JIT ${cli_jit} ms); server RSS with ${AGENTS:-100} agents: ${server_rss} MB (JIT ${server_rss_jit} MB)"
    echo "footprint x64_mb=$x64_mb arm64_mb=$arm64_mb agent_rss_mb=$agent_rss agent_rss_jit_mb=$agent_rss_jit ready_ms=$ready ready_jit_ms=$ready_jit cli_ms=$cli cli_jit_ms=$cli_jit server_rss_100_mb=$server_rss server_rss_100_jit_mb=$server_rss_jit"
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
  mesh)
    command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    outpost=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    bench=(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll")
    duration="${DURATION:-5}"
    work="$(mktemp -d)"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    base=$((20000 + RANDOM % 10000))
    server_port=$base; gw1=$((base + 1)); gw2=$((base + 2)); sink=$((base + 3)); forward=$((base + 4))
    "${outpost[@]}" server --data-dir "$work/server" --listen "127.0.0.1:$server_port" >"$work/server.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do grep -q '^server:' "$work/server.log" && break; sleep 0.25; done
    export OUTPOST_CONFIG="$work/server/config.yaml"
    token=$("${outpost[@]}" token create)
    admin=$(awk '/^token:/ {print $2}' "$OUTPOST_CONFIG")
    # edge-1 is the client side (it holds the service addresses); edge-2 runs the endpoints.
    "${outpost[@]}" agent --server "https://127.0.0.1:$server_port" --token "$token" --name edge-1 --labels site=a --data-dir "$work/edge-1" \
      --gateway "127.0.0.1:$gw1" >"$work/edge-1.log" 2>&1 & pids+=($!)
    "${outpost[@]}" agent --server "https://127.0.0.1:$server_port" --token "$token" --name edge-2 --labels site=b,role=backend --data-dir "$work/edge-2" \
      --gateway "127.0.0.1:$gw2" --service-addresses=false >"$work/edge-2.log" 2>&1 & pids+=($!)
    # A 4 KB answer: the hello sample with a 4,000-character greeting.
    cp "$root/samples/apps/hello/hello.wasm" "$work/"
    greeting=$(head -c 4000 /dev/zero | tr '\0' 'x')
    service="big-$RANDOM"
    cat >"$work/big.yaml" <<YAML
apiVersion: outpost.dev/v1
kind: Application
metadata:
  name: big
spec:
  module:
    path: hello.wasm
  triggers:
    http:
      route: /big
  env:
    GREETING: "$greeting"
  placement:
    nodeSelector:
      role: backend
  expose:
    service: $service
    port: 8080
YAML
    t0=$(now_ms)
    "${outpost[@]}" apply -f "$work/big.yaml" >/dev/null
    url="https://127.0.0.1:$server_port/proxy/services/$service/"
    for _ in $(seq 1 600); do [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin" "$url")" = 200 ] && break; sleep 0.05; done
    # Propagation: from the service answering through the server to its address answering on edge-1.
    address=$(curl -sk -H "Authorization: Bearer $admin" "https://127.0.0.1:$server_port/apis/outpost.dev/v1/networkservices/$service" | sed -n 's/.*"address":"\([0-9.]*\)".*/\1/p')
    t0=$(now_ms)
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$address:8080/")" = 200 ]; do sleep 0.005; done
    propagate_ms=$(( $(now_ms) - t0 ))
    rps() { wrk -t2 -c16 -d"${duration}s" "$@" | awk '/Requests\/sec/ {printf "%d", $2}'; }
    rps "http://127.0.0.1:$gw2/big" >/dev/null # warm-up
    gateway_rps=$(rps "http://127.0.0.1:$gw2/big")
    rps -H "Authorization: Bearer $admin" "$url" >/dev/null
    proxy_rps=$(rps -H "Authorization: Bearer $admin" "$url")
    address_rps=$(rps "http://$address:8080/")
    # Bulk bytes and connection rate: through port-forward (the CLI, the server, a wire, the node) to a
    # TCP sink on edge-2's host, against the same sink dialled directly.
    "${bench[@]}" sink "$sink" >"$work/sink.log" 2>&1 & pids+=($!)
    "${outpost[@]}" port-forward node/edge-2 "$forward:$sink" >"$work/forward.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do grep -q '^Forwarding' "$work/forward.log" && break; sleep 0.25; done
    mb="${MB:-256}"
    : >"$work/direct.txt"; : >"$work/relay.txt"
    for _ in $(seq 1 "${RUNS:-3}"); do
      "${bench[@]}" bulk "$sink" "$mb" >>"$work/direct.txt"
      "${bench[@]}" bulk "$forward" "$mb" >>"$work/relay.txt"
    done
    direct_mbps=$(median_f <"$work/direct.txt"); relay_mbps=$(median_f <"$work/relay.txt")
    direct_cps=$("${bench[@]}" connects "$sink" "$duration" 8)
    relay_cps=$("${bench[@]}" connects "$forward" "$duration" 8)
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
    echo "proxy: ${proxy_rps} req/s through /proxy/services vs ${gateway_rps} straight to the node's gateway; ${address_rps} req/s at the service address on another node (relayed)"
    echo "bulk: ${relay_mbps} MB/s through port-forward vs ${direct_mbps} MB/s direct; connections: ${relay_cps}/s vs ${direct_cps}/s"
    echo "mesh relay_ratio=$(ratio "$relay_mbps" "$direct_mbps") proxy_rps_ratio=$(ratio "$proxy_rps" "$gateway_rps") address_rps_ratio=$(ratio "$address_rps" "$gateway_rps") connect_ratio=$(ratio "$relay_cps" "$direct_cps") propagate_ms=$propagate_ms relay_mbps=$relay_mbps direct_mbps=$direct_mbps"
    ;;
  *)
    echo "usage: bench/run.sh coldstart|http|ready|sync|converge|footprint|rollback|mesh" >&2
    exit 2
    ;;
esac
