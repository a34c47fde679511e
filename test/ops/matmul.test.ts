// matmul: x [M,K] @ w [N,K]ᵀ (+ b [N]) -> y [M,N]
import { describe, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, expectCloseScaled, randn, rng, withEnv } from "../helpers.ts";
import { f32ToBf16Array, f32ToF16Array, f16ToF32Array, bf16ToF32Array } from "../../src/dtype.ts";
import type { Backend } from "../../src/backend.ts";

/** float64 triple loop: the independent reference, and each output's summed magnitude Σ|x·w| + |b| */
function ref(x: Float32Array, w: Float32Array, b: Float32Array | null, M: number, N: number, K: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(M * N), mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = b ? b[n]! : 0, a = Math.abs(s);
    for (let k = 0; k < K; k++) {
      const p = x[m * K + k]! * w[n * K + k]!;
      s += p;
      a += Math.abs(p);
    }
    y[m * N + n] = s;
    mag[m * N + n] = a;
  }
  return { y, mag };
}

const SHAPES: [number, number, number][] = [];
for (const M of AWKWARD) SHAPES.push([M, 127, 65], [M, 3, 129], [M, 256, 1]);

async function check(be: Backend, dtype: "f32" | "f16" | "bf16", bias: boolean, tol: number, oracle?: Backend) {
  const r = rng();
  for (const [M, K, N] of SHAPES) {
    const x = randn(M * K, r), w0 = randn(N * K, r, 0.1), b = bias ? randn(N, r) : null;
    // the weight as the backend sees it after rounding to dtype
    const wBits = dtype === "f16" ? f32ToF16Array(w0) : dtype === "bf16" ? f32ToBf16Array(w0) : w0;
    const w = dtype === "f16" ? f16ToF32Array(wBits as Uint16Array) : dtype === "bf16" ? bf16ToF32Array(wBits as Uint16Array) : w0;
    const run = async (B: Backend) => {
      const y = B.matmul(B.upload(x, [M, K], "f32"), B.upload(wBits, [N, K], dtype), b ? B.upload(b, [N], "f32") : undefined);
      return dl(y);
    };
    // a bound per output on the scale of its terms (an output of few terms can cancel to nearly zero, and a
    // relative error of the whole then measures rounding over that tiny value: seed 139814855, M=1 K=256 N=1)
    const r0 = ref(x, w, b, M, N, K);
    const want = oracle ? await run(oracle) : r0.y;
    expectCloseScaled(await run(be), want, r0.mag, tol, `matmul ${dtype} M=${M} K=${K} N=${N}`);
  }
}

describe("matmul", () => {
  for (const dt of ["f32", "f16", "bf16"] as const) {
    test(`cpu vs float64 loops (${dt})`, async () => check(await cpu(), dt, false, 3e-5));
    test(`cpu vs float64 loops (${dt}, bias)`, async () => check(await cpu(), dt, true, 3e-5));
  }
  // float32 sums in another order: within a few ulps of the summed magnitude; CUDA's default TF32 GEMMs (10-bit
  // mantissas) within 2e-3 of it
  const tolOf = (be: Backend) => (be.name === "cuda" && process.env.GPTQ_CUDA_TF32 !== "0" ? 2e-3 : 2e-5);
  for (const dt of ["f32", "f16", "bf16"] as const) eachGpuBackend(`vs cpu (${dt}, bias)`, (be, c) => check(be, dt, true, tolOf(be), c));
  // WebGPU picks its GEMM's form by shape (16 x 16 tiles below 32 rows or columns, 64 x 64 register tiles above):
  // each form forced on every shape
  eachGpuBackend("vs cpu, each WebGPU GEMM form on every shape", async (be, c) => {
    if (be.name !== "webgpu") return check(be, "f32", true, tolOf(be), c);
    for (const f of ["simple", "tiled"]) await withEnv("GPTQ_WEBGPU_GEMM", f, () => check(be, "f32", true, tolOf(be), c));
  });
});
