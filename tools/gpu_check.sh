#!/usr/bin/env bash
# One batched GPU session (device time is scarce): build with 16 cores, then any of
#   test     every ctest test, the GPU ones included (non-big registry cases)
#   big      `jambench compare` on the big=1 cases only (Jamba widths, long L), in the background
#            of `test` when both are asked for
#   compare  `jambench compare --quick`
#   bench    every bench/bench_* (Google Benchmark JSON + logs)
# logging under $OUT (or out/gpu). Env: BENCH_FILTER, COMPARE_ARGS, BENCH_ARGS.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
steps=${*:-build test big compare bench}
has() { [[ " $steps " == *" $1 "* ]]; }
log() { echo "== $* ($(date -u +%H:%M:%S))"; }
rc=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv \
  > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
if has build; then
  log build
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 &&
    cmake --build build-gpu -j16 >> "$OUT/build.log" 2>&1 ||
    { echo "BUILD FAILED"; grep -E "error|Error" "$OUT/build.log" | head -30; exit 1; }
  log built
fi
big_pid=
if has big; then
  log "compare big (background)"
  ./build-gpu/jambench compare -p 'big=1' --out "$OUT/compare_big.json" --dump-dir "$OUT/dumps" \
    > "$OUT/compare_big.log" 2>&1 &
  big_pid=$!
fi
if has test; then
  log ctest
  ctest --test-dir build-gpu --output-on-failure -j6 --timeout 400 > "$OUT/ctest.log" 2>&1 || rc=1
  grep -E "tests passed|tests failed|\(Failed\)|Timeout|SEGFAULT" "$OUT/ctest.log" | tail -30
  log ctest done
fi
if has compare; then
  log compare
  ./build-gpu/jambench compare ${COMPARE_ARGS:---quick} --out "$OUT/compare.json" \
    --dump-dir "$OUT/dumps" > "$OUT/compare.log" 2>&1 || rc=1
  grep -vE " pass " "$OUT/compare.log" | tail -40
  log compare done
fi
if [ -n "$big_pid" ]; then
  wait "$big_pid" || rc=1
  log big done
  tail -45 "$OUT/compare_big.log"
fi
if has bench; then
  for b in build-gpu/bench/bench_*; do
    [ -x "$b" ] || continue
    n=$(basename "$b")
    log "$n"
    "$b" --benchmark_min_time=0.1 ${BENCH_ARGS:-} \
      ${BENCH_FILTER:+--benchmark_filter=$BENCH_FILTER} --benchmark_out="$OUT/$n.json" \
      --benchmark_out_format=json > "$OUT/$n.log" 2>&1 || rc=1
    tail -40 "$OUT/$n.log"
  done
fi
exit $rc
