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
#   components the cost of a Wasm component against a core module, in one run: a fresh instance per
#             request of samples/components/http-c (a small wasi:http/proxy hello), in-process, p50
#             and p99 (baseline: hello.wasm through WAGI); requests/s through one agent's gateway
#             (`outpost up`, JIT build; wrk -t2 -c64) for the component's hello against hello.wasm
#             (rps_ratio), and for a 64 KB body, the component against a core module (bench/wasm/body.c)
#             answering the same bytes (body64k_ratio).
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
#             Shipping again with a second server on a throwaway PostgreSQL (fsync on), with
#             its own baseline, in the same run (PG=0 skips it).
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
#             state with the server down (beside it, the same harness timing bench/answer.c, a C
#             server that answers at once: what the measuring adds); a client round trip (`outpost get nodes`, process
#             start included); the server's RSS with AGENTS (default 100) idle agents (AOT
#             agents both times). Medians of RUNS (default 15) where timed.
#   dashboard the web dashboard in the system's Chromium (Playwright) against a server whose store
#             holds NODES (default 10,000) seeded nodes plus one real agent: first paint of the fleet
#             page (median of RUNS, default 5, reloads) against `outpost get nodes` printing the same
#             fleet (paint_vs_cli); each filter keystroke, median and p99 (keystroke_ms), against the
#             server filtering with `outpost get nodes -l site=north` (keystroke_vs_server); after
#             kill -9 of the agent, how long after the server's API first says so (asked every 20 ms)
#             the page shows it (state_change_ms; 0 or less: the page was first); bytes of a cold
#             load of the page's assets, compressed, and of the node Table it lists; the server's CPU
#             (share of a core, 10 s) with no page open against the same with the fleet page open.
#   mesh      with a server and three agents (edge-1 holds the service addresses; edge-2, in another site, and
#             edge-3, in edge-1's site, run the endpoints): requests/s of a 4 KB answer through /proxy/services
#             and at the service address on edge-1 (relayed by the server), against the node's gateway directly;
#             the same at the address of a service on edge-3 (a direct wire between the two agents, checked on
#             edge-1's counters) against edge-3's gateway; p99 at a fixed 1,000 requests/s (open loop, median of
#             RUNS) through /proxy/services minus the gateway's; bulk MB/s (MB, default 256; median of RUNS,
#             default 3) through `outpost port-forward` (CLI, server, wire, node) against one direct TLS
#             connection to a sink (relay_ratio; tcp_ratio against plain TCP to the same sink), connections/s
#             through it against the TCP sink directly, and the share of that MB/s lost beside a stalled connection (the sink stops
#             reading it) of the same port-forward (of another one: hol_loss_link); how long a new service takes
#             to answer at its address on edge-1; WIRES (default 10,000) idle connections held at a service
#             address on edge-1 (endpoint on edge-2): the wires open at once (counted by the server) and edge-1's
#             RSS growth per connection held; last, with the edge-3 service scaled out to edge-2 too, the time
#             from kill -9 of edge-3 to the first 200 at its address on edge-1. The fleet (server, agents, the
#             port-forward CLI) is the release binary, rebuilt by ./build.sh linux-x64; FLEET=jit: the JIT build.
#             Beside each ratio, its ceiling on this machine from the same run: relays of the same shape that
#             only copy bytes (bench/Outpost.Bench hop; TLS where the real path has it): port-forward's three
#             hops (relay_ceiling), one TLS hop before edge-2's gateway (proxy_ceiling, and its added p99 as
#             added_p99_floor_ms), one plain TCP hop before edge-3's (direct_ceiling). The real paths have
#             these hops and more, so no implementation of them could pass these ratios here.
#   fleet     NODES (--nodes N; default 10,000) simulated nodes in one process (bench/Outpost.Bench FleetSim), each
#             with its own key pair, certificate and TLS connection, speaking the agent's protocol (join with a CSR,
#             one sync stream: heartbeats with usage, acks, app states, a record per node every RECORD_SECONDS,
#             default 60) against a real server: its RSS per node and CPU while they idle (IDLE, default 60 s);
#             p99 from the API returning to every node acking a change for all of them; the time until the server
#             counts all N Ready after every connection is cut at once (the agents' backoff) and the attempts that
#             failed (given up after STORM_LIMIT, default 300 s); `rollout undo` on 1,000 of them; medians of RUNS
#             (default 3); the simulator's collector beside the server's, the simulator on the server flavour
#             of the collector (DOTNET_gcServer=1). The server is the release
#             binary (rebuilt by ./build.sh linux-x64 when src/ is newer); FLEET=jit: the JIT build.
#             REPLICAS=2: two servers on a throwaway PostgreSQL, the nodes spread over both (the figures above
#             are the first one's); at the end the first is killed with SIGKILL: the time until the other counts
#             all N Ready, and records acked to the nodes against records stored (lost).
#   containers with a server and an agent (JIT build) and images built here (the C sample, statically linked,
#             over a base layer of MB, default 50, MiB of random bytes): start_ms, from `outpost apply` of a new
#             revision (the image already on the node) to its first 200 on the gateway, against runc_baseline_ms,
#             the same bundle run by hand (its network namespace and veth made with ip, `runc run -d`, then curl
#             until 200), medians of RUNS (default 7); shared_layer_bytes, what the node fetched for a second image
#             sharing that base layer (new_layer_bytes: what it did not have, for comparison); pull_ratio, `skopeo
#             copy` of the first image from the server's registry to a local dir (median of 3) over the node's
#             fetch of it through its connection (from `apply` to the agent's fetched-bytes counter reaching the
#             image's size): 1.0 is as fast as skopeo. Needs root, runc, skopeo and gcc (installed when missing).
#   ai        edge AI through WASI-NN, the sample model (samples/ai/hadamard.onnx) and app (samples/apps/classify)
#             in one run: wasm_p50_ms, one classification through the guest (a fresh instance per request, the
#             node's cached ONNX Runtime session) against native_p50_ms, the same model and input called directly
#             through ONNX Runtime from .NET (both one thread per inference; ITERATIONS, default 2,000; ratio);
#             rps_ratio, wrk (-t2 -c8) GET /classify through an agent's gateway (`outpost up`, JIT build) against
#             the same classification served natively by plain Kestrel; first_request_ms, the first request once
#             the app lands on the node (model fetched, its session made on that request); file_read_ratio,
#             reading a 1 MB mounted file in a request against copying 1 MB the guest already holds.
#   converge  time from `outpost apply` returning to the app answering 200 on a
#             node's gateway, and from `outpost delete` returning to 404; the
#             baseline is a no-op client round trip (`outpost get apps`) measured
#             in the same run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scenario="${1:-}"
runs="${RUNS:-15}"

now_ms() { date +%s%3N; }

# A throwaway PostgreSQL for the scenarios that compare or need it: as the postgres user (initdb
# refuses root), its socket in DIR, no TCP port, fsync on (durable). Sets pg_url and pg_ctl_stop.
start_postgres() { # DIR
  local dir="$1" initdb
  initdb=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1 || true)
  if [[ -z "$initdb" ]]; then
    { apt-get install -y postgresql >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y postgresql >/dev/null; }; } || { echo "bench: PostgreSQL is not installed" >&2; return 1; }
    initdb=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1)
  fi
  local bin; bin="$(dirname "$initdb")"
  mkdir -p "$dir/data" "$dir/sock"
  chmod 755 "$dir" "$(dirname "$dir")"
  chown postgres: "$dir/data" "$dir/sock"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/sock/log" -w \
    -o "-k $dir/sock -c listen_addresses='' -c max_connections=500 -c shared_buffers=256MB" start >/dev/null
  pg_url="Host=$dir/sock;Username=postgres;Database=postgres"
  pg_ctl_stop="runuser -u postgres -- $bin/pg_ctl -D $dir/data -m fast -w stop"
}

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
    # Shipping is measured on SQLite and again on PostgreSQL (PG=0: SQLite only).
    pg_args=()
    if [[ "${PG:-1}" == 1 ]]; then
      pg_work="$(mktemp -d)"
      pg_ctl_stop=""
      trap 'eval "$pg_ctl_stop" >/dev/null 2>&1 || true; rm -rf "$pg_work"' EXIT
      start_postgres "$pg_work/pg"
      pg_args=("$pg_url")
    fi
    dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" sync \
      "$root/src/Outpost/bin/Release/net10.0/outpost.dll" "$root/samples" "${RECORDS:-300000}" "${IDLE_SECONDS:-60}" "${pg_args[@]}"
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
  dashboard)
    packages=()
    command -v chromium >/dev/null || packages+=(chromium)
    command -v certutil >/dev/null || packages+=(libnss3-tools)
    if [[ ${#packages[@]} -gt 0 ]]; then
      apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null; }
    fi
    nodes="${NODES:-10000}"
    runs="${RUNS:-5}"
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    bench=(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll")
    outpost=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    work="$(mktemp -d)"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    "${bench[@]}" seednodes "$work/server" "$nodes"
    port=$((20000 + RANDOM % 10000))
    "${outpost[@]}" server --data-dir "$work/server" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 & server=$!; pids+=($server)
    url="https://127.0.0.1:$port"
    config="$work/server/config.yaml"
    for _ in $(seq 1 240); do [[ -f "$config" ]] && curl -sf --cacert "$work/server/tls/ca.crt" "$url/healthz" >/dev/null && break; sleep 0.5; done
    token="$(awk '/^token:/ {print $2}' "$config")"
    join="$("${outpost[@]}" token create --config "$config")"
    "${outpost[@]}" agent --server "$url" --token "$join" --name bench-edge --labels site=north --data-dir "$work/agent" --gateway 127.0.0.1:0 \
      --heartbeat 1s >"$work/agent.log" 2>&1 & agent=$!; pids+=($agent)
    for _ in $(seq 1 240); do "${outpost[@]}" get nodes bench-edge --config "$config" 2>/dev/null | grep -q ' Ready ' && break; sleep 0.5; done
    "${outpost[@]}" get nodes bench-edge --config "$config" | grep -q ' Ready ' || { echo "bench dashboard: the agent never got Ready" >&2; cat "$work/agent.log" >&2; exit 1; }
    median_ms() { # command... -> median wall time of $runs runs, ms
      for _ in $(seq 1 "$runs"); do
        start=$(date +%s%N); "$@" >/dev/null; echo $(( ($(date +%s%N) - start) / 1000000 ))
      done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
    }
    cli_ms=$(median_ms "${outpost[@]}" get nodes --config "$config")
    server_filter_ms=$(median_ms "${outpost[@]}" get nodes -l site=north --config "$config")
    table_bytes=$(curl -s --cacert "$work/server/tls/ca.crt" -H "Authorization: Bearer $token" -H 'Accept: application/json;as=Table;g=meta.k8s.io;v=v1' \
      -H 'Accept-Encoding: gzip, br' "$url/api/v1/nodes" | wc -c)
    result="$("${bench[@]}" dashboard "$url" "$token" "$work/server/tls/ca.crt" "$server" "$agent" bench-edge "$runs" | tail -1)"
    field() { sed -E "s/.*[ ]$1=([^ ]+).*/\1/" <<<"$result"; }
    echo "$(( nodes + 1 )) nodes; outpost get nodes ${cli_ms} ms, with -l site=north ${server_filter_ms} ms (median of $runs, process start included); node Table ${table_bytes} bytes" >&2
    echo "dashboard paint_ms=$(field paint_ms) cli_get_nodes_ms=$cli_ms paint_vs_cli=$(awk -v a="$(field paint_ms)" -v b="$cli_ms" 'BEGIN {printf "%.2f", a / b}')" \
      "keystroke_ms=$(field keystroke_ms) keystroke_p99_ms=$(field keystroke_p99_ms) server_filter_ms=$server_filter_ms" \
      "keystroke_vs_server=$(awk -v a="$(field keystroke_ms)" -v b="$server_filter_ms" 'BEGIN {printf "%.4f", a / b}')" \
      "state_change_ms=$(field state_change_ms) cold_bytes=$(field cold_bytes) table_bytes=$table_bytes nodes=$(( nodes + 1 ))" \
      "server_cpu_idle=$(field server_cpu_idle) server_cpu_watched=$(field server_cpu_watched)"
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
    # The harness's own share: the same measure of a C server that answers the moment it runs.
    floor="n/a"
    if command -v cc >/dev/null && cc -O2 -o "$work/answer" "$root/bench/answer.c"; then
      : >"$work/floor.txt"
      for _ in $(seq 1 "$runs"); do "${bench[@]}" firstanswer "http://127.0.0.1:$ga/hello" "$work/answer" "$ga" >>"$work/floor.txt"; done
      floor=$(median <"$work/floor.txt")
    fi
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
    echo "offline start to first 200: ${ready} ms (JIT ${ready_jit} ms; the harness alone, a C server: ${floor} ms); get nodes round trip: ${cli} ms (JIT ${cli_jit} ms); server RSS with ${AGENTS:-100} agents: ${server_rss} MB (JIT ${server_rss_jit} MB)"
    echo "footprint x64_mb=$x64_mb arm64_mb=$arm64_mb agent_rss_mb=$agent_rss agent_rss_jit_mb=$agent_rss_jit ready_ms=$ready ready_jit_ms=$ready_jit cli_ms=$cli cli_jit_ms=$cli_jit server_rss_100_mb=$server_rss server_rss_100_jit_mb=$server_rss_jit"
    ;;
  ai)
    command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
    command -v clang >/dev/null && [[ -f /usr/lib/wasm32-wasi/libc.a ]] || { apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null; }; }
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    bench=(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll")
    work="$(mktemp -d)"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME" "$work/manifests"
    clang --target=wasm32-wasi --sysroot=/usr -O2 -o "$work/readfile.wasm" "$root/bench/wasm/readfile.c"
    model="$root/samples/ai/hadamard.onnx"
    classify="$root/samples/apps/classify/classify.wasm"

    inproc="$("${bench[@]}" ai "$model" "$classify" "$work/readfile.wasm" "${ITERATIONS:-2000}" | tee /dev/stderr | tail -1)"

    base=$((20000 + RANDOM % 10000))
    gateway=$((base + 1)); kestrel=$((base + 2))
    cp "$classify" "$model" "$work/manifests/"
    cat >"$work/manifests/classify.yaml" <<'YAML'
apiVersion: outpost.dev/v1
kind: Application
metadata: {name: classify}
spec:
  module: {path: classify.wasm}
  triggers: {http: {route: /classify}}
  capabilities: [nn]
  models: [{name: hadamard, path: hadamard.onnx}]
YAML
    start=$(now_ms)
    dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll" up --agents 1 --data-dir "$work/fleet" --server-port "$base" \
      --gateway-port "$gateway" --manifests "$work/manifests" >"$work/up.log" 2>&1 & pids+=($!)
    "${bench[@]}" kestrel-ai "$kestrel" "$model" >"$work/kestrel.log" 2>&1 & pids+=($!)
    # The first 200 is the app's first request on the node: its model's session is made then.
    first=""
    for _ in $(seq 1 600); do
      out="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$gateway/classify?class=3" || true)"
      if [[ "${out%% *}" == 200 ]]; then first="${out#* }"; break; fi
      sleep 0.1
    done
    [[ -n "$first" ]] || { echo "bench ai: the app never answered" >&2; cat "$work/up.log" >&2; exit 1; }
    landed=$(( $(now_ms) - start ))
    first_ms=$(awk -v t="$first" 'BEGIN {printf "%.1f", t * 1000}')
    for _ in $(seq 1 120); do curl -sf -o /dev/null "http://127.0.0.1:$kestrel/classify?class=3" && break; sleep 0.5; done
    curl -s "http://127.0.0.1:$gateway/classify?class=7" | grep -q 'argmax: 7 (expected 7)' || { echo "bench ai: wrong answer through the gateway" >&2; exit 1; }
    curl -s "http://127.0.0.1:$kestrel/classify?class=7" | grep -q 'argmax: 7 (expected 7)' || { echo "bench ai: wrong answer from kestrel" >&2; exit 1; }
    rps() { # url -> requests/s
      wrk -t2 -c8 -d3s "$1" >/dev/null
      wrk -t2 -c8 -d"${DURATION:-10}s" "$1" | awk '/Requests\/sec/ {print $2}'
    }
    gw_rps=$(rps "http://127.0.0.1:$gateway/classify?class=3")
    k_rps=$(rps "http://127.0.0.1:$kestrel/classify?class=3")
    echo "http: gateway $gw_rps req/s, kestrel (native ONNX Runtime) $k_rps req/s; first request ${first_ms} ms, $landed ms from up to it" >&2
    native=$(sed -E 's/.*native_p50_ms=([^ ]+).*/\1/' <<<"$inproc")
    wasm=$(sed -E 's/.*wasm_p50_ms=([^ ]+).*/\1/' <<<"$inproc")
    ratio=$(sed -E 's/.* ratio=([^ ]+).*/\1/' <<<"$inproc")
    file_ratio=$(sed -E 's/.*file_read_ratio=([^ ]+).*/\1/' <<<"$inproc")
    echo "ai native_p50_ms=$native wasm_p50_ms=$wasm ratio=$ratio rps_ratio=$(awk -v a="$gw_rps" -v b="$k_rps" 'BEGIN {printf "%.2f", a / b}') first_request_ms=$first_ms file_read_ratio=$file_ratio"
    ;;
  components)
    command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
    command -v clang >/dev/null && [[ -f /usr/lib/wasm32-wasi/libc.a ]] || { apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null 2>&1 \
      || { apt-get update >/dev/null && apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null; }; }
    duration="${DURATION:-10}"
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    work="$(mktemp -d)"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME" "$work/manifests"
    component="$root/samples/components/http-c/http-c.wasm"
    inproc="$(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" components "$component" "${ITERATIONS:-20000}" | tee /dev/stderr | tail -1)"

    # One agent serving both kinds side by side: hello.wasm (core) and http-c (component) for the
    # hello figure; body.wasm (core, WAGI) and http-c for 64 KB bodies (?size=65536).
    clang --target=wasm32-wasi --sysroot=/usr -O2 -o "$work/manifests/body.wasm" "$root/bench/wasm/body.c"
    cp "$root/samples/apps/hello/hello.wasm" "$component" "$work/manifests/"
    app() { # NAME MODULE ROUTE
      printf 'apiVersion: outpost.dev/v1\nkind: Application\nmetadata: {name: %s}\nspec:\n  module: {path: %s}\n  triggers: {http: {route: %s}}\n  env: {GREETING: hello}\n---\n' "$1" "$2" "$3"
    }
    { app hello hello.wasm /hello; app body body.wasm /body; app component http-c.wasm /component; } >"$work/manifests/apps.yaml"
    base=$((20000 + RANDOM % 10000))
    gateway=$((base + 1))
    dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll" up --agents 1 --data-dir "$work/fleet" --server-port "$base" \
      --gateway-port "$gateway" --manifests "$work/manifests" >"$work/up.log" 2>&1 & pids+=($!)
    for path in /hello "/body?size=65536" /component/hello "/component/x?size=65536"; do
      for _ in $(seq 1 240); do curl -sf -o /dev/null "http://127.0.0.1:$gateway$path" && break; sleep 0.5; done
      curl -sf -o /dev/null "http://127.0.0.1:$gateway$path" || { echo "bench components: $path not served" >&2; cat "$work/up.log" >&2; exit 1; }
    done
    [[ "$(curl -s "http://127.0.0.1:$gateway/component/x?size=65536" | wc -c)" == 65536 && "$(curl -s "http://127.0.0.1:$gateway/body?size=65536" | wc -c)" == 65536 ]] \
      || { echo "bench components: a 64 KB answer is not 64 KB" >&2; exit 1; }
    rps() { # url -> requests/s
      wrk -t2 -c64 -d3s "$1" >/dev/null
      wrk -t2 -c64 -d"${duration}s" "$1" | awk '/Requests\/sec/ {print $2}'
    }
    core_rps=$(rps "http://127.0.0.1:$gateway/hello")
    comp_rps=$(rps "http://127.0.0.1:$gateway/component/hello")
    core_body_rps=$(rps "http://127.0.0.1:$gateway/body?size=65536")
    comp_body_rps=$(rps "http://127.0.0.1:$gateway/component/x?size=65536")
    echo "gateway: hello core $core_rps req/s, component $comp_rps req/s; 64 KB body core $core_body_rps req/s, component $comp_body_rps req/s (wrk -t2 -c64 -d${duration}s each)" >&2
    field() { sed -E "s/.*[ ]$1=([^ ]+).*/\1/" <<<"$inproc"; }
    echo "components p50_us=$(field p50_us) p99_us=$(field p99_us) core_p50_us=$(field core_p50_us) body64k_p50_us=$(field body64k_p50_us)" \
      "rps_ratio=$(awk -v a="$comp_rps" -v b="$core_rps" 'BEGIN {printf "%.2f", a / b}') component_rps=$comp_rps core_rps=$core_rps" \
      "body64k_ratio=$(awk -v a="$comp_body_rps" -v b="$core_body_rps" 'BEGIN {printf "%.2f", a / b}') component_body_rps=$comp_body_rps core_body_rps=$core_body_rps"
    ;;
  containers)
    for tool in runc skopeo gcc; do
      command -v "$tool" >/dev/null || { apt-get install -y "$tool" libc6-dev >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$tool" libc6-dev >/dev/null; }; }
    done
    [[ "$(id -u)" == 0 ]] || { echo "bench: containers need root" >&2; exit 1; }
    dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
    outpost=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    runs="${RUNS:-7}"
    work="$(mktemp -d)"
    pids=()
    cleanup() {
      kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
      runc --root "$work/runc-hand" delete -f bench-hand >/dev/null 2>&1 || true
      ip link del opbench0 2>/dev/null || true; ip netns del bench-hand 2>/dev/null || true
      rm -rf "$work"
    }
    trap cleanup EXIT
    export HOME="$work/home"
    mkdir -p "$HOME" "$work/certs"
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac

    # Images: [hello, base (MB of random bytes), version] for a and b; a and b share hello and base.
    layer() { # DIR LAYOUT -> "digest size diff_id"
      local tarball="$work/layer.tar" digest
      tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$tarball" .
      local diff_id="sha256:$(sha256sum "$tarball" | cut -d' ' -f1)"
      gzip -n -1 <"$tarball" >"$work/layer.gz"
      digest="$(sha256sum "$work/layer.gz" | cut -d' ' -f1)"
      mkdir -p "$2/blobs/sha256" && cp "$work/layer.gz" "$2/blobs/sha256/$digest"
      echo "sha256:$digest $(stat -c %s "$work/layer.gz") $diff_id"
    }
    put() { # LAYOUT (stdin: blob) -> "digest size"
      cat >"$work/blob"; local digest; digest="$(sha256sum "$work/blob" | cut -d' ' -f1)"
      mkdir -p "$1/blobs/sha256" && mv "$work/blob" "$1/blobs/sha256/$digest"
      echo "sha256:$digest $(stat -c %s "$1/blobs/sha256/$digest")"
    }
    image() { # LAYOUT TAG LAYER... (each "digest size diff_id") -> "manifest_digest total_bytes new_bytes"
      local layout="$1" tag="$2"; shift 2
      local diff_ids="" layers="" total=0
      for l in "$@"; do
        read -r d sz di <<<"$l"
        diff_ids+="${diff_ids:+,}\"$di\""; layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$d\",\"size\":$sz}"
        total=$((total + sz))
      done
      read -r config config_size < <(printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/hello"],"Env":["PATH=/"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$arch" "$diff_ids" | put "$layout")
      read -r manifest manifest_size < <(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' "$config" "$config_size" "$layers" | put "$layout")
      printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
      printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' "$manifest" "$manifest_size" "$tag" >"$layout/index.json"
      echo "$manifest $((total + config_size + manifest_size)) $((config_size + manifest_size))"
    }
    mkdir -p "$work/l/hello" "$work/l/base" "$work/l/va" "$work/l/vb"
    gcc -static -Os -s -o "$work/l/hello/hello" "$root/samples/containers/hello/hello.c"
    head -c $(( ${MB:-50} << 20 )) /dev/urandom >"$work/l/base/base.bin"
    echo a >"$work/l/va/version"; echo b >"$work/l/vb/version"
    l_hello=$(layer "$work/l/hello" "$work/img-a"); cp -r "$work/img-a" "$work/img-b"
    l_base=$(layer "$work/l/base" "$work/img-a"); cp "$work/img-a/blobs/sha256/"* "$work/img-b/blobs/sha256/"
    l_va=$(layer "$work/l/va" "$work/img-a"); l_vb=$(layer "$work/l/vb" "$work/img-b")
    read -r _ a_bytes _ < <(image "$work/img-a" a "$l_hello" "$l_base" "$l_va")
    read -r _ _ b_meta < <(image "$work/img-b" b "$l_hello" "$l_base" "$l_vb")
    new_layer_bytes=$(( $(awk '{print $2}' <<<"$l_vb") + b_meta ))

    "${outpost[@]}" server --data-dir "$work/server" --listen 127.0.0.1:0 >"$work/server.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 120); do grep -q '^server:' "$work/server.log" && break; sleep 0.5; done
    url=$(awk '/^server:/ {print $2}' "$work/server.log"); host="${url#https://}"
    export OUTPOST_CONFIG="$work/server/config.yaml"
    join=$("${outpost[@]}" token create)
    admin=$("${outpost[@]}" token create --api --role admin --description bench)
    curl -sk "$url/cacerts" >"$work/certs/ca.crt"
    "${outpost[@]}" agent --server "$url" --token "$join" --name edge-1 --data-dir "$work/agent" --gateway 127.0.0.1:0 >"$work/agent.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 120); do grep -q '^node edge-1:' "$work/agent.log" && break; sleep 0.5; done
    gw=$(awk '/^node edge-1:/ {print $3}' "$work/agent.log")
    skopeo_() { skopeo --policy <(echo '{"default":[{"type":"insecureAcceptAnything"}]}') "$@"; }
    push() { skopeo_ copy -q --dest-cert-dir "$work/certs" --dest-creds "bench:$admin" "oci:$work/img-$1:$1" "docker://$host/big:$1" >/dev/null; }
    fetched() { curl -s "$gw/_outpost/metrics" | awk '/^outpost_agent_image_bytes_fetched_total/ {print $2}'; }
    app() { # NAME TAG ROUTE GREETING
      cat >"$work/app.yaml" <<YAML
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runc
handler: runc
---
apiVersion: outpost.dev/v1
kind: Application
metadata:
  name: $1
spec:
  runtimeClassName: runc
  image: big:$2
  env:
    GREETING: $4
  triggers:
    http:
      route: $3
YAML
      "${outpost[@]}" apply -f "$work/app.yaml" >/dev/null
    }
    until_body() { # URL TEXT
      for _ in $(seq 1 60000); do curl -s "$1" 2>/dev/null | grep -q "$2" && return 0; sleep 0.002; done
      echo "bench: $1 never answered $2" >&2; tail -20 "$work/agent.log" >&2; exit 1
    }

    # Pull: the node's fetch of image a through its connection, against skopeo from the same registry.
    push a
    before=$(fetched)
    app big-a a /a pull
    t0=$(now_ms)
    for _ in $(seq 1 60000); do [[ $(( $(fetched) - before )) -ge "$a_bytes" ]] && break; sleep 0.005; done
    node_pull_ms=$(( $(now_ms) - t0 ))
    until_body "$gw/a" "pull from container"
    : >"$work/skopeo.txt"
    for _ in 1 2 3; do
      rm -rf "$work/pulled"; t0=$(now_ms)
      skopeo_ copy -q --src-cert-dir "$work/certs" --src-creds "bench:$admin" "docker://$host/big:a" "dir:$work/pulled" >/dev/null
      echo $(( $(now_ms) - t0 )) >>"$work/skopeo.txt"
    done
    skopeo_ms=$(median <"$work/skopeo.txt")

    # Shared layer: image b differs from a in one small layer.
    push b
    before=$(fetched)
    app big-b b /b shared
    until_body "$gw/b" "shared from container"
    shared_layer_bytes=$(( $(fetched) - before ))

    # Start: a new revision of big-a (the image on the node) to its first 200, against runc by hand.
    : >"$work/start.txt"; : >"$work/hand.txt"
    for i in $(seq 1 "$runs"); do
      app big-a a /a "run$i"
      t0=$(now_ms); until_body "$gw/a" "run$i from container"; echo $(( $(now_ms) - t0 )) >>"$work/start.txt"
    done
    bundle=$(ls -td "$work/agent/containers/bundles/"*/ | head -1)
    mkdir -p "$work/hand"
    cp "$bundle"/{hosts,hostname,resolv.conf} "$work/hand/"
    python3 - "$bundle/config.json" "$work/hand" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for ns in config["linux"]["namespaces"]:
    if ns["type"] == "network":
        ns["path"] = "/run/netns/bench-hand"
config["linux"]["cgroupsPath"] = "/outpost-bench/hand"
for mount in config["mounts"]:
    if mount["destination"] in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        mount["source"] = sys.argv[2] + "/" + mount["destination"].rsplit("/", 1)[1]
config["process"]["env"] = [e for e in config["process"]["env"] if not e.startswith("GREETING=")] + ["GREETING=hand"]
json.dump(config, open(sys.argv[2] + "/config.json", "w"))
PY
    for i in $(seq 1 "$runs"); do
      t0=$(now_ms)
      ip netns add bench-hand
      ip link add opbench0 type veth peer name eth0 netns bench-hand
      ip addr add 10.214.255.1/30 dev opbench0; ip link set opbench0 up
      ip -n bench-hand addr add 10.214.255.2/30 dev eth0; ip -n bench-hand link set eth0 up; ip -n bench-hand link set lo up
      runc --root "$work/runc-hand" run -d --bundle "$work/hand" bench-hand >/dev/null 2>&1 </dev/null
      until_body "http://10.214.255.2:8080/" "hand from container"
      echo $(( $(now_ms) - t0 )) >>"$work/hand.txt"
      runc --root "$work/runc-hand" delete -f bench-hand >/dev/null
      ip link del opbench0; ip netns del bench-hand
    done
    start_ms=$(median <"$work/start.txt"); hand_ms=$(median <"$work/hand.txt")
    echo "start: apply to first 200 $(tr '\n' ' ' <"$work/start.txt")ms; by hand $(tr '\n' ' ' <"$work/hand.txt")ms"
    echo "pull: node ${node_pull_ms} ms for ${a_bytes} bytes; skopeo $(tr '\n' ' ' <"$work/skopeo.txt")ms"
    echo "containers start_ms=$start_ms runc_baseline_ms=$hand_ms start_ratio=$(awk -v a="$start_ms" -v b="$hand_ms" 'BEGIN {printf "%.2f", a/b}') shared_layer_bytes=$shared_layer_bytes new_layer_bytes=$new_layer_bytes image_bytes=$a_bytes node_pull_ms=$node_pull_ms skopeo_pull_ms=$skopeo_ms pull_ratio=$(awk -v a="$skopeo_ms" -v b="$node_pull_ms" 'BEGIN {printf "%.2f", a/b}')"
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
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    bench=(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll")
    work="$(mktemp -d)"
    # The fleet is what ships: the release binary, built afresh (JIT warm-up would otherwise
    # decide the first runs). FLEET=jit: the JIT build instead.
    if [[ "${FLEET:-aot}" == jit ]]; then
      dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
      outpost=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll")
    else
      "$root/build.sh" linux-x64 >&2
      outpost=("$root/dist/linux-x64/outpost")
      export OUTPOST_LIB_DIR="$work/lib"
    fi
    duration="${DURATION:-5}"
    mesh_runs="${RUNS:-3}"
    # Every idle wire is a socket on edge-1 and one in the holder: the soft limit as high as it may go.
    ulimit -n "$(ulimit -Hn)"
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    base=$((20000 + RANDOM % 10000))
    server_port=$base; gw1=$((base + 1)); gw2=$((base + 2)); sink=$((base + 3)); forward=$((base + 4)); gw3=$((base + 5)); forward2=$((base + 6)); tls_sink=$((base + 7))
    hop_tls=$((base + 8)); hop_tcp=$((base + 9)); chain1=$((base + 10)); chain2=$((base + 11)); chain3=$((base + 12))
    "${outpost[@]}" server --data-dir "$work/server" --listen "127.0.0.1:$server_port" >"$work/server.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do grep -q '^server:' "$work/server.log" && break; sleep 0.25; done
    export OUTPOST_CONFIG="$work/server/config.yaml"
    token=$("${outpost[@]}" token create)
    admin=$(awk '/^token:/ {print $2}' "$OUTPOST_CONFIG")
    # edge-1 is the client side (it holds the service addresses); edge-2 (another site) and edge-3 (edge-1's
    # site) run the endpoints; pool=mesh is where the second service scales out to for the heal.
    "${outpost[@]}" agent --server "https://127.0.0.1:$server_port" --token "$token" --name edge-1 --labels site=a --data-dir "$work/edge-1" \
      --gateway "127.0.0.1:$gw1" >"$work/edge-1.log" 2>&1 & pids+=($!); edge1_pid=$!
    "${outpost[@]}" agent --server "https://127.0.0.1:$server_port" --token "$token" --name edge-2 --labels site=b,role=backend,pool=mesh --data-dir "$work/edge-2" \
      --gateway "127.0.0.1:$gw2" --service-addresses=false >"$work/edge-2.log" 2>&1 & pids+=($!)
    "${outpost[@]}" agent --server "https://127.0.0.1:$server_port" --token "$token" --name edge-3 --labels site=a,role=local,pool=mesh --data-dir "$work/edge-3" \
      --gateway "127.0.0.1:$gw3" --service-addresses=false >"$work/edge-3.log" 2>&1 & pids+=($!); edge3_pid=$!
    disown $edge3_pid # it is killed -9 at the end: no job notice for it
    # A 4 KB answer: the hello sample with a 4,000-character greeting.
    cp "$root/samples/apps/hello/hello.wasm" "$work/"
    greeting=$(head -c 4000 /dev/zero | tr '\0' 'x')
    service="big-$RANDOM"; near="near-$RANDOM"
    app_yaml() { # name route selector service -> an Application answering 4 KB, exposed as the service to edge-1's site
      cat <<YAML
apiVersion: outpost.dev/v1
kind: Application
metadata:
  name: $1
spec:
  module:
    path: hello.wasm
  triggers:
    http:
      route: $2
  env:
    GREETING: "$greeting"
  placement:
    nodeSelector:
      $3
  expose:
    service: $4
    port: 8080
    clients:
      nodeSelector:
        site: a
YAML
    }
    app_yaml big /big "role: backend" "$service" >"$work/big.yaml"
    "${outpost[@]}" apply -f "$work/big.yaml" >/dev/null
    api="https://127.0.0.1:$server_port"
    url="$api/proxy/services/$service/"
    for _ in $(seq 1 600); do [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin" "$url")" = 200 ] && break; sleep 0.05; done
    # Propagation: from the service answering through the server to its address answering on edge-1.
    address_of() { curl -sk -H "Authorization: Bearer $admin" "$api/apis/outpost.dev/v1/networkservices/$1" | sed -n 's/.*"address":"\(127\.77\.[0-9.]*\)".*/\1/p'; }
    address=$(address_of "$service")
    t0=$(now_ms)
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$address:8080/")" = 200 ]; do sleep 0.005; done
    propagate_ms=$(( $(now_ms) - t0 ))
    # The second service, on edge-3 only: edge-1 reaches it with a direct wire (same site, no server).
    app_yaml near /near "role: local" "$near" >"$work/near.yaml"
    "${outpost[@]}" apply -f "$work/near.yaml" >/dev/null
    for _ in $(seq 1 600); do [ -n "$(address_of "$near")" ] && break; sleep 0.05; done
    near_address=$(address_of "$near")
    for _ in $(seq 1 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$near_address:8080/")" = 200 ] && break; sleep 0.05; done
    routed() { # route -> edge-1's connections to services by that route, all services together
      curl -s "http://127.0.0.1:$gw1/_outpost/metrics" | awk -v r="route=\"$1\"" '/^outpost_node_mesh_connections_total\{/ && index($1, r) {n += $2} END {print n + 0}'
    }
    rps() { wrk -t2 -c16 -d"${duration}s" "$@" | awk '/Requests\/sec/ {printf "%d", $2}'; }
    # Ceilings: what a relay that only copies bytes (and does TLS where the path does) reaches on this machine
    # in the same shape, so each ratio can be read against what any implementation could get here. In front of
    # edge-2's gateway, one hop that ends TLS (the proxy path has that and more: a second process, TLS to it,
    # HTTP routing); in front of edge-3's, one plain TCP hop (the direct wire has that and TLS between two agents).
    "${bench[@]}" hop "$hop_tls" "$gw2" tls tcp >"$work/hop-tls.log" 2>&1 & pids+=($!)
    "${bench[@]}" hop "$hop_tcp" "$gw3" tcp tcp >"$work/hop-tcp.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do curl -sk -o /dev/null "https://127.0.0.1:$hop_tls/big" && curl -s -o /dev/null "http://127.0.0.1:$hop_tcp/near" && break; sleep 0.25; done
    rps "http://127.0.0.1:$gw2/big" >/dev/null # warm-up
    gateway_rps=$(rps "http://127.0.0.1:$gw2/big")
    rps "https://127.0.0.1:$hop_tls/big" >/dev/null
    hop_tls_rps=$(rps "https://127.0.0.1:$hop_tls/big")
    rps -H "Authorization: Bearer $admin" "$url" >/dev/null
    proxy_rps=$(rps -H "Authorization: Bearer $admin" "$url")
    address_rps=$(rps "http://$address:8080/")
    rps "http://127.0.0.1:$gw3/near" >/dev/null
    local_gateway_rps=$(rps "http://127.0.0.1:$gw3/near")
    rps "http://$near_address:8080/" >/dev/null
    direct_before=$(routed direct); relayed_before=$(routed relayed)
    direct_rps=$(rps "http://$near_address:8080/")
    direct_wires=$(( $(routed direct) - direct_before )); relayed_wires=$(( $(routed relayed) - relayed_before ))
    rps "http://127.0.0.1:$hop_tcp/near" >/dev/null
    hop_tcp_rps=$(rps "http://127.0.0.1:$hop_tcp/near")
    if [[ $direct_wires -lt 1 || $relayed_wires -ne 0 ]]; then
      echo "the second service was not reached over direct wires: $direct_wires direct, $relayed_wires relayed connections on edge-1" >&2; exit 1
    fi
    # Latency at a fixed 1,000 requests/s (open loop): through /proxy/services against the node's gateway,
    # alternating, median p99 of each.
    : >"$work/lat_gateway.txt"; : >"$work/lat_proxy.txt"; : >"$work/lat_hop.txt"
    for _ in $(seq 1 "$mesh_runs"); do
      "${bench[@]}" latency "http://127.0.0.1:$gw2/big" 1000 "${LAT_SECONDS:-5}" >>"$work/lat_gateway.txt"
      "${bench[@]}" latency "$url" 1000 "${LAT_SECONDS:-5}" "Authorization: Bearer $admin" >>"$work/lat_proxy.txt"
      "${bench[@]}" latency "https://127.0.0.1:$hop_tls/big" 1000 "${LAT_SECONDS:-5}" >>"$work/lat_hop.txt"
    done
    gateway_p99=$(awk '{print $2}' "$work/lat_gateway.txt" | median_f); proxy_p99=$(awk '{print $2}' "$work/lat_proxy.txt" | median_f)
    hop_p99=$(awk '{print $2}' "$work/lat_hop.txt" | median_f)
    gateway_p50=$(awk '{print $1}' "$work/lat_gateway.txt" | median_f); proxy_p50=$(awk '{print $1}' "$work/lat_proxy.txt" | median_f)
    # Bulk bytes and connection rate: through port-forward (the CLI, the server, a wire, the node) to a
    # TCP sink on edge-2's host, against one direct TLS connection from the same client to a sink (the
    # issue's baseline: TLS both ways, as the relay's links are), and against plain TCP to the sink.
    "${bench[@]}" sink "$sink" >"$work/sink.log" 2>&1 & pids+=($!)
    "${bench[@]}" tlssink "$tls_sink" >"$work/tlssink.log" 2>&1 & pids+=($!)
    "${outpost[@]}" port-forward node/edge-2 "$forward:$sink" >"$work/forward.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do grep -q '^Forwarding' "$work/forward.log" && break; sleep 0.25; done
    # The relay's ceiling: the same hops as port-forward's (TCP in and TLS out as the CLI, TLS both ways as
    # the server, TLS in and TCP out as the node), each a process that only copies.
    "${bench[@]}" hop "$chain3" "$sink" tls tcp >"$work/chain3.log" 2>&1 & pids+=($!)
    "${bench[@]}" hop "$chain2" "$chain3" tls tls >"$work/chain2.log" 2>&1 & pids+=($!)
    "${bench[@]}" hop "$chain1" "$chain2" tcp tls >"$work/chain1.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do timeout 10 "${bench[@]}" connects "$chain1" 0.1 1 >/dev/null 2>&1 && break; sleep 0.25; done
    mb="${MB:-256}"
    : >"$work/direct.txt"; : >"$work/relay.txt"; : >"$work/tls.txt"; : >"$work/chain.txt"
    for _ in $(seq 1 "$mesh_runs"); do
      "${bench[@]}" bulk "$sink" "$mb" >>"$work/direct.txt"
      "${bench[@]}" tlsbulk "$tls_sink" "$mb" >>"$work/tls.txt"
      "${bench[@]}" bulk "$forward" "$mb" >>"$work/relay.txt"
      "${bench[@]}" bulk "$chain1" "$mb" >>"$work/chain.txt"
    done
    direct_mbps=$(median_f <"$work/direct.txt"); relay_mbps=$(median_f <"$work/relay.txt"); tls_mbps=$(median_f <"$work/tls.txt")
    chain_mbps=$(median_f <"$work/chain.txt")
    direct_cps=$("${bench[@]}" connects "$sink" "$duration" 8)
    relay_cps=$("${bench[@]}" connects "$forward" "$duration" 8)
    # Isolation: the same bulk through port-forward while another connection is stalled (the sink stops reading
    # it, so its bytes back up into every window on its path), cut off after three times its time without the
    # stall; then the stall is lifted and every byte of the stalled connection must arrive. A new stall for each
    # of RUNS runs, through the same port-forward (it shares the CLI's connection to the server and edge-2's
    # link) and, for hol_loss_link, through a second one (it shares edge-2's link only).
    "${outpost[@]}" port-forward node/edge-2 "$forward2:$sink" >"$work/forward2.log" 2>&1 & pids+=($!)
    for _ in $(seq 1 240); do grep -q '^Forwarding' "$work/forward2.log" && break; sleep 0.25; done
    limit_s=$(awk -v m="$mb" -v s="$relay_mbps" 'BEGIN {printf "%d", 2 + 3 * m / s}')
    beside_stall() { # port the stalled connection goes through, run -> MB/s of a bulk through $forward meanwhile
      local out="$work/stalled-$1-$2.txt" pid
      : >"$out"
      "${bench[@]}" stalled "$1" $(( 60 + limit_s )) >"$out" 2>&1 & pid=$!
      for _ in $(seq 1 600); do grep -q '^stalled' "$out" && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
      grep -q '^stalled' "$out" || { echo "the stalled connection did not stall:" >&2; cat "$out" >&2; kill $pid 2>/dev/null; return 1; }
      "${bench[@]}" bulk "$forward" "$mb" "$limit_s" 2>>"$work/beside.err"
      ! grep -q '^delivered' "$out" || { echo "the stall ended during the measurement:" >&2; cat "$out" >&2; return 1; }
      "${bench[@]}" resume "$sink"
      # Exit 3: the path broke the stalled connection (and the bulk's with it, which then counts what got through).
      local status=0; wait $pid || status=$?
      if [[ $status == 3 ]]; then
        echo "port $1 run $2: $(tail -1 "$out")" >>"$work/broken.txt"
      elif [[ $status != 0 ]]; then
        echo "the stalled connection failed:" >&2; cat "$out" >&2; return 1
      fi
    }
    : >"$work/beside_link.txt"; : >"$work/beside.txt"; : >"$work/broken.txt"
    for i in $(seq 1 "$mesh_runs"); do
      beside_stall "$forward2" "$i" >>"$work/beside_link.txt"
      beside_stall "$forward" "$i" >>"$work/beside.txt"
    done
    link_stalled_mbps=$(median_f <"$work/beside_link.txt"); stalled_mbps=$(median_f <"$work/beside.txt")
    # A run whose bulk lost 90% or more: the stall all but stopped the other connection.
    hol_wedged="$(awk -v b="$relay_mbps" '$1 < b / 10' "$work/beside.txt" | wc -l)/$mesh_runs"
    if awk -v b="$relay_mbps" '$1 < b / 10 {w = 1} END {exit !w}' "$work/beside.txt" "$work/beside_link.txt"; then
      # A wedge has been seen once and not since: what each side said, so a repeat can be explained.
      { echo "isolation: a bulk beside a stall lost 90 % or more; what the bulks, the fleet and the port-forwards logged:"
        cat "$work/beside.err"
        for log in server edge-1 edge-2 edge-3 forward forward2; do echo "--- $log.log (last 30 lines)"; tail -30 "$work/$log.log"; done
        echo "--- server wires: $(curl -sk -H "Authorization: Bearer $admin" "$api/metrics" | grep -E '^outpost_mesh_wires' | tr '\n' ' ')"
      } >&2
    fi
    stalled_mb=$(cat "$work"/stalled-"$forward"-*.txt | awk '/^stalled/ {print $2}' | median_f)
    # Idle wires: WIRES connections held at big's address on edge-1, each carried to edge-2 (another site)
    # over edge-1's one connection to the server; the server counts the wires that reached edge-2. edge-1's
    # RSS before, and once the count has been still for 3 s.
    wires_wanted="${WIRES:-10000}"
    server_wires() { curl -sk -H "Authorization: Bearer $admin" "$api/metrics" | awk '$1 == "outpost_mesh_wires_open" {print $2}'; }
    rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
    # From a fleet with no wires open (the proxy keeps idle ones for 30 s): every stream of the links is free.
    for _ in $(seq 1 450); do [[ $(server_wires) -eq 0 ]] && break; sleep 0.1; done
    wires_before=$(server_wires); relayed_before=$(routed relayed); rss_before=$(rss_kb $edge1_pid)
    "${bench[@]}" hold "$address" 8080 "$wires_wanted" 32 "${HOLD_SECONDS:-20}" >"$work/hold.txt" 2>"$work/hold.err" & pids+=($!); hold_pid=$!
    for _ in $(seq 1 2400); do grep -q '^open' "$work/hold.txt" && break; sleep 0.05; done
    grep -q '^open' "$work/hold.txt" || { echo "the idle connections were not opened:" >&2; cat "$work/hold.txt" "$work/hold.err" >&2; exit 1; }
    read -r _ tcp_open tcp_failed < <(grep '^open' "$work/hold.txt")
    last=-1; still=0
    for _ in $(seq 1 120); do
      now=$(server_wires)
      if [[ "$now" == "$last" ]]; then still=$((still + 1)); else still=0; last=$now; fi
      [[ $still -ge 6 ]] && break
      sleep 0.5
    done
    rss_after=$(rss_kb $edge1_pid)
    wires=$(( $(server_wires) - wires_before ))
    relayed_held=$(( $(routed relayed) - relayed_before ))
    wait $hold_pid || true
    tcp_alive=$(awk '/^alive/ {print $2}' "$work/hold.txt")
    kb_per_wire=$(awk -v a="$rss_after" -v b="$rss_before" -v n="$tcp_open" 'BEGIN {printf "%.1f", (n > 0 ? (a - b) / n : 0)}')
    # The held connections close with the holder, and edge-1's calls that waited for a stream end in turn: the
    # heal starts once a relayed connection from edge-1 no longer waits behind them.
    for _ in $(seq 1 600); do
      [[ $(server_wires) -le $wires_before ]] && awk -v t="$(curl -s -o /dev/null -w '%{time_total}' --max-time 5 "http://$address:8080/" || echo 9)" 'BEGIN {exit !(t < 0.1)}' && break
      sleep 0.1
    done
    # Heal, last (it kills an agent): the second service scales out to edge-2 too; edge-1 uses edge-3 (its
    # site, directly) until edge-3 is killed, then the first 200 at the address, each poll a new connection.
    app_yaml near /near "pool: mesh" "$near" >"$work/near.yaml"
    "${outpost[@]}" apply -f "$work/near.yaml" >/dev/null
    healthy() { curl -sk -H "Authorization: Bearer $admin" "$api/apis/outpost.dev/v1/networkservices/$near" | sed -n 's/.*"healthyEndpoints":\([0-9]*\).*/\1/p'; }
    for _ in $(seq 1 600); do [[ "$(healthy)" == 2 ]] && break; sleep 0.1; done
    [[ "$(healthy)" == 2 ]] || { echo "service $near never had 2 healthy endpoints" >&2; exit 1; }
    for _ in $(seq 1 100); do
      before=$(routed direct)
      curl -sf -o /dev/null "http://$near_address:8080/" && [[ $(routed direct) -gt $before ]] && break
      sleep 0.1
    done
    t0=$(now_ms)
    kill -9 $edge3_pid
    heal_ms=timeout
    for _ in $(seq 1 3000); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$near_address:8080/")" = 200 ] && { heal_ms=$(( $(now_ms) - t0 )); break; }
      sleep 0.005
    done
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
    loss() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (a < b ? 1 - a / b : 0)}'; }
    echo "proxy: ${proxy_rps} req/s through /proxy/services vs ${gateway_rps} straight to the node's gateway; ${address_rps} req/s at the service address on another node (relayed)"
    echo "direct: ${direct_rps} req/s at a service address on edge-1 served by edge-3 (same site; ${direct_wires} direct wires, ${relayed_wires} relayed) vs ${local_gateway_rps} at edge-3's gateway"
    echo "latency at 1000 req/s: p99 ${proxy_p99} ms through /proxy/services vs ${gateway_p99} ms at the gateway (p50 ${proxy_p50} vs ${gateway_p50}; median of ${mesh_runs})"
    echo "bulk: ${relay_mbps} MB/s through port-forward vs ${tls_mbps} MB/s over one direct TLS connection (${direct_mbps} MB/s plain TCP); connections: ${relay_cps}/s vs ${direct_cps}/s"
    echo "ceilings (copy-only hops, same run): ${chain_mbps} MB/s through port-forward's three hops; ${hop_tls_rps} req/s through one TLS hop before edge-2's gateway, p99 ${hop_p99} ms at 1000 req/s; ${hop_tcp_rps} req/s through one TCP hop before edge-3's"
    echo "isolation: ${stalled_mbps} MB/s through port-forward beside a stalled connection of the same port-forward ($(paste -sd' ' "$work/beside.txt"); ${stalled_mb} MB backed up in it), ${link_stalled_mbps} MB/s beside one of another port-forward (only edge-2's link shared)"
    if [[ -s "$work/broken.txt" ]]; then echo "isolation: stalled connections cut by the path (port, run: reason): $(paste -sd';' "$work/broken.txt")"; fi
    echo "idle wires: ${tcp_open} of ${wires_wanted} connections open (${tcp_failed} failed, ${tcp_alive} still open after ${HOLD_SECONDS:-20} s), ${relayed_held} relayed by edge-1, ${wires} wires open at the server; edge-1 RSS ${rss_before} -> ${rss_after} KB"
    echo "heal: ${heal_ms} ms from kill -9 of the same-site endpoint to the first 200 at the address"
    echo "mesh relay_ratio=$(ratio "$relay_mbps" "$tls_mbps") direct_ratio=$(ratio "$direct_rps" "$local_gateway_rps") proxy_rps_ratio=$(ratio "$proxy_rps" "$gateway_rps") added_p99_ms=$(awk -v a="$proxy_p99" -v b="$gateway_p99" 'BEGIN {printf "%.2f", a - b}') connect_ratio=$(ratio "$relay_cps" "$direct_cps") heal_ms=$heal_ms propagate_ms=$propagate_ms hol_loss=$(loss "$stalled_mbps" "$relay_mbps") wires=$wires kb_per_wire=$kb_per_wire held=$tcp_open hol_wedged=$hol_wedged hol_broken=$(wc -l <"$work/broken.txt") address_rps_ratio=$(ratio "$address_rps" "$gateway_rps") hol_loss_link=$(loss "$link_stalled_mbps" "$relay_mbps") relay_mbps=$relay_mbps tls_mbps=$tls_mbps tcp_ratio=$(ratio "$relay_mbps" "$direct_mbps") direct_mbps=$direct_mbps relay_ceiling=$(ratio "$chain_mbps" "$tls_mbps") direct_ceiling=$(ratio "$hop_tcp_rps" "$local_gateway_rps") proxy_ceiling=$(ratio "$hop_tls_rps" "$gateway_rps") added_p99_floor_ms=$(awk -v a="$hop_p99" -v b="$gateway_p99" 'BEGIN {printf "%.2f", a - b}')"
    ;;
  fleet)
    nodes="${NODES:-10000}"
    shift
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --nodes) nodes="$2"; shift 2 ;;
        --nodes=*) nodes="${1#*=}"; shift ;;
        *) echo "fleet: unknown option $1 (use --nodes N)" >&2; exit 2 ;;
      esac
    done
    dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
    bench=(dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll")
    work="$(mktemp -d)"
    if [[ "${FLEET:-aot}" == jit ]]; then
      dotnet build "$root/src/Outpost" -c Release -nologo -v q >/dev/null
      outpost=(dotnet "$root/src/Outpost/bin/Release/net10.0/outpost.dll"); client="$root/src/Outpost/bin/Release/net10.0/outpost.dll"
    else
      binary="$root/dist/linux-x64/outpost"
      if [[ ! -x "$binary" ]] || [[ -n "$(find "$root/src" \( -name obj -o -name bin \) -prune -o \( -name '*.cs' -o -name '*.proto' -o -name '*.csproj' \) -newer "$binary" -print -quit)" ]]; then "$root/build.sh" linux-x64 >&2; fi
      outpost=("$binary"); client="$binary"
      export OUTPOST_LIB_DIR="$work/lib"
    fi
    # A socket per node on each side (server and simulator are separate processes): the soft limit as high as it may go.
    ulimit -n "$(ulimit -Hn)"
    if [[ $(ulimit -n) -lt $((nodes + 1000)) ]]; then echo "fleet: open files limited to $(ulimit -n), too few for $nodes nodes" >&2; exit 1; fi
    # Ten thousand TLS connections in one process take more memory mappings than the kernel's default
    # 65,530 allow (the simulator died "Out of memory." at ~9,400 nodes): raise it for the run when root.
    if [[ $(cat /proc/sys/vm/max_map_count) -lt 262144 ]]; then
      sysctl -q -w vm.max_map_count=262144 || echo "fleet: vm.max_map_count is $(cat /proc/sys/vm/max_map_count); past ~9,000 nodes a process may run out of mappings" >&2
    fi
    # A reconnect storm is N SYNs at once: the server asks for an accept queue of 16,384, which the kernel caps at somaxconn.
    if [[ $(cat /proc/sys/net/core/somaxconn) -lt 16384 ]]; then
      sysctl -q -w net.core.somaxconn=16384 || echo "fleet: net.core.somaxconn is $(cat /proc/sys/net/core/somaxconn); a storm's SYNs past it wait for retries" >&2
    fi
    server_pid=""; replica_pid=""; pg_ctl_stop=""
    # A server stuck with thousands of sessions may not stop on TERM: KILL after 20 s.
    trap 'kill $server_pid $replica_pid 2>/dev/null || true; for _ in $(seq 1 40); do kill -0 $server_pid $replica_pid 2>/dev/null || break; sleep 0.5; done
      kill -9 $server_pid $replica_pid 2>/dev/null || true; wait 2>/dev/null || true; eval "$pg_ctl_stop" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
    export HOME="$work/home"
    mkdir -p "$HOME"
    port=$((20000 + RANDOM % 10000))
    # REPLICAS=2: two servers on a throwaway PostgreSQL, the nodes spread over both; at the end the first is killed.
    datastore=()
    if [[ "${REPLICAS:-1}" == 2 ]]; then
      start_postgres "$work/pg"
      datastore=(--datastore "$pg_url")
    fi
    # The server at its defaults (node lease, keepalive); the simulated nodes beat at the agent's default 10 s.
    "${outpost[@]}" server --data-dir "$work/server" --listen "127.0.0.1:$port" "${datastore[@]}" >"$work/server.log" 2>&1 & server_pid=$!
    for _ in $(seq 1 240); do grep -q '^server:' "$work/server.log" && break; sleep 0.25; done
    urls="https://127.0.0.1:$port"; pids="$server_pid"
    if [[ "${REPLICAS:-1}" == 2 ]]; then
      "${outpost[@]}" server --data-dir "$work/replica" --listen "127.0.0.1:$((port + 1))" "${datastore[@]}" \
        --server-token-file "$work/server/server-token" >"$work/replica.log" 2>&1 & replica_pid=$!
      for _ in $(seq 1 240); do grep -q '^server:' "$work/replica.log" && break; sleep 0.25; done
      urls="$urls,https://127.0.0.1:$((port + 1))"; pids="$pids,$replica_pid"
    fi
    export OUTPOST_CONFIG="$work/server/config.yaml"
    token=$("${outpost[@]}" token create)
    # The simulator collects with the server flavour of the collector (DOTNET_gcServer=1, unless set): N
    # agents in one process share one heap, and the workstation collector's pauses (blocking generation-1
    # collections of a heap that holds every node's connection) stopped all of them at once, for a third
    # of a fan-out's time; agents on their own machines each pause for their own small heap.
    DOTNET_gcServer="${DOTNET_gcServer:-1}" "${bench[@]}" fleet "$urls" "$OUTPOST_CONFIG" "$token" "$pids" "$client" "$root/samples" "$nodes" \
      "${RUNS:-3}" "${IDLE:-60}" "${RECORD_SECONDS:-60}" "${STORM_LIMIT:-300}" >"$work/fleet.txt" || { cat "$work/fleet.txt"; tail -20 "$work/server.log" >&2; exit 1; }
    echo "server log: $(wc -l <"$work/server.log") lines, $(grep -c ' warn' "$work/server.log" || true) warnings, $(grep -Ec ' (fail|crit)' "$work/server.log" || true) errors" >&2
    grep -E ' (warn|fail|crit)' "$work/server.log" | sed -E 's/^[0-9:]+ //; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -5 >&2 || true
    cat "$work/fleet.txt"
    ;;
  *)
    echo "usage: bench/run.sh coldstart|http|components|ready|sync|converge|footprint|rollback|ai|containers|mesh|dashboard|fleet [--nodes N]" >&2
    exit 2
    ;;
esac
