#!/usr/bin/env bash
# Builds the Python and JavaScript component guests (WebAssembly components
# implementing wit/task.wit), installing their toolchains when missing:
#   componentize-py 0.25.1 (PyPI) into a venv at target/guest/tools/venv,
#   @bytecodealliance/componentize-js 0.23.0 (npm) into target/guest/tools/npm.
# Idempotent: a tool already at the pinned version is not reinstalled, and a
# component newer than its sources (and the WIT) is not rebuilt.
# Output: target/guest/components/{NAME_py,NAME_js}.wasm for every
# guest/python/NAME/app.py and guest/js/NAME/app.js.
#
# A task folder may hold `capabilities.txt`: the host capabilities the task
# calls, one name a line. It is stored in the component as the custom section
# `sandpool.capabilities` (the same section an ABI v1 module carries), which
# the host reads at load: a pool that does not grant every name refuses the
# task, naming the missing one (docs/guests.md, "Capabilities").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/target/guest/tools"
out="$root/target/guest/components"
mkdir -p "$tools" "$out"

PY_VERSION=0.25.1
JS_VERSION=0.23.0

# python3 with venv, and node with npm: from Debian when missing.
need_apt=()
command -v python3 >/dev/null && python3 -c "import ensurepip, venv" 2>/dev/null \
    || need_apt+=(python3 python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
    echo "build-components: installing ${need_apt[*]} (Debian packages)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >&2
fi

venv="$tools/venv"
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "$PY_VERSION"; then
    echo "build-components: installing componentize-py $PY_VERSION (PyPI) into $venv" >&2
    # --clear: a venv left broken (moved, or Python upgraded) is made anew.
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$PY_VERSION" >&2
fi

npm_dir="$tools/npm"
js_pkg="$npm_dir/node_modules/@bytecodealliance/componentize-js/package.json"
if ! grep -q "\"version\": \"$JS_VERSION\"" "$js_pkg" 2>/dev/null; then
    echo "build-components: installing @bytecodealliance/componentize-js $JS_VERSION (npm) into $npm_dir" >&2
    mkdir -p "$npm_dir"
    [ -f "$npm_dir/package.json" ] || echo '{"private": true}' >"$npm_dir/package.json"
    npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
        "@bytecodealliance/componentize-js@$JS_VERSION" >&2
fi

# up_to_date OUTPUT INPUT...: whether OUTPUT exists and is newer than every INPUT.
up_to_date() {
    local target=$1; shift
    [ -f "$target" ] || return 1
    [ -z "$(find "$@" -newer "$target" -print -quit)" ]
}

# declare_capabilities WASM DIR: appends DIR/capabilities.txt to WASM as the
# custom section `sandpool.capabilities` (names each ended by `\n`).
declare_capabilities() {
    local wasm=$1 list=$2/capabilities.txt
    [ -f "$list" ] || return 0
    python3 - "$wasm" "$list" <<'PY'
import sys

def leb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

wasm, listing = sys.argv[1], sys.argv[2]
names = [l.strip() for l in open(listing, encoding="utf-8") if l.strip() and not l.startswith("#")]
name = b"sandpool.capabilities"
body = leb(len(name)) + name + "".join(n + "\n" for n in names).encode()
with open(wasm, "ab") as f:
    f.write(b"\x00" + leb(len(body)) + body)
PY
}

for dir in guest/python/*/; do
    [ -f "$dir/app.py" ] || continue
    name=$(basename "$dir")
    wasm="$out/${name}_py.wasm"
    up_to_date "$wasm" "$dir" guest/python/sandpool_task.py wit scripts/build-components.sh && continue
    echo "build-components: componentize-py $dir -> $wasm" >&2
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH= "$venv/bin/componentize-py" -d wit -w task componentize app \
        -p "$dir" -p guest/python -o "$wasm.tmp" >&2
    declare_capabilities "$wasm.tmp" "$dir"
    mv "$wasm.tmp" "$wasm"
done

for dir in guest/js/*/; do
    [ -f "$dir/app.js" ] || continue
    name=$(basename "$dir")
    wasm="$out/${name}_js.wasm"
    up_to_date "$wasm" "$dir" guest/js/sandpool_task.js wit scripts/build-components.sh && continue
    echo "build-components: componentize-js $dir -> $wasm" >&2
    # componentize-js takes one source file: the helper modules (their
    # `export`s dropped), then the task's app.js, its relative imports dropped.
    bundle="$out/${name}_js.bundle.js"
    {
        for helper in guest/js/sandpool_task.js "$dir"*.js; do
            [ "$(basename "$helper")" = app.js ] && continue
            sed -e 's/^export //' "$helper"
        done
        grep -v "^import .* from ['\"]\.\.\?/[^'\"]*['\"];\?$" "$dir/app.js"
    } >"$bundle"
    # A relative import left in the bundle (one of app.js's spread over
    # several lines, or any in another file) would fail inside
    # componentize-js with a vaguer message.
    if grep -nE "^[[:space:]]*(import|export|[}]).*from ['\"][.][.]?/" "$bundle" >&2; then
        echo "build-components: $dir: relative imports are inlined, so app.js's must each fit on one line and other files may have none" >&2
        exit 1
    fi
    node "$npm_dir/node_modules/@bytecodealliance/componentize-js/src/cli.js" "$bundle" \
        -w wit -n task -d http fetch-event -o "$wasm.tmp" >&2
    declare_capabilities "$wasm.tmp" "$dir"
    mv "$wasm.tmp" "$wasm"
done
