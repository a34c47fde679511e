// argmax_next: logits [1, V] -> tok [1], ring slot pos % size (host memory), pos + 1: greedy decoding on the
// device (kernels/argmax_next.cu), against the host's pick (sampleToken at temperature 0) on fresh random
// logits with planted ties, NaN and infinities.
import { describe, expect } from "bun:test";
import { eachGpuBackend, randn, rng, SEED } from "../helpers.ts";
import { sampleToken } from "../../src/generate.ts";

/** named logit vectors of length V: random, ties planted before and after, NaN (at 0 and elsewhere), ±inf */
function cases(V: number, r: () => number): [string, Float32Array][] {
  const at = () => Math.floor(r() * V);
  const base = () => randn(V, r);
  const out: [string, Float32Array][] = [["random", base()]];
  const tie = base();
  const mx = Math.max(...tie) + 1, j = at(), k = at();
  tie[j] = mx; tie[k] = mx; // the lower of j, k must win
  out.push(["planted tie", tie]);
  const last = base();
  last[V - 1] = 1e30;
  out.push(["maximum at the end", last]);
  const nan0 = base();
  nan0[0] = NaN;
  out.push(["NaN at index 0", nan0]);
  const nans = base();
  for (let i = 1; i < V; i++) if (r() < 0.2) nans[i] = NaN;
  nans[at()] = NaN;
  out.push(["NaN scattered", nans]);
  out.push(["all -inf", new Float32Array(V).fill(-Infinity)]);
  out.push(["all NaN", new Float32Array(V).fill(NaN)]);
  const inf = new Float32Array(V).fill(-Infinity);
  inf[at()] = 3;
  inf[at()] = Infinity;
  out.push(["-inf but two", inf]);
  const eq = new Float32Array(V).fill(0.5);
  out.push(["all equal", eq]);
  return out;
}

describe("argmax_next", () => {
  eachGpuBackend("vs the host's greedy pick", async (be) => {
    const gs = be.graphs!;
    expect(gs.argmaxNext).toBeDefined();
    const r = rng();
    const ring = gs.tokenRing!(4);
    try {
      for (const V of [1, 3, 127, 4096, 32001]) {
        for (const [name, l] of cases(V, r)) {
          const want = sampleToken(l, 0, 1, () => 0);
          const p = Math.floor(r() * 1000);
          const lg = be.upload(l, [1, V], "f32"), tok = be.upload(Int32Array.of(-7), [1], "i32"), pos = be.upload(Int32Array.of(p), [1], "i32");
          ring.reset();
          gs.argmaxNext!(lg, tok, pos, ring);
          const what = `V=${V} ${name} (seed ${SEED})`;
          expect({ what, ring: ring.take(p % ring.size) }).toEqual({ what, ring: want });
          expect({ what, tok: Array.from((await be.download(tok)) as Int32Array) }).toEqual({ what, tok: [want] });
          expect({ what, pos: Array.from((await be.download(pos)) as Int32Array) }).toEqual({ what, pos: [p + 1] });
          for (const t of [lg, tok, pos]) be.free(t);
        }
      }
      // a slot that no queued work writes is an error once the device is idle, not a hang
      ring.reset();
      await be.sync();
      expect(() => ring.take(1)).toThrow(/without writing token slot 1/);
      expect(() => ring.take(4)).toThrow(/slot must be an integer in \[0, 4\)/);
    } finally {
      ring.free();
    }
    expect(() => gs.tokenRing!(1)).toThrow(/size must be an integer >= 2/);
    const bad = be.upload(Float32Array.of(1, 2), [2], "f32");
    expect(() => gs.argmaxNext!(bad, bad, bad, ring)).toThrow(/tok must be i32 \[1\]/);
    be.free(bad);
  }, 300_000, "graphs");
});
