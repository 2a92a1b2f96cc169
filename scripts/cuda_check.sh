#!/usr/bin/env bash
# Compile-checks the `cuda` feature on a machine without a GPU or a CUDA install: fetches nvcc and the CUDA headers
# from PyPI into target/cuda-toolkit (once), then runs `cargo check --features cuda --all-targets`. This builds
# candle-kernels' PTX with nvcc and type-checks every cfg(feature = "cuda") path; it does not link (linking needs
# libcuda/libcublas) and runs nothing. On a machine with the CUDA toolkit, use `cargo test --release --features cuda`.
#
# cudarc (candle's CUDA binding) reads the toolkit version from `nvcc --version` and knows versions up to 13.4; the
# PyPI nvcc may be newer, so a small wrapper reports 13.4 (CUDARC_NVCC_VERSION overrides) and forwards every other
# call to the real nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/target/cuda-toolkit"
reported="${CUDARC_NVCC_VERSION:-13.4}"
# Installed once; an interrupted install is redone (the test is on nvcc itself, not on the venv).
if ! ls "$root"/venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install -q "nvidia-cuda-nvcc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-cccl==13.*" \
    "nvidia-cuda-crt==13.*"
fi
cuda="$(ls -d "$root"/venv/lib/python3*/site-packages/nvidia/cu13 | head -n 1)"
mkdir -p "$root/bin"
cat > "$root/bin/nvcc" <<WRAP
#!/usr/bin/env bash
if [ "\${1:-}" = "--version" ]; then
  "$cuda/bin/nvcc" --version | sed -E 's/release [0-9]+\.[0-9]+, V[0-9.]+/release $reported, V$reported.0/'
else
  exec "$cuda/bin/nvcc" "\$@"
fi
WRAP
chmod +x "$root/bin/nvcc"
export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" PATH="$root/bin:$cuda/bin:$PATH" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
exec cargo check --release --features cuda --all-targets --target-dir target/cuda-check "$@"
