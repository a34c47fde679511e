// hessian_accumulate: H [K,K] += xᵀx for x [T,K];  cholesky_inverse_upper: H + dI -> U upper with UᵀU = (H + dI)⁻¹
import { describe, expect, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";

async function checkHessian(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const K of [1, 3, 127, 300]) {
    const x = randn(T * K, r), h0 = randn(K * K, r);
    for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) h0[i * K + j] = h0[j * K + i]!; // symmetric start
    const run = async (B: Backend) => {
      const h = B.upload(h0, [K, K], "f32");
      B.hessianAccumulate(h, B.upload(x, [T, K], "f32"));
      B.hessianAccumulate(h, B.upload(x, [T, K], "f32"));
      return dl(h);
    };
    let want: ArrayLike<number>;
    if (oracle) want = await run(oracle);
    else {
      const w = Float64Array.from(h0);
      for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
        let s = 0;
        for (let t = 0; t < T; t++) s += x[t * K + i]! * x[t * K + j]!;
        w[i * K + j]! += 2 * s;
      }
      want = w;
    }
    expectClose(await run(be), want, oracle ? 1e-5 : 1e-4, `hessian T=${T} K=${K}`);
  }
}

/** a random SPD matrix X·Xᵀ/n with a spread of scales, like a real Hessian */
function spd(K: number, r: () => number): Float32Array {
  const n = K + 8;
  const x = randn(K * n, r);
  for (let i = 0; i < K; i++) for (let t = 0; t < n; t++) x[i * n + t]! *= 0.2 + 3 * r();
  const h = new Float32Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
    let s = 0;
    for (let t = 0; t < n; t++) s += x[i * n + t]! * x[j * n + t]!;
    h[i * K + j] = s / n;
  }
  return h;
}

async function checkChol(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const K of [1, 3, 127, 129, 256]) {
    const h = spd(K, r);
    let mean = 0;
    for (let i = 0; i < K; i++) mean += h[i * K + i]!;
    const damp = (0.01 * mean) / K;
    const t = be.upload(h, [K, K], "f32");
    expect(await be.choleskyInverseUpper(t, damp)).toBe(true);
    const U = await dl(t);
    if (oracle) {
      const o = oracle.upload(h, [K, K], "f32");
      await oracle.choleskyInverseUpper(o, damp);
      expectClose(U, await dl(o), 1e-3, `cholesky K=${K}`);
    }
    // independent check: lower part zero, and UᵀU (H + dI) = I
    for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) expect(U[i * K + j]).toBe(0);
    const A = Float64Array.from(h);
    for (let i = 0; i < K; i++) A[i * K + i]! += damp;
    const prod = new Float64Array(K * K), eye = new Float64Array(K * K);
    for (let i = 0; i < K; i++) {
      eye[i * K + i] = 1;
      for (let j = 0; j < K; j++) {
        let s = 0;
        for (let m = 0; m < K; m++) {
          let inv = 0; // (UᵀU)[i,m]
          for (let l = 0; l <= Math.min(i, m); l++) inv += U[l * K + i]! * U[l * K + m]!;
          s += inv * A[m * K + j]!;
        }
        prod[i * K + j] = s;
      }
    }
    expectClose(prod, eye, oracle ? 2e-3 : 1e-4, `UᵀU·H = I, K=${K}`);
  }
  // not positive-definite: reported, not thrown, H untouched
  const bad = be.upload(Float32Array.of(1, 2, 2, 1), [2, 2], "f32");
  expect(await be.choleskyInverseUpper(bad, 0)).toBe(false);
}

describe("hessian_accumulate", () => {
  test("cpu vs float64 XᵀX", async () => checkHessian(await cpu()));
  eachGpuBackend("vs cpu", (be, c) => checkHessian(be, c));
});
describe("cholesky_inverse_upper", () => {
  test("cpu: UᵀU(H + dI) = I", async () => checkChol(await cpu()), 60_000);
  eachGpuBackend("vs cpu and UᵀU(H + dI) = I", (be, c) => checkChol(be, c));
  // large n takes the one-dispatch-per-step path on WebGPU
  eachGpuBackend("vs cpu at n = 1030", async (be, c) => {
    const r = rng(), K = 1030;
    const h = spd(K, r);
    const damp = 0.01;
    const t = be.upload(h, [K, K], "f32"), o = c.upload(h, [K, K], "f32");
    expect(await be.choleskyInverseUpper(t, damp)).toBe(true);
    expect(await c.choleskyInverseUpper(o, damp)).toBe(true);
    expectClose(await dl(t), await dl(o), 2e-3, `cholesky K=${K}`);
  }, 600_000);
});
