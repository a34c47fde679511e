// Diagnostics for the GPU machine: where CUDA and CPU GPTQ differ on a real layer, and host vs device time
// of the packed matmul. npx bun bench/diag.ts <model>
import "../src/backends.ts";
import { selectBackend, type Backend } from "../src/backend.ts";
import { LlamaModel } from "../src/model/llama.ts";
import { calibrationWindows, readCalibrationTexts } from "../src/gptq/calibration.ts";
import { gptqQuantize } from "../src/gptq/gptq.ts";
import { unpackQweight } from "../src/gptq/pack.ts";
import { randomQuantSpec } from "../src/bench.ts";

const model = process.argv[2]!, data = process.env.GPTQ_DATA!;
const gpu = await selectBackend("cuda"), cpu = await selectBackend("cpu");
const rel = (a: Float32Array, b: Float32Array) => { let n = 0, d = 0; for (let i = 0; i < a.length; i++) { n += (a[i]! - b[i]!) ** 2; d += b[i]! ** 2; } return Math.sqrt(n / d); };
const o = { bits: 4, groupSize: 128, sym: false, descAct: false, staticGroups: false, damp: 0.01, mse: false };
const res: Record<string, { h1: Float32Array; H: Float32Array; codes: Uint8Array; w: Float32Array }> = {};
for (const be of [cpu, gpu] as Backend[]) {
  const m = await LlamaModel.load(model, { backend: be, lazyLayers: true });
  const ids = calibrationWindows(m.tokenizer, readCalibrationTexts(`${data}/wikitext-2-raw/wiki.valid.raw`), 32, 256, 0);
  const X = be.embedding(ids, m.embed);
  const L = m.layer(0);
  const h1 = be.rmsNorm(X, L.inNorm, 1e-5);
  const H = be.zeros([384, 384], "f32"); be.hessianAccumulate(H, h1); be.scale(H, 2 / 32);
  const q = await gptqQuantize(be, L.q.w!, H, o);
  res[be.name] = { h1: (await be.download(h1)) as Float32Array, H: (await be.download(H)) as Float32Array, codes: unpackQweight(q.qweight, 384, 384, 4), w: (await be.download(L.q.w!)) as Float32Array };
}
const agree = (a: Uint8Array, b: Uint8Array) => { let s = 0; for (let i = 0; i < a.length; i++) if (a[i] === b[i]) s++; return (100 * s / a.length).toFixed(2) + "%"; };
console.log(`h1 rel diff ${rel(res.cuda!.h1, res.cpu!.h1).toExponential(2)}, H rel diff ${rel(res.cuda!.H, res.cpu!.H).toExponential(2)}, W rel diff ${rel(res.cuda!.w, res.cpu!.w).toExponential(2)}`);
console.log(`q_proj codes (each its own H): ${agree(res.cuda!.codes, res.cpu!.codes)}`);
const qg = await gptqQuantize(gpu, gpu.upload(res.cpu!.w, [384, 384], "f32"), gpu.upload(res.cpu!.H, [384, 384], "f32"), o);
console.log(`q_proj codes (cuda with the CPU's H and W): ${agree(unpackQweight(qg.qweight, 384, 384, 4), res.cpu!.codes)}`);

// host enqueue time vs total for the packed matmul, M = 1
const shapes: [number, number][] = [[4096, 12288], [4096, 4096], [4096, 22016], [11008, 4096]];
const ws = shapes.map(([K, N], i) => gpu.prepareQuantWeight(randomQuantSpec(K, N, 4, 128, false, i + 1)));
const xs = shapes.map(([K]) => gpu.upload(new Float32Array(K).fill(0.1), [1, K], "f32"));
for (let rep = 0; rep < 3; rep++) {
  await gpu.sync();
  const t0 = performance.now();
  const outs = [];
  for (let it = 0; it < 50; it++) for (let i = 0; i < 4; i++) outs.push(gpu.quantMatmul(xs[i]!, ws[i]!));
  const t1 = performance.now();
  await gpu.sync();
  const t2 = performance.now();
  for (const y of outs) gpu.free(y);
  console.log(`matmul M=1, 4 shapes: host enqueue ${((t1 - t0) * 1000 / 50).toFixed(1)} us/iter, total ${((t2 - t0) * 1000 / 50).toFixed(1)} us/iter`);
}
