#!/usr/bin/env bash
# In-place development build: compiles gfncore/_C*.so next to the Python sources, so that
# `python -m pytest` from the repository root imports this tree (no pip install needed).
# GFN_CUDA=ON|OFF|AUTO (default OFF here: fast CPU-only rebuilds), BUILD_DIR to choose the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/dev}
# its build dependencies (pyproject.toml's build-system.requires; pip install . fetches them itself)
if ! python -c 'import pybind11' 2>/dev/null; then
  echo "dev-build: installing pybind11 (a build dependency) into $(command -v python)"
  python -m pip install -q "pybind11>=2.12"
fi
if ! command -v cmake >/dev/null 2>&1; then
  echo "dev-build: installing cmake (a build dependency) into $(command -v python)"
  python -m pip install -q "cmake>=3.18"
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGFN_CUDA="${GFN_CUDA:-OFF}" \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$build" -j"${JOBS:-2}"
# copy, then rename over the old one: a process that loaded the old extension keeps its file
for so in "$build"/_C*.so; do
  cp "$so" "gfncore/.$(basename "$so").tmp" && mv -f "gfncore/.$(basename "$so").tmp" "gfncore/$(basename "$so")"
done
