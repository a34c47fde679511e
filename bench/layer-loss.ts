// GPTQ on 7B-shaped linears (q_proj 4096x4096, down_proj 4096x11008) on the GPU and on the CPU reference,
// from the same weights and Hessian: the losses must agree within 1%. Prints seconds for each.
import "../src/backends.ts";
import { selectBackend } from "../src/backend.ts";
import { gptqQuantize } from "../src/gptq/gptq.ts";

const gpu = await selectBackend(process.env.GPTQ_GPU ?? "cuda");
const cpu = await selectBackend("cpu");
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const randn = (n: number, std: number) => Float32Array.from({ length: n }, () => std * Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand()));
let worst = 0;
for (const [name, rows, cols] of [["q_proj", 4096, 4096], ["down_proj", 4096, 11008]] as const) {
  const T = 4096;
  // activations with per-channel scales and a shared low-rank part, like real hidden states
  const x = randn(T * cols, 1);
  const scale = Float32Array.from({ length: cols }, () => 0.2 + 3 * rand() ** 3);
  const shared = randn(T * 8, 1), mix = randn(8 * cols, 0.5);
  for (let t = 0; t < T; t++) for (let c = 0; c < cols; c++) {
    let s = 0;
    for (let j = 0; j < 8; j++) s += shared[t * 8 + j]! * mix[j * cols + c]!;
    x[t * cols + c] = (x[t * cols + c]! + s) * scale[c]!;
  }
  const W = randn(rows * cols, 0.02);
  const o = { bits: 4, groupSize: 128, sym: false, descAct: false, staticGroups: false, damp: 0.01, mse: false };
  const H = cpu.zeros([cols, cols], "f32");
  cpu.hessianAccumulate(H, cpu.upload(x, [T, cols], "f32"));
  cpu.scale(H, 2 / 128);
  const Hh = (await cpu.download(H)) as Float32Array;
  const res: Record<string, { loss: number; s: number }> = {};
  for (const be of [gpu, cpu]) {
    const t0 = performance.now();
    const q = await gptqQuantize(be, be.upload(W, [rows, cols], "f32"), be.upload(Hh, [cols, cols], "f32"), o);
    await be.sync();
    res[be.name] = { loss: q.loss, s: (performance.now() - t0) / 1000 };
    be.free(q.weight);
  }
  const rel = Math.abs(res[gpu.name]!.loss / res.cpu!.loss - 1);
  worst = Math.max(worst, rel);
  console.log(`${name} ${rows}x${cols}: loss ${gpu.name} ${res[gpu.name]!.loss.toExponential(5)} (${res[gpu.name]!.s.toFixed(2)} s), cpu ${res.cpu!.loss.toExponential(5)} (${res.cpu!.s.toFixed(2)} s), rel diff ${(rel * 100).toFixed(3)}%`);
}
console.log(worst < 0.01 ? "layer loss agrees within 1%" : `LAYER LOSS DIFFERS by ${(worst * 100).toFixed(2)}%`);
process.exit(worst < 0.01 ? 0 : 1);
