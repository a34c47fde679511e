// quant_matmul: x [M, in] @ dequant(W)ᵀ (+ b) -> [M, out], W[n,k] = scale[g,n]·(q[k,n] − zero[g,n]), g = g_idx[k]
import { describe, expect, test } from "bun:test";
import { cpu, dl, eachGpuBackend, eachShaderVariant, expectClose, gpuBackends, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";
import { numel, type Tensor } from "../../src/tensor.ts";
import { randomQuant, type QuantCase as Case } from "../synthetic.ts";
import { columnQuadsKnob } from "../../backends/webgpu/index.ts";

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
  // uniform groups; act-order as a permutation): the GEMV (1-4 rows) with groups of 1, 2, 3 and 8+ k16 steps
  // (group sizes 16, 32, 48, 128, 512) and the tensor-core kernel (5-64 rows, 16 at a time: 33 is three
  // slices, the last of one row); and the dequantize + GEMM path (large M)
  for (const bits of [2, 3, 4, 8]) for (const [K, N, gs] of [[32, 32, 32], [96, 160, 32], [416, 96, 128], [256, 32, 256], [128, 64, 32], [256, 192, 128], [512, 128, 512], [192, 64, 48], [64, 128, 16]] as const) {
    for (const actOrder of [false, true]) {
      const c = randomQuant(r, bits, K, N, gs, actOrder, bits !== 8);
      for (const M of [1, 3, 7, 16, 33, 127]) {
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
    for (const M of [1, 2, 4, 9]) for (const mag of [1e-6, 1e-3, 30, 3e4]) for (const outlier of [false, true]) {
      const x = randn(M * K, r).map((v) => v * mag);
      if (outlier) for (let m = 0; m < M; m++) x[m * K + 5] = 2000 * mag;
      const run = async (B: Backend) => dl(B.quantMatmul(B.upload(x, [M, K], "f32"), B.prepareQuantWeight(c.spec)));
      expectClose(await run(be), await run(oracle), 2e-3, `quantMatmul M=${M} |x|~${mag} outlier=${outlier} act=${actOrder}`);
    }
  }
}

/**
 * a NaN or an infinity in x reaches every output of its row, as through float arithmetic (the integer-dot GEMV
 * turns x into integers per group: a non-finite group must not become a finite number), and no other row
 */
async function checkNonFinite(be: Backend) {
  const r = rng();
  const [K, N, gs] = [512, 64, 128];
  for (const actOrder of [false, true]) {
    const c = randomQuant(r, 4, K, N, gs, actOrder, true);
    for (const M of [1, 3]) for (const bad of [NaN, Infinity]) {
      const x = randn(M * K, r);
      x[(M - 1) * K + 300] = bad; // the last row
      const y = await dl(be.quantMatmul(be.upload(x, [M, K], "f32"), be.prepareQuantWeight(c.spec)));
      for (let i = 0; i < M * N; i++) {
        const last = i >= (M - 1) * N;
        if (last ? Number.isFinite(y[i]) : !Number.isFinite(y[i])) throw new Error(`quantMatmul M=${M} x holding ${bad} act=${actOrder}: y[${i}] = ${y[i]} (the ${last ? "" : "un"}affected row)`);
      }
      expect(y.slice(0, (M - 1) * N).every(Number.isFinite)).toBe(true);
    }
  }
}

/**
 * long inputs (K of 8-11 thousand, few columns): the GEMV's k range split across workgroups (WebGPU: q4_gemv_s
 * with partial sums and q4_reduce, a split starting inside a group), with and without act-order
 */
async function checkLong(be: Backend, oracle: Backend) {
  const r = rng();
  // (WebGPU's integer GEMV at M = 1, pipelined loop: 8320 x 96 is nine k splits, the last of 16 packed rows (two
  // k-lanes busy); 4096 x 64 with groups of 64 is one split; groups of 32 (4 packed rows) and of 96 (12) end in
  // the middle of a batch of 8 rows; its per-group loop: groups of 48 (6 packed rows))
  for (const [K, N, gs, actOrder] of [[8320, 96, 128, false], [8320, 96, 128, true], [11008, 64, 32, false], [4096, 64, 64, false], [4096, 64, 64, true], [4608, 64, 96, false], [8208, 64, 48, false]] as const) {
    const c = randomQuant(r, 4, K, N, gs, actOrder, true);
    for (const M of [1, 2, 5]) {
      const x = randn(M * K, r);
      const run = async (B: Backend) => dl(B.quantMatmul(B.upload(x, [M, K], "f32"), B.prepareQuantWeight(c.spec)));
      expectClose(await run(be), await run(oracle), 2e-3, `quantMatmul M=${M} K=${K} N=${N} gs=${gs} act=${actOrder}`);
    }
  }
}

/**
 * quantMatmulMany (CUDA: one GEMV launch over the columns of several weights sharing x) against one
 * quantMatmul each on the same backend and against the CPU backend; outputs are fresh tensors (poisoned),
 * so a chunk the launch skips shows. Widths not all equal, optional biases, act-order with a shared
 * permutation (one launch) and with different permutations (one call each), and M > 4 (one call each).
 */
async function checkMany(be: Backend, oracle: Backend) {
  const r = rng();
  for (const [K, Ns, gs, actOrder] of [[256, [192, 64, 64], 128, false], [1024, [128, 320], 32, false], [384, [64, 128, 192], 48, true], [64, [64], 16, false]] as const) {
    const cs = Ns.map((N) => randomQuant(r, 4, K, N, gs, actOrder, true));
    for (const shared of actOrder ? [true, false] : [true]) {
      if (shared) for (const c of cs) c.spec.gIdx = cs[0]!.spec.gIdx;
      for (const M of [1, 2, 3, 5, 16, 17]) {
        const x = randn(M * K, r);
        const bs = Ns.map((N, i) => (i === 1 ? randn(N, r) : null));
        const run = async (B: Backend, many: boolean) => {
          const ws = cs.map((c) => B.prepareQuantWeight(c.spec));
          const xt = B.upload(x, [M, K], "f32");
          const bt = bs.map((b) => (b ? B.upload(b, [b.length], "f32") : undefined));
          const ys = many ? B.quantMatmulMany!(xt, ws, bt) : ws.map((w, i) => B.quantMatmul(xt, w, bt[i]));
          const out = [];
          for (const y of ys) out.push(await dl(y));
          for (const w of ws) B.free(w);
          return out;
        };
        const [got, sep, want] = [await run(be, true), await run(be, false), await run(oracle, false)];
        got.forEach((g, i) => {
          const what = `quantMatmulMany weight ${i} of ${Ns.length} M=${M} K=${K} N=${Ns[i]} gs=${gs} act=${actOrder} shared=${shared}`;
          expectClose(g, sep[i]!, 2e-3, `${what} vs separate calls`);
          expectClose(g, want[i]!, 2e-3, `${what} vs cpu`);
        });
      }
    }
  }
}

/** quantMatmulGated (CUDA: the GEMV gates its input, silu(g)·u, as it stages it) against siluMul + quantMatmul on the CPU */
async function checkGated(be: Backend, oracle: Backend) {
  const r = rng();
  for (const [K, N, gs, actOrder] of [[256, 192, 128, false], [1024, 64, 32, true], [96, 128, 48, false], [4128, 64, 32, false]] as const) {
    const c = randomQuant(r, 4, K, N, gs, actOrder, true);
    for (const M of [1, 2, 3, 5]) {
      const g = randn(M * K, r, 3), u = randn(M * K, r), bias = M === 3 ? randn(N, r) : null;
      const run = (B: Backend, fused: boolean) => {
        const w = B.prepareQuantWeight(c.spec);
        const [gt, ut] = [B.upload(g, [M, K], "f32"), B.upload(u, [M, K], "f32")];
        const bt = bias ? B.upload(bias, [N], "f32") : undefined;
        return dl(fused ? B.quantMatmulGated!(gt, ut, w, bt) : B.quantMatmul(B.siluMul(gt, ut), w, bt));
      };
      expectClose(await run(be, true), await run(oracle, false), 2e-3, `quantMatmulGated M=${M} K=${K} N=${N} gs=${gs} act=${actOrder}`);
    }
  }
}

/** an f32 tensor of shape on B */
const up = (B: Backend, a: Float32Array, shape: number[]) => B.upload(a, shape, "f32");

/**
 * decoding with the residual add and the next RMSNorm fused into the GEMVs around them: quantMatmulAdd
 * (y = residual + x' @ Wᵀ + b, x' = x or silu(x)·gate), into a new y and accumulated into the residual in
 * place, against the CPU backend's add of quantMatmul; quantMatmulManyNormed of that y (one to three weights,
 * act-order or not, a bias) against quantMatmul of the CPU's rmsNorm of the same y. The shapes split K across
 * blocks (K = 4096 into 128 columns; the normed matmuls' K = 1024 and 4096 likewise), so the k split's sums
 * (in place: atomics into y), and Σ x² of the norm over a split or a cluster, are taken on the GPU.
 */
async function checkAddNormed(be: Backend, oracle: Backend) {
  const r = rng();
  const eps = 1e-5;
  const cases = [[256, 192, 128, 64, false], [1024, 320, 32, 64, true], [4096, 128, 128, 128, false], [96, 64, 48, 16, false], [64, 1024, 32, 128, false], [128, 4096, 128, 128, true]] as const;
  for (const [K, N, gs, gs2, actOrder] of cases) {
    const c = randomQuant(r, 4, K, N, gs, actOrder, true);
    const cs = [128, 64, 192].map((N2) => randomQuant(r, 4, N, N2, gs2, actOrder, true));
    if (actOrder) for (const c2 of cs) c2.spec.gIdx = cs[0]!.spec.gIdx; // (weights sharing x share their permutation)
    for (const M of [1, 2, 3, 4]) for (const gated of [false, true]) {
      const what = `M=${M} K=${K} N=${N} gs=${gs} act=${actOrder} gated=${gated}`;
      const x = randn(M * K, r, 2), gate = randn(M * K, r), res = randn(M * N, r, 3), normW = randn(N, r), bias = M === 3 ? randn(N, r) : null;
      const w = be.prepareQuantWeight(c.spec);
      // the oracle: residual + quantMatmul(x')
      const ow = oracle.prepareQuantWeight(c.spec);
      const ox = gated ? oracle.siluMul(up(oracle, x, [M, K]), up(oracle, gate, [M, K])) : up(oracle, x, [M, K]);
      const want = await dl(oracle.add(up(oracle, res, [M, N]), oracle.quantMatmul(ox, ow, bias ? up(oracle, bias, [N]) : undefined)));
      let y: Tensor | null = null;
      for (const inPlace of [false, true]) {
        const resT = up(be, res, [M, N]);
        const f = be.quantMatmulAdd!(up(be, x, [M, K]), w, resT, { gate: gated ? up(be, gate, [M, K]) : undefined, bias: bias ? up(be, bias, [N]) : undefined, inPlace });
        expect(f, `quantMatmulAdd ${what} inPlace=${inPlace}: null for a 4-bit weight and <= 4 rows`).not.toBeNull();
        if (!inPlace) expect(f, `quantMatmulAdd ${what}: the residual was written`).not.toBe(resT);
        expectClose(await dl(f!), want, 2e-3, `quantMatmulAdd ${what} inPlace=${inPlace}`);
        if (!inPlace) expect(Array.from(await dl(resT)), `quantMatmulAdd ${what}: the residual changed`).toEqual(Array.from(res));
        y = f;
      }
      const yv = await dl(y!);
      // the deferred norm, for 1, 2 and 3 weights
      for (const count of [1, 2, 3]) {
        const ws = cs.slice(0, count).map((c2) => be.prepareQuantWeight(c2.spec));
        const b2 = count > 1 ? randn(cs[1]!.spec.outFeatures, r) : null;
        const biases = ws.map((_, i) => (i === 1 && b2 ? be.upload(b2, [b2.length], "f32") : undefined));
        const ys = be.quantMatmulManyNormed!(y!, up(be, normW, [N]), eps, ws, biases);
        expect(ys, `quantMatmulManyNormed ${what} count=${count}: null`).not.toBeNull();
        const h = oracle.rmsNorm(up(oracle, yv, [M, N]), up(oracle, normW, [N]), eps);
        for (let i = 0; i < count; i++) {
          const wi = oracle.prepareQuantWeight(cs[i]!.spec);
          const wantI = await dl(oracle.quantMatmul(h, wi, i === 1 && b2 ? up(oracle, b2, [b2.length]) : undefined));
          expectClose(await dl(ys![i]!), wantI, 2e-3, `quantMatmulManyNormed ${what} weight ${i} of ${count}`);
        }
        for (const wi of ws) be.free(wi);
      }
      be.free(w);
    }
  }
}

/**
 * The GEMVs captured in a graph as decoding captures them (CUDA: their outputs come from an arena that each
 * replay sets to zero first, so a k range split across blocks is added into y with atomics): quantMatmul,
 * quantMatmulMany, quantMatmulManyNormed and quantMatmulGated at 1-4 rows, on shapes whose K is split across
 * blocks (or, K = 96, not), against the CPU backend; each graph is replayed on two new inputs, so a replay that
 * added onto the sums of the one before (its outputs not zeroed) shows. Results are copied into tensors made
 * before the capture, which are poisoned (NaN) before each replay.
 */
async function checkCaptured(be: Backend, oracle: Backend) {
  const r = rng();
  const eps = 1e-5;
  const cases = [[4096, [128, 64, 192], 128, false], [1024, [320, 64], 32, true], [2048, [64], 64, false], [96, [64, 128], 48, false]] as const;
  for (const [K, Ns, gs, actOrder] of cases) {
    const cs = Ns.map((N) => randomQuant(r, 4, K, N, gs, actOrder, true));
    for (const c of cs) c.spec.gIdx = cs[0]!.spec.gIdx; // (weights sharing x share their permutation)
    const ws = cs.map((c) => be.prepareQuantWeight(c.spec)), ows = cs.map((c) => oracle.prepareQuantWeight(c.spec));
    for (const M of [1, 2, 3, 4]) {
      const what = `M=${M} K=${K} Ns=${Ns.join(",")} gs=${gs} act=${actOrder}`;
      const bias = randn(Ns[0]!, r), normW = randn(K, r);
      const [xT, uT, biasT, nwT] = [up(be, new Float32Array(M * K), [M, K]), up(be, new Float32Array(M * K), [M, K]), up(be, bias, [Ns[0]!]), up(be, normW, [K])];
      const biases = ws.map((_, i) => (i === 0 ? biasT : undefined));
      // outputs: plain, many (one per weight), normed (one per weight), gated
      const outs = [Ns[0]!, ...Ns, ...Ns, Ns[0]!].map((N) => be.zeros([M, N], "f32"));
      const g = be.graphs!.capture(() => {
        const ys = [be.quantMatmul(xT, ws[0]!, biasT), ...be.quantMatmulMany!(xT, ws, biases)];
        const normed = be.quantMatmulManyNormed!(xT, nwT, eps, ws, biases);
        if (!normed) throw new Error(`quantMatmulManyNormed ${what}: null for 4-bit weights and <= 4 rows`);
        ys.push(...normed, be.quantMatmulGated!(xT, uT, ws[0]!, biasT));
        ys.forEach((y, i) => { be.writeRows(outs[i]!, y, 0); be.free(y); });
      });
      for (const replay of [1, 2]) {
        const x = randn(M * K, r, 2), u = randn(M * K, r);
        be.graphs!.write(xT, x);
        be.graphs!.write(uT, u);
        for (const o of outs) be.graphs!.write(o, new Float32Array(numel(o.shape)).fill(NaN));
        g.replay();
        const [ox, ou, ob] = [up(oracle, x, [M, K]), up(oracle, u, [M, K]), up(oracle, bias, [Ns[0]!])];
        const ob2 = ows.map((_, i) => (i === 0 ? ob : undefined));
        const h = oracle.rmsNorm(ox, up(oracle, normW, [K]), eps);
        const want = [oracle.quantMatmul(ox, ows[0]!, ob), ...ows.map((w, i) => oracle.quantMatmul(ox, w, ob2[i])),
          ...ows.map((w, i) => oracle.quantMatmul(h, w, ob2[i])), oracle.quantMatmul(oracle.siluMul(ox, ou), ows[0]!, ob)];
        const names = ["quantMatmul", ...Ns.map((_, i) => `quantMatmulMany weight ${i}`), ...Ns.map((_, i) => `quantMatmulManyNormed weight ${i}`), "quantMatmulGated"];
        for (let i = 0; i < outs.length; i++) expectClose(await dl(outs[i]!), await dl(want[i]!), 2e-3, `captured ${names[i]} ${what}, replay ${replay}`);
      }
      g.free();
      for (const t of [xT, uT, biasT, nwT, ...outs]) be.free(t);
    }
    for (const w of ws) be.free(w);
  }
}

const WEBGPU = (await gpuBackends()).find((b) => b.name === "webgpu");
/** a test of the WebGPU backend alone, skipped (with the probe's reason in its name) where it is unavailable */
function webgpuTest(label: string, body: (be: Backend) => void | Promise<void>, timeout?: number): void {
  if (WEBGPU?.backend) test(`webgpu: ${label}`, () => body(WEBGPU.backend!), timeout);
  else test.skip(`webgpu: ${label} [webgpu unavailable: ${WEBGPU?.reason ?? "not selected"}]`, () => {});
}

describe("quant_matmul", () => {
  test("cpu vs float64 dequantized product", async () => check(await cpu()), 60_000);
  eachGpuBackend("vs cpu (every shader variant)", (be, c) => eachShaderVariant(be, () => check(be, c)));
  eachGpuBackend("vs cpu, activations of any magnitude (every shader variant)", (be, c) => eachShaderVariant(be, () => checkMagnitudes(be, c)));
  eachGpuBackend("a NaN or an infinity in x reaches its row's outputs (every shader variant)", (be) => eachShaderVariant(be, () => checkNonFinite(be)));
  eachGpuBackend("vs cpu, long inputs split across workgroups (every shader variant)", (be, c) => eachShaderVariant(be, () => checkLong(be, c)));
  eachGpuBackend("GEMVs captured in a graph (outputs zeroed at each replay, k splits added with atomics) vs cpu", checkCaptured, 300_000, "graphs");
  webgpuTest("a bad GEMV knob is an error that names it", (be) => {
    const c = randomQuant(rng(), 4, 256, 64, 128, false, true);
    const w = be.prepareQuantWeight(c.spec), x = be.upload(randn(256, rng()), [1, 256], "f32");
    process.env.GPTQ_WEBGPU_QV_PIPE = "2";
    try {
      expect(() => be.quantMatmul(x, w)).toThrow(/GPTQ_WEBGPU_QV_PIPE=2: use 0 .* or 1/);
    } finally {
      delete process.env.GPTQ_WEBGPU_QV_PIPE;
    }
    for (const v of ["256x64:5", "256x64", "256:4"]) {
      process.env.GPTQ_WEBGPU_QV_CQ = v;
      try {
        expect(() => be.quantMatmul(x, w)).toThrow(new RegExp(`GPTQ_WEBGPU_QV_CQ=${v}: .*KxN:count pairs`));
      } finally {
        delete process.env.GPTQ_WEBGPU_QV_CQ;
      }
    }
    be.free(w);
    be.free(x);
  });
  test("GPTQ_WEBGPU_QV_CQ: one count for every weight, or per shape (KxN:count), the others keeping the default", () => {
    expect(columnQuadsKnob(undefined, 4096, 4096)).toBeUndefined();
    expect(columnQuadsKnob("8", 11008, 4096)).toBe(8);
    expect(columnQuadsKnob("4096x4096:4,11008x4096:8", 11008, 4096)).toBe(8);
    expect(columnQuadsKnob("4096x4096:4, 11008x4096:8", 4096, 4096)).toBe(4);
    expect(columnQuadsKnob("4096x4096:4,11008x4096:8", 4096, 12288)).toBeUndefined();
    expect(() => columnQuadsKnob("3", 1, 1)).toThrow(/GPTQ_WEBGPU_QV_CQ=3: column quads per workgroup must be/);
    expect(() => columnQuadsKnob("4096x4096:4,oops", 1, 1)).toThrow(/"oops" is not KxN:count/);
  });
  webgpuTest("column quads per workgroup set per shape (GPTQ_WEBGPU_QV_CQ=KxN:count,...) vs cpu", async (be) => {
    const r = rng(), oracle = await cpu();
    for (const [K, N, cqs] of [[4096, 192, "4096x192:16"], [8320, 96, "8320x96:8,64x64:32"], [256, 64, "999x64:2"]] as const) {
      const c = randomQuant(r, 4, K, N, 128, false, true);
      const x = randn(K, r);
      const run = async (B: Backend) => {
        const w = B.prepareQuantWeight(c.spec), xt = B.upload(x, [1, K], "f32");
        try {
          return await dl(B.quantMatmul(xt, w));
        } finally {
          B.free(w);
          B.free(xt);
        }
      };
      process.env.GPTQ_WEBGPU_QV_CQ = cqs;
      try {
        expectClose(await run(be), await run(oracle), 2e-3, `quantMatmul K=${K} N=${N} GPTQ_WEBGPU_QV_CQ=${cqs}`);
      } finally {
        delete process.env.GPTQ_WEBGPU_QV_CQ;
      }
    }
  }, 300_000);
  eachGpuBackend("several weights sharing x in one launch (quantMatmulMany)", (be, c) => checkMany(be, c), 300_000, "quantMatmulMany");
  eachGpuBackend("the MLP gate fused into the matmul (quantMatmulGated)", (be, c) => checkGated(be, c), 300_000, "quantMatmulGated");
  eachGpuBackend("the residual add and the next RMSNorm fused into the GEMVs (quantMatmulAdd, quantMatmulManyNormed)", (be, c) => checkAddNormed(be, c), 300_000, "quantMatmulAdd");
});
