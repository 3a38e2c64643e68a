#!/usr/bin/env bash
# The GPU checks of one lent-device session, in one command (see benchmarks/RESULTS.md).
# Runs with the device's own python3 (torch preinstalled); segedu from the checkout via PYTHONPATH.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $out/gpu.txt
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)' | tee -a $out/gpu.txt
timeout 60 python3 benchmarks/bench_metrics.py 2>&1 | tee $out/bench_metrics.txt
timeout 90 python3 benchmarks/bench_models.py --device cuda --path fast --batch-size 16 --size 512 --steps 10 --warmup 3 2>&1 | tee $out/bench_models_fast.txt
timeout 60 python3 benchmarks/bench_models.py --device cuda --path plain --batch-size 16 --size 512 --steps 10 --warmup 3 2>&1 | tee $out/bench_models_plain.txt
timeout 150 python3 benchmarks/bench_models.py --device cuda --path fast --compile --batch-size 16 --size 512 --steps 10 --warmup 3 2>&1 | tee $out/bench_models_compile.txt
