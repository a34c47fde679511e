/**
 * config.json of the Llama family (Llama 2/3, Mistral, Qwen2): both transformers 4 (`rope_theta`,
 * `rope_scaling`) and transformers 5 (`rope_parameters`) spellings, `head_dim`, tied embeddings,
 * attention/MLP biases (Qwen2 has q/k/v bias), dtype.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelFormatError } from "../errors.ts";

export interface GptqConfig {
  bits: number;
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  staticGroups: boolean;
  trueSequential: boolean;
  dampPercent: number;
  checkpointFormat: "gptq" | "gptq_v2";
  modelFileBaseName: string;
  raw: Record<string, unknown>;
}

export interface LlamaConfig {
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  /** q/k/v (and o for Llama with attention_bias) biases */
  attentionBias: boolean;
  /** bias on o_proj (Llama attention_bias=true has it, Qwen2 does not) */
  oProjBias: boolean;
  mlpBias: boolean;
  dtype: string;
  bosTokenId: number | null;
  eosTokenIds: number[];
  rope: { theta: number; type: string; invFreq: Float32Array; attentionScaling: number; raw: Record<string, unknown> };
  quantization: GptqConfig | null;
  raw: Record<string, unknown>;
}

const SUPPORTED = ["llama", "mistral", "qwen2"];

export function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ModelFormatError(`${path}: ${existsSync(path) ? `not valid JSON (${(e as Error).message})` : "file not found"}`);
  }
}

export function computeInvFreq(headDim: number, theta: number, rp: Record<string, unknown>, maxPos: number): { invFreq: Float32Array; attentionScaling: number; type: string } {
  const type = String(rp.rope_type ?? rp.type ?? "default");
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  if (type === "default") return { invFreq: inv, attentionScaling: 1, type };
  const factor = Number(rp.factor ?? 1);
  if (type === "linear") {
    for (let i = 0; i < half; i++) inv[i]! /= factor;
    return { invFreq: inv, attentionScaling: 1, type };
  }
  if (type === "llama3") {
    const low = Number(rp.low_freq_factor ?? 1);
    const high = Number(rp.high_freq_factor ?? 4);
    const old = Number(rp.original_max_position_embeddings ?? 8192);
    const lowWl = old / low, highWl = old / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wl = (2 * Math.PI) / f;
      let v = wl > lowWl ? f / factor : f;
      if (!(wl < highWl) && !(wl > lowWl)) {
        const s = (old / wl - low) / (high - low);
        v = ((1 - s) * v) / factor + s * v;
      }
      inv[i] = v;
    }
    return { invFreq: inv, attentionScaling: 1, type };
  }
  throw new ModelFormatError(`rope type "${type}" is not supported (supported: default, linear, llama3)`);
}

export function parseConfig(dir: string): LlamaConfig {
  const path = join(dir, "config.json");
  const c = readJson(path);
  const modelType = String(c.model_type ?? "");
  if (!SUPPORTED.includes(modelType)) {
    throw new ModelFormatError(`${path}: model_type "${modelType}" is not supported (supported: ${SUPPORTED.join(", ")})`);
  }
  const need = (k: string): number => {
    const v = c[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new ModelFormatError(`${path}: "${k}" is missing or not a positive number`);
    return v;
  };
  const hiddenSize = need("hidden_size");
  const numHeads = need("num_attention_heads");
  const numKvHeads = typeof c.num_key_value_heads === "number" ? c.num_key_value_heads : numHeads;
  const headDim = typeof c.head_dim === "number" ? c.head_dim : hiddenSize / numHeads;
  if (numHeads % numKvHeads !== 0) throw new ModelFormatError(`${path}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const rp = (c.rope_parameters ?? c.rope_scaling ?? {}) as Record<string, unknown>;
  const theta = Number(rp.rope_theta ?? c.rope_theta ?? 10000);
  const maxPositions = Number(c.max_position_embeddings ?? 2048);
  const rope = { theta, raw: rp, ...computeInvFreq(headDim, theta, rp, maxPositions) };
  const eos = c.eos_token_id;
  const qwen = modelType === "qwen2";
  const attentionBias = qwen ? true : Boolean(c.attention_bias);
  return {
    modelType,
    hiddenSize,
    intermediateSize: need("intermediate_size"),
    numLayers: need("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: need("vocab_size"),
    rmsNormEps: Number(c.rms_norm_eps ?? 1e-6),
    maxPositions,
    tieWordEmbeddings: Boolean(c.tie_word_embeddings ?? false),
    attentionBias,
    oProjBias: qwen ? false : attentionBias,
    mlpBias: Boolean(c.mlp_bias ?? false),
    dtype: String(c.dtype ?? c.torch_dtype ?? "float32"),
    bosTokenId: typeof c.bos_token_id === "number" ? c.bos_token_id : null,
    eosTokenIds: Array.isArray(eos) ? eos.map(Number) : typeof eos === "number" ? [eos] : [],
    rope,
    quantization: parseQuantConfig(dir, c),
    raw: c,
  };
}

/** quantization_config in config.json, or quantize_config.json beside it; null for a dense model */
export function parseQuantConfig(dir: string, c: Record<string, unknown>): GptqConfig | null {
  let q = c.quantization_config as Record<string, unknown> | undefined;
  const qpath = join(dir, "quantize_config.json");
  if (!q && existsSync(qpath)) q = readJson(qpath);
  if (!q) return null;
  const method = String(q.quant_method ?? "gptq");
  if (method !== "gptq") throw new ModelFormatError(`${dir}: quantization method "${method}" is not supported (only gptq)`);
  const bits = Number(q.bits);
  if (![2, 3, 4, 8].includes(bits)) throw new ModelFormatError(`${dir}: quantization bits ${q.bits} not supported (2, 3, 4, 8)`);
  const fmt = String(q.checkpoint_format ?? "gptq");
  if (fmt !== "gptq" && fmt !== "gptq_v2") throw new ModelFormatError(`${dir}: checkpoint_format "${fmt}" not supported (gptq, gptq_v2)`);
  return {
    bits,
    groupSize: Number(q.group_size ?? -1),
    descAct: Boolean(q.desc_act),
    sym: Boolean(q.sym ?? true),
    staticGroups: Boolean(q.static_groups),
    trueSequential: Boolean(q.true_sequential ?? true),
    dampPercent: Number(q.damp_percent ?? 0.01),
    checkpointFormat: fmt,
    modelFileBaseName: String(q.model_file_base_name ?? "model"),
    raw: q,
  };
}
