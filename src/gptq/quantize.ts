/**
 * Quantize a whole model, layer by layer (never the whole model in float32):
 *   calibration windows -> embeddings X [nsamples·seqlen, H] on the backend
 *   per layer, true-sequential: [k, v, q] -> [o] -> [up, gate] -> [down], each group's Hessian taken on
 *   inputs produced with the already-quantized earlier groups; the layer's output with quantized weights
 *   is the next layer's input. Packed tensors stream to the output shards as layers finish.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { InvalidArgumentError, ModelFormatError } from "../errors.ts";
import { LlamaModel, LINEAR_PATH, attend, chunkRows, layerForward, linear, qkv, widestActivation, type LayerWeights, type LinearName } from "../model/llama.ts";
import { calibrationWindows, readCalibrationTexts } from "./calibration.ts";
import { gptqQuantize, rtnQuantize, validateOptions, type GptqOptions, type QuantizedLinear } from "./gptq.ts";
import { CheckpointWriter, packLinear, parseSize } from "./checkpoint.ts";
import { packedLen } from "./pack.ts";
import { PhaseTimer, Progress } from "../progress.ts";

export const VERSION = "0.1.0";

export interface QuantizeOptions extends Partial<GptqOptions> {
  out: string;
  /** calibration text file / .jsonl / folder (required for gptq) */
  dataset?: string;
  nsamples?: number;
  seqlen?: number;
  seed?: number;
  trueSequential?: boolean;
  method?: "gptq" | "rtn";
  format?: "gptq" | "gptq_v2";
  maxShardSize?: string | number;
  overwrite?: boolean;
  backend?: string | Backend;
  /** per-module progress lines (default true) */
  progress?: boolean;
  log?: (s: string) => void;
}

export interface ModuleReport {
  name: string;
  loss: number;
  damp: number;
  seconds: number;
  samples: number;
}
export interface QuantizeReport {
  tool: string;
  model: string;
  out: string;
  backend: string;
  method: string;
  config: Record<string, unknown>;
  modules: ModuleReport[];
  totals: { modules: number; layers: number; loss: number; seconds: number; calibrationTokens: number };
}

const SEQUENTIAL_GROUPS: LinearName[][] = [["k", "v", "q"], ["o"], ["up", "gate"], ["down"]];

export async function quantize(modelArg: string, opts: QuantizeOptions): Promise<QuantizeReport> {
  const t0 = performance.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const method = opts.method ?? "gptq";
  if (method !== "gptq" && method !== "rtn") throw new InvalidArgumentError(`--method: "${method}" is not one of gptq, rtn`);
  const format = opts.format ?? "gptq";
  if (format !== "gptq" && format !== "gptq_v2") throw new InvalidArgumentError(`--format: "${format}" is not one of gptq, gptq_v2`);
  const g: GptqOptions = {
    bits: opts.bits ?? 4,
    groupSize: opts.groupSize ?? 128,
    sym: opts.sym ?? false,
    descAct: opts.descAct ?? false,
    staticGroups: opts.staticGroups ?? false,
    damp: opts.damp ?? 0.01,
    mse: opts.mse ?? false,
  };
  const trueSequential = opts.trueSequential ?? true;
  const nsamples = opts.nsamples ?? 128;
  if (!Number.isInteger(nsamples) || nsamples < 1) throw new InvalidArgumentError(`--nsamples: must be a positive integer, got ${nsamples}`);
  const model = await LlamaModel.load(modelArg, { backend: opts.backend, lazyLayers: true, log });
  const c = model.config;
  if (c.quantization) throw new ModelFormatError(`${model.dir}: the model is already GPTQ-quantized; quantize the original float checkpoint`);
  const be = model.backend;
  let seqlen = opts.seqlen ?? 2048;
  if (seqlen > c.maxPositions) {
    log(`--seqlen ${seqlen} capped at the model's context ${c.maxPositions}`);
    seqlen = c.maxPositions;
  }
  // validate shapes up front: every linear must pack into whole int32 words
  for (const n of Object.keys(LINEAR_PATH) as LinearName[]) {
    const info = model.ckpt.info(`model.layers.0.${LINEAR_PATH[n]}.weight`);
    const [out, inF] = info.shape as [number, number];
    validateOptions(g);
    packedLen(inF, g.bits, `${LINEAR_PATH[n]}: in_features ${inF} at ${g.bits} bits`);
    packedLen(out, g.bits, `${LINEAR_PATH[n]}: out_features ${out} at ${g.bits} bits`);
  }
  const writer = new CheckpointWriter(opts.out, parseSize(opts.maxShardSize ?? "2GB"), opts.overwrite);
  const modules: ModuleReport[] = [];
  const show = opts.progress !== false;
  try {
    let Xs: Tensor[] = [];
    if (method === "gptq") {
      if (!opts.dataset) throw new InvalidArgumentError("--dataset: required for --method gptq (a text file, .jsonl or folder for calibration)");
      const ids = calibrationWindows(model.tokenizer, readCalibrationTexts(opts.dataset), nsamples, seqlen, opts.seed ?? 0);
      const rows = chunkRows(be, widestActivation(c), seqlen, ids.length);
      for (let r0 = 0; r0 < ids.length; r0 += rows) Xs.push(be.embedding(ids.subarray(r0, r0 + rows), model.embed));
    }
    const bar = show ? new Progress("quantize", c.numLayers) : null;
    for (let li = 0; li < c.numLayers; li++) {
      const prof = new PhaseTimer(be);
      const L = model.layer(li);
      await prof.mark("load");
      const results = new Map<LinearName, QuantizedLinear>();
      const done = (n: LinearName, q: QuantizedLinear) => {
        results.set(n, q);
        const name = `model.layers.${li}.${LINEAR_PATH[n]}`;
        modules.push({ name, loss: q.loss, damp: q.damp, seconds: q.seconds, samples: method === "gptq" ? nsamples : 0 });
        if (show) log(`layer ${li + 1}/${c.numLayers} ${LINEAR_PATH[n].padEnd(16)} loss ${q.loss.toExponential(4)} damp ${q.damp} ${q.seconds.toFixed(2)}s`);
      };
      if (method === "rtn") {
        // the CPU backend rounds on the host (rtnQuantize); GPU backends run GPTQ's column loop with an identity
        // inverse Hessian (gptqQuantize with h = null), the same codes without host work
        for (const n of Object.keys(LINEAR_PATH) as LinearName[]) {
          if (be.name === "cpu") done(n, rtnOne(model, li, n, g));
          else {
            await yieldToEventLoop();
            const { weight, ...q } = await gptqQuantize(be, L[n].w!, null, g);
            be.free(weight);
            done(n, q);
          }
        }
      } else {
        Xs = await gptqLayer(model, L, Xs, seqlen, nsamples, g, trueSequential, done, prof);
      }
      for (const n of Object.keys(LINEAR_PATH) as LinearName[]) {
        const prefix = `model.layers.${li}.${LINEAR_PATH[n]}`;
        for (const t of packLinear(prefix, results.get(n)!, format)) writer.add(t);
        if (model.ckpt.has(`${prefix}.bias`)) writer.add(copyTensor(model, `${prefix}.bias`));
      }
      for (const norm of ["input_layernorm", "post_attention_layernorm"]) writer.add(copyTensor(model, `model.layers.${li}.${norm}.weight`));
      model.freeLayer(li);
      await prof.mark("pack+write");
      prof.flush(`layer ${li + 1}`);
      bar?.tick(1, `layer ${li + 1}`);
      await yieldToEventLoop();
    }
    bar?.done();
    for (const x of Xs) be.free(x);
    for (const name of ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]) if (model.ckpt.has(name)) writer.add(copyTensor(model, name));

    const qc = {
      quant_method: "gptq",
      bits: g.bits,
      group_size: g.groupSize,
      desc_act: g.descAct,
      sym: g.sym,
      static_groups: g.staticGroups,
      true_sequential: trueSequential,
      damp_percent: g.damp,
      mse: g.mse,
      checkpoint_format: format,
      model_file_base_name: "model",
      meta: { quantizer: [`gptq-ts:${VERSION}`], method, damp_auto_increment: "x2 until positive-definite", damp_used_max: Math.max(...modules.map((m) => m.damp)) },
    };
    const config = JSON.parse(readFileSync(join(model.dir, "config.json"), "utf8"));
    config.quantization_config = qc;
    const seconds = (performance.now() - t0) / 1000;
    const report: QuantizeReport = {
      tool: `gptq-ts ${VERSION}`,
      model: modelArg,
      out: writer.out,
      backend: be.name,
      method,
      config: { ...qc, nsamples, seqlen, seed: opts.seed ?? 0, dataset: opts.dataset ?? null },
      modules,
      totals: { modules: modules.length, layers: c.numLayers, loss: modules.reduce((a, m) => a + m.loss, 0), seconds, calibrationTokens: method === "gptq" ? nsamples * seqlen : 0 },
    };
    writer.finish({ "config.json": config, "quantize_config.json": qc, "quant_report.json": report }, model.dir);
    return report;
  } catch (e) {
    writer.abort();
    throw e;
  }
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

function copyTensor(model: LlamaModel, name: string) {
  const info = model.ckpt.info(name);
  return { name, dtype: info.dtype, shape: info.shape, data: model.ckpt.bytes(name) };
}

function rtnOne(model: LlamaModel, li: number, n: LinearName, g: GptqOptions): QuantizedLinear {
  const name = `model.layers.${li}.${LINEAR_PATH[n]}.weight`;
  const [out, inF] = model.ckpt.info(name).shape as [number, number];
  return rtnQuantize(model.hostF32(name), out, inF, g);
}

/** an empty Hessian accumulator [K, K] */
function hessianOf(be: Backend, K: number): Tensor {
  return be.zeros([K, K], "f32");
}
/** the reference's running average: H = 2/nsamples · Σ XᵀX (nsamples = calibration sequences) */
function finishHessian(be: Backend, h: Tensor, nsamples: number): Tensor {
  be.scale(h, 2 / nsamples);
  return h;
}

/**
 * Quantize one layer's linears; returns the layer's output with quantized weights. The calibration set
 * streams through in chunks of whole sequences (Xs); Hessians accumulate over the chunks.
 */
async function gptqLayer(
  model: LlamaModel, L: LayerWeights, Xs: Tensor[], seqLen: number, nsamples: number, g: GptqOptions, trueSequential: boolean,
  done: (n: LinearName, q: QuantizedLinear) => void, prof: PhaseTimer,
): Promise<Tensor[]> {
  const be = model.backend, c = model.config;
  const H = c.hiddenSize, I = c.intermediateSize, QD = c.numHeads * c.headDim;
  const swap = async (n: LinearName, Hn: Tensor) => {
    await yieldToEventLoop(); // lets SIGINT/SIGTERM handlers run between modules
    const old = L[n];
    const { weight, ...q } = await gptqQuantize(be, old.w!, Hn, g);
    done(n, q);
    L[n] = { name: old.name, w: weight, bias: old.bias };
    be.free(old.w!);
  };
  const so = { seqLen };
  const norm1 = (x: Tensor) => be.rmsNorm(x, L.inNorm, c.rmsNormEps);
  const norm2 = (x: Tensor) => be.rmsNorm(x, L.postNorm, c.rmsNormEps);
  /** attention output before o_proj, for one chunk */
  const attnIn = (x: Tensor) => {
    const h1 = norm1(x);
    const t = qkv(model, L, h1, so);
    be.free(h1);
    const a = attend(model, t, so);
    be.free(t.q); be.free(t.k); be.free(t.v);
    return a;
  };
  const actOf = (h2: Tensor) => {
    const gt = linear(be, h2, L.gate), u = linear(be, h2, L.up);
    const act = be.siluMul(gt, u);
    be.free(gt); be.free(u);
    return act;
  };
  const Hattn = hessianOf(be, H), Ho = hessianOf(be, QD), Hmlp = hessianOf(be, H), Hdown = hessianOf(be, I);
  if (!trueSequential) {
    // all four inputs from the unquantized layer, as the reference without true-sequential
    for (const x of Xs) {
      const h1 = norm1(x);
      be.hessianAccumulate(Hattn, h1);
      be.free(h1);
      const a = attnIn(x);
      be.hessianAccumulate(Ho, a);
      const ao = linear(be, a, L.o);
      const x2 = be.add(x, ao);
      be.free(a); be.free(ao);
      const h2 = norm2(x2);
      be.hessianAccumulate(Hmlp, h2);
      const act = actOf(h2);
      be.hessianAccumulate(Hdown, act);
      for (const t of [x2, h2, act]) be.free(t);
    }
    for (const h of [Hattn, Ho, Hmlp, Hdown]) finishHessian(be, h, nsamples);
    for (const n of SEQUENTIAL_GROUPS[0]!) await swap(n, Hattn);
    await swap("o", Ho);
    for (const n of SEQUENTIAL_GROUPS[2]!) await swap(n, Hmlp);
    await swap("down", Hdown);
  } else {
    // [k, v, q] on norm1(X)
    for (const x of Xs) {
      const h1 = norm1(x);
      be.hessianAccumulate(Hattn, h1);
      be.free(h1);
    }
    finishHessian(be, Hattn, nsamples);
    await prof.mark("hessian(qkv)");
    for (const n of SEQUENTIAL_GROUPS[0]!) await swap(n, Hattn);
    await prof.mark("gptq(qkv)");
    // [o] on the attention output computed with the quantized q/k/v
    const As = Xs.map((x) => {
      const a = attnIn(x);
      be.hessianAccumulate(Ho, a);
      return a;
    });
    await prof.mark("attention+hessian(o)");
    await swap("o", finishHessian(be, Ho, nsamples));
    await prof.mark("gptq(o)");
    // [up, gate] on norm2(X + o(attention)) with the quantized o
    const X2s = Xs.map((x, i) => {
      const ao = linear(be, As[i]!, L.o);
      const x2 = be.add(x, ao);
      be.free(ao); be.free(As[i]!); be.free(x);
      const h2 = norm2(x2);
      be.hessianAccumulate(Hmlp, h2);
      be.free(h2);
      return x2;
    });
    finishHessian(be, Hmlp, nsamples);
    await prof.mark("o+hessian(mlp)");
    for (const n of SEQUENTIAL_GROUPS[2]!) await swap(n, Hmlp);
    await prof.mark("gptq(gate,up)");
    // [down] on silu(gate)·up with the quantized gate and up
    const Acts = X2s.map((x2) => {
      const h2 = norm2(x2);
      const act = actOf(h2);
      be.free(h2);
      be.hessianAccumulate(Hdown, act);
      return act;
    });
    await prof.mark("gate,up+hessian(down)");
    await swap("down", finishHessian(be, Hdown, nsamples));
    await prof.mark("gptq(down)");
    for (const h of [Hattn, Ho, Hmlp, Hdown]) be.free(h);
    // the layer's output with every linear quantized: the next layer's input
    const outs = X2s.map((x2, i) => {
      const y = linear(be, Acts[i]!, L.down);
      const out = be.add(x2, y);
      be.free(y); be.free(Acts[i]!); be.free(x2);
      return out;
    });
    await prof.mark("down");
    return outs;
  }
  for (const h of [Hattn, Ho, Hmlp, Hdown]) be.free(h);
  // the layer's output with every linear quantized: the next layer's input
  const out: Tensor[] = [];
  for (const x of Xs) {
    const y = layerForward(model, L, x, so);
    be.free(x);
    out.push(y);
  }
  return out;
}

