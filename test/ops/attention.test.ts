// attention: q [T, heads·hd], K/V caches [S, kvHeads·hd] -> [T, heads·hd], causal, grouped-query heads
import { describe, test } from "bun:test";
import { AWKWARD, cpu, devicePositions, dl, eachGpuBackend, eachReduceVariant, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";
import type { Tensor } from "../../src/tensor.ts";
import { computeInvFreq } from "../../src/model/config.ts";

/** softmax(q·kᵀ/√hd over keys 0..pos0+t) · v, in float64 */
function ref(q: Float32Array, k: Float32Array, v: Float32Array, T: number, pos0: number, heads: number, kvHeads: number, hd: number, k0 = 0, r0 = 0, out = new Float64Array(q.length)): Float64Array {
  const QC = heads * hd, KC = kvHeads * hd;
  for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) {
    const kv = Math.floor(h / (heads / kvHeads));
    const L = pos0 + t + 1;
    const s = new Float64Array(L);
    for (let j = 0; j < L; j++) {
      let d = 0;
      for (let i = 0; i < hd; i++) d += q[(r0 + t) * QC + h * hd + i]! * k[(k0 + j) * KC + kv * hd + i]!;
      s[j] = d / Math.sqrt(hd);
    }
    const mx = Math.max(...s);
    let z = 0;
    for (let j = 0; j < L; j++) z += (s[j] = Math.exp(s[j]! - mx));
    for (let i = 0; i < hd; i++) {
      let o = 0;
      for (let j = 0; j < L; j++) o += (s[j]! / z) * v[(k0 + j) * KC + kv * hd + i]!;
      out[(r0 + t) * QC + h * hd + i] = o;
    }
  }
  return out;
}

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const [heads, kvHeads, hd] of [[1, 1, 8], [6, 2, 64], [4, 4, 3], [8, 1, 128], [2, 1, 80]] as const) for (const pos0 of [0, 5, 300]) {
    const S = pos0 + T + 2; // cache longer than used: rows past pos0+T must be ignored
    const q = randn(T * heads * hd, r), k = randn(S * kvHeads * hd, r), v = randn(S * kvHeads * hd, r);
    k.fill(NaN, (pos0 + T) * kvHeads * hd);
    v.fill(NaN, (pos0 + T) * kvHeads * hd);
    const run = async (B: Backend) => dl(B.attention(B.upload(q, [T, heads * hd], "f32"), B.upload(k, [S, kvHeads * hd], "f32"), B.upload(v, [S, kvHeads * hd], "f32"), { pos0, heads, kvHeads, headDim: hd }));
    const want = oracle ? await run(oracle) : ref(q, k, v, T, pos0, heads, kvHeads, hd);
    expectClose(await run(be), want, 1e-4, `attention T=${T} heads=${heads}/${kvHeads} hd=${hd} pos0=${pos0}`);
    if (devicePositions(be) && T <= 3) {
      // decoding with the position as a device scalar (graph replay): same result, the cache length bounds it
      const got = await dl(be.attention(be.upload(q, [T, heads * hd], "f32"), be.upload(k, [S, kvHeads * hd], "f32"), be.upload(v, [S, kvHeads * hd], "f32"), { pos0: 0, heads, kvHeads, headDim: hd, posTensor: be.upload(Int32Array.of(pos0), [1], "i32") }));
      expectClose(got, want, 1e-4, `attention (device position) T=${T} heads=${heads}/${kvHeads} hd=${hd} pos0=${pos0}`);
    }
  }
  // several independent sequences side by side (calibration / eval batches)
  for (const [B_, T] of [[3, 5], [2, 127]] as const) {
    const heads = 6, kvHeads = 2, hd = 16, N = B_ * T;
    const q = randn(N * heads * hd, r), k = randn(N * kvHeads * hd, r), v = randn(N * kvHeads * hd, r);
    const run = async (B: Backend) => dl(B.attention(B.upload(q, [N, heads * hd], "f32"), B.upload(k, [N, kvHeads * hd], "f32"), B.upload(v, [N, kvHeads * hd], "f32"), { pos0: 0, heads, kvHeads, headDim: hd, seqLen: T }));
    let want: ArrayLike<number>;
    if (oracle) want = await run(oracle);
    else {
      const o = new Float64Array(q.length);
      for (let b = 0; b < B_; b++) ref(q, k, v, T, 0, heads, kvHeads, hd, b * T, b * T, o);
      want = o;
    }
    expectClose(await run(be), want, 1e-4, `attention ${B_} sequences of ${T}`);
  }
}

describe("attention", () => {
  test("cpu vs float64 softmax attention", async () => check(await cpu()));
  eachGpuBackend("vs cpu (subgroup and tree reductions)", (be, c) => eachReduceVariant(be, () => check(be, c)));
});

// ropeAttention (decoding): rope on q and the new k, both new rows written to the caches, attention over them;
// against the CPU backend's rope + writeRows + attention. One query row takes the fused kernel on CUDA (head
// sizes 8 .. 128, powers of two); 3 rows and the other head sizes take the two-launch path.
describe("ropeAttention", () => {
  eachGpuBackend("vs cpu rope + writeRows + attention", async (be, c) => {
    const r = rng();
    for (const T of [1, 3]) for (const [heads, kvHeads, hd] of [[4, 2, 8], [8, 1, 128], [6, 2, 64], [3, 3, 6], [2, 1, 80], [2, 2, 4]] as const) for (const pos0 of [0, 5, 300]) for (const dev of [false, true]) {
      const rows = pos0 + T + 3, C = kvHeads * hd, used = (pos0 + T) * C;
      const inv = computeInvFreq(hd, 10000, {}, 2048).invFreq;
      const q = randn(T * heads * hd, r), k = randn(T * C, r), v = randn(T * C, r), kc = randn(rows * C, r), vc = randn(rows * C, r);
      kc.fill(NaN, used); // rows past the new ones must not be read
      vc.fill(NaN, used);
      const run = async (B: Backend, fused: boolean) => {
        const [qt, kt, vt] = [B.upload(q, [T, heads * hd], "f32"), B.upload(k, [T, C], "f32"), B.upload(v, [T, C], "f32")];
        const [kct, vct] = [B.upload(kc, [rows, C], "f32"), B.upload(vc, [rows, C], "f32")];
        let y: Tensor;
        if (fused) {
          const posTensor = dev ? B.upload(Int32Array.of(pos0), [1], "i32") : undefined;
          y = B.ropeAttention!(qt, kt, vt, kct, vct, { headDim: hd, pos0: dev ? 0 : pos0, invFreq: inv, scale: 0.9, posTensor, heads, kvHeads });
        } else {
          const o = { headDim: hd, pos0, invFreq: inv, scale: 0.9 };
          B.rope(qt, { ...o, heads });
          B.rope(kt, { ...o, heads: kvHeads });
          B.writeRows(kct, kt, pos0);
          B.writeRows(vct, vt, pos0);
          y = B.attention(qt, kct, vct, { pos0, heads, kvHeads, headDim: hd });
        }
        const [yo, ko, vo] = await Promise.all([y, kct, vct].map((t) => dl(t)));
        return [yo!, ko!.subarray(0, used), vo!.subarray(0, used)];
      };
      const [got, want] = [await run(be, true), await run(c, false)];
      ["out", "kCache", "vCache"].forEach((n, i) => expectClose(got[i]!, want[i]!, 1e-4, `ropeAttention ${n} T=${T} heads=${heads}/${kvHeads} hd=${hd} pos0=${pos0} device position=${dev}`));
    }
  }, 300_000, "ropeAttention");
});
