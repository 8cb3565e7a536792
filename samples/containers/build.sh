#!/usr/bin/env bash
# Builds the container sample's image: samples/containers/hello/hello.c, statically linked, as
# the only file of a one-layer OCI image, written as an OCI archive (what `skopeo copy
# oci-archive:...` and `outpost push` take). Needs gcc and the C library's static archive
# (Debian: gcc libc6-dev), tar, gzip and sha256sum; the result is byte-for-byte reproducible.
#
#   samples/containers/build.sh [OUT]     OUT defaults to samples/containers/hello.tar
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/hello.tar}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

mkdir -p "$work/rootfs" "$work/layout/blobs/sha256"
gcc -static -Os -Wall -Wextra -Werror -s -o "$work/rootfs/hello" "$here/hello/hello.c"

blob() { # stores stdin as a blob, prints its digest and size
  local tmp="$work/blob" digest
  cat > "$tmp"
  digest="$(sha256sum "$tmp" | cut -d' ' -f1)"
  mv "$tmp" "$work/layout/blobs/sha256/$digest"
  echo "sha256:$digest $(stat -c %s "$work/layout/blobs/sha256/$digest")"
}

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" hello
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
read -r layer layer_size < <(gzip -n -9 < "$work/layer.tar" | blob)
read -r config config_size < <(printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/hello"],"Env":["PATH=/"],"ExposedPorts":{"8080/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$arch" "$diff_id" | blob)
read -r manifest manifest_size < <(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' "$config" "$config_size" "$layer" "$layer_size" | blob)
printf '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$manifest" "$manifest_size" > "$work/layout/index.json"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out" oci-layout index.json blobs
echo "built $out: image $manifest (linux/$arch, $(stat -c %s "$out") bytes)"
