// half_gemv: x [M, K] @ w [N, K]ᵀ (+ b) -> y [M, N] for M = 1..4 through the fp16 twin of a weight uploaded as
// f16 (keepHalf; kernels/half_gemv.cu), against the CPU backend's matmul on the same f16 weight: the twin is
// exact, so only the order of the fp32 sums differs. Shapes: K % 8 == 0 (16-byte chunks) and not (scalar).
import { describe, expect } from "bun:test";
import { cpu, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import { f32ToF16Array } from "../../src/dtype.ts";

const SHAPES: [number, number][] = [[127, 65], [256, 129], [8, 1], [4104, 33], [4096, 3], [3, 7], [1, 5]]; // [K, N]

describe("half_gemv", () => {
  eachGpuBackend("vs cpu matmul (f16 weight, 1-4 rows, bias)", async (be) => {
    const c = await cpu(), r = rng();
    for (const [K, N] of SHAPES) {
      const w16 = f32ToF16Array(randn(N * K, r, 0.1)), b = randn(N, r);
      const w = be.upload(w16, [N, K], "f16"), wc = c.upload(w16, [N, K], "f16");
      expect(be.keepHalf!(w)).toBe(true);
      expect(be.keepHalf!(w)).toBe(true); // (once: the twin is kept)
      for (const M of [1, 2, 3, 4, 5]) { // (5: past the GEMV, the f32 GEMM on the same tensor)
        const x = randn(M * K, r);
        const got = await dl(be.matmul(be.upload(x, [M, K], "f32"), w, be.upload(b, [N], "f32")));
        const want = await dl(c.matmul(c.upload(x, [M, K], "f32"), wc, c.upload(b, [N], "f32")));
        expectClose(got, want, M <= 4 ? 1e-5 : 2e-3, `half_gemv M=${M} K=${K} N=${N}`); // (M = 5: TF32 GEMM)
      }
      be.free(w);
    }
    // only f16 weights: f32 or bf16 ones would not be exact in fp16
    expect(be.keepHalf!(be.upload(new Float32Array(16), [4, 4], "f32"))).toBe(false);
    expect(be.keepHalf!(be.upload(new Uint16Array(16), [4, 4], "bf16"))).toBe(false);
  }, 300_000, "keepHalf");
});
