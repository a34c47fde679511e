// matmul: x [M,K] @ w [N,K]ᵀ (+ b [N]) -> y [M,N]
import { describe, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import { f32ToBf16Array, f32ToF16Array, f16ToF32Array, bf16ToF32Array } from "../../src/dtype.ts";
import type { Backend } from "../../src/backend.ts";

/** float64 triple loop: the independent reference */
function ref(x: Float32Array, w: Float32Array, b: Float32Array | null, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = b ? b[n]! : 0;
    for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
    y[m * N + n] = s;
  }
  return y;
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
    const want = oracle ? await run(oracle) : ref(x, w, b, M, N, K);
    expectClose(await run(be), want, tol, `matmul ${dtype} M=${M} K=${K} N=${N}`);
  }
}

describe("matmul", () => {
  for (const dt of ["f32", "f16", "bf16"] as const) {
    test(`cpu vs float64 loops (${dt})`, async () => check(await cpu(), dt, false, 3e-5));
    test(`cpu vs float64 loops (${dt}, bias)`, async () => check(await cpu(), dt, true, 3e-5));
  }
  for (const dt of ["f32", "f16", "bf16"] as const) eachGpuBackend(`vs cpu (${dt}, bias)`, (be, c) => check(be, dt, true, 2e-3, c));
});
