#!/usr/bin/env bash
# Everything we run on a GPU machine, in one call: unpack the carried tools (bench/pack-carry.sh made them),
# then the stages named on the command line (default: all).
#   test       CUDA (and WebGPU) op tests and end-to-end checks against the CPU backend
#   optest     some test files (OPTEST, default test/ops) for GPTQ_TEST_BACKENDS (default cuda; webgpu: NVIDIA's Vulkan)
#   sanitize   the CUDA op tests under compute-sanitizer (memcheck)
#   matmul     packed 4-bit matmul vs cuBLAS fp16 on the Llama-2-7B layer shapes (M = 1, 16, 64)
#   arena      M = 1 (ARENA_MS) captured as a decode step is, GEMV outputs zeroed by each replay and not, alternating
#   ncu        Nsight Compute summary of the packed matmul kernels (GEMV at M = 1, qm4m at M = 16)
#   quant7b    quantize a random Llama-2-7B-shaped model (32 layers, 128 x 2048 calibration tokens, 4-bit g128;
#              QUANT7B_ARGS="--nsamples 8 --seqlen 256": a quick model for decode7b; QUANT7B_BACKEND=webgpu: through
#              Vulkan, e.g. with QUANT7B_ARGS="--nsamples 16 --seqlen 2048" to fit the call, and its per-layer profile)
#   decode7b   decode tokens/s of that 4-bit model at batch 1: eager, a replayed CUDA graph, and pipelined (graph +
#              the token picked on the device, the next step queued ahead)
#   decodeprof GPU time per kernel of decode steps (Nsight Compute) on a 4-layer 7B-shaped 4-bit model
#   layerloss  one 7B-shaped linear through GPTQ on the GPU and on the CPU reference: losses must agree within 1%
#   sass       the GEMV's machine code (cuobjdump), instruction mix of the M = 1 kernel, into $OUT/sass.txt
#   vksass     registers, spills and instruction mix of the WGSL shaders as NVIDIA's Vulkan driver compiled them
#              (bench/vk-sass.ts; the largest one's disassembly in $OUT/vk-largest.sass)
#   ab         a candidate library (.carry/lib/libgptq_cuda_b.so or .so.xz, e.g. a branch's build; AB_KNOBS: launch
#              knob settings for it alone, space-separated) against the current one in the same run: its op tests
#              and end-to-end checks (under the first setting), then the matmul benchmark A, B (each setting), twice
#   sweep      the packed matmul per shape (M = 1, 16) for each library in .carry/sweep/*.so.xz (builds with other
#              compile-time GEMV settings, e.g. GPTQ_NVCC_FLAGS=-DQV_WARPS=8) and for the current library under
#              the GEMV's launch knobs (GPTQ_QV_WAVES, GPTQ_QV_MINSPW, GPTQ_QV_PREFETCH, GPTQ_PDL; SWEEP_KNOBS
#              overrides the list, "A=1,B=2" sets two at once; SWEEP_MS the rows, default 1; SWEEP_LIB_MS the
#              libraries' rows, default 1,16); decode7b likewise
#              over DECODE_KNOBS (DECODE_WEBGPU=1: also the WebGPU backend's decode of the same model)
#   webgpu     WebGPU through NVIDIA's Vulkan driver: packed matmul at M=1 against the copy bandwidth, and one
#              7B-shaped layer's quantization time, each beside the CUDA backend's number from the same run
#              (WEBGPU_KNOBS: further matmul rows under those settings; WEBGPU_MS: row counts, default 1;
#              WEBGPU_LAYER=0: no layer; WEBGPU_ARGS: more bench options for the knob rows, e.g. --per-shape)
#   wgreduce   WebGPU's workgroup reductions through subgroups and through the tree (GPTQ_WEBGPU_SUBGROUPS):
#              their op tests, then eval and decode of the 2-layer test model, alternating, twice
# Usage from this machine: the device tool's run with carry [".carry"] and command "bash bench/device.sh test matmul".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gptq-device-out}
mkdir -p "$OUT"
T=/tmp/gptq-tools
stages=${*:-"test sanitize matmul ncu quant7b decode7b layerloss webgpu"}
log() { echo "== $(date +%H:%M:%S) $*"; }

log setup
mkdir -p $T/bin $T/lib $T/data build
[ -x $T/bin/bun ] || { xz -dc .carry/bun.xz > $T/bin/bun && chmod +x $T/bin/bun; }
[ -d node_modules/@huggingface ] || tar -xJf .carry/node_modules.tar.xz
for f in .carry/lib/*.xz; do [ -f "$T/lib/$(basename "${f%.xz}")" ] && [[ $f != *libgptq_cuda* ]] || xz -dc "$f" > "$T/lib/$(basename "${f%.xz}")"; done
if command -v nvcc >/dev/null && [ -n "${GPTQ_BUILD_ON_DEVICE:-}" ]; then GPTQ_CUDA_ARCHS=90 bash kernels/build.sh; else cp $T/lib/libgptq_cuda.so build/; fi
[ -d $T/data/stories260K-hf ] || tar -xJf .carry/data/data.tar.xz -C $T/data
[ -d $T/gutenberg-2l ] || tar -xJf .carry/data/gutenberg-2l.tar.xz -C $T
if [ -d .gl ]; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
export PATH=$T/bin:$PATH LD_LIBRARY_PATH=$T/lib:${LD_LIBRARY_PATH:-} GPTQ_BLAS=$T/lib/libopenblas.so.0 GPTQ_DATA=$T/data GPTQ_E2E_MODEL=$T/gutenberg-2l GPTQ_QUIET=1
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
bun --version
bun gptq.ts backends 2>&1 | tee "$OUT/backends.txt"

for s in $stages; do
  case $s in
  test)
    log test
    GPTQ_TEST_BACKENDS=${GPTQ_TEST_BACKENDS:-cuda} bun test --timeout 600000 test/ops test/backends.test.ts 2>&1 | tee "$OUT/test.log" | grep -E "^\(fail\)|^error|^ *[0-9]+ (pass|fail|skip)|Ran |relative error|agree"
    log "test (GPTQ_QV_SPIN=-1: every block of a split normed GEMV takes the norm's sum itself, not the shared one)"
    GPTQ_QV_SPIN=-1 GPTQ_TEST_BACKENDS=cuda bun test --timeout 600000 test/ops/quant_matmul.test.ts 2>&1 | tee "$OUT/test-spin.log" | grep -E "^\(fail\)|^error|^ *[0-9]+ (pass|fail|skip)"
    log "test (GPTQ_CUDA_TF32=0: fp32 everywhere)"
    GPTQ_CUDA_TF32=0 GPTQ_TEST_BACKENDS=cuda bun test --timeout 600000 test/backends.test.ts 2>&1 | tee "$OUT/test-fp32.log" | grep -E "^\(fail\)|^error|^ *[0-9]+ (pass|fail|skip)|agree" ;;
  optest)  # some test files (OPTEST, default test/ops) for GPTQ_TEST_BACKENDS (default cuda), e.g. after a shader change
    log "optest ${OPTEST:-test/ops}"
    GPTQ_TEST_BACKENDS=${GPTQ_TEST_BACKENDS:-cuda} bun test --timeout 600000 ${OPTEST:-test/ops} 2>&1 | tee "$OUT/optest.log" | grep -E "^\(fail\)|^error|^ *[0-9]+ (pass|fail|skip)|Ran " ;;
  sanitize)
    log sanitize
    GPTQ_TEST_BACKENDS=cuda GPTQ_SANITIZE=1 timeout 300 compute-sanitizer --tool memcheck --print-limit 20 --error-exitcode 9 bun test --timeout 600000 test/ops/quant_matmul.test.ts test/ops/gptq_block.test.ts test/ops/attention.test.ts test/ops/hessian.test.ts test/ops/rope.test.ts test/ops/write_rows.test.ts test/ops/embedding.test.ts test/ops/argmax_next.test.ts test/ops/half_gemv.test.ts 2>&1 | tee "$OUT/sanitize.log" | grep -E "ERROR SUMMARY|^ *[0-9]+ (pass|fail)|Invalid|^\(fail\)" ;;
  matmul)
    log matmul
    bun gptq.ts bench matmul --backend cuda --m 1,16,64 --iters 200 | tee "$OUT/matmul.md"
    bun gptq.ts bench matmul --backend cuda --m 1,16 --act-order --iters 200 | tee -a "$OUT/matmul.md"
    echo "-- GPTQ_BENCH_ARENA=1 (captured as a decode step is: programmatic dependent launch in force)" | tee -a "$OUT/matmul.md"
    GPTQ_BENCH_ARENA=1 bun gptq.ts bench matmul --backend cuda --m 1 --iters 200 | tee -a "$OUT/matmul.md" ;;
  arena)  # M = 1 captured as a decode step is, the GEMV outputs zeroed by each replay (default) and not
    # (GPTQ_QV_ZEROED=0: k splits summed by the last block or a cluster), alternating; ARENA_ARGS e.g. --per-shape
    log arena
    for i in 1 2; do for z in 1 0; do
      echo "-- GPTQ_QV_ZEROED=$z"
      GPTQ_QV_ZEROED=$z GPTQ_BENCH_ARENA=1 bun gptq.ts bench matmul --backend cuda --m ${ARENA_MS:-1} --iters 200 ${ARENA_ARGS:-}
    done; done 2>&1 | tee "$OUT/arena.md" ;;
  ncu)
    log ncu
    # NCU_MS: which kernels (default both), NCU_ARGS: sections (default a summary; "--set full" for stall
    # reasons by source line, saved whole in $OUT/ncu-m<M>.txt)
    for m in ${NCU_MS:-1 16}; do
      k=qm4m_kernel; [ $m -le 4 ] && k=qm4v
      timeout 240 ncu --kernel-name regex:$k --launch-skip 12 --launch-count 4 ${NCU_ARGS:---section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats} \
        bun gptq.ts bench matmul --backend cuda --m $m --iters 3 > "$OUT/ncu-m$m.txt" 2>&1
      grep -E "qm4|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Grid Size|Block Limit" "$OUT/ncu-m$m.txt" | head -48
    done ;;
  quant7b)
    log quant7b: generating weights
    python3 bench/make_llama7b.py $T/llama7b $T/data/../gutenberg-2l 2>&1 | tail -2
    log quant7b: quantizing
    GPTQ_PROFILE=${GPTQ_PROFILE-1} GPTQ_QUIET= timeout ${QUANT7B_TIMEOUT:-480} bun gptq.ts bench quantize $T/llama7b --backend ${QUANT7B_BACKEND:-cuda} --dataset $T/data/wikitext-2-raw/wiki.valid.raw ${QUANT7B_ARGS:---nsamples 128 --seqlen 2048} --out $T/llama7b-q4 2>&1 | tee "$OUT/quant7b.log" | grep -vE "^layer [0-9]+/32 |^quantize \[" | tail -5
    grep -E "^layer (1|16|32)/32 " "$OUT/quant7b.log" | head -21
    grep -E "^profile layer (1|2|16|32):" "$OUT/quant7b.log" ;;
  decode7b)
    log decode7b
    Q=$T/llama7b-q4  # from quant7b; without it, GPTQ on 8 x 256 calibration tokens (20 s; same kernels, same speed)
    if [ ! -f $Q/config.json ]; then
      [ -f $T/llama7b/config.json ] || python3 bench/make_llama7b.py $T/llama7b $T/gutenberg-2l 2>&1 | tail -1
      GPTQ_QUIET=1 bun gptq.ts quantize $T/llama7b --backend cuda --dataset $T/data/wikitext-2-raw/wiki.valid.raw --nsamples 8 --seqlen 256 --out $Q 2>&1 | tail -1
    fi
    bun gptq.ts bench decode $Q --backend cuda --tokens 128 | tee "$OUT/decode.txt"
    if [ "${DECODE_WEBGPU:-0}" = 1 ] && grep -q "^webgpu  available" "$OUT/backends.txt"; then  # the same model through Vulkan
      timeout 300 bun gptq.ts bench decode $Q --backend webgpu --tokens 32 2>&1 | grep -E "^decode|rror" | tee -a "$OUT/decode.txt"
    fi
    for k in ${DECODE_KNOBS:-}; do  # launch knobs (as in sweep: a,b sets both) on the same model, same run
      echo "-- $k"; env ${k//,/ } bun gptq.ts bench decode $Q --backend cuda --tokens 128 | tee -a "$OUT/decode.txt"
    done
    for lib in build/sweep/*.so; do  # the sweep's libraries (if unpacked) on the same model, same run
      [ -f "$lib" ] || continue
      echo "-- $lib"; GPTQ_CUDA_LIB=$PWD/$lib bun gptq.ts bench decode $Q --backend cuda --tokens 128 | tee -a "$OUT/decode.txt"
    done
    if [ "${DECODE_NSYS:-1}" != 0 ] && command -v nsys >/dev/null; then  # (DECODE_NSYS=0: skip) where the time of a replayed decode step goes, kernel by kernel
      GPTQ_QUIET=1 timeout 120 nsys profile -o $T/decode --force-overwrite true -t cuda --cuda-graph-trace=node bun gptq.ts bench decode $Q --backend cuda --tokens 32 > $T/nsys.log 2>&1
      nsys stats --report cuda_gpu_kern_sum --format table $T/decode.nsys-rep 2>/dev/null | cut -c1-200 | head -30 | tee "$OUT/decode-kernels.txt"
    else echo "nsys not found: no kernel breakdown"; fi ;;
  decodeprof)
    # GPU time of every kernel of a decode step (Nsight Compute, one metric, caches kept warm), by kernel and grid
    # (the prompt's kernels are listed too), on a 4-layer 7B-shaped 4-bit model
    log decodeprof
    LAYERS=4 python3 bench/make_llama7b.py $T/l4 $T/gutenberg-2l 2>&1 | tail -1
    [ -f $T/l4q/config.json ] || bun gptq.ts quantize $T/l4 --backend cuda --dataset $T/data/wikitext-2-raw/wiki.valid.raw --nsamples 8 --seqlen 256 --out $T/l4q 2>&1 | tail -1
    GPTQ_GRAPHS=0 timeout 150 ncu --cache-control none --metrics gpu__time_duration.sum --csv bun gptq.ts bench decode $T/l4q --backend cuda --tokens 8 > $OUT/ncu-decode.csv 2> $OUT/ncu-decode.err
    tail -3 $OUT/ncu-decode.err; grep -c . $OUT/ncu-decode.csv
    python3 - "$OUT/ncu-decode.csv" <<'PY' | tee "$OUT/decode-kernels.txt"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
h = rows[0]; k, v, u, g = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit"), h.index("Grid Size")
tot, cnt = collections.defaultdict(float), collections.Counter()
for r in rows[1:]:
    if r[u] not in ("ns", "us", "ms"): continue
    t = float(r[v].replace(",", "")) * {"ns": 1, "us": 1e3, "ms": 1e6}[r[u]]
    name = r[k].split("(")[0].removeprefix("void ").split("<")[0] + " " + r[g].replace(" ", ""); tot[name] += t; cnt[name] += 1
for n, t in sorted(tot.items(), key=lambda x: -x[1]): print(f"{n:56s} {cnt[n]:6d} calls {t / cnt[n] / 1000:9.2f} us avg {t / 1e6:9.3f} ms total")
PY
    ;;
  webgpu)
    log "webgpu (Vulkan) beside cuda"
    if ! grep -q "^webgpu  available" "$OUT/backends.txt"; then
      echo "webgpu stage: no WebGPU adapter (see backends above; without the Vulkan loader, carry .gl from bench/pack-carry.sh)"; continue
    fi
    for b in cuda webgpu; do bun gptq.ts bench matmul --backend $b --m ${WEBGPU_MS:-1} --iters 100 | tee -a "$OUT/webgpu.md"; done
    for k in ${WEBGPU_KNOBS:-}; do  # WebGPU launch knobs (GPTQ_WEBGPU_GEMV=s, GPTQ_WEBGPU_QV_CQ=8, ...; a,b sets both)
      echo "-- $k"; env ${k//,/ } bun gptq.ts bench matmul --backend webgpu --m ${WEBGPU_MS:-1} --iters 100 ${WEBGPU_ARGS:-} | tee -a "$OUT/webgpu.md" | grep -E "^\| +[0-9]+ "
    done
    [ "${WEBGPU_LAYER:-1}" = 0 ] && continue  # (WEBGPU_LAYER=0: the matmul only)
    for b in cuda webgpu; do timeout 240 bun gptq.ts bench layer --backend $b --seqlen 2048 | tee -a "$OUT/webgpu.md"; done ;;
  wgreduce)  # the WebGPU reductions (RMSNorm, log-softmax, attention) through subgroups and through the tree, on
    # NVIDIA's Vulkan driver: their op tests (both forms), then eval and decode timed alternating
    log wgreduce
    if ! grep -q "^webgpu  available" "$OUT/backends.txt"; then echo "wgreduce stage: no WebGPU adapter (carry .gl)"; continue; fi
    GPTQ_TEST_BACKENDS=webgpu bun test --timeout 600000 test/ops/rms_norm.test.ts test/ops/log_softmax.test.ts test/ops/attention.test.ts 2>&1 | tee "$OUT/wgreduce-test.log" | grep -E "^\(fail\)|^error|^ *[0-9]+ (pass|fail|skip)"
    for i in 1 2; do for sg in 1 0; do
      echo "-- GPTQ_WEBGPU_SUBGROUPS=$sg"
      GPTQ_WEBGPU_SUBGROUPS=$sg bun gptq.ts eval $T/gutenberg-2l --backend webgpu --dataset $T/data/wikitext-2-raw/wiki.valid.raw --seqlen 512 --max-windows 40 --json 2>/dev/null
      GPTQ_WEBGPU_SUBGROUPS=$sg bun gptq.ts bench decode $T/gutenberg-2l --backend webgpu --tokens 64 2>&1 | grep -E "^decode"
    done; done 2>&1 | tee "$OUT/wgreduce.txt" ;;
  sass)
    log sass
    CUOBJDUMP=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
    "$CUOBJDUMP" -sass -arch sm_90 build/libgptq_cuda.so > "$OUT/sass.txt" 2>&1 || echo "cuobjdump failed"
    # the M = 1, group-multiple-of-4 GEMV: instruction mix by opcode (predicates dropped)
    awk '/Function : .*qm4v_kernelILi1ELi4E/{f=1; next} f&&/Function : /{f=0} f' "$OUT/sass.txt" \
      | sed -nE 's|^\s+/\*[0-9a-f]+\*/\s+(@!?U?P[0-9T]+\s+)?([A-Z][A-Z0-9._]*).*|\2|p' | sort | uniq -c | sort -rn | head -25 ;;
  vksass)  # the machine code NVIDIA's Vulkan driver made of the WGSL shaders (its disk cache): registers, spills, mix
    log vksass
    rm -rf $T/glcache $T/vk; mkdir -p $T/glcache
    __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH=$T/glcache __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 \
      bun gptq.ts bench matmul --backend webgpu --m 1 --iters 3 > /dev/null 2>&1
    sm=SM$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
    bun bench/vk-sass.ts $T/glcache $T/vk "$(command -v nvdisasm || echo /usr/local/cuda/bin/nvdisasm)" $sm 2>&1 | tee "$OUT/vksass.txt"
    big=$(ls -S $T/vk/*.sass 2>/dev/null | head -1); [ -n "$big" ] && cp "$big" "$OUT/vk-largest.sass" ;;
  ab)
    log "ab: candidate library"
    B=.carry/lib/libgptq_cuda_b.so; [ -f $B ] || B=$T/lib/libgptq_cuda_b.so  # (carried as .so, or .so.xz: unpacked above)
    if [ ! -f $B ]; then echo "ab: .carry/lib/libgptq_cuda_b.so(.xz) not carried"; continue; fi
    cp $B build/libgptq_cuda_b.so
    # AB_KNOBS: launch knob settings for the candidate alone, space-separated ("A=1,B=2" sets two at once);
    # the tests run under the first, the matmul runs A, then B under each setting, twice
    read -ra bks <<< "${AB_KNOBS:-}"; [ ${#bks[@]} -eq 0 ] && bks=("")
    bk=${bks[0]}; bk=${bk//,/ }
    env $bk GPTQ_CUDA_LIB=$PWD/build/libgptq_cuda_b.so GPTQ_TEST_BACKENDS=cuda bun test --timeout 600000 test/ops test/backends.test.ts 2>&1 | tee "$OUT/ab-test.log" | grep -E "^\(fail\)|^error|^ *[0-9]+ (pass|fail|skip)"
    for rep in 1 2; do
      echo "-- libgptq_cuda.so"; GPTQ_CUDA_LIB=$PWD/build/libgptq_cuda.so bun gptq.ts bench matmul --backend cuda --m 1,16 --per-shape --iters 200 | tee -a "$OUT/ab-matmul.md" | grep -E "^\| +[0-9]+ "
      for k in "${bks[@]}"; do
        echo "-- libgptq_cuda_b.so $k"; env ${k//,/ } GPTQ_CUDA_LIB=$PWD/build/libgptq_cuda_b.so bun gptq.ts bench matmul --backend cuda --m 1,16 --per-shape --iters 200 | tee -a "$OUT/ab-matmul.md" | grep -E "^\| +[0-9]+ "
      done
    done ;;
  sweep)
    log sweep
    mkdir -p build/sweep
    for f in .carry/sweep/*.so.xz; do [ -f "$f" ] && xz -dc "$f" > "build/sweep/$(basename "${f%.xz}")"; done
    for lib in build/libgptq_cuda.so build/sweep/*.so; do
      [ -f "$lib" ] || continue
      echo "-- $lib"; GPTQ_CUDA_LIB=$PWD/$lib bun gptq.ts bench matmul --backend cuda --m ${SWEEP_LIB_MS:-1,16} --per-shape --iters 200 | tee -a "$OUT/sweep.md" | grep -E "^\| +[0-9]+ "
    done
    for k in ${SWEEP_KNOBS:-GPTQ_QV_WAVES=2 GPTQ_QV_WAVES=0.5 GPTQ_QV_MINSPW=4 GPTQ_QV_MINSPW=16}; do  # (a,b: both settings)
      echo "-- $k"; env ${k//,/ } bun gptq.ts bench matmul --backend cuda --m ${SWEEP_MS:-1} --per-shape --iters 200 | tee -a "$OUT/sweep.md" | grep -E "^\| +[0-9]+ "
    done ;;
  layerloss)
    log layerloss
    bun bench/layer-loss.ts 2>&1 | tee "$OUT/layerloss.txt" ;;
  esac
done
log done
