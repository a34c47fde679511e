/** A small random Llama-family model on disk (for format and backend tests that need shapes the real models lack). */
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSafetensors, type TensorToWrite } from "../src/model/safetensors.ts";
import { f16ToF32Array, f32ToBf16Array, f32ToF16Array } from "../src/dtype.ts";
import { packQweight, packQzeros } from "../src/gptq/pack.ts";
import type { QuantWeightSpec } from "../src/backend.ts";
import { DATA } from "./helpers.ts";
import { randn, rng } from "./helpers.ts";

export interface SynthOpts {
  hidden?: number;
  intermediate?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  modelType?: "llama" | "qwen2";
  attentionBias?: boolean;
  mlpBias?: boolean;
  tied?: boolean;
  dtype?: "F32" | "F16" | "BF16";
  seed?: number;
}

/** writes config.json, model.safetensors and the stories260K tokenizer (vocab 512) into a temp folder */
export function syntheticModel(o: SynthOpts = {}): string {
  const H = o.hidden ?? 64, I = o.intermediate ?? 96, L = o.layers ?? 2, nh = o.heads ?? 4, nkv = o.kvHeads ?? 2, V = 512, hd = H / nh;
  const dtype = o.dtype ?? "F16";
  const r = rng(o.seed ?? 1);
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], std: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = randn(n, r, std).map((x) => x + offset);
    tensors.push({ name, dtype, shape, data: dtype === "F32" ? v : dtype === "F16" ? f32ToF16Array(v) : f32ToBf16Array(v) });
  };
  add("model.embed_tokens.weight", [V, H], 0.5);
  add("model.norm.weight", [H], 0.1, 1);
  if (!o.tied) add("lm_head.weight", [V, H], 0.1);
  const qwen = o.modelType === "qwen2";
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], 0.1, 1);
    add(`${p}.post_attention_layernorm.weight`, [H], 0.1, 1);
    const lin = (n: string, out: number, inF: number, bias: boolean) => {
      add(`${p}.${n}.weight`, [out, inF], 1 / Math.sqrt(inF));
      if (bias) add(`${p}.${n}.bias`, [out], 0.1);
    };
    const qkvBias = qwen || Boolean(o.attentionBias);
    lin("self_attn.q_proj", nh * hd, H, qkvBias);
    lin("self_attn.k_proj", nkv * hd, H, qkvBias);
    lin("self_attn.v_proj", nkv * hd, H, qkvBias);
    lin("self_attn.o_proj", H, nh * hd, !qwen && Boolean(o.attentionBias));
    lin("mlp.gate_proj", I, H, Boolean(o.mlpBias));
    lin("mlp.up_proj", I, H, Boolean(o.mlpBias));
    lin("mlp.down_proj", H, I, Boolean(o.mlpBias));
  }
  const dir = mkdtempSync(join(tmpdir(), "gptq-synth-"));
  writeSafetensors(join(dir, "model.safetensors"), tensors);
  const cfg = {
    architectures: [qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"], model_type: o.modelType ?? "llama",
    hidden_size: H, intermediate_size: I, num_hidden_layers: L, num_attention_heads: nh, num_key_value_heads: nkv,
    vocab_size: V, max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: Boolean(o.tied),
    attention_bias: Boolean(o.attentionBias), mlp_bias: Boolean(o.mlpBias), torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype],
    bos_token_id: 1, eos_token_id: 2,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(DATA, "stories260K-hf", f), join(dir, f));
  return dir;
}

export interface QuantCase { spec: QuantWeightSpec; codes: Uint8Array; zeros: Int32Array }

/** random codes, fp16-representable scales, zeros, and (optionally act-order) g_idx, packed in the standard layout */
export function randomQuant(r: () => number, bits: number, K: number, N: number, gs: number, actOrder: boolean, v1: boolean): QuantCase {
  const maxq = (1 << bits) - 1;
  const G = Math.ceil(K / gs);
  const codes = Uint8Array.from({ length: K * N }, () => Math.floor(r() * (maxq + 1)));
  const zeros = Int32Array.from({ length: G * N }, () => (v1 ? 1 : 0) + Math.floor(r() * maxq));
  const scales = f16ToF32Array(f32ToF16Array(Float32Array.from({ length: G * N }, () => 0.001 + 0.02 * r())));
  let gIdx = Int32Array.from({ length: K }, (_, k) => Math.floor(k / gs));
  if (actOrder) {
    for (let i = K - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [gIdx[i], gIdx[j]] = [gIdx[j]!, gIdx[i]!];
    }
  }
  const stored = v1 ? zeros.map((z) => z - 1) : zeros;
  return {
    codes, zeros,
    spec: { bits, inFeatures: K, outFeatures: N, groups: G, qweight: packQweight(codes, K, N, bits), qzeros: packQzeros(stored, G, N, bits), scales, gIdx, zeroOffset: v1 ? 1 : 0 },
  };
}

/** H = 2/n · XᵀX [cols, cols] of n random rows with per-channel scales (0.1 .. 2.1), input 5 dead (zero row and column) */
export function hessianOf(r: () => number, cols: number, n: number): Float32Array {
  const x = randn(n * cols, r);
  for (let c = 0; c < cols; c++) { const s = 0.1 + 2 * r(); for (let t = 0; t < n; t++) x[t * cols + c]! *= s; }
  const H = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) { let s = 0; for (let t = 0; t < n; t++) s += x[t * cols + i]! * x[t * cols + j]!; H[i * cols + j] = (2 * s) / n; }
  // one dead input
  for (let j = 0; j < cols; j++) H[5 * cols + j] = H[j * cols + 5] = 0;
  return H;
}
