// rms_norm: x [T,H], w [H] -> x · rsqrt(mean(x²) + eps) · w
import { describe, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, eachReduceVariant, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const H of [1, 3, 127, 384, 1031]) {
    const x = randn(T * H, r, 3), w = randn(H, r);
    const got = await dl(be.rmsNorm(be.upload(x, [T, H], "f32"), be.upload(w, [H], "f32"), 1e-5));
    let want: ArrayLike<number>;
    if (oracle) want = await dl(oracle.rmsNorm(oracle.upload(x, [T, H], "f32"), oracle.upload(w, [H], "f32"), 1e-5));
    else {
      const y = new Float64Array(T * H);
      for (let t = 0; t < T; t++) {
        let ss = 0;
        for (let i = 0; i < H; i++) ss += x[t * H + i]! ** 2;
        const rr = 1 / Math.sqrt(ss / H + 1e-5);
        for (let i = 0; i < H; i++) y[t * H + i] = x[t * H + i]! * rr * w[i]!;
      }
      want = y;
    }
    expectClose(got, want, 1e-5, `rmsNorm T=${T} H=${H}`);
  }
}

describe("rms_norm", () => {
  test("cpu vs float64", async () => check(await cpu()));
  eachGpuBackend("vs cpu (subgroup and tree reductions)", (be, c) => eachReduceVariant(be, () => check(be, c)));
  // one workgroup (block) per row: 65537 rows need a second grid dimension, whose last row of workgroups
  // overshoots; none of them may write (every element compared; outputs poisoned first, as in every test)
  eachGpuBackend("vs cpu, more rows than one grid dimension holds", async (be, c) => {
    const T = 65537, H = 3, r = rng(), x = randn(T * H, r), w = randn(H, r);
    const run = async (B: Backend) => dl(B.rmsNorm(B.upload(x, [T, H], "f32"), B.upload(w, [H], "f32"), 1e-5));
    const got = await run(be), want = await run(c); // outputs NaN-poisoned first (test/setup.ts)
    for (let i = 0; i < got.length; i++) if (!(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)))) throw new Error(`rmsNorm T=${T}: element ${i}: ${got[i]} vs ${want[i]}`);
  });
});

// add_rms_norm: sum = x + r [T,H], norm = rmsNorm(sum, w) in one pass, against the CPU backend's add then rmsNorm
describe("add_rms_norm", () => {
  eachGpuBackend("vs cpu add + rmsNorm (subgroup and tree reductions)", (be, c) => eachReduceVariant(be, async () => {
    const r = rng();
    for (const T of AWKWARD) for (const H of [1, 3, 64, 127, 4096, 5000]) {
      const x = randn(T * H, r), res = randn(T * H, r), w = randn(H, r);
      const got = be.addRmsNorm!(be.upload(x, [T, H], "f32"), be.upload(res, [T, H], "f32"), be.upload(w, [H], "f32"), 1e-5);
      const sum = c.add(c.upload(x, [T, H], "f32"), c.upload(res, [T, H], "f32"));
      const norm = c.rmsNorm(sum, c.upload(w, [H], "f32"), 1e-5);
      expectClose(await dl(got.sum), await dl(sum), 1e-6, `addRmsNorm sum T=${T} H=${H}`);
      expectClose(await dl(got.norm), await dl(norm), 1e-5, `addRmsNorm norm T=${T} H=${H}`);
    }
  }), 300_000, "addRmsNorm");
});
