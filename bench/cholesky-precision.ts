// What a float32 Cholesky (all WGSL offers the WebGPU backend) costs in quantized perplexity, measured on the
// CPU backend by swapping its float64 LAPACK factorization (dpotrf/dpotri) for float32 LAPACK (spotrf/spotri),
// with and without equilibration to a unit diagonal (what shaders/cholesky_inverse_upper.wgsl does); with
// `webgpu`, on the WebGPU backend: its float32 shader against a float64 LAPACK factorization on the host
// (downloaded Hessian, uploaded factor), i.e. how much of WebGPU's gap to the CPU backend the shader explains.
//   npx bun bench/cholesky-precision.ts [seeds=0,1,2] [webgpu]   (gutenberg-llama-16m, 32 x 256 calibration tokens)
import { dlopen, FFIType } from "bun:ffi";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { evaluate, loadModel, quantize, readDatasetText, selectBackend, type Backend } from "../src/index.ts";
import type { Tensor } from "../src/tensor.ts";

const DATA = process.env.GPTQ_DATA ?? join(import.meta.dir, "..", "..", "shared", "data");
const seeds = (process.argv[2] ?? "0,1,2").split(",").map(Number);
const backend = process.argv[3] === "webgpu" ? "webgpu" : "cpu";
const sig = { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.void } as const;
const lapack = dlopen(process.env.GPTQ_BLAS ?? "libopenblas.so.0", { spotrf_: sig, spotri_: sig, dpotrf_: sig, dpotri_: sig }).symbols;

/** the WebGPU backend's choleskyInverseUpper, in float64 LAPACK on the host (download, factor, upload) */
function float64HostCholesky(be: Backend): void {
  const L = Buffer.from("L"), info = new Int32Array(1);
  (be as unknown as { choleskyInverseUpper: (h: Tensor, damp: number) => Promise<boolean> }).choleskyInverseUpper = async (h, damp) => {
    const n = h.shape[0]!, nn = Int32Array.of(n);
    const a = Float64Array.from((await be.download(h)) as Float32Array);
    for (let i = 0; i < n; i++) a[i * n + i]! += damp;
    lapack.dpotrf_(L, nn, a, nn, info);
    if (info[0]) return false;
    lapack.dpotri_(L, nn, a, nn, info);
    if (info[0]) return false;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[j * n + i] = a[i * n + j]!;
    lapack.dpotrf_(L, nn, a, nn, info);
    if (info[0]) return false;
    const u = be.upload(Float32Array.from(a, (v, k) => (k % n >= Math.floor(k / n) ? v : 0)), [n, n], "f32");
    be.writeRows(h, u, 0);
    be.free(u);
    return true;
  };
}

/** the CPU backend's choleskyInverseUpper, in float32 LAPACK (optionally on the equilibrated matrix) */
function float32Cholesky(be: Backend, equilibrate: boolean): void {
  const L = Buffer.from("L"), info = new Int32Array(1);
  (be as unknown as { choleskyInverseUpper: (h: Tensor, damp: number) => Promise<boolean> }).choleskyInverseUpper = async (h, damp) => {
    const n = h.shape[0]!, nn = Int32Array.of(n), H = h.handle as Float32Array;
    const a = Float32Array.from(H);
    for (let i = 0; i < n; i++) a[i * n + i]! += damp;
    const d = new Float32Array(n).fill(1);
    if (equilibrate) for (let i = 0; i < n; i++) d[i] = 1 / Math.sqrt(a[i * n + i]!);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = Math.fround(a[i * n + j]! * d[i]! * d[j]!);
    lapack.spotrf_(L, nn, a, nn, info); // column-major "L" of a symmetric row-major matrix = its upper factor
    if (info[0]) return false;
    lapack.spotri_(L, nn, a, nn, info);
    if (info[0]) return false;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[j * n + i] = a[i * n + j]!;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = Math.fround(a[i * n + j]! * d[i]! * d[j]!); // H⁻¹ = D (DHD)⁻¹ D
    lapack.spotrf_(L, nn, a, nn, info);
    if (info[0]) return false;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] = j >= i ? a[i * n + j]! : 0;
    return true;
  };
}

const text = readDatasetText(join(DATA, "gutenberg", "eval.txt"));
const rows: string[] = [];
const modes = backend === "cpu" ? (["float64", "float32", "float32 equilibrated"] as const) : (["webgpu float32 shader", "webgpu, float64 on the host"] as const);
for (const mode of modes) {
  const ppl: number[] = [];
  for (const seed of seeds) {
    const be = await selectBackend(backend);
    const saved = (be as unknown as Record<string, unknown>).choleskyInverseUpper;
    if (mode === "float32" || mode === "float32 equilibrated") float32Cholesky(be, mode === "float32 equilibrated");
    if (mode === "webgpu, float64 on the host") float64HostCholesky(be);
    const root = mkdtempSync(join(tmpdir(), "gptq-chol-"));
    try {
      await quantize(join(DATA, "gutenberg-llama-16m"), { out: join(root, "q"), dataset: join(DATA, "wikitext-2-raw", "wiki.valid.raw"), nsamples: 32, seqlen: 256, bits: 4, groupSize: 128, seed, progress: false, backend: be });
      ppl.push((await evaluate(await loadModel(join(root, "q"), { backend: "cpu" }), text, { seqlen: 256, maxWindows: 20, progress: false })).perplexity);
    } finally {
      rmSync(root, { recursive: true, force: true });
      (be as unknown as Record<string, unknown>).choleskyInverseUpper = saved;
    }
  }
  const mean = ppl.reduce((a, b) => a + b, 0) / ppl.length;
  rows.push(`| ${mode} | ${ppl.map((p) => p.toFixed(3)).join(" / ")} | ${mean.toFixed(3)} |`);
}
console.log(`| Cholesky | perplexity, seeds ${seeds.join("/")} | mean |\n| --- | --- | --- |\n${rows.join("\n")}`);
