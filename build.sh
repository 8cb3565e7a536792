#!/usr/bin/env bash
# Builds the release binaries: one NativeAOT `outpost` per architecture, holding every role and
# carrying its native libraries (libwasmtime.so, libe_sqlite3.so) inside itself.
#
#   ./build.sh                 # dist/linux-x64/outpost and dist/linux-arm64/outpost
#   ./build.sh linux-x64       # one architecture
#
# ARM64 is cross-compiled on x86-64 with Debian's aarch64 toolchain, installed here when missing
# (as root, from apt). The AOT compiler's warnings are errors, except the ones listed with a reason
# in build/aot-warnings.allowed: a new warning from a dependency fails the build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rids=("$@")
[[ ${#rids[@]} -gt 0 ]] || rids=(linux-x64 linux-arm64)

need_apt=()
command -v gzip >/dev/null || need_apt+=(gzip)
for rid in "${rids[@]}"; do
  case "$rid" in
    linux-x64) command -v clang >/dev/null || command -v gcc >/dev/null || need_apt+=(clang) ;;
    linux-arm64)
      # The cross link is clang --target=aarch64-linux-gnu (gcc takes no --target): the clang package gives `clang`.
      command -v clang >/dev/null || need_apt+=(clang)
      command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
    *) echo "build.sh: unknown target '$rid': use linux-x64 or linux-arm64" >&2; exit 2 ;;
  esac
done
if [[ ${#need_apt[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "build.sh: needs ${need_apt[*]} (apt-get install them as root, then run again)" >&2
    exit 1
  fi
  echo "build.sh: installing ${need_apt[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >&2 || {
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >&2
  }
fi

for rid in "${rids[@]}"; do
  out="$root/dist/$rid"
  log="$(mktemp)"
  args=(-c Release -r "$rid" -p:PublishAot=true -p:TrimmerSingleWarn=false -p:TreatWarningsAsErrors=false
    -p:StripSymbols=true -p:DebugType=none -p:GenerateDocumentationFile=false -o "$out" -nologo)
  if [[ "$rid" == linux-arm64 && "$(uname -m)" != aarch64 ]]; then
    # Cross: clang --target=aarch64-linux-gnu finds Debian's aarch64 gcc toolchain (crt files,
    # libgcc, the bfd linker); its objcopy and strip handle the arm64 objects.
    args+=(-p:ObjCopyName=aarch64-linux-gnu-objcopy -p:NativeStrip=aarch64-linux-gnu-strip)
  fi
  echo "build.sh: publishing $rid" >&2
  rm -rf "$out"
  if ! dotnet publish "$root/src/Outpost" "${args[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: publishing $rid failed" >&2
    exit 1
  fi
  # Every AOT and trim warning, one per line, less the allowed ones; the product's own code is
  # already held to zero by the analyzers at build time (IsAotCompatible).
  unexpected="$(grep -E 'warning (IL|CS)[0-9]+' "$log" | sed -E 's/ \[[^]]*\]$//; s/^.*warning ((IL|CS)[0-9]+: )/\1/; s/ +$//' | sort -u \
    | grep -vxF -f <(grep -v '^#' "$root/build/aot-warnings.allowed" | sed '/^$/d') || true)"
  if [[ -n "$unexpected" ]]; then
    echo "build.sh: $rid: warnings not in build/aot-warnings.allowed:" >&2
    echo "$unexpected" >&2
    exit 1
  fi
  rm -f "$log"
  # The one file is the product; beside it only ONNX Runtime, an optional extra (inference on
  # the node: copy it next to outpost, or leave it out). Anything else published is not needed.
  find "$out" -mindepth 1 -not -name outpost -not -name libonnxruntime.so -delete
  size=$(stat -c %s "$out/outpost")
  echo "dist/$rid/outpost $(( (size + 524288) / 1048576 )) MB"
  [[ -f "$out/libonnxruntime.so" ]] && echo "dist/$rid/libonnxruntime.so $(( ($(stat -c %s "$out/libonnxruntime.so") + 524288) / 1048576 )) MB (optional: WASI-NN)"
done
