#!/usr/bin/env bash
# One batched GPU session (device time is scarce: one call is at most 10 minutes). Steps:
#   build    configure and build with Ninja on 16 cores into build-gpu/
#   test     ctest, GPU tests included (they run every non-big registry case); TESTS=regex limits it
#   big      `jambench compare` on the big=1 cases (Jamba widths, long L), one process per case, 8 at
#            a time, in the background of the steps after it (their CPU references take 15-130 s)
#   compare  `jambench compare --quick`
#   bench    every bench/bench_* (BENCH_FILTER=regex, BENCH_ARGS=...; bench_attention gets --peer)
# OPS=OP[,OP] limits big and compare to those ops. Logs and JSON under $OUT (or out/gpu).
# PACK=1 packs everything under $OUT into $OUT/logs.tgz at the end and removes the loose files
# (the device tool brings back only a handful of files per call).
# Example (ctest names are CudaMamba.*, CudaMoe.*, ...): OPS=CONV1D,SSM_SCAN TESTS=CudaMamba BENCH_FILTER='scan|conv/' tools/gpu_check.sh build test big compare bench
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
steps=${*:-build test big compare bench}
for st in $steps; do
  case $st in
    build | test | big | compare | bench) ;;
    *) echo "gpu_check.sh: unknown step '$st' (steps: build test big compare bench)" >&2; exit 2 ;;
  esac
done
has() { [[ " $steps " == *" $1 "* ]]; }
S=$(date +%s)
log() { echo "== [$(($(date +%s) - S))s] $*"; }
ops=${OPS:+-o $OPS}
rc=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv \
  > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
if has build; then
  log build
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 &&
    cmake --build build-gpu -j16 >> "$OUT/build.log" 2>&1 ||
    { echo "BUILD FAILED"; (grep -iE -A3 "error|FAILED:" "$OUT/build.log" ||
      tail -40 "$OUT/build.log") | head -40; exit 1; }
fi
big_pid=
if has big; then
  log "compare big (background)"
  mkdir -p "$OUT/big"
  if ! ./build-gpu/jambench compare -p 'big=1' $ops --list-cases > "$OUT/big/cases.txt" \
    2> "$OUT/big/list.err"; then
    echo "big: no cases listed: $(cat "$OUT/big/list.err")"
    rc=1
  else
    nl -nln -w1 -s' ' "$OUT/big/cases.txt" |
      xargs -P 8 -L 1 sh -c 'timeout 300 ./build-gpu/jambench compare -o "$2" --out "$0/$1.json" \
        --dump-dir "$0/dumps" > "$0/$1.log" 2>&1; echo "big case $1 $2: rc=$?"' "$OUT/big" \
      > "$OUT/big/rc.txt" 2>&1 &
    big_pid=$!
  fi
fi
if has test; then
  log ctest
  ctest --test-dir build-gpu --output-on-failure -j6 --timeout 400 ${TESTS:+-R "$TESTS"} \
    > "$OUT/ctest.log" 2>&1 || rc=1
  grep -E "tests passed|tests failed|\(Failed\)|Timeout|SEGFAULT" "$OUT/ctest.log" | tail -30
fi
if has compare; then
  log compare
  ./build-gpu/jambench compare --quick $ops --out "$OUT/compare.json" --dump-dir "$OUT/dumps" \
    > "$OUT/compare.log" 2>&1 || rc=1
  grep -vE " pass " "$OUT/compare.log" | tail -40
fi
if [ -n "$big_pid" ]; then
  wait "$big_pid"
  log "big done"
  grep -v "rc=0" "$OUT/big/rc.txt" && rc=1
  grep -h -E " (pass|fail|error) " "$OUT"/big/*.log
fi
if has bench; then
  for b in build-gpu/bench/bench_*; do
    [ -x "$b" ] || continue
    n=$(basename "$b")
    log "$n"
    extra=
    [ "$n" = bench_attention ] && extra=--peer
    "$b" $extra --benchmark_min_time=0.1s ${BENCH_ARGS:-} \
      ${BENCH_FILTER:+"--benchmark_filter=$BENCH_FILTER"} --benchmark_out="$OUT/$n.json" \
      --benchmark_out_format=json > "$OUT/$n.log" 2>&1 || rc=1
    tail -40 "$OUT/$n.log"
  done
fi
log done
if [ "${PACK:-0}" = 1 ]; then
  (cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz . && find . -type f ! -name logs.tgz -delete)
fi
exit $rc
