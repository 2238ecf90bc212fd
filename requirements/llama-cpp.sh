#!/usr/bin/env bash
# Install llama-cpp-python, compiled for this CPU but never with ggml's AMX path.
#
#   requirements/llama-cpp.sh PYTHON
#
# Why a script and not a line in pyproject.toml:
# - llama-cpp-python has no wheel for this platform; pip compiles it with
#   -march=native. On Sapphire/Granite Rapids Xeons that turns on ggml's AMX
#   backend, whose repacked 4-bit weights crash on the first matmul
#   (llama.cpp issue 20824; measured here: SIGSEGV in the score stage). The
#   explicit -mno-amx-* flags win over -march=native whatever their order, so
#   the build keeps every other native kernel (AVX-512, VNNI) at full speed.
# - pip caches a wheel it compiled and reuses it when CMAKE_ARGS change, and a
#   wheel compiled on one CPU may SIGILL on another. So the wheel is built
#   without pip's cache into a wheelhouse keyed by everything that changes the
#   binary (version, flags, compiler, Python, the CPU's feature flags); a new
#   key builds a new wheel, the same key reuses it.
set -euo pipefail

PY=${1:?usage: requirements/llama-cpp.sh PYTHON}
HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=$(sed -n 's/^llama_cpp_python==//p' "$HERE/constraints.txt")
[ -n "$VERSION" ] || { echo "llama-cpp.sh: no llama_cpp_python pin in constraints.txt" >&2; exit 2; }

NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
export CFLAGS="${CFLAGS:-} $NO_AMX"
export CXXFLAGS="${CXXFLAGS:-} $NO_AMX"
export CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"

cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | sort | tr '\n' ' ' || true)
key=$(printf '%s\n' "$VERSION" "$CFLAGS" "$CXXFLAGS" "$CMAKE_ARGS" "$(uname -m)" \
        "$(cc --version 2>/dev/null | head -1)" "$("$PY" -c 'import sys; print(sys.version)')" \
        "$cpu_flags" | sha256sum | cut -c1-16)

HOUSE="${TINYFORGE_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/tinyforge/wheels}/llama-cpp-$key"
VENV_KEY="$("$PY" -c 'import sys; print(sys.prefix)')/.llama-cpp-build"

if [ "$(cat "$VENV_KEY" 2>/dev/null)" = "$key" ]; then
    exit 0                                     # this venv already has exactly this build
fi

if ! ls "$HOUSE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "llama-cpp.sh: compiling llama-cpp-python $VERSION for this CPU without AMX (about 8 minutes on 2 cores; once per machine)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -w "$tmp"
    mkdir -p "$HOUSE"
    mv "$tmp"/llama_cpp_python-*.whl "$HOUSE"/
fi

# --force-reinstall: a venv holding a build made another way gets this one.
"$PY" -m pip install -q --force-reinstall --no-deps "$HOUSE"/llama_cpp_python-"$VERSION"-*.whl
"$PY" -m pip install -q -c "$HERE/constraints.txt" "llama-cpp-python==$VERSION" --find-links "$HOUSE"
echo "$key" > "$VENV_KEY"
