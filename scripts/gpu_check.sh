#!/usr/bin/env bash
# The GPU proof, for a machine with an NVIDIA GPU, the CUDA toolkit (nvcc) and cuDNN:
#   1. builds catdog with `--features cuda,cudnn` (CATDOG_GPU_FEATURES=cuda builds without cuDNN);
#   2. runs the whole test suite with the device-parametrised tests on the GPU (CATDOG_TEST_DEVICE=cuda):
#      tests/portable_parity.rs then holds CUDA against the fast CPU path (fixture forward, every gradient of a
#      150×150 block5 fine-tune step, a 3-epoch run's history and weights within 1e-3, a checkpoint written on the
#      GPU predicting the same on the CPU within 1e-5);
#   3. times `catdog bench forward` and `bench train` on the GPU and, as the same run's baseline, on the CPU, in
#      fp32, `--precision bf16` (candle's bf16 convolutions on the GPU; tests/bf16.rs also runs its portable path
#      there) and `--precision fp16` (f16 products, the steps through the loss scaler), at batch 32 and 128;
#   4. where PyTorch is installed (`pip install torch`), times the same forward and steps with PyTorch on the same
#      GPU (scripts/bench_torch.py --device cuda: fp32, tf32, channels_last, bf16 and fp16 autocast, GradScaler).
# Everything it prints also goes to target/gpu-check/ (CATDOG_GPU_OUT overrides; one log per step) for the README's
# device section.
#
# On a GPU machine without Rust, build the binaries elsewhere with scripts/gpu_bundle.sh, copy the repository with
# target/gpu-bundle/ in it, and run `CATDOG_GPU_BUNDLE=target/gpu-bundle scripts/gpu_check.sh`: steps 1 and 2 then
# run the bundled catdog and the device-parametrised test binaries (portable_parity, bf16, fp16) against the
# machine's own CUDA libraries, found under /usr, /opt and /usr/local.
set -euo pipefail
cd "$(dirname "$0")/.."
features="${CATDOG_GPU_FEATURES:-cuda,cudnn}"
out="${CATDOG_GPU_OUT:-target/gpu-check}"
bundle="${CATDOG_GPU_BUNDLE:-}"
mkdir -p "$out"
# A failed step is reported and the rest still run (a GPU lease is short: one run should tell everything); the
# script fails at the end, naming the failed steps. The build is the exception: nothing runs without it.
# shellcheck source=scripts/lib/steps.sh
source scripts/lib/steps.sh
step gpu nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step cpu bash -c "lscpu | grep -E 'Model name|^CPU\\(s\\)'"
if [ -z "$bundle" ]; then
  step build cargo build --release --features "$features"
  [ ${#failed[@]} -eq 0 ] || exit 1
  step tests env CATDOG_TEST_DEVICE=cuda cargo test --release --features "$features"
  bin=target/release/catdog
else
  # The libraries the bundle was linked against, from wherever this machine keeps them (pip wheels included).
  libs=$(find /usr /opt /usr/local -name 'lib*.so*' 2>/dev/null |
    grep -E '/lib(cuda\.so\.1|cublas\.so\.13|cublasLt\.so\.13|curand\.so\.10|nvrtc\.so\.13|cudart\.so\.13|cudnn\.so\.9)$' |
    xargs -r -n1 dirname | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "== libraries from $LD_LIBRARY_PATH"
  for packed in "$bundle"/*.xz; do
    [ -e "$packed" ] || continue
    [ -x "${packed%.xz}" ] && continue
    if command -v xz >/dev/null; then
      xz -dkf "$packed"
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$packed" "${packed%.xz}"
    fi
    chmod +x "${packed%.xz}"
  done
  # The test binaries start catdog by the path cargo baked in where the bundle was built.
  baked=$(cat "$bundle/catdog.path")
  mkdir -p "$(dirname "$baked")"
  [ "$(realpath "$bundle/catdog")" = "$(realpath "$baked")" ] || ln -sf "$(realpath "$bundle/catdog")" "$baked"
  step tests-portable-parity env CATDOG_TEST_DEVICE=cuda "$bundle/portable_parity"
  step tests-bf16 env CATDOG_TEST_DEVICE=cuda "$bundle/bf16"
  step tests-fp16 env CATDOG_TEST_DEVICE=cuda "$bundle/fp16"
  bin="$bundle/catdog"
fi
step bench-forward-cuda "$bin" bench forward --device cuda --batch-size 32 --size 150 --iters 5 --no-compare
step bench-forward-cpu "$bin" bench forward --device cpu --batch-size 32 --size 150 --iters 3 --no-compare
step bench-train-cuda "$bin" bench train --device cuda --batch-size 32 --size 150 --steps 5 --cache both
step bench-train-cpu "$bin" bench train --device cpu --batch-size 32 --size 150 --steps 3 --cache both
step bench-forward-cuda-bf16 "$bin" bench forward --device cuda --precision bf16 --batch-size 32 --size 150 --iters 5 --no-compare
step bench-train-cuda-bf16 "$bin" bench train --device cuda --precision bf16 --batch-size 32 --size 150 --steps 5 --cache both
for batch in 32 128; do
  step "bench-forward-cuda-fp16-b$batch" "$bin" bench forward --device cuda --precision fp16 --batch-size "$batch" --size 150 --iters 5 --no-compare
  step "bench-train-cuda-fp16-b$batch" "$bin" bench train --device cuda --precision fp16 --batch-size "$batch" --size 150 --steps 5 --cache both
done
for batch in 128; do
  step "bench-forward-cuda-b$batch" "$bin" bench forward --device cuda --batch-size "$batch" --size 150 --iters 5 --no-compare
  step "bench-train-cuda-b$batch" "$bin" bench train --device cuda --batch-size "$batch" --size 150 --steps 5 --cache both
  step "bench-train-cuda-bf16-b$batch" "$bin" bench train --device cuda --precision bf16 --batch-size "$batch" --size 150 --steps 5 --cache both
done
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  for batch in 32 128; do
    step "torch-cuda-b$batch" python3 scripts/bench_torch.py forward --device cuda --batch "$batch" --iters 5 \
      --variants fp32,tf32,fp32-cl,bf16-cl,fp16-cl
    step "torch-cuda-train-b$batch" python3 scripts/bench_torch.py train --device cuda --batch "$batch" --iters 5 \
      --variants fp32,tf32,fp32-cl,bf16-cl,fp16-cl
  done
else
  echo "== torch with CUDA not installed: no PyTorch baseline on this GPU (pip install torch)"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED steps: ${failed[*]}; logs in $out/"
  exit 1
fi
echo "gpu_check: all steps passed; logs in $out/"
