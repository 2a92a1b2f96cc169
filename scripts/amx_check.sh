#!/usr/bin/env bash
# The AMX check, for a machine whose CPU has AMX (Intel Sapphire Rapids and later; no development machine has had
# one, so a lent machine runs this):
#   1. the bf16 tests with every kernel the CPU has (the AMX gemm and the direct AMX convolution against scalar
#      references, their forked self-checks, the network against fp32);
#   2. the direct kernel alone on one core with three input layouts (an ignored test of tests/bf16.rs), then
#      `bench forward --precision bf16 --layers` with the direct convolution and with Winograd, alternating
#      (CATDOG_BF16_CONV), so that each layer's choice rests on one run's figures (the first direct run with
#      `--backward`: each layer's input and weight gradients too);
#   3. `bench train --mode finetune --precision bf16` with each, and the head alone (`--mode extract --cache on`);
#   4. the fp32 forward per layer with the hand-written AVX-512 kernels (Winograd F(4×4) and F(3×3), chosen on
#      AMD's caches) and without them (`CATDOG_SIMD=avx2`: F(2×2) everywhere), so that their choice can be
#      checked on this CPU's caches;
#   5. PyTorch's fp32 (NCHW and channels_last) and autocast + channels_last forward and training step in the same
#      run (scripts/bench_torch.py), if torch is there.
# Everything is pinned to the first CATDOG_AMX_THREADS cores (default 2, as on the development machines) and goes
# to target/amx-check/ too (CATDOG_AMX_OUT overrides), one log per step.
#
# On a machine without Rust, build elsewhere with `scripts/amx_check.sh --bundle` (it writes target/amx-bundle/:
# the release catdog and the bf16 test binary, stripped), copy the repository with that folder, and run
# `CATDOG_AMX_BUNDLE=target/amx-bundle scripts/amx_check.sh` (it links catdog where the test binary expects it).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--bundle" ]; then
  set -e
  cargo build --release --bin catdog
  exe=$(cargo test --release --test bf16 --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
  rm -rf target/amx-bundle
  mkdir -p target/amx-bundle
  strip -o target/amx-bundle/catdog target/release/catdog
  strip -o target/amx-bundle/bf16 "$exe"
  realpath target/release/catdog > target/amx-bundle/catdog.path
  ls -l target/amx-bundle
  exit 0
fi
out="${CATDOG_AMX_OUT:-target/amx-check}"
threads="${CATDOG_AMX_THREADS:-2}"
bundle="${CATDOG_AMX_BUNDLE:-}"
mkdir -p "$out"
if [ -n "$bundle" ]; then
  bin="$bundle/catdog"
  tests="$bundle/bf16"
  # The test binary starts catdog by the path cargo baked in where the bundle was built.
  baked=$(cat "$bundle/catdog.path")
  mkdir -p "$(dirname "$baked")"
  [ "$(realpath "$bundle/catdog")" = "$(realpath "$baked")" ] || ln -sf "$(realpath "$bundle/catdog")" "$baked"
else
  bash "$0" --bundle >/dev/null || exit 1
  bin=target/amx-bundle/catdog
  tests=target/amx-bundle/bf16
fi
pin=(taskset -c "0-$((threads - 1))")
# shellcheck source=scripts/lib/steps.sh
source scripts/lib/steps.sh
step cpu bash -c "lscpu | grep -E 'Model name|^CPU\\(s\\)'; grep -o -m1 -E 'amx_(tile|bf16)' /proc/cpuinfo | sort -u"
step tests "${pin[@]}" "$tests" --test-threads "$threads"
step layouts taskset -c 0 "$tests" --ignored --nocapture --test-threads 1 direct_amx_layout_speed
forward=(bench forward --precision bf16 --threads "$threads" --quiet --no-compare --layers)
for conv in direct winograd direct; do
  # The first run also times each layer's input and weight gradients (the bf16 weight gradient is Winograd's).
  extra=(); [ "$conv" = direct ] && [ -z "${timed_backward:-}" ] && extra=(--backward) && timed_backward=1
  step "forward-$conv" env CATDOG_BF16_CONV=$conv "${pin[@]}" "$bin" "${forward[@]}" "${extra[@]}"
done
for conv in direct winograd; do
  step "finetune-$conv" env CATDOG_BF16_CONV=$conv "${pin[@]}" "$bin" bench train --mode finetune \
    --precision bf16 --threads "$threads" --quiet
done
# The head alone (feature extraction from cached block5_pool), bf16 and fp32 side by side.
step extract "${pin[@]}" "$bin" bench train --mode extract --cache on --precision bf16 --threads "$threads" \
  --quiet --steps 200
fp32=(bench forward --threads "$threads" --quiet --no-compare --layers)
step forward-fp32 "${pin[@]}" "$bin" "${fp32[@]}" --backward
step forward-fp32-avx2 env CATDOG_SIMD=avx2 "${pin[@]}" "$bin" "${fp32[@]}"
if python3 -c 'import torch' 2>/dev/null; then
  for what in forward train; do
    step "torch-$what" "${pin[@]}" python3 scripts/bench_torch.py $what --threads "$threads" \
      --variants fp32,fp32-cl,bf16-cl
  done
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "amx_check: failed steps: ${failed[*]}"
  exit 1
fi
