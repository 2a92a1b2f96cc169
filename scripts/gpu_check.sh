#!/usr/bin/env bash
# The GPU proof, for a machine with an NVIDIA GPU, the CUDA toolkit (nvcc) and cuDNN:
#   1. builds catdog with `--features cuda,cudnn` (CATDOG_GPU_FEATURES=cuda builds without cuDNN);
#   2. runs the whole test suite with the device-parametrised tests on the GPU (CATDOG_TEST_DEVICE=cuda):
#      tests/portable_parity.rs then holds CUDA against the fast CPU path (fixture forward, every gradient of a
#      150×150 block5 fine-tune step, a 3-epoch run's history and weights within 1e-3, a checkpoint written on the
#      GPU predicting the same on the CPU within 1e-5);
#   3. times `catdog bench forward` and `bench train` on the GPU and, as the same run's baseline, on the CPU, in
#      fp32 and with `--precision bf16` (candle's bf16 convolutions on the GPU; tests/bf16.rs also runs its
#      portable path there).
# Everything it prints also goes to target/gpu-check/ (one log per step) for the README's device section.
set -euo pipefail
cd "$(dirname "$0")/.."
features="${CATDOG_GPU_FEATURES:-cuda,cudnn}"
out=target/gpu-check
mkdir -p "$out"
step() {
  local name=$1
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.log"
}
step gpu nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step cpu bash -c "lscpu | grep -E 'Model name|^CPU\\(s\\)'"
step build cargo build --release --features "$features"
step tests env CATDOG_TEST_DEVICE=cuda cargo test --release --features "$features"
bin=target/release/catdog
step bench-forward-cuda "$bin" bench forward --device cuda --batch 32 --size 150 --iters 5 --no-compare
step bench-forward-cpu "$bin" bench forward --device cpu --batch 32 --size 150 --iters 3 --no-compare
step bench-train-cuda "$bin" bench train --device cuda --batch 32 --size 150 --steps 5 --cache both
step bench-train-cpu "$bin" bench train --device cpu --batch 32 --size 150 --steps 3 --cache both
step bench-forward-cuda-bf16 "$bin" bench forward --device cuda --precision bf16 --batch 32 --size 150 --iters 5 --no-compare
step bench-train-cuda-bf16 "$bin" bench train --device cuda --precision bf16 --batch 32 --size 150 --steps 5 --cache both
echo "gpu_check: all steps passed; logs in $out/"
