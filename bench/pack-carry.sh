#!/usr/bin/env bash
# Packs what the GPU machine lacks into .carry/ (git-ignored; the device tool sends it with `carry`):
# Bun (xz), our npm dependencies, OpenBLAS for the CPU oracle, the CUDA library, the Vulkan loader
# packages, and a subset of ../shared/data (the machine sees only the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
C=.carry
mkdir -p $C/lib $C/data
[ -f $C/bun.xz ] || xz -9 -T2 -c node_modules/bun/bin/bun.exe > $C/bun.xz
tar -cJf $C/node_modules.tar.xz --exclude=node_modules/bun --exclude=node_modules/@oven --exclude=node_modules/typescript \
  --exclude=node_modules/bun-types --exclude=node_modules/@types node_modules
for f in /usr/lib/x86_64-linux-gnu/libopenblas.so.0 /lib/x86_64-linux-gnu/libgfortran.so.5 /lib/x86_64-linux-gnu/libquadmath.so.0; do
  [ -f $C/lib/$(basename $f).xz ] || xz -9 -c "$f" > $C/lib/$(basename $f).xz
done
[ -f build/libgptq_cuda.so ] || npm run build:cuda
xz -c build/libgptq_cuda.so > $C/lib/libgptq_cuda.so.xz
D=../shared/data
tar -cJf $C/data/data.tar.xz -C $D stories260K-hf stories260K/reference_outputs.json tinystories wikitext-2-raw/wiki.valid.raw gutenberg/eval.txt
# a 2-layer cut of gutenberg-llama-16m (real weights) for the end-to-end quantization check
bun_=node_modules/.bin/bun
$bun_ bench/truncate-model.ts $D/gutenberg-llama-16m /tmp/gutenberg-2l 2
tar -cJf $C/data/gutenberg-2l.tar.xz -C /tmp gutenberg-2l
# the Vulkan loader (and GL dispatch) packages: the GPU machine has NVIDIA's Vulkan driver but no loader, and
# without one Dawn finds only its null backend (the webgpu stages then refuse to run); carry .gl beside .carry
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64"
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
echo "vulkan loader packages in .gl: carry [\".carry\", \".gl\"]"
du -sh $C $C/* $C/data/* | sort -h
