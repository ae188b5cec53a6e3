#!/bin/sh
# Builds the native weave-net CNI plugin into dist/cni/native/weave-net (the file
# cni/install.ts copies to the CNI bin dir as weave-net and weave-ipam).
# Static when the C library allows it (it runs on the node, outside our image).
# Usage: sh cni/native/build.sh [OUTPUT]   (run from the repository root)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../../dist/cni/native/weave-net"}
mkdir -p "$(dirname "$out")"
${CC:-cc} -O2 -Wall -Wextra -static -o "$out.tmp" "$here/weave-net.c" 2>/dev/null \
  || ${CC:-cc} -O2 -Wall -Wextra -o "$out.tmp" "$here/weave-net.c"
mv "$out.tmp" "$out"
chmod 0755 "$out"
