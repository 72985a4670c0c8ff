#!/usr/bin/env bash
# Verification run for the conv and scan kernels (fits one device call of ~5 minutes): build, the
# big=1 CONV1D / SSM_SCAN compare cases one per process in the background (CPU references take
# 15-120 s each), test_cuda_mamba, `compare --quick` of the Mamba ops, then the scan and conv
# benchmarks. Logs under $OUT. Usage on the device: OUT=$OUT bash tools/gpu_verify_mamba.sh
set -u; OUT=${OUT:-out/gpu}; mkdir -p "$OUT"; S=$(date +%s); t() { echo "[$(( $(date +%s)-S ))s] $*"; }
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > $OUT/build.log 2>&1 && cmake --build build-gpu -j16 >> $OUT/build.log 2>&1 || { grep -E "error" $OUT/build.log | head; exit 1; }
t built
./build-gpu/jambench compare -p 'big=1' -o CONV1D,SSM_SCAN --list-cases 2>/dev/null > $OUT/bigcases.txt
mkdir -p $OUT/big
nl -nln -w1 -s' ' $OUT/bigcases.txt | xargs -P 8 -L 1 sh -c 'timeout 200 ./build-gpu/jambench compare -o "$1" > $OUT/big/$0.log 2>&1; echo "big $0 rc=$?"' > $OUT/big_rc.txt 2>&1 &
BP=$!
./build-gpu/tests/test_cuda_mamba > $OUT/test_cuda_mamba.log 2>&1; t "test_cuda_mamba rc=$?"; tail -2 $OUT/test_cuda_mamba.log; grep -E "Failure|FAILED" $OUT/test_cuda_mamba.log | head -5
./build-gpu/jambench compare --quick -o CONV1D,CONV1D_UPDATE,SSM_SCAN,SSM_UPDATE,MAMBA_LAYER --out $OUT/compare_q.json > $OUT/compare_q.log 2>&1; t "compare quick rc=$?"; grep -v " pass " $OUT/compare_q.log | tail -6
grep -E "^SSM_SCAN" $OUT/compare_q.log | sort -k4 -g | tail -2
timeout 90 ./build-gpu/bench/bench_mamba --benchmark_filter='scan/.*/(auto|single)|conv/' --benchmark_min_time=0.1s --benchmark_out=$OUT/bench_mamba.json --benchmark_out_format=json > $OUT/bench_mamba.log 2>&1; t "bench rc=$?"
grep -E "_median" $OUT/bench_mamba.log | awk '{o=$1" "$2" "$3; for(i=4;i<=NF;i++) if($i ~ /^(speedup_vs_mamba_ssm|x_copy)=/) o=o" "$i; print o}'
wait $BP; t "big done"; cat $OUT/big_rc.txt | tr '\n' ' '; echo; grep -h -E " (pass|fail|error) " $OUT/big/*.log
