/**
 * Benchmarks, printed as tables with ratios against a baseline measured in the same run:
 *   matmul    packed 4-bit matmul vs the backend's dense baseline (CUDA: cuBLAS fp16) on model layer shapes
 *   quantize  seconds per layer of a real quantization run (the report's numbers)
 *   decode    tokens per second at batch 1 with the KV cache
 */
import type { Backend, QuantWeightSpec } from "./backend.ts";
import type { Tensor } from "./tensor.ts";
import { packQzeros } from "./gptq/pack.ts";
import type { LlamaModel } from "./model/llama.ts";
import { generateIds } from "./generate.ts";

export const LLAMA2_7B_SHAPES: [string, number, number][] = [
  ["qkv", 4096, 12288],
  ["o", 4096, 4096],
  ["gate+up", 4096, 22016],
  ["down", 11008, 4096],
];

/** median microseconds per call of fn (work queued on the backend; synchronized around each repetition) */
export async function timeUs(be: Backend, fn: () => void, iters = 50, reps = 5): Promise<number> {
  for (let i = 0; i < 3; i++) fn();
  await be.sync();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) fn();
    await be.sync();
    times.push(((performance.now() - t0) * 1000) / iters);
  }
  return times.sort((a, b) => a - b)[Math.floor(reps / 2)]!;
}

function rnd(seed: number) {
  let a = seed >>> 0;
  return () => {
    a ^= a << 13; a >>>= 0; a ^= a >>> 17; a ^= a << 5; a >>>= 0;
    return a;
  };
}

/** a random K×N 4-bit (or other width) layer in the standard layout, group size gs, optionally act-order */
export function randomQuantSpec(K: number, N: number, bits: number, gs: number, actOrder: boolean, seed = 1): QuantWeightSpec {
  const r = rnd(seed);
  const G = Math.ceil(K / gs);
  const qweight = new Int32Array((K * bits) / 32 * N);
  for (let i = 0; i < qweight.length; i++) qweight[i] = r() | 0;
  const zeros = Int32Array.from({ length: G * N }, () => r() % (1 << bits));
  const scales = Float32Array.from({ length: G * N }, () => 0.001 + (r() % 1000) * 1e-5);
  let gIdx = Int32Array.from({ length: K }, (_, k) => Math.floor(k / gs));
  if (actOrder) for (let i = K - 1; i > 0; i--) { const j = r() % (i + 1); [gIdx[i], gIdx[j]] = [gIdx[j]!, gIdx[i]!]; }
  return { bits, inFeatures: K, outFeatures: N, groups: G, qweight, qzeros: packQzeros(zeros, G, N, bits), scales, gIdx, zeroOffset: 0 };
}

export interface MatmulRow {
  m: number; quantUs: number; baselineUs: number | null; speedup: number | null; gbps: number; baseline: string; baselineGbps: number | null;
  /** how both were timed: "graph" = replays of a captured device graph of 10 call sets (no host launch cost, as in a captured decode step), "eager" = calls from the host */
  timing: "graph" | "eager";
  /** the packed matmul timed eagerly too, where the main numbers come from graphs */
  quantEagerUs: number | null;
  /** device time from the device's timestamps (WebGPU with timestamp-query), packed matmul and baseline: host dispatch cost excluded */
  quantGpuUs: number | null;
  baselineGpuUs: number | null;
  /** bytes the packed matmul reads per call set (weights, scales and zeros), bytes the baseline moves */
  bytes: number;
  baselineBytes: number;
  /**
   * the baseline as one call over all the shapes' weights (K of the first shape, N = Σ N·K / K): the card's
   * bandwidth without a call boundary between shapes (WebGPU: one copy dispatch, none of the barriers Dawn puts
   * between copies into buffers written before); µs and GPU µs, bytes moved
   */
  baselineOne: { us: number; gpuUs: number | null; bytes: number } | null;
  /** per shape (same order as the shapes), timed alone the same way: packed matmul and baseline µs */
  perShape?: { name: string; quantUs: number; baselineUs: number | null; quantGpuUs: number | null; baselineGpuUs: number | null }[];
}

/**
 * µs per call of fn (which frees what it makes). With device graphs (CUDA) 10 calls are captured once and the
 * graph replayed, so the number is device time plus the gaps between kernels, without host launch overhead;
 * elsewhere fn is called from the host. The first call runs outside the capture (one-time allocations).
 */
export async function timeDeviceUs(be: Backend, fn: () => void, iters = 50): Promise<{ us: number; timing: "graph" | "eager" }> {
  if (!be.graphs) return { us: await timeUs(be, fn, iters), timing: "eager" };
  fn();
  await be.sync();
  // (see GraphSupport.capture) without the arena by default: kernel time without the programmatic dependent
  // launch between calls, comparable with earlier runs; GPTQ_BENCH_ARENA=1 captures as a decode step does
  const arena = process.env.GPTQ_BENCH_ARENA === "1";
  const g = be.graphs.capture(() => { for (let i = 0; i < 10; i++) fn(); }, { arena });
  try {
    return { us: (await timeUs(be, () => g.replay(), Math.max(1, Math.ceil(iters / 10)))) / 10, timing: "graph" };
  } finally {
    g.free();
  }
}

/** all four shapes back to back, per M; weights read once per call set */
export async function benchMatmul(be: Backend, opts: { ms: number[]; shapes?: [string, number, number][]; groupSize?: number; actOrder?: boolean; iters?: number; perShape?: boolean }): Promise<MatmulRow[]> {
  const shapes = opts.shapes ?? LLAMA2_7B_SHAPES;
  const gs = opts.groupSize ?? 128;
  const iters = opts.iters ?? 50;
  const ws = shapes.map(([, K, N], i) => be.prepareQuantWeight(randomQuantSpec(K, N, 4, gs, opts.actOrder ?? false, i + 1)));
  const bytes = shapes.reduce((a, [, K, N]) => a + (K * N) / 2 + Math.ceil(K / gs) * N * 4, 0);
  const rows: MatmulRow[] = [];
  for (const m of opts.ms) {
    const xs = shapes.map(([, K]) => be.upload(Float32Array.from({ length: m * K }, (_, i) => Math.sin(i) * 0.5), [m, K], "f32"));
    const calls = () => { for (const o of shapes.map((_, i) => be.quantMatmul(xs[i]!, ws[i]!))) be.free(o); };
    const q = await timeDeviceUs(be, calls, iters);
    const quantEagerUs = q.timing === "graph" ? await timeUs(be, calls, iters) : null;
    // GPTQ_BENCH_GPU_SETS (default 400) call sets per timed pass: Dawn quantizes timestamps (steps of about 65 µs
    // were seen on an H200; 50 sets left steps of 1.3 µs per set)
    const sets = Number(process.env.GPTQ_BENCH_GPU_SETS) || 400;
    const gpu = async (fn: () => void) => { const t = be.gpuTimeUs ? await be.gpuTimeUs(() => { for (let i = 0; i < sets; i++) fn(); }) : null; return t === null ? null : t / sets; };
    const quantGpuUs = await gpu(calls);
    let baselineUs: number | null = null, baselineGpuUs: number | null = null, label = "", moved = 0;
    let baselineOne: MatmulRow["baselineOne"] = null;
    if (be.denseBaseline) {
      const bl = shapes.map(([, K, N]) => be.denseBaseline!(m, N, K));
      label = bl[0]!.label;
      moved = bl.reduce((a, b) => a + b.bytes, 0);
      const runBaseline = () => bl.forEach((x) => x.run());
      const b = await timeDeviceUs(be, runBaseline, iters);
      if (b.timing !== q.timing) throw new Error(`bench matmul: baseline timed as ${b.timing}, packed matmul as ${q.timing}`);
      baselineUs = b.us;
      baselineGpuUs = await gpu(runBaseline);
      bl.forEach((x) => x.free());
      const K0 = shapes[0]![1], NK = shapes.reduce((a, [, K, N]) => a + K * N, 0);
      if (NK % K0 === 0) {
        const one = be.denseBaseline(m, NK / K0, K0);
        baselineOne = { us: (await timeDeviceUs(be, () => one.run(), iters)).us, gpuUs: await gpu(() => one.run()), bytes: one.bytes };
        one.free();
      }
    }
    let perShape: MatmulRow["perShape"];
    if (opts.perShape) {
      perShape = [];
      for (let i = 0; i < shapes.length; i++) {
        const [name, K, N] = shapes[i]!;
        const one = () => be.free(be.quantMatmul(xs[i]!, ws[i]!));
        const qu = await timeDeviceUs(be, one, iters);
        let bu: number | null = null, bg: number | null = null;
        if (be.denseBaseline) {
          const bl = be.denseBaseline(m, N, K);
          bu = (await timeDeviceUs(be, () => bl.run(), iters)).us;
          bg = await gpu(() => bl.run());
          bl.free();
        }
        perShape.push({ name: `${name} ${K}x${N}`, quantUs: qu.us, baselineUs: bu, quantGpuUs: await gpu(one), baselineGpuUs: bg });
      }
    }
    for (const x of xs) be.free(x);
    rows.push({ perShape, m, quantUs: q.us, baselineUs, speedup: baselineUs ? baselineUs / q.us : null, gbps: bytes / (q.us * 1e3), baseline: label, baselineGbps: baselineUs ? moved / (baselineUs * 1e3) : null, timing: q.timing, quantEagerUs, quantGpuUs, baselineGpuUs, bytes, baselineBytes: moved, baselineOne });
  }
  for (const w of ws) be.free(w);
  return rows;
}

export interface DecodeResult {
  tokensPerSecond: number;
  msPerToken: number;
  mode: "pipelined" | "graph" | "eager";
  graphError: string | null;
  /** ms from the first sampled token to the third: one eager single-token step, the graph's capture and first replay (not in tokensPerSecond) */
  warmupMs: number;
}

/**
 * steady-state decode tokens/s at batch 1 (greedy) from a 16-token prompt, one row per mode the backend has:
 * eager, graph (the host takes each step's logits, picks the token, uploads it and replays), pipelined (the
 * token picked on the device, the next step queued ahead). Timed from the third sampled token on: the prompt's
 * pass, the first single-token step (eager) and the graph's capture come before it (warmupMs: the latter two).
 */
export async function benchDecode(model: LlamaModel, tokens: number, prompt = 16): Promise<DecodeResult[]> {
  const ids = Int32Array.from({ length: prompt }, (_, i) => (i * 7 + 3) % model.config.vocabSize);
  const out: DecodeResult[] = [];
  const gs = model.backend.graphs;
  const modes = gs ? [{ graph: false, pipeline: false }, { graph: true, pipeline: false }] : [{ graph: false, pipeline: false }];
  if (gs?.argmaxNext) modes.push({ graph: true, pipeline: true });
  for (const { graph, pipeline } of modes) {
    await generateIds(model, ids, { maxNewTokens: 4, stopAtEos: false, graph, pipeline }); // warm-up
    let n = 0, t1 = 0, t3 = 0, mode: DecodeResult["mode"] = "eager", graphError: string | null = null;
    await generateIds(model, ids, {
      maxNewTokens: tokens + 3, stopAtEos: false, graph, pipeline,
      onToken: () => {
        if (++n === 1) t1 = performance.now();
        else if (n === 3) t3 = performance.now();
      },
      onDecoder: (d) => { mode = d.mode; graphError = d.graphError; },
    });
    const ms = performance.now() - t3;
    out.push({ tokensPerSecond: (tokens * 1000) / ms, msPerToken: ms / tokens, mode, graphError, warmupMs: t3 - t1 });
  }
  return out;
}

/**
 * GPTQ of one Llama-2-7B-shaped layer on a backend, from random weights and random (channel-scaled) activations
 * of `tokens` rows: the four Hessians and the seven linears, seconds end to end (synchronized).
 */
export async function benchLayer(be: Backend, tokens = 2048): Promise<{ seconds: number; hessianSeconds: number; gptqSeconds: number }> {
  const { gptqQuantize } = await import("./gptq/gptq.ts");
  const H = 4096, I = 11008;
  const r = rnd(7);
  const rand = (n: number, std: number) => Float32Array.from({ length: n }, () => ((r() / 2 ** 32) * 2 - 1) * std);
  const xa = be.upload(rand(tokens * H, 1), [tokens, H], "f32"), xi = be.upload(rand(tokens * I, 1), [tokens, I], "f32");
  const lin: [number, number, Tensor][] = [[H, H, xa], [H, H, xa], [H, H, xa], [H, H, xa], [I, H, xa], [I, H, xa], [H, I, xi]];
  const ws = lin.map(([out, inF]) => be.upload(rand(out * inF, 0.02), [out, inF], "f32"));
  await be.sync();
  const t0 = performance.now();
  const hs = new Map<Tensor, Tensor>();
  for (const x of [xa, xi]) {
    const K = x.shape[1]!;
    const h = be.zeros([K, K], "f32");
    be.hessianAccumulate(h, x);
    be.scale(h, 2 / tokens);
    hs.set(x, h);
  }
  await be.sync();
  const t1 = performance.now();
  const o = { bits: 4, groupSize: 128, sym: false, descAct: false, staticGroups: false, damp: 0.01, mse: false };
  for (let i = 0; i < lin.length; i++) {
    const q = await gptqQuantize(be, ws[i]!, hs.get(lin[i]![2])!, o);
    be.free(q.weight);
  }
  await be.sync();
  const t2 = performance.now();
  for (const t of [xa, xi, ...ws, ...hs.values()]) be.free(t);
  return { seconds: (t2 - t0) / 1000, hessianSeconds: (t1 - t0) / 1000, gptqSeconds: (t2 - t1) / 1000 };
}
