// rope: x [T, heads·hd] in place, Hugging Face half-split layout: (x1, x2) -> (x1 cos − x2 sin, x2 cos + x1 sin)
import { describe, test } from "bun:test";
import { AWKWARD, cpu, devicePositions, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";
import { computeInvFreq } from "../../src/model/config.ts";

/** the reference as transformers writes it: q·cos + rotate_half(q)·sin with cos = cat(freqs, freqs) */
function ref(x: Float32Array, T: number, heads: number, hd: number, pos: (t: number) => number, inv: Float32Array): Float64Array {
  const y = new Float64Array(x.length);
  for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) for (let i = 0; i < hd; i++) {
    const f = inv[i % (hd / 2)]! * pos(t);
    const rot = i < hd / 2 ? -x[t * heads * hd + h * hd + i + hd / 2]! : x[t * heads * hd + h * hd + i - hd / 2]!;
    y[t * heads * hd + h * hd + i] = x[t * heads * hd + h * hd + i]! * Math.cos(f) + rot * Math.sin(f);
  }
  return y;
}

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const [heads, hd] of [[1, 2], [3, 8], [5, 64], [2, 128]] as const) for (const pos0 of [0, 37]) {
    const inv = computeInvFreq(hd, 10000, {}, 2048).invFreq;
    const x = randn(T * heads * hd, r);
    const seqLen = T > 3 ? Math.ceil(T / 2) : undefined;
    const opts = { heads, headDim: hd, pos0, invFreq: inv, scale: 1 };
    const run = async (B: Backend) => {
      const t = B.upload(x, [T, heads * hd], "f32");
      B.rope(t, opts);
      return dl(t);
    };
    const want = oracle ? await run(oracle) : ref(x, T, heads, hd, (t) => pos0 + t, inv);
    expectClose(await run(be), want, 1e-5, `rope T=${T} heads=${heads} hd=${hd} pos0=${pos0}`);
    if (devicePositions(be) && pos0 > 0) {
      // the same rows with the position split into a host part and a device scalar (graph replay)
      const t = be.upload(x, [T, heads * hd], "f32");
      be.rope(t, { ...opts, pos0: 7, posTensor: be.upload(Int32Array.of(pos0 - 7), [1], "i32") });
      expectClose(await dl(t), want, 1e-5, `rope (device position) T=${T} heads=${heads} hd=${hd} pos0=${pos0}`);
    }
    if (seqLen && T % seqLen === 0 && pos0 === 0) {
      const runS = async (B: Backend) => {
        const t = B.upload(x, [T, heads * hd], "f32");
        B.rope(t, { ...opts, seqLen });
        return dl(t);
      };
      const wantS = oracle ? await runS(oracle) : ref(x, T, heads, hd, (t) => t % seqLen, inv);
      expectClose(await runS(be), wantS, 1e-5, `rope seqLen=${seqLen}`);
    }
  }
}

describe("rope", () => {
  test("cpu vs transformers' rotate_half formula", async () => check(await cpu()));
  eachGpuBackend("vs cpu", (be, c) => check(be, c));
});

// rope_kv: rope on q and k, then k and v into rows pos0 (+ device position) + t of the caches, in one launch;
// against the CPU backend's two ropes and two writeRows. Cache rows outside those written stay as they were.
describe("rope_kv (ropeWriteKV)", () => {
  eachGpuBackend("vs cpu rope + writeRows", async (be, c) => {
    const r = rng();
    for (const T of [1, 3, 127]) for (const [heads, kvHeads, hd] of [[4, 2, 8], [3, 3, 6], [8, 1, 128]] as const) for (const pos0 of [0, 5]) for (const dev of [false, true]) {
      const rows = pos0 + T + 3, C = kvHeads * hd;
      const inv = computeInvFreq(hd, 10000, {}, 2048).invFreq;
      const q = randn(T * heads * hd, r), k = randn(T * C, r), v = randn(T * C, r), kc = randn(rows * C, r), vc = randn(rows * C, r);
      const run = async (B: Backend, fused: boolean) => {
        const [qt, kt, vt] = [B.upload(q, [T, heads * hd], "f32"), B.upload(k, [T, C], "f32"), B.upload(v, [T, C], "f32")];
        const [kct, vct] = [B.upload(kc, [rows, C], "f32"), B.upload(vc, [rows, C], "f32")];
        const posTensor = dev ? B.upload(Int32Array.of(pos0), [1], "i32") : undefined;
        const o = { headDim: hd, pos0: dev ? 0 : pos0, invFreq: inv, scale: 1, posTensor };
        if (fused) B.ropeWriteKV!(qt, kt, vt, kct, vct, { ...o, heads, kvHeads });
        else {
          B.rope(qt, { ...o, heads });
          B.rope(kt, { ...o, heads: kvHeads });
          B.writeRows(kct, kt, o.pos0, posTensor);
          B.writeRows(vct, vt, o.pos0, posTensor);
        }
        return Promise.all([qt, kt, kct, vct].map((t) => dl(t)));
      };
      const [got, want] = [await run(be, true), await run(c, false)];
      ["q", "k", "kCache", "vCache"].forEach((n, i) => expectClose(got[i]!, want[i]!, 1e-5, `ropeWriteKV ${n} T=${T} heads=${heads}/${kvHeads} hd=${hd} pos0=${pos0} device position=${dev}`));
    }
  }, 300_000, "ropeWriteKV");
});
