#!/usr/bin/env bash
# Makes build/outpost.order.gz again: the managed methods an agent (then a server) runs while it
# starts, serves the three samples and idles, which the release build places first (see
# src/Outpost/Outpost.csproj). Run it when the code has changed a lot; a stale list still works,
# the methods it does not name just go after it.
#
#   sudo build/layout.sh          # linux-x64, needs root: a loop mount with readahead off
#   sudo FRESH=1 build/layout.sh  # from the compiler's default layout instead of the current list
#
# How: an unstripped build runs from a fresh loop mount whose readahead is off, so a page of the
# binary is resident only if the process touched it (a warm page cache would let the kernel map
# the 64 KB around each touched page). The pages each process has resident, matched against the
# symbols, give the methods (Outpost.Bench layout). A page holds a dozen methods or more, so the
# list also names cold neighbours of hot ones; built with the current list, those neighbours sit
# among other listed methods, and the ones on pages nothing touched fall out: each run refines the
# list (FRESH=1 starts over).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "layout.sh: needs root (losetup, mount)" >&2; exit 1; }
work="$(mktemp -d)"
pids=(); loop=""
cleanup() {
  [[ ${#pids[@]} -gt 0 ]] && { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
  mountpoint -q "$work/mnt" && umount "$work/mnt"
  [[ -n "$loop" ]] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

layout=(); [[ -n "${FRESH:-}" ]] && layout=(-p:OutpostLayout=false)
echo "layout.sh: publishing an unstripped linux-x64 build (${layout[*]:-with the current list})" >&2
dotnet publish "$root/src/Outpost" -c Release -r linux-x64 -p:PublishAot=true "${layout[@]}" -p:StripSymbols=false \
  -p:TrimmerSingleWarn=false -p:TreatWarningsAsErrors=false -p:GenerateDocumentationFile=false -o "$work/publish" -nologo >"$work/publish.log" 2>&1 \
  || { cat "$work/publish.log" >&2; exit 1; }
dotnet build "$root/bench/Outpost.Bench" -c Release -nologo -v q >/dev/null
binary="$work/publish/outpost"

# Two copies (separate page caches) on a file system nothing has read yet.
truncate -s $(( ($(stat -c %s "$binary") * 3 / 1048576 + 64) * 1048576 )) "$work/disk.img"
mkfs.ext4 -q "$work/disk.img"
loop="$(losetup -f --show "$work/disk.img")"
blockdev --setra 0 "$loop"
mkdir -p "$work/mnt"
mount "$loop" "$work/mnt"
mkdir -p "$work/mnt/agent" "$work/mnt/server" # each named outpost: the root command takes the file's name
cp "$binary" "$work/mnt/agent/outpost"; cp "$binary" "$work/mnt/server/outpost"
umount "$work/mnt"; mount "$loop" "$work/mnt"

export HOME="$work/home" OUTPOST_LIB_DIR="$work/lib"
mkdir -p "$HOME"
port=$((20000 + RANDOM % 10000))
"$work/mnt/server/outpost" server --data-dir "$work/server" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 & pids+=($!); server=$!
for _ in $(seq 1 240); do grep -q '^server:' "$work/server.log" && break; sleep 0.25; done
export OUTPOST_CONFIG="$work/server/config.yaml"
token=$("$binary" token create)
"$binary" apply -f "$root/samples/manifests" >/dev/null
"$work/mnt/agent/outpost" agent --server "https://127.0.0.1:$port" --token "$token" --name layout-1 --data-dir "$work/agent" --gateway "127.0.0.1:$((port + 1))" >"$work/agent.log" 2>&1 & pids+=($!); agent=$!
for app in hello echo sensor; do
  for _ in $(seq 1 240); do curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))/$app" && break; sleep 0.25; done
  curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))/$app" || { echo "layout.sh: the agent does not serve /$app" >&2; cat "$work/agent.log" >&2; exit 1; }
done
sleep 20 # idle: heartbeats, usage samples, the trim after start

dotnet "$root/bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll" layout "$binary" "$work/outpost.order" "$agent:$work/mnt/agent/outpost" "$server:$work/mnt/server/outpost"
gzip -9 -n -c "$work/outpost.order" >"$root/build/outpost.order.gz"
echo "layout.sh: wrote build/outpost.order.gz ($(stat -c %s "$root/build/outpost.order.gz") bytes)" >&2
