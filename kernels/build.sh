#!/usr/bin/env bash
# Builds build/libgptq_cuda.so: machine code for sm_75/80/86/89/90 and PTX (compute_90) for newer cards
# (sm_75, Turing, the oldest CUDA 13 compiles for: everything but the tensor-core packed matmul).
# GPTQ_CUDA_ARCHS="80 90" narrows the list (faster builds while developing).
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
command -v "$NVCC" >/dev/null || { echo "build:cuda: nvcc not found (install the CUDA toolkit or set NVCC)" >&2; exit 1; }
archs=${GPTQ_CUDA_ARCHS:-"75 80 86 89 90"}
gencode=()
for a in $archs; do gencode+=(-gencode "arch=compute_$a,code=sm_$a"); done
last=${archs##* }
gencode+=(-gencode "arch=compute_$last,code=compute_$last")
mkdir -p build/obj
out=build/libgptq_cuda.so
tmp=build/.libgptq_cuda.so.tmp
# One nvcc per source file, run side by side, then one link. (A single `nvcc --threads 0` over all the
# files raced on its own temp files in CI: "nvlink fatal: Could not read file ..._dlink.reg.c".)
jobs=${GPTQ_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
export NVCC GPTQ_NVCC_FLAGS
printf '%s\n' kernels/*.cu | xargs -P "$jobs" -I{} bash -c '
  src={}; obj=build/obj/$(basename "$src" .cu).o
  "$NVCC" -O3 -std=c++17 -Xcompiler -fPIC -Xcompiler -Wall "$@" -c -o "$obj.tmp" "$src" ${GPTQ_NVCC_FLAGS:-} && mv "$obj.tmp" "$obj"
' _ "${gencode[@]}"
objs=(); for f in kernels/*.cu; do objs+=("build/obj/$(basename "$f" .cu).o"); done
"$NVCC" -shared "${gencode[@]}" -cudart static -o "$tmp" "${objs[@]}" -ldl
mv "$tmp" "$out"
echo "built $out ($(du -h "$out" | cut -f1), archs: $archs + PTX $last)"
