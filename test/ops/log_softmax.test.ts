// log_softmax: x [T,V] -> x − logsumexp(x);  nll: −log_softmax(x)[t, target_t]
import { describe, expect, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, eachReduceVariant, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const V of [1, 3, 512, 4099]) {
    const x = randn(T * V, r, 5);
    const tg = Int32Array.from({ length: T }, () => Math.floor(r() * V));
    const ls = async (B: Backend) => dl(B.logSoftmax(B.upload(x, [T, V], "f32")));
    const nl = async (B: Backend) => B.nll(B.upload(x, [T, V], "f32"), tg);
    let wantLs: ArrayLike<number>, wantNll: ArrayLike<number>;
    if (oracle) {
      wantLs = await ls(oracle);
      wantNll = await nl(oracle);
    } else {
      const y = new Float64Array(T * V), n = new Float64Array(T);
      for (let t = 0; t < T; t++) {
        let mx = -Infinity, z = 0;
        for (let j = 0; j < V; j++) mx = Math.max(mx, x[t * V + j]!);
        for (let j = 0; j < V; j++) z += Math.exp(x[t * V + j]! - mx);
        for (let j = 0; j < V; j++) y[t * V + j] = x[t * V + j]! - mx - Math.log(z);
        n[t] = -y[t * V + tg[t]!]!;
      }
      wantLs = y;
      wantNll = n;
    }
    expectClose(await ls(be), wantLs, 1e-6, `logSoftmax T=${T} V=${V}`);
    if (!oracle) expectClose(await nl(be), wantNll, 1e-5, `nll T=${T} V=${V}`);
    else {
      // a GPU computes the NLL in float32: logsumexp − x_target cancels when the NLL is near 0, so the bound is
      // absolute, on the scale of the logits (each value checked, NaN failing)
      const got = await nl(be);
      for (let t = 0; t < T; t++) {
        const d = Math.abs(got[t]! - wantNll[t]!);
        if (!(d <= 1e-4 * (1 + Math.abs(wantNll[t]!)))) throw new Error(`nll T=${T} V=${V} row ${t}: ${got[t]} vs ${wantNll[t]}`);
      }
      expect(got.length).toBe(T);
    }
  }
}

describe("log_softmax / nll", () => {
  test("cpu vs float64", async () => check(await cpu()));
  eachGpuBackend("vs cpu (subgroup and tree reductions)", (be, c) => eachReduceVariant(be, () => check(be, c)));
});
