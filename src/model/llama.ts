/**
 * The Llama-family decoder (Llama 2/3, Mistral, Qwen2) on the tensor layer.
 * Weights come from the mapped safetensors files; dense linears or packed GPTQ linears.
 *
 *   x = embed(ids)                                   [T, H]
 *   per layer:  h = rmsNorm(x); q,k,v = h Wqᵀ, h Wkᵀ, h Wvᵀ; rope(q,k); a = attn(q, K, V)
 *               x = x + a Woᵀ
 *               h = rmsNorm(x); x = x + (silu(h Wgᵀ) ⊙ h Wuᵀ) Wdᵀ
 *   logits = rmsNorm(x) Wlmᵀ                         [T, V]
 */
import type { Backend, DeviceGraph, QuantWeight, QuantWeightSpec, TokenRing } from "../backend.ts";
import { selectBackend } from "../backend.ts";
import type { DType } from "../dtype.ts";
import type { Tensor } from "../tensor.ts";
import { InvalidArgumentError, ModelFormatError } from "../errors.ts";
import { checkIds } from "../validate.ts";
import { Checkpoint, floatsF32, typedView, type StDtype } from "./safetensors.ts";
import { parseConfig, type LlamaConfig } from "./config.ts";
import { Tokenizer } from "./tokenizer.ts";
import { resolveModel } from "./hub.ts";
import "../backends.ts";

export interface Linear {
  name: string;
  w?: Tensor;
  q?: QuantWeight;
  bias?: Tensor;
}
export const LINEARS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type LinearName = (typeof LINEARS)[number];
export const LINEAR_PATH: Record<LinearName, string> = {
  q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj", o: "self_attn.o_proj",
  gate: "mlp.gate_proj", up: "mlp.up_proj", down: "mlp.down_proj",
};
export interface LayerWeights extends Record<LinearName, Linear> {
  index: number;
  inNorm: Tensor;
  postNorm: Tensor;
}

export interface KVCache {
  maxLen: number;
  k: Tensor[];
  v: Tensor[];
  length: number;
}

const ST_TO_DTYPE: Partial<Record<StDtype, DType>> = { F32: "f32", F16: "f16", BF16: "bf16", I32: "i32", U8: "u8" };

export interface LoadOptions {
  backend?: string | Backend;
  /** load layer weights on demand (quantization streams layers); default: all at load */
  lazyLayers?: boolean;
  /** skip the tokenizer (tests with synthetic models) */
  noTokenizer?: boolean;
  log?: (msg: string) => void;
}

export class LlamaModel {
  embed!: Tensor;
  norm!: Tensor;
  lmHead!: Tensor;
  layers: (LayerWeights | null)[] = [];
  private tokenizer_: Tokenizer | null = null;

  private constructor(readonly dir: string, readonly config: LlamaConfig, readonly ckpt: Checkpoint, readonly backend: Backend) {}

  static async load(modelArg: string, opts: LoadOptions = {}): Promise<LlamaModel> {
    const dir = await resolveModel(modelArg);
    const config = parseConfig(dir);
    const ckpt = new Checkpoint(dir, config.quantization?.modelFileBaseName ?? "model");
    const backend = typeof opts.backend === "object" ? opts.backend : await selectBackend(opts.backend, opts.log);
    const m = new LlamaModel(dir, config, ckpt, backend);
    if (!opts.noTokenizer) m.tokenizer_ = Tokenizer.load(dir);
    m.embed = m.tensor("model.embed_tokens.weight", [config.vocabSize, config.hiddenSize]);
    m.norm = m.tensor("model.norm.weight", [config.hiddenSize]);
    m.lmHead = config.tieWordEmbeddings || !ckpt.has("lm_head.weight") ? m.embed : m.tensor("lm_head.weight", [config.vocabSize, config.hiddenSize]);
    m.layers = new Array(config.numLayers).fill(null);
    if (!opts.lazyLayers) for (let i = 0; i < config.numLayers; i++) m.layers[i] = m.loadLayer(i);
    return m;
  }

  get tokenizer(): Tokenizer {
    if (!this.tokenizer_) throw new ModelFormatError(`${this.dir}: model was loaded without a tokenizer`);
    return this.tokenizer_;
  }

  /** host copy of a checkpoint tensor as float32 (weights of any float dtype) */
  hostF32(name: string): Float32Array {
    const info = this.ckpt.info(name);
    const f = floatsF32(typedView(this.ckpt.bytes(name), info.dtype), info.dtype);
    if (f) return f;
    throw new ModelFormatError(`${info.file}: tensor "${name}" has dtype ${info.dtype}, expected a float type`);
  }

  /** upload a checkpoint tensor, checking its shape */
  tensor(name: string, shape?: number[]): Tensor {
    const info = this.ckpt.info(name);
    if (shape && (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))) {
      throw new ModelFormatError(`${info.file}: tensor "${name}" has shape [${info.shape}] but config.json implies [${shape}]`);
    }
    const dt = ST_TO_DTYPE[info.dtype];
    if (!dt) throw new ModelFormatError(`${info.file}: tensor "${name}" has dtype ${info.dtype}, which cannot be used as a weight`);
    return this.backend.upload(typedView(this.ckpt.bytes(name), info.dtype) as Float32Array, info.shape, dt);
  }

  private linearShape(n: LinearName): [number, number] {
    const c = this.config;
    const H = c.hiddenSize, I = c.intermediateSize, qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
    return ({ q: [qd, H], k: [kvd, H], v: [kvd, H], o: [H, qd], gate: [I, H], up: [I, H], down: [H, I] } as const)[n] as [number, number];
  }

  hasBias(n: LinearName): boolean {
    const c = this.config;
    if (n === "q" || n === "k" || n === "v") return c.attentionBias;
    if (n === "o") return c.oProjBias;
    return c.mlpBias;
  }

  loadLinear(layer: number, n: LinearName): Linear {
    const prefix = `model.layers.${layer}.${LINEAR_PATH[n]}`;
    const [out, inF] = this.linearShape(n);
    const lin: Linear = { name: prefix };
    if (this.ckpt.has(`${prefix}.bias`)) lin.bias = this.tensor(`${prefix}.bias`, [out]);
    if (this.ckpt.has(`${prefix}.qweight`)) lin.q = this.backend.prepareQuantWeight(this.quantSpec(prefix, inF, out));
    else lin.w = this.tensor(`${prefix}.weight`, [out, inF]);
    return lin;
  }

  /** the packed tensors of a GPTQ linear, validated against config.json and quantization_config */
  quantSpec(prefix: string, inF: number, out: number): QuantWeightSpec {
    const qc = this.config.quantization;
    if (!qc) throw new ModelFormatError(`${this.dir}: "${prefix}.qweight" present but no quantization_config in config.json nor quantize_config.json`);
    const bits = qc.bits;
    const get = (suffix: string, dt: StDtype[]) => {
      const info = this.ckpt.info(`${prefix}.${suffix}`);
      if (!dt.includes(info.dtype)) throw new ModelFormatError(`${info.file}: "${prefix}.${suffix}" has dtype ${info.dtype}, expected ${dt.join(" or ")}`);
      return { info, view: typedView(this.ckpt.bytes(`${prefix}.${suffix}`), info.dtype) };
    };
    const qw = get("qweight", ["I32"]);
    const qz = get("qzeros", ["I32"]);
    const sc = get("scales", ["F16", "BF16", "F32"]);
    const groups = sc.info.shape[0]!;
    const expect = (name: string, shape: number[], want: number[]) => {
      if (shape.length !== want.length || shape.some((d, i) => d !== want[i])) {
        throw new ModelFormatError(`${this.dir}: "${prefix}.${name}" has shape [${shape}], expected [${want}] for ${bits}-bit, in ${inF}, out ${out}, ${groups} groups`);
      }
    };
    expect("qweight", qw.info.shape, [(inF * bits) / 32, out]);
    expect("qzeros", qz.info.shape, [groups, (out * bits) / 32]);
    expect("scales", sc.info.shape, [groups, out]);
    const scales = floatsF32(sc.view, sc.info.dtype)!; // (get checked: F16, BF16 or F32)
    let gIdx: Int32Array;
    if (this.ckpt.has(`${prefix}.g_idx`)) {
      const g = get("g_idx", ["I32", "I64"]);
      expect("g_idx", g.info.shape, [inF]);
      gIdx = g.info.dtype === "I64" ? Int32Array.from(g.view as BigInt64Array, (x) => Number(x)) : Int32Array.from(g.view as Int32Array);
    } else {
      const gs = qc.groupSize > 0 ? qc.groupSize : inF;
      gIdx = Int32Array.from({ length: inF }, (_, k) => Math.floor(k / gs));
    }
    return {
      bits, inFeatures: inF, outFeatures: out, groups,
      qweight: Int32Array.from(qw.view as Int32Array),
      qzeros: Int32Array.from(qz.view as Int32Array),
      scales, gIdx,
      zeroOffset: qc.checkpointFormat === "gptq" ? 1 : 0,
    };
  }

  loadLayer(i: number): LayerWeights {
    const H = this.config.hiddenSize;
    const p = `model.layers.${i}`;
    const L = { index: i, inNorm: this.tensor(`${p}.input_layernorm.weight`, [H]), postNorm: this.tensor(`${p}.post_attention_layernorm.weight`, [H]) } as LayerWeights;
    for (const n of LINEARS) L[n] = this.loadLinear(i, n);
    return L;
  }

  layer(i: number): LayerWeights {
    let L = this.layers[i];
    if (!L) L = this.layers[i] = this.loadLayer(i);
    return L;
  }

  freeLayer(i: number): void {
    const L = this.layers[i];
    if (!L) return;
    const be = this.backend;
    be.free(L.inNorm);
    be.free(L.postNorm);
    for (const n of LINEARS) freeLinear(be, L[n]);
    this.layers[i] = null;
  }

  newCache(maxLen: number): KVCache {
    const c = this.config;
    const kvd = c.numKvHeads * c.headDim;
    const k: Tensor[] = [], v: Tensor[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      k.push(this.backend.empty([maxLen, kvd], "f32"));
      v.push(this.backend.empty([maxLen, kvd], "f32"));
    }
    return { maxLen, k, v, length: 0 };
  }

  freeCache(cache: KVCache): void {
    for (const t of [...cache.k, ...cache.v]) this.backend.free(t);
  }

  /**
   * Hidden states after the last layer (before the final norm).
   * With `cache`, ids continue the cached sequence (pos0 = cache.length). Without, ids are
   * `ids.length / seqLen` independent sequences of seqLen tokens each.
   */
  hidden(ids: Int32Array, opts: { cache?: KVCache; seqLen?: number } = {}): Tensor {
    return this.pass(ids, opts);
  }

  /** embedding, every layer (and finalNorm), the cache advanced past ids */
  private pass(ids: Int32Array, opts: { cache?: KVCache; seqLen?: number }, finalNorm?: Tensor): Tensor {
    const cache = opts.cache;
    const x = this.layersFrom(this.backend.embedding(ids, this.embed), (i) => (cache ? { cache, layer: i } : { seqLen: opts.seqLen ?? ids.length }), finalNorm);
    if (cache) cache.length += ids.length;
    return x;
  }

  /**
   * Every layer from the embedded x (taken over): the hidden states, or with `finalNorm` their rmsNorm (each
   * residual add fused with the norm after it where the backend can: layerStep)
   */
  layersFrom(x: Tensor, seq: (layer: number) => SeqOpts, finalNorm?: Tensor): Tensor {
    const be = this.backend, n = this.config.numLayers;
    let h: NormedInput | null = null;
    for (let i = 0; i < n; i++) {
      const next = i + 1 < n ? this.layer(i + 1).inNorm : finalNorm;
      const r = layerStep(this, this.layer(i), x, seq(i), h ?? undefined, next, true);  // (x taken over)
      x = r.x;
      h = r.h;
    }
    if (!finalNorm) return x;
    let out: Tensor;
    if (!h || isDeferred(h)) out = be.rmsNorm(x, finalNorm, this.config.rmsNormEps);  // no layers, or the final norm deferred: computed here (the LM head is a plain matmul)
    else out = h;
    be.free(x);
    return out;
  }

  /** logits [T, V] */
  forward(ids: Int32Array, opts: { cache?: KVCache; seqLen?: number } = {}): Tensor {
    const be = this.backend;
    if (opts.cache && opts.cache.length + ids.length > opts.cache.maxLen) {
      throw new InvalidArgumentError(`sequence of ${opts.cache.length + ids.length} tokens exceeds the KV cache of ${opts.cache.maxLen}`);
    }
    const h = this.pass(ids, opts, this.norm);
    const logits = be.matmul(h, this.lmHead);
    be.free(h);
    return logits;
  }
}

/** the widest activation of a layer, in floats per token: max(hidden, intermediate, heads·hd) */
export function widestActivation(c: LlamaConfig): number {
  return Math.max(c.hiddenSize, c.intermediateSize, c.numHeads * c.headDim);
}

/**
 * Rows per chunk of a batched forward pass (calibration, eval): whole sequences, so that the largest activation
 * of a layer (tokens x widest floats) stays within the backend's tensor limit (WebGPU's storage binding size)
 * and 2 GiB. (Logits may be larger: the ops that take them split.)
 */
export function chunkRows(be: Backend, widest: number, seqLen: number, total: number): number {
  const limit = Math.min(be.maxTensorBytes ?? Infinity, 2 ** 31);
  const seqs = Math.max(1, Math.floor(limit / (4 * widest * seqLen)));
  return Math.min(total, seqs * seqLen);
}

export function freeLinear(be: Backend, l: Linear): void {
  if (l.w) be.free(l.w);
  if (l.q) be.free(l.q);
  if (l.bias) be.free(l.bias);
}

export function linear(be: Backend, x: Tensor, l: Linear): Tensor {
  return l.q ? be.quantMatmul(x, l.q, l.bias) : be.matmul(x, l.w!, l.bias);
}

/**
 * rmsNorm(x, w, eps) not yet computed, so that the matmuls that take it apply it (quantMatmulManyNormed). x and w
 * belong to the caller.
 */
export type DeferredNorm = { deferred: true; x: Tensor; w: Tensor; eps: number };
/** a layer's normed input: the tensor, or the norm deferred */
export type NormedInput = Tensor | DeferredNorm;
const isDeferred = (h: NormedInput): h is DeferredNorm => "deferred" in h;
/** the normed input as a tensor (computed if deferred; the caller frees it with freeNormed) */
function normTensor(be: Backend, h: NormedInput): Tensor {
  return isDeferred(h) ? be.rmsNorm(h.x, h.w, h.eps) : h;
}
/** frees what a NormedInput owns (the tensor; a deferred norm owns nothing) */
export function freeNormed(be: Backend, h: NormedInput): void {
  if (!isDeferred(h)) be.free(h);
}

/** several linears of the same input (q/k/v, gate/up): one packed launch where the backend offers it */
export function linears(be: Backend, x: NormedInput, ls: Linear[]): Tensor[] {
  if (isDeferred(x)) {
    const ys = be.quantMatmulManyNormed && ls.every((l) => l.q) ? be.quantMatmulManyNormed(x.x, x.w, x.eps, ls.map((l) => l.q!), ls.map((l) => l.bias)) : null;
    if (ys) return ys;
    const h = normTensor(be, x);
    const out = linears(be, h, ls);
    be.free(h);
    return out;
  }
  if (be.quantMatmulMany && ls.every((l) => l.q)) return be.quantMatmulMany(x, ls.map((l) => l.q!), ls.map((l) => l.bias));
  return ls.map((l) => linear(be, x, l));
}

/**
 * residual + linear(x) (x gated: siluMul(x, gate)) with the RMSNorm by `normW` after it: one packed launch that
 * leaves the norm deferred where the backend offers quantMatmulAdd, else add and rmsNorm (fused where offered).
 * Without normW only the sum. inPlace: the residual may be accumulated into (sum may be residual itself). The
 * caller frees sum, the residual when it is not sum, and (freeNormed) norm.
 */
function linearAddNorm(be: Backend, x: Tensor, l: Linear, residual: Tensor, normW: Tensor | undefined, eps: number, gate?: Tensor, inPlace = false): { sum: Tensor; norm: NormedInput | null } {
  const f = l.q && be.quantMatmulAdd ? be.quantMatmulAdd(x, l.q, residual, { gate, bias: l.bias, inPlace }) : null;
  if (f) return { sum: f, norm: normW ? { deferred: true, x: f, w: normW, eps } : null };
  let y: Tensor;
  if (gate && be.quantMatmulGated && l.q) y = be.quantMatmulGated(x, gate, l.q, l.bias);
  else if (gate) {
    const act = be.siluMul(x, gate);
    y = linear(be, act, l);
    be.free(act);
  } else y = linear(be, x, l);
  const r = normW ? addNorm(be, residual, y, normW, eps) : { sum: be.add(residual, y), norm: null };
  be.free(y);
  return r;
}

/** through a KV cache (posTensor: the position is a device scalar read when the work runs), or independent sequences */
export type SeqOpts = { cache: KVCache; layer: number; posTensor?: Tensor } | { seqLen: number };

/**
 * q, k, v with rope applied. Through a cache, on a backend with ropeAttention, rope is left to attend (`roped`
 * false: rope, the cache writes and attention in one call); with ropeWriteKV k and v are written to the cache
 * here, in the same launch as rope (`cached`); otherwise attend writes them.
 */
export function qkv(m: LlamaModel, L: LayerWeights, h: NormedInput, o: SeqOpts): QKV {
  const be = m.backend, c = m.config;
  const [q, k, v] = linears(be, h, [L.q, L.k, L.v]) as [Tensor, Tensor, Tensor];
  if ("cache" in o && be.ropeAttention) return { q, k, v, roped: false };
  const rope = ropeOpts(m, o);
  if ("cache" in o && be.ropeWriteKV) {
    be.ropeWriteKV(q, k, v, o.cache.k[o.layer]!, o.cache.v[o.layer]!, { ...rope, heads: c.numHeads, kvHeads: c.numKvHeads });
    return { q, k, v, cached: true };
  }
  be.rope(q, { ...rope, heads: c.numHeads });
  be.rope(k, { ...rope, heads: c.numKvHeads });
  return { q, k, v };
}

type QKV = { q: Tensor; k: Tensor; v: Tensor; cached?: boolean; roped?: false };

/** rope's options for this layer call: the position from the cache (a device scalar when posTensor is given) */
function ropeOpts(m: LlamaModel, o: SeqOpts) {
  const posTensor = "cache" in o ? o.posTensor : undefined;
  const pos0 = "cache" in o && !posTensor ? o.cache.length : 0;
  const seqLen = "cache" in o ? undefined : o.seqLen;
  return { headDim: m.config.headDim, pos0, seqLen, invFreq: m.config.rope.invFreq, scale: m.config.rope.attentionScaling, posTensor };
}

/** the attention output before o_proj: [T, heads·hd] */
export function attend(m: LlamaModel, t: QKV, o: SeqOpts): Tensor {
  const be = m.backend, c = m.config;
  const a = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim };
  if ("cache" in o) {
    const kc = o.cache.k[o.layer]!, vc = o.cache.v[o.layer]!;
    if (t.roped === false) return be.ropeAttention!(t.q, t.k, t.v, kc, vc, { ...ropeOpts(m, o), heads: c.numHeads, kvHeads: c.numKvHeads });
    if (o.posTensor) {
      if (!t.cached) {
        be.writeRows(kc, t.k, 0, o.posTensor);
        be.writeRows(vc, t.v, 0, o.posTensor);
      }
      return be.attention(t.q, kc, vc, { ...a, pos0: 0, posTensor: o.posTensor });
    }
    if (!t.cached) {
      be.writeRows(kc, t.k, o.cache.length);
      be.writeRows(vc, t.v, o.cache.length);
    }
    return be.attention(t.q, kc, vc, { ...a, pos0: o.cache.length });
  }
  return be.attention(t.q, t.k, t.v, { ...a, pos0: 0, seqLen: o.seqLen });
}

/** one decoder layer: x [T, H] -> x' [T, H] */
export function layerForward(m: LlamaModel, L: LayerWeights, x: Tensor, o: SeqOpts): Tensor {
  return layerStep(m, L, x, o).x;
}

/** sum = x + r and norm = rmsNorm(sum, w): one pass where the backend offers it (addRmsNorm) */
export function addNorm(be: Backend, x: Tensor, r: Tensor, w: Tensor, eps: number): { sum: Tensor; norm: Tensor } {
  if (be.addRmsNorm) return be.addRmsNorm(x, r, w, eps);
  const sum = be.add(x, r);
  return { sum, norm: be.rmsNorm(sum, w, eps) };
}

/**
 * One decoder layer, x [T, H] -> x' [T, H], with the norms fused into the residual adds before them: `hIn` is
 * rmsNorm(x, L.inNorm) when the caller has it (from the layer before, as a tensor or deferred into the q/k/v
 * matmul: DeferredNorm; taken over and freed), and with `next` (the next layer's input norm, or the final
 * norm) the result also carries h = rmsNorm(x', next), likewise. consume: x is taken over (freed, or
 * accumulated into and returned as x'); else it stays the caller's, unchanged.
 */
export function layerStep(m: LlamaModel, L: LayerWeights, x: Tensor, o: SeqOpts, hIn?: NormedInput, next?: Tensor, consume = false): { x: Tensor; h: NormedInput | null } {
  const be = m.backend, eps = m.config.rmsNormEps;
  const h = hIn ?? be.rmsNorm(x, L.inNorm, eps);
  const t = qkv(m, L, h, o);
  freeNormed(be, h);
  const a = attend(m, t, o);
  be.free(t.q); be.free(t.k); be.free(t.v);
  // o_proj, the residual add and the post-attention norm (deferred into gate/up where the backend can)
  // (accumulated into x when it was given up)
  const { sum: x2, norm: h2 } = linearAddNorm(be, a, L.o, x, L.postNorm, eps, undefined, consume);
  be.free(a);
  const [g, u] = linears(be, h2!, [L.gate, L.up]) as [Tensor, Tensor];
  freeNormed(be, h2!);
  // down with the SiLU gate, the residual add and the next norm (deferred into the next layer's q/k/v);
  // x2 is this function's unless it is the caller's x
  const { sum: out, norm: hn } = linearAddNorm(be, g, L.down, x2, next, eps, u, consume || x2 !== x);
  be.free(g); be.free(u);
  if (x2 !== out && x2 !== x) be.free(x2);
  if (consume && x !== out) be.free(x);
  return { x: out, h: hn };
}

/**
 * Decoding through a KV cache, one call per step. On a backend with graphs (CUDA), single-token steps after
 * the first (eager) one are captured once as a graph (embedding … logits, every layer) and replayed: the token
 * and the position go in as device scalars, so host overhead no longer bounds tokens per second. Where the
 * backend also picks greedy tokens on the device (GraphSupport.argmaxNext), `greedy()` keeps the next step
 * queued while the host takes this one's token, so the device never waits for the host. Other backends, or
 * `graph: false` (GPTQ_GRAPHS=0), run every step eagerly. If capture fails, decoding goes on eagerly and
 * `graphError` says why (printed once unless GPTQ_QUIET).
 */
export class Decoder {
  private graph: DeviceGraph | null = null;
  private io: { tok: Tensor; pos: Tensor; logits: Tensor } | null = null;
  private ring: TokenRing | null = null;
  private singleSteps = 0;
  private pipelined = false;
  graphError: string | null = null;
  readonly wantGraph: boolean;

  constructor(readonly model: LlamaModel, readonly cache: KVCache, opts: { graph?: boolean } = {}) {
    this.wantGraph = (opts.graph ?? process.env.GPTQ_GRAPHS !== "0") && Boolean(model.backend.graphs);
    // decoding reads all of the LM head per token: CUDA keeps an fp16 copy of it for its GEMV (once per
    // model, made here and not at load, so that quantizing or evaluating never pays its memory)
    model.backend.keepHalf?.(model.lmHead);
  }

  get mode(): "pipelined" | "graph" | "eager" {
    return this.pipelined ? "pipelined" : this.graph ? "graph" : "eager";
  }

  /** feed ids (the prompt, or the last sampled token) and return the logits of the last one [V] */
  async step(ids: Int32Array): Promise<Float32Array> {
    const m = this.model, be = m.backend, V = m.config.vocabSize, cache = this.cache;
    if (cache.length + ids.length > cache.maxLen) throw new InvalidArgumentError(`sequence of ${cache.length + ids.length} tokens exceeds the KV cache of ${cache.maxLen}`);
    // the first single-token step runs eagerly: it sizes the kernels' buffers for exactly this step's shapes
    if (ids.length === 1 && this.singleSteps++ > 0 && this.ensureGraph()) {
      const g = be.graphs!;
      checkIds(ids, V); // the graph's embedding reads the id on the device, where it cannot be checked
      g.write(this.io!.tok, ids);
      g.write(this.io!.pos, Int32Array.of(cache.length));
      this.graph!.replay();
      cache.length += 1;
      return (await be.download(this.io!.logits)) as Float32Array;
    }
    const logits = m.forward(ids, { cache });
    const all = (await be.download(logits)) as Float32Array;
    be.free(logits);
    return all.subarray(all.length - V);
  }

  /** greedy() can run now: a graph with the device argmax exists or can be captured (after one single-token step) */
  get canPipeline(): boolean {
    return this.singleSteps > 0 && this.wantGraph && !this.graphError && Boolean(this.model.backend.graphs?.argmaxNext);
  }

  /**
   * Greedy decoding from token `first` (not yet in the cache) for up to `count` steps, with one step always
   * queued ahead: each replay leaves its argmax in the device's token and position for the next, and the host
   * only reads the tokens back. onId gets each new id and returns false to stop (the step queued behind it is
   * waited for and not counted). Returns the ids. Needs canPipeline.
   */
  greedy(first: number, count: number, onId: (id: number) => boolean): number[] {
    const be = this.model.backend, cache = this.cache, out: number[] = [];
    if (!this.canPipeline || !this.ensureGraph() || !this.ring) throw new InvalidArgumentError("Decoder.greedy: needs a backend with device graphs and argmaxNext, after one single-token step");
    if (!(Number.isInteger(count) && count >= 0)) throw new InvalidArgumentError(`Decoder.greedy: count must be an integer >= 0, got ${count}`);
    if (cache.length + count > cache.maxLen) throw new InvalidArgumentError(`sequence of ${cache.length + count} tokens exceeds the KV cache of ${cache.maxLen}`);
    if (count === 0) return out;
    checkIds(Int32Array.of(first), this.model.config.vocabSize);
    const g = be.graphs!, ring = this.ring, pos0 = cache.length;
    g.write(this.io!.tok, Int32Array.of(first));
    g.write(this.io!.pos, Int32Array.of(pos0));
    ring.reset();
    this.pipelined = true;
    this.graph!.replay();
    for (let i = 0; i < count; i++) {
      if (i + 1 < count) this.graph!.replay(); // step i + 1, queued behind step i
      const id = ring.take((pos0 + i) % ring.size);
      cache.length += 1;
      out.push(id);
      if (!onId(id)) {
        if (i + 1 < count) ring.take((pos0 + i + 1) % ring.size); // (its cache row lies past the length)
        break;
      }
    }
    return out;
  }

  /** the decode graph, captured on first use; false where it cannot be (then steps run eagerly) */
  private ensureGraph(): boolean {
    if (!this.wantGraph || this.graphError) return false;
    if (!this.graph) this.capture();
    return Boolean(this.graph && this.io);
  }

  private capture(): void {
    const m = this.model, be = m.backend, c = m.config, cache = this.cache, gs = be.graphs!;
    const io = { tok: be.zeros([1], "i32"), pos: be.zeros([1], "i32"), logits: be.empty([1, c.vocabSize], "f32") };
    // (4 slots: at most two steps are in flight, the one read and the one queued behind it)
    const ring = gs.argmaxNext && gs.tokenRing ? gs.tokenRing(4) : null;
    try {
      this.graph = gs.capture(() => {
        const h = m.layersFrom(be.embedding(io.tok, m.embed), (i) => ({ cache, layer: i, posTensor: io.pos }), m.norm);
        const lg = be.matmul(h, m.lmHead);
        be.free(h);
        be.writeRows(io.logits, lg, 0);
        if (ring) gs.argmaxNext!(lg, io.tok, io.pos, ring);
        be.free(lg);
      });
      this.io = io;
      this.ring = ring;
    } catch (e) {
      for (const t of Object.values(io)) be.free(t);
      ring?.free();
      this.graphError = (e as Error).message;
      if (!process.env.GPTQ_QUIET) console.error(`gptq: decode graph capture failed, decoding eagerly: ${this.graphError}`);
    }
  }

  free(): void {
    this.graph?.free();
    this.graph = null;
    this.ring?.free(); // (after the graph: freeing pinned memory waits for the device)
    this.ring = null;
    if (this.io) for (const t of Object.values(this.io)) this.model.backend.free(t);
    this.io = null;
  }
}
