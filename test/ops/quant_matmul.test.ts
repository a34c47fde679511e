// quant_matmul: x [M, in] @ dequant(W)ᵀ (+ b) -> [M, out], W[n,k] = scale[g,n]·(q[k,n] − zero[g,n]), g = g_idx[k]
import { describe, test } from "bun:test";
import { cpu, dl, eachGpuBackend, eachShaderVariant, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";
import { randomQuant, type QuantCase as Case } from "../synthetic.ts";

function ref(x: Float32Array, c: Case, M: number, bias: Float32Array | null): Float64Array {
  const { inFeatures: K, outFeatures: N } = c.spec;
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = bias ? bias[n]! : 0;
    for (let k = 0; k < K; k++) {
      const g = c.spec.gIdx[k]!;
      s += x[m * K + k]! * c.spec.scales[g * N + n]! * (c.codes[k * N + n]! - c.zeros[g * N + n]!);
    }
    y[m * N + n] = s;
  }
  return y;
}

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  // shapes hit every path: generic (any width / shape); for 4 bits the repacked kernels (K % 16, N % 64,
  // uniform groups; act-order as a permutation): the GEMV with groups of 1, 2, 3 and 8+ k16 steps (group
  // sizes 16, 32, 48, 128, 512) and the tensor-core kernel; and the dequantize + GEMM path (large M)
  for (const bits of [2, 3, 4, 8]) for (const [K, N, gs] of [[32, 32, 32], [96, 160, 32], [416, 96, 128], [256, 32, 256], [128, 64, 32], [256, 192, 128], [512, 128, 512], [192, 64, 48], [64, 128, 16]] as const) {
    for (const actOrder of [false, true]) {
      const c = randomQuant(r, bits, K, N, gs, actOrder, bits !== 8);
      for (const M of [1, 3, 16, 127]) {
        const x = randn(M * K, r);
        const bias = M === 3 ? randn(N, r) : null;
        const run = async (B: Backend) => {
          const w = B.prepareQuantWeight(c.spec);
          return dl(B.quantMatmul(B.upload(x, [M, K], "f32"), w, bias ? B.upload(bias, [N], "f32") : undefined));
        };
        const want = oracle ? await run(oracle) : ref(x, c, M, bias);
        expectClose(await run(be), want, oracle ? 2e-3 : 1e-5, `quantMatmul bits=${bits} M=${M} K=${K} N=${N} gs=${gs} act=${actOrder}`);
      }
    }
  }
}

/** activations far from 1 (fast kernels stage x in fp16 with a per-block power-of-two scale), and one huge outlier channel */
async function checkMagnitudes(be: Backend, oracle: Backend) {
  const r = rng();
  const [K, N, gs] = [1024, 192, 128];
  for (const actOrder of [false, true]) {
    const c = randomQuant(r, 4, K, N, gs, actOrder, true);
    for (const M of [1, 2, 4]) for (const mag of [1e-6, 1e-3, 30, 3e4]) for (const outlier of [false, true]) {
      const x = randn(M * K, r).map((v) => v * mag);
      if (outlier) for (let m = 0; m < M; m++) x[m * K + 5] = 2000 * mag;
      const run = async (B: Backend) => dl(B.quantMatmul(B.upload(x, [M, K], "f32"), B.prepareQuantWeight(c.spec)));
      expectClose(await run(be), await run(oracle), 2e-3, `quantMatmul M=${M} |x|~${mag} outlier=${outlier} act=${actOrder}`);
    }
  }
}

describe("quant_matmul", () => {
  test("cpu vs float64 dequantized product", async () => check(await cpu()), 60_000);
  eachGpuBackend("vs cpu (every shader variant)", (be, c) => eachShaderVariant(be, () => check(be, c)));
  eachGpuBackend("vs cpu, activations of any magnitude (every shader variant)", (be, c) => eachShaderVariant(be, () => checkMagnitudes(be, c)));
});
