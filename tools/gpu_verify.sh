#!/usr/bin/env bash
# Verification run used on the GPU machine after changing the conv and attention kernels (fits in
# one 600 s device call): build, the big=1 CONV1D / ATTN_* compare cases one per process (their
# CPU references take 15-50 s each, so 8 run in parallel), the Mamba and attention GPU tests,
# `compare --quick` of those ops, then the conv and attention benchmarks (attention with the torch
# SDPA peer). Logs under $OUT. Usage on the device: OUT=$OUT bash tools/gpu_verify.sh
set -u; OUT=${OUT:-out/gpu}; mkdir -p "$OUT"; S=$(date +%s); t() { echo "[$(( $(date +%s)-S ))s] $*"; }
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > $OUT/build.log 2>&1 && cmake --build build-gpu -j16 >> $OUT/build.log 2>&1 || { grep -E "error" $OUT/build.log | head; exit 1; }
t built
./build-gpu/jambench compare -p 'big=1' -o CONV1D,ATTN_PREFILL,ATTN_DECODE --list-cases 2>/dev/null > $OUT/bigcases.txt
mkdir -p $OUT/big
nl -nln -w1 -s' ' $OUT/bigcases.txt | xargs -P 8 -L 1 sh -c 'timeout 200 ./build-gpu/jambench compare -o "$1" > $OUT/big/$0.log 2>&1; echo "big $0 rc=$?"' > $OUT/big_rc.txt 2>&1 &
BP=$!
(./build-gpu/tests/test_cuda_attention > $OUT/test_cuda_attention.log 2>&1; echo "test_cuda_attention rc=$?"; tail -2 $OUT/test_cuda_attention.log) &
TP=$!
./build-gpu/tests/test_cuda_mamba > $OUT/test_cuda_mamba.log 2>&1; t "test_cuda_mamba rc=$?"; tail -2 $OUT/test_cuda_mamba.log
wait $TP; t "attention test done"
./build-gpu/jambench compare --quick -o CONV1D,CONV1D_UPDATE,MAMBA_LAYER,ATTN_PREFILL,ATTN_DECODE,ATTN_LAYER --out $OUT/compare_q.json > $OUT/compare_q.log 2>&1; t "compare quick rc=$?"; grep -v " pass " $OUT/compare_q.log | tail -6
wait $BP; t "big done"; cat $OUT/big_rc.txt; grep -h -E " (pass|fail|error) " $OUT/big/*.log
timeout 60 ./build-gpu/bench/bench_mamba --benchmark_filter='conv/' --benchmark_out=$OUT/bench_conv.json --benchmark_out_format=json > $OUT/bench_conv.log 2>&1; t "bench conv rc=$?"
grep -E "_median" $OUT/bench_conv.log | awk '{o=$1" "$2" "$3; for(i=4;i<=NF;i++) if($i ~ /^(x_copy)=/) o=o" "$i; print o}'
timeout 120 ./build-gpu/bench/bench_attention --peer --benchmark_min_time=0.1s --benchmark_out=$OUT/bench_attention.json --benchmark_out_format=json > $OUT/bench_attention.log 2>&1; t "bench attn rc=$?"
grep -E "^attn_decode|^prefill|^decode|^shape" $OUT/bench_attention.log | cut -c1-160
