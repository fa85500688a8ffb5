#!/usr/bin/env bash
# Builds the Python example filter (app.py) into a WebAssembly component for
# aigw's `filter-plugin` world at contract 0.1.0 (wit/0.1.0/filter.wit; the host
# loads 0.1.0 and 0.2.0 components side by side).
#
# Needs componentize-py on PATH; this script installs nothing:
#     pip install componentize-py==0.25.1
#
# Usage: build.sh OUT.wasm        (from any directory; OUT relative to the cwd)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi
if ! command -v componentize-py >/dev/null; then
    echo "componentize-py not found on PATH: pip install componentize-py==0.25.1" >&2
    exit 1
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/../../../wit/0.1.0"
out="$1"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"

# componentize-py runs the app once at build time (pre-initialisation) and
# writes __pycache__ next to it: build from a scratch copy to keep the tree clean.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp "$here/app.py" "$src/"

# componentize-py generates the `wit_world` bindings itself while building: no
# separate `componentize-py bindings` step is needed (that only writes stubs for
# IDEs and type checkers).
componentize-py -d "$wit" -w filter-plugin componentize -p "$src" app -o "$out"
