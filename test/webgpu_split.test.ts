// WebGPU: tensors above maxStorageBufferBindingSize. The binding limit is lowered (limitBinding) so that
// small random tensors take the split paths (windows of a buffer, work cut into tiles or row spans); every
// result is compared with the CPU backend on the same inputs, outputs poisoned before the run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DATA, cpu, dl, eachShaderVariant, expectClose, gpuBackends, randn, rng } from "./helpers.ts";
import type { Backend } from "../src/backend.ts";
import { UnsupportedOpError } from "../src/errors.ts";
import { hessianOf, randomQuant } from "./synthetic.ts";
import { gptqQuantize } from "../src/gptq/gptq.ts";
import { unpackQweight } from "../src/gptq/pack.ts";

const GPU = (await gpuBackends()).find((b) => b.name === "webgpu");
type Limited = Backend & { limitBinding(bytes: number | null): void; bindingLimit: number };
const be = GPU?.backend as Limited | null | undefined;
const LIMIT = 65536; // bytes: 16384 floats per binding (row-wise ops step by up to 64 rows to keep windows aligned)
const d = be ? describe : describe.skip;

d(`webgpu: tensors above the binding limit (limited to ${LIMIT} bytes)${be ? "" : ` [webgpu unavailable: ${GPU?.reason ?? "not registered"}]`}`, () => {
  let c: Backend;
  beforeAll(async () => {
    c = await cpu();
    be!.limitBinding(LIMIT);
  });
  afterAll(() => be?.limitBinding(null));
  const up = (B: Backend, x: Float32Array, shape: number[]) => B.upload(x, shape, "f32");

  test("the limit is in force and validated", () => {
    expect(be!.bindingLimit).toBe(LIMIT);
    expect(() => be!.limitBinding(1000)).toThrow(/multiple of 256/);
  });

  test("matmul (M, N and K tiles; bias windows) agrees with cpu", async () => {
    const r = rng();
    // [M, K, N]: weights above the limit (N tiles), one row of x above it (K tiles), outputs above it (M and N
    // tiles; one output row above it, with bias windows), everything above it
    for (const [M, K, N] of [[3, 1000, 65], [1, 17000, 3], [129, 33, 700], [127, 300, 129], [1, 3, 20000], [300, 200, 250]] as const) {
      const x = randn(M * K, r), w = randn(N * K, r, 0.1), b = randn(N, r);
      const run = async (B: Backend) => dl(B.matmul(up(B, x, [M, K]), up(B, w, [N, K]), up(B, b, [N])));
      expectClose(await run(be!), await run(c), 2e-5, `matmul M=${M} K=${K} N=${N}`);
    }
  });

  test("hessianAccumulate (xᵀx with K tiles, accumulating) and scale agree with cpu", async () => {
    const r = rng();
    for (const [T, K] of [[2000, 37], [5, 129], [1, 1030]] as const) {
      // a symmetric H before (the CPU backend updates one triangle and mirrors it)
      const x = randn(T * K, r), h0 = randn(K * K, r);
      for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) h0[i * K + j] = h0[j * K + i]!;
      const run = async (B: Backend) => {
        const h = up(B, h0, [K, K]);
        B.hessianAccumulate(h, up(B, x, [T, K]));
        B.scale(h, 0.5);
        return dl(h);
      };
      expectClose(await run(be!), await run(c), 2e-5, `hessian T=${T} K=${K}`);
    }
  });

  test("row-wise and element-wise ops (rmsNorm, add, addRmsNorm, siluMul, logSoftmax, nll, copy, diagonal, embedding) agree with cpu", async () => {
    const r = rng();
    const [T, H, V] = [200, 129, 1000];
    const x = randn(T * H, r), y = randn(T * H, r), w = randn(H, r), logits = randn(T * V, r, 3), table = randn(V * H, r);
    const targets = Int32Array.from({ length: T }, () => Math.floor(r() * V));
    const ids = Int32Array.from({ length: T }, (_, i) => (i === 0 ? 0 : i === 1 ? V - 1 : Math.floor(r() * V)));
    const H2 = 200, h = randn(H2 * H2, r);
    const ops: [string, (B: Backend) => Promise<ArrayLike<number>>][] = [
      ["rmsNorm", (B) => dl(B.rmsNorm(up(B, x, [T, H]), up(B, w, [H]), 1e-5))],
      ["add", (B) => dl(B.add(up(B, x, [T, H]), up(B, y, [T, H])))],
      // addRmsNorm on webgpu, against add then rmsNorm on the cpu: both outputs
      ["addRmsNorm", async (B) => {
        const [xt, yt, wt] = [up(B, x, [T, H]), up(B, y, [T, H]), up(B, w, [H])];
        const { sum, norm } = B.addRmsNorm ? B.addRmsNorm(xt, yt, wt, 1e-5) : { sum: B.add(xt, yt), norm: B.rmsNorm(B.add(xt, yt), wt, 1e-5) };
        return [...(await dl(sum)), ...(await dl(norm))];
      }],
      ["siluMul", (B) => dl(B.siluMul(up(B, x, [T, H]), up(B, y, [T, H])))],
      ["logSoftmax", (B) => dl(B.logSoftmax(up(B, logits, [T, V])))],
      ["nll", (B) => B.nll(up(B, logits, [T, V]), targets)],
      ["copy", (B) => dl(B.copy(up(B, x, [T, H])))],
      ["diagonal", (B) => B.diagonal(up(B, h, [H2, H2]))],
      ["embedding", (B) => dl(B.embedding(ids, up(B, table, [V, H])))],
    ];
    // outputs start as NaN (GPTQ_POISON, set for every test by test/setup.ts), so an element no window wrote shows
    for (const [name, f] of ops) expectClose(await f(be!), await f(c), 1e-5, name);
  });

  test("quantMatmul on many rows (dequantized in output chunks, then GEMM tiles) agrees with cpu", async () => {
    const r = rng();
    for (const [bits, K, N, gs, act] of [[4, 128, 192, 32, true], [3, 256, 160, 32, false]] as const) {
      const q = randomQuant(r, bits, K, N, gs, act, true);
      const M = 33, x = randn(M * K, r), b = randn(N, r);
      const run = async (B: Backend) => dl(B.quantMatmul(up(B, x, [M, K]), B.prepareQuantWeight(q.spec), up(B, b, [N])));
      expectClose(await run(be!), await run(c), 2e-5, `quantMatmul ${bits}-bit K=${K} N=${N}`);
    }
  });

  test("choleskyInverseUpper (windows of rows; blocks, panels, GEMM tiles) agrees with the unsplit run and cpu", async () => {
    const r = rng();
    for (const n of [129, 250]) {
      const H = hessianOf(r, n, n + 20);
      const run = async (B: Backend) => {
        const h = up(B, H, [n, n]);
        expect(await B.choleskyInverseUpper(h, 0.01)).toBe(true);
        return dl(h);
      };
      const split = await run(be!);
      be!.limitBinding(null);
      const whole = await run(be!);
      be!.limitBinding(LIMIT);
      expectClose(split, whole, 1e-5, `cholesky n=${n}: split vs whole`);
      expectClose(split, await run(c), 2e-3, `cholesky n=${n}: split vs cpu`);
    }
  });

  test("GPTQ of a layer whose weight and Hessian exceed the limit (prepare, permute, params, blocks, finish) agrees with the unsplit run and cpu", async () => {
    const r = rng();
    // blocks of 32 columns: a block's rows of Hinv and Wt must fit one binding (128 columns would at real limits)
    const o = { bits: 4, groupSize: 32, sym: false, descAct: false, staticGroups: false, damp: 0.01, mse: false, blockSize: 32 };
    for (const [rows, cols, p] of [[130, 250, { descAct: true }], [97, 256, { bits: 3, groupSize: -1 }], [64, 240, { groupSize: 64, descAct: true, staticGroups: true, sym: true }]] as const) {
      const W = randn(rows * cols, r, 0.05), H = hessianOf(r, cols, cols + 20), opts = { ...o, ...p };
      const run = async (B: Backend) => {
        const w = up(B, W, [rows, cols]), h = up(B, H, [cols, cols]);
        const { weight, ...q } = await gptqQuantize(B, w, h, opts);
        const deq = await dl(weight);
        for (const t of [w, h, weight]) B.free(t);
        return { ...q, deq, codes: unpackQweight(q.qweight, cols, rows, opts.bits) };
      };
      const split = await run(be!);
      be!.limitBinding(null);
      const whole = await run(be!);
      be!.limitBinding(LIMIT);
      const ref = await run(c);
      const what = `${rows}x${cols} ${JSON.stringify(p)}`;
      for (const [other, name, minSame] of [[whole, "unsplit webgpu", 0.995], [ref, "cpu", 0.97]] as const) {
        let same = 0;
        for (let i = 0; i < split.codes.length; i++) if (split.codes[i] === other.codes[i]) same++;
        if (!(same / split.codes.length > minSame)) throw new Error(`${what}: ${same} of ${split.codes.length} codes agree with ${name}`);
        expect(Math.abs(split.loss / other.loss - 1)).toBeLessThan(0.01);
        expect(split.gIdx).toEqual(other.gIdx);
      }
      // the dequantized weight is the codes' (the finish gathers agree with the packing)
      const G = Math.ceil(cols / (opts.groupSize === -1 ? cols : opts.groupSize));
      for (let i = 0; i < 200; i++) {
        const rr = Math.floor(r() * rows), cc = Math.floor(r() * cols), g = split.gIdx[cc]!;
        expect(g).toBeLessThan(G);
        expect(split.deq[rr * cols + cc]).toBeCloseTo(split.scales[g * rows + rr]! * (split.codes[cc * rows + rr]! - split.zeros[g * rows + rr]!), 5);
      }
    }
  }, 120_000);

  test("attention over a KV cache above the limit (windows of cache rows, softmax state carried) agrees with cpu", async () => {
    const r = rng();
    // cache [S, kvHeads·hd] = 300 x 64 floats = 75 KiB; decode rows, a prefill at pos0 > 0, sequences side by side
    const [heads, kvHeads, hd, S] = [4, 2, 32, 300];
    const kc = randn(S * kvHeads * hd, r), vc = randn(S * kvHeads * hd, r);
    for (const [T, pos0, seqLen] of [[1, 0, undefined], [1, 299, undefined], [5, 170, undefined], [3, 250, undefined], [100, 0, 50]] as const) {
      const q = randn(T * heads * hd, r);
      const run = async (B: Backend) => dl(B.attention(up(B, q, [T, heads * hd]), up(B, kc, [S, kvHeads * hd]), up(B, vc, [S, kvHeads * hd]), { heads, kvHeads, headDim: hd, pos0, seqLen }));
      expectClose(await run(be!), await run(c), 1e-5, `attention T=${T} pos0=${pos0} seqLen=${seqLen}`);
    }
  });

  test("rope on rows above the limit (windows of rows, positions continued) agrees with cpu", async () => {
    const r = rng();
    const [heads, hd] = [3, 64], invFreq = Float32Array.from({ length: hd / 2 }, (_, i) => 10000 ** (-(2 * i) / hd));
    for (const [T, pos0, seqLen] of [[200, 7, undefined], [200, 0, 50]] as const) {
      const x = randn(T * heads * hd, r); // 150 KiB
      const run = async (B: Backend) => {
        const t = up(B, x, [T, heads * hd]);
        B.rope(t, { heads, headDim: hd, pos0, seqLen, invFreq, scale: 1 });
        return dl(t);
      };
      expectClose(await run(be!), await run(c), 1e-5, `rope T=${T} pos0=${pos0} seqLen=${seqLen}`);
    }
  });

  test("the packed 4-bit GEMV with a weight above the limit (windows of whole k splits) agrees with cpu, every shader variant", async () => {
    const r = rng();
    for (const act of [false, true]) {
      const q = randomQuant(r, 4, 1024, 256, 128, act, true); // qweight 128 KiB
      for (const M of [1, 3, 16]) {
        const x = randn(M * 1024, r), b = randn(256, r);
        const run = async (B: Backend) => dl(B.quantMatmul(up(B, x, [M, 1024]), B.prepareQuantWeight(q.spec), up(B, b, [256])));
        const want = await run(c);
        await eachShaderVariant(be!, async (v) => expectClose(await run(be!), want, v === "dot4" ? 2e-4 : v === "f16" ? 3e-3 : 2e-5, `q4 GEMV M=${M} act-order=${act} (${v})`));
      }
    }
  });

  test("2/3/8-bit packed weights above the limit (windows of whole words of inputs) agree with cpu: the generic kernel and the dequantize path", async () => {
    const r = rng();
    for (const [bits, K, N, gs, act] of [[8, 256, 320, 32, false], [3, 224, 1024, 128, true], [2, 240, 1152, 40, false]] as const) {
      const q = randomQuant(r, bits, K, N, gs, act, true); // qweight 80, 84 and 68 KiB: two windows each at 64 KiB
      for (const M of [1, 5, 17]) {
        const x = randn(M * K, r), b = randn(N, r);
        const run = async (B: Backend) => dl(B.quantMatmul(up(B, x, [M, K]), B.prepareQuantWeight(q.spec), up(B, b, [N])));
        expectClose(await run(be!), await run(c), 2e-5, `${bits}-bit quantMatmul M=${M} K=${K} N=${N} gs=${gs} act-order=${act}`);
      }
    }
  });

  test("an op that does not split names itself and the limit", () => {
    // the group parameters are bound whole: 16 groups x 1280 columns of scales are 80 KiB
    const q = randomQuant(rng(), 8, 512, 1280, 32, false, false);
    let err: unknown;
    try {
      const w = be!.prepareQuantWeight(q.spec);
      be!.quantMatmul(be!.upload(new Float32Array(512), [1, 512], "f32"), w);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsupportedOpError);
    expect(String(err)).toMatch(/webgpu quant_matmul: a tensor of 80\.0 KiB exceeds .* storage binding limit .* does not split/);
  });

  const model = join(DATA, "gutenberg-llama-16m"), text = join(DATA, "gutenberg", "eval.txt");
  test.skipIf(!existsSync(model) || !existsSync(text))("a model whose embedding, lm_head and logits exceed the limit evaluates to the same perplexity", async () => {
    const { loadModel } = await import("../src/index.ts");
    const { evaluate, readDatasetText } = await import("../src/eval.ts");
    const t = readDatasetText(text), ev = { seqlen: 128, maxWindows: 3, progress: false };
    const ppl = async () => {
      return (await evaluate(await loadModel(model, { backend: be! }), t, ev)).perplexity;
    };
    be!.limitBinding(null);
    const whole = await ppl();
    be!.limitBinding(2 * 2 ** 20); // embedding and lm_head 6 MiB, logits 2 MiB + a row: windows; the rest fits
    const split = await ppl();
    be!.limitBinding(LIMIT);
    console.log(`webgpu perplexity with a 2 MiB binding limit ${split.toFixed(5)}, without ${whole.toFixed(5)}`);
    expect(Number.isFinite(split)).toBe(true);
    expect(Math.abs(split / whole - 1)).toBeLessThan(1e-5);
  }, 300_000);

  const wiki = join(DATA, "wikitext-2-raw", "wiki.valid.raw");
  test.skipIf(!existsSync(model) || !existsSync(text) || !existsSync(wiki))("quantize with a 1 MiB binding limit (Hessians, weights and logits above it): losses and perplexity as on cpu", async () => {
    const { quantize, loadModel } = await import("../src/index.ts");
    const { evaluate, readDatasetText } = await import("../src/eval.ts");
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const root = mkdtempSync(join(tmpdir(), "gptq-split-"));
    // 8 x 128 tokens: few for 1024-wide inputs, so codes are chaotic (CPU vs unlimited WebGPU differ as much);
    // losses agree within about 1.3% per module, perplexity within 1-2% (measured)
    const o = { dataset: wiki, nsamples: 8, seqlen: 128, bits: 4, groupSize: 128, progress: false };
    be!.limitBinding(2 ** 20);
    const rg = await quantize(model, { ...o, out: join(root, "webgpu"), backend: be! });
    be!.limitBinding(LIMIT);
    const rc = await quantize(model, { ...o, out: join(root, "cpu"), backend: "cpu" });
    rg.modules.forEach((m, i) => expect(Math.abs(m.loss / rc.modules[i]!.loss - 1)).toBeLessThan(0.05));
    const t = readDatasetText(text), ev = { seqlen: 256, maxWindows: 5, progress: false };
    be!.limitBinding(null);
    const pg = (await evaluate(await loadModel(join(root, "webgpu"), { backend: be! }), t, ev)).perplexity;
    be!.limitBinding(LIMIT);
    const pc = (await evaluate(await loadModel(join(root, "cpu"), { backend: "cpu" }), t, ev)).perplexity;
    console.log(`quantized with a 1 MiB binding limit: perplexity ${pg.toFixed(3)} vs ${pc.toFixed(3)} (cpu)`);
    expect(Math.abs(pg / pc - 1)).toBeLessThan(0.04);
  }, 600_000);
});
