#!/bin/sh
# Builds the static weavewait helper into dist/proxy/weavewait/weavewait
# (the path proxy/weavewait-path.ts resolves by default).
# Usage: sh proxy/weavewait/build.sh [OUTPUT]   (run from the repository root)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../../dist/proxy/weavewait/weavewait"}
mkdir -p "$(dirname "$out")"
${CC:-gcc} -static -Os -s -Wall -Wextra -o "$out.tmp" "$here/weavewait.c"
mv "$out.tmp" "$out"
chmod 0755 "$out"
