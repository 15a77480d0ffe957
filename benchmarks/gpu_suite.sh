#!/bin/bash
# Issue 12 benchmark 5 on a GPU machine: benchmarks 1 and 2 (floor, FedAvg) RUNS times and benchmark 4 (scale) once,
# on the CPU and on CUDA in two processes side by side (one torch thread each), then the CPU/CUDA agreement tests.
# Usage: bash benchmarks/gpu_suite.sh OUTDIR [RUNS=3]; JSON rows and logs land in OUTDIR.
set -u
OUT=$1; RUNS=${2:-3}; PEERS=${PEERS:-"1024 8192"}; SCALE=${SCALE:-"10000 100000"}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
mkdir -p "$OUT"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; lscpu | grep -m1 "Model name"
  python -c "import sys, torch; print(sys.version.split()[0], torch.__version__)"; uptime; } > "$OUT/machine.txt" 2>&1
chain() {  # device
  for run in $(seq "$RUNS"); do
    python benchmarks/run_all.py --only floor fedavg --device "$1" --worlds datacenter home --algorithms adpsgd \
        --peers $PEERS --steps 10 --json "$OUT/$1_floor_$run.json"
  done
  python benchmarks/run_all.py --only scale --device "$1" --scale-peers $SCALE --steps 2 --scale-limit-s 150 \
      --json "$OUT/$1_scale.json"
}
chain cpu > "$OUT/cpu.log" 2>&1 &
cpu=$!
chain cuda > "$OUT/cuda.log" 2>&1
wait $cpu
timeout 300 python -m pytest tests/test_device.py -q -p no:cacheprovider > "$OUT/test_device.log" 2>&1
tail -n 3 "$OUT/test_device.log"
