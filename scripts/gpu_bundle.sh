#!/usr/bin/env bash
# Builds the GPU proof's binaries on a machine WITHOUT a GPU or a CUDA install, for a GPU machine WITHOUT Rust
# (a lent cloud GPU, a locked-down cluster node): `catdog` and the device-parametrised test binaries
# (tests/portable_parity.rs, tests/bf16.rs, tests/fp16.rs), built `--features cuda,cudnn`, stripped and xz-compressed into
# target/gpu-bundle/.
# `CATDOG_GPU_BUNDLE=target/gpu-bundle scripts/gpu_check.sh` then runs them there without cargo.
#
# The toolkit comes from PyPI into target/cuda<version>/ (once). Its version must not be newer than the GPU
# machine's driver: candle's kernels travel as PTX that the driver compiles, and a driver refuses PTX from a newer
# nvcc. CATDOG_CUDA (default 13.0, for drivers 580 and later) picks it. The libraries are linked against the
# PyPI copies; libcuda, which only the driver ships, is linked against a stub made here of the names cudarc calls.
# At run time the GPU machine's own libcuda, cuBLAS, cuRAND, NVRTC and cuDNN are used.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda_version="${CATDOG_CUDA:-13.0}"
case "$cuda_version" in
  13.0) pins=("nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.88" "nvidia-cuda-cccl==13.0.85"
              "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-nvrtc==13.0.88"
              "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35" "nvidia-cudnn-cu13==9.13.1.26") ;;
  *) echo "gpu_bundle: CATDOG_CUDA=$cuda_version has no pinned PyPI set here; add one beside 13.0" >&2; exit 2 ;;
esac
root="$PWD/target/cuda$cuda_version"
if ! ls "$root"/venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install -q "${pins[@]}"
fi
site="$(ls -d "$root"/venv/lib/python3*/site-packages/nvidia)"
cuda="$site/cu13"

# The link folder: unversioned names for the PyPI libraries (the linker's -lcublas wants libcublas.so) and the
# libcuda stub, its soname the driver's (libcuda.so.1).
link="$root/link"
mkdir -p "$link"
for lib in "$cuda"/lib/lib{cudart,nvrtc,curand,cublas,cublasLt}.so.* "$site"/cudnn/lib/libcudnn.so.9; do
  ln -sf "$lib" "$link/$(basename "$lib" | sed -E 's/\.so\..*/.so/')"
done
# The names come from the cudarc that Cargo.lock pins, read from its downloaded .crate (cargo fetch gets it).
cargo fetch --quiet
cudarc_version=$(grep -A1 '^name = "cudarc"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
cudarc_crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"cudarc-$cudarc_version.crate" | head -n 1)"
tar -xzOf "$cudarc_crate" "cudarc-$cudarc_version/src/driver/sys/mod.rs" | grep -oE 'fn cu[A-Za-z0-9_]+\(' | sort -u |
  sed -E 's/fn (.*)\(/void \1(void) {}/' > "$link/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"

export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$link${LIBRARY_PATH:+:$LIBRARY_PATH}"
# The test binaries call the catdog binary by the absolute path cargo bakes in (CARGO_BIN_EXE_catdog), so the
# target folder is named absolutely; gpu_check.sh links the bundled binary to that path on the GPU machine.
export CARGO_TARGET_DIR="$PWD/target/gpu-build"
features=cuda,cudnn
cargo build --release --features "$features" --bin catdog
tests=$(cargo test --release --features "$features" --test portable_parity --test bf16 --test fp16 --no-run \
  --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
bundle=target/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle"
strip -o "$bundle/catdog" "$CARGO_TARGET_DIR/release/catdog"
while read -r name exe; do strip -o "$bundle/$name" "$exe"; done <<<"$tests"
echo "$CARGO_TARGET_DIR/release/catdog" > "$bundle/catdog.path"
# Each binary carries candle's PTX and kernels (about 55–70 MB stripped); xz takes them to about a seventh for the
# copy to the GPU machine, where gpu_check.sh unpacks them.
xz -T0 -9 -f "$bundle/catdog" "$bundle"/portable_parity "$bundle"/bf16 "$bundle"/fp16
ls -l "$bundle"
