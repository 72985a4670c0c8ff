#!/usr/bin/env bash
# One batched GPU session (device time is scarce): build with 16 cores, run every test including
# the GPU ones, the compare harness and the kernel benchmarks, logging under $OUT (or out/gpu).
# Usage: tools/gpu_check.sh [build|test|compare|bench|all]... ; env BENCH_FILTER, COMPARE_ARGS.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
steps=${*:-all}
has() { [[ " $steps " == *" $1 "* || " $steps " == *" all "* ]]; }
log() { echo "== $* ($(date -u +%H:%M:%S))"; }
rc=0
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
if has build; then
  log build
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 &&
    cmake --build build-gpu -j16 >> "$OUT/build.log" 2>&1 || { echo "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1; }
fi
if has test; then
  log ctest
  ctest --test-dir build-gpu --output-on-failure -j8 --timeout 600 > "$OUT/ctest.log" 2>&1 || rc=1
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest.log" | tail -30
fi
if has compare; then
  log compare
  ./build-gpu/jambench compare ${COMPARE_ARGS:---quick} --out "$OUT/compare.json" > "$OUT/compare.log" 2>&1 || rc=1
  tail -60 "$OUT/compare.log"
fi
if has bench; then
  for b in build-gpu/bench/bench_*; do
    [ -x "$b" ] || continue
    n=$(basename "$b")
    log "$n"
    "$b" --benchmark_min_time=0.2 --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      ${BENCH_FILTER:+--benchmark_filter=$BENCH_FILTER} --benchmark_out="$OUT/$n.json" \
      --benchmark_out_format=json > "$OUT/$n.log" 2>&1 || rc=1
    tail -40 "$OUT/$n.log"
  done
fi
exit $rc
