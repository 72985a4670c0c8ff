#!/usr/bin/env bash
# Nsight Compute reports of single kernel launches inside the benchmarks (GPU machine only; the
# Firecracker machines read hardware counters, see gpu-workflow.md). Run after
# `tools/gpu_check.sh build`. Each line of $PROFILES (or the defaults below) is
#   name;bench binary;benchmark filter;kernel regex;launches to skip
# and writes $OUT/ncu_<name>.txt: speed of light, occupancy, warp stall reasons, instruction mix
# and the source lines (SASS) with the most stall samples. Clocks are left alone
# (--clock-control none), as METHOD.md asks.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
DEFAULT="scan_b16;bench_mamba;scan/D=8192/N=16/B=16/L=8192/single;scan_kernel;1
scan_b1;bench_mamba;scan/D=8192/N=16/B=1/L=8192/single;scan_kernel;1"
rc=0
while IFS=';' read -r name bin filter kernel skip; do
  [ -n "$name" ] || continue
  echo "== ncu $name ($bin, $filter, $kernel)"
  timeout 300 "$NCU" --clock-control none --kernel-name "regex:$kernel" \
    --launch-skip "${skip:-1}" --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis --section InstructionStats --section SourceCounters --print-details all \
    "build-gpu/bench/$bin" --benchmark_filter="$filter" --benchmark_min_time=1x \
    > "$OUT/ncu_$name.txt" 2>&1 || rc=1
  grep -E "Duration|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|One or More" \
    "$OUT/ncu_$name.txt" | head -12
done <<< "${PROFILES:-$DEFAULT}"
exit $rc
