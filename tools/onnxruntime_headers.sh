#!/usr/bin/env bash
# Prints a folder holding ONNX Runtime's C API header (onnxruntime_c_api.h), which setup.py needs to
# build the ONNX Runtime op library (the onnxruntime wheel ships no headers). Uses the system's
# libonnxruntime-dev where installed, else fetches Debian's package (MIT; headers only are used,
# checked by SHA-256) into a cache outside the repository.
#   DCF_ONNXRUNTIME_INCLUDE=$(tools/onnxruntime_headers.sh) python -m pip install -e .
set -euo pipefail
for dir in /usr/include/onnxruntime /usr/local/include/onnxruntime; do
    [[ -f $dir/onnxruntime_c_api.h ]] && { echo "$dir"; exit 0; }
done
URL=http://deb.debian.org/debian/pool/main/o/onnxruntime/libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb
SHA256=14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/dcf/onnxruntime-1.21.0
INCLUDE=$CACHE/usr/include/onnxruntime
if [[ ! -f $INCLUDE/onnxruntime_c_api.h ]]; then
    mkdir -p "$CACHE"
    if command -v curl > /dev/null; then
        curl -sSfL --retry 3 -o "$CACHE/dev.deb" "$URL"
    else  # python:*-slim images have no curl
        python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$CACHE/dev.deb"
    fi
    echo "$SHA256  $CACHE/dev.deb" | sha256sum --check --quiet >&2
    dpkg-deb -x "$CACHE/dev.deb" "$CACHE"
    rm "$CACHE/dev.deb"
fi
echo "$INCLUDE"
