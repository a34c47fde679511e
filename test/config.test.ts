import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { computeInvFreq, parseConfig } from "../src/model/config.ts";
import { ModelFormatError } from "../src/errors.ts";

function cfgDir(c: object): string {
  const d = mkdtempSync(join(tmpdir(), "gptq-cfg-"));
  writeFileSync(join(d, "config.json"), JSON.stringify(c));
  return d;
}
const base = { model_type: "llama", hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 };

describe("config.json", () => {
  test("transformers 4 (rope_theta) and 5 (rope_parameters) spellings agree", () => {
    const a = parseConfig(cfgDir({ ...base, rope_theta: 500000 }));
    const b = parseConfig(cfgDir({ ...base, rope_parameters: { rope_theta: 500000, rope_type: "default" } }));
    expect(a.rope.theta).toBe(500000);
    expect(b.rope.invFreq).toEqual(a.rope.invFreq);
    expect(a.numKvHeads).toBe(4);
    expect(a.headDim).toBe(16);
  });
  test("inverse frequencies: 1/theta^(2i/d)", () => {
    const inv = computeInvFreq(8, 10000, {}, 2048).invFreq;
    expect(Array.from(inv)).toEqual([1, 0.1, 0.01, 0.001].map(Math.fround));
  });
  test("linear rope scaling divides by the factor", () => {
    const inv = computeInvFreq(8, 10000, { rope_type: "linear", factor: 4 }, 2048).invFreq;
    expect(inv[0]).toBeCloseTo(0.25, 7);
  });
  test("llama3 rope scaling: high frequencies kept, low divided by factor, medium smoothed", () => {
    const rp = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const d = 128, theta = 500000;
    const inv = computeInvFreq(d, theta, rp, 131072).invFreq;
    for (let i = 0; i < d / 2; i++) {
      const f = 1 / theta ** ((2 * i) / d), wl = (2 * Math.PI) / f;
      // Meta's reference (llama3 apply_scaling), written independently
      let want: number;
      if (wl < 8192 / 4) want = f;
      else if (wl > 8192 / 1) want = f / 8;
      else { const s = (8192 / wl - 1) / (4 - 1); want = (1 - s) * (f / 8) + s * f; }
      expect(inv[i]!).toBeCloseTo(want, 6);
    }
  });
  test("Qwen2 has q/k/v bias and no o bias; explicit head_dim, GQA, tied embeddings, dtype spellings", () => {
    const q = parseConfig(cfgDir({ ...base, model_type: "qwen2", num_key_value_heads: 2, head_dim: 32, tie_word_embeddings: true, torch_dtype: "bfloat16" }));
    expect([q.attentionBias, q.oProjBias, q.headDim, q.numKvHeads, q.tieWordEmbeddings, q.dtype]).toEqual([true, false, 32, 2, true, "bfloat16"]);
    const l = parseConfig(cfgDir({ ...base, attention_bias: true, mlp_bias: true, dtype: "float16" }));
    expect([l.attentionBias, l.oProjBias, l.mlpBias, l.dtype]).toEqual([true, true, true, "float16"]);
  });
  test("unsupported model types and bad fields name the file and the field", () => {
    expect(() => parseConfig(cfgDir({ ...base, model_type: "gpt2" }))).toThrow(ModelFormatError);
    expect(() => parseConfig(cfgDir({ ...base, model_type: "gpt2" }))).toThrow(/model_type "gpt2"/);
    expect(() => parseConfig(cfgDir({ ...base, hidden_size: "x" }))).toThrow(/"hidden_size"/);
    expect(() => parseConfig(cfgDir({ ...base, rope_scaling: { type: "yarn", factor: 2 } }))).toThrow(/rope type "yarn"/);
  });
  test("quantization_config in config.json, or quantize_config.json beside it", () => {
    const d = cfgDir({ ...base });
    writeFileSync(join(d, "quantize_config.json"), JSON.stringify({ bits: 3, group_size: 64, desc_act: true, sym: true }));
    const q = parseConfig(d).quantization!;
    expect([q.bits, q.groupSize, q.descAct, q.sym, q.checkpointFormat]).toEqual([3, 64, true, true, "gptq"]);
    expect(() => parseConfig(cfgDir({ ...base, quantization_config: { quant_method: "awq", bits: 4 } }))).toThrow(/awq/);
  });
});
