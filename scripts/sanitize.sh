#!/usr/bin/env bash
# The test suite and the fuzz suite against an extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer (CMake GFN_SANITIZE=ON), in a build folder of its own: the package's
# Python sources are staged next to the instrumented _C, and libasan is preloaded into Python.
# Fails on a failing test and on any sanitizer report (UBSan aborts at its first finding; the log
# is also searched, so a report from a process whose exit status is lost still fails the run).
#   scripts/sanitize.sh [pytest args...]    (default: the whole suite without the slow tests)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD_DIR:-build/sanitize}
start=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGFN_CUDA=OFF -DGFN_SANITIZE=ON \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$build" -j"${JOBS:-2}" >/dev/null
echo "sanitizer build took $(( $(date +%s) - start )) s"

stage="$build/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp -r gfncore "$stage/"
find "$stage/gfncore" -name '_C*.so' -delete
cp "$build"/_C*.so "$stage/gfncore/"

# libasan first; libstdc++ with it, or ASan finds no real __cxa_throw to intercept in a Python that
# does not link libstdc++ itself ("CHECK failed: ... real___cxa_throw") and aborts at the first throw.
libasan=$(${CXX:-c++} -print-file-name=libasan.so)
libstdcxx=$(${CXX:-c++} -print-file-name=libstdc++.so)
[ -f "$libasan" ] || { echo "libasan not found (${CXX:-c++} -print-file-name=libasan.so)"; exit 1; }
preload="$libasan $libstdcxx"
log="$build/sanitize.log"
export PYTHONPATH="$root/$stage${PYTHONPATH:+:$PYTHONPATH}"
# allocator_may_return_null: a request too large for ASan returns NULL, so torch raises its usual
# RuntimeError (what users get) instead of ASan aborting the process.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Sanitized code is slower: one kernel thread keeps the timing-free suites within CI's budget.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# The console script, not `python -m pytest`: the current folder must not shadow the staged package.
# --capture=sys: a sanitizer writes its report to fd 2, which then reaches the log even on an abort.
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-m "not slow")
(cd / && LD_PRELOAD="$preload" python -c "import gfncore._C as C, sys; \
  sys.exit(0 if C.__file__.startswith('$root/$stage/') else f'tests would import {C.__file__}')")
set +e
LD_PRELOAD="$preload" pytest -q --capture=sys -p no:cacheprovider "${args[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -qE "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$log"; then
  echo "== sanitizer reports found (see $log)"
  grep -nE "runtime error:|ERROR: AddressSanitizer|SUMMARY:" "$log" | head -20
  status=1
fi
echo "sanitizer run: exit status $status, $(( $(date +%s) - start )) s in all"
exit "$status"
