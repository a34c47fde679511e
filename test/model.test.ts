// The CPU forward pass checked against independent numbers: llama2.c float64 reference outputs, and
// perplexities transformers computed on the same files (../shared/data/SOURCES.md).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DATA, hasData } from "./helpers.ts";
import { loadModel, evaluate, readDatasetText, generateIds } from "../src/index.ts";

const d = describe.skipIf(!hasData);
const ref = hasData ? JSON.parse(readFileSync(join(DATA, "stories260K", "reference_outputs.json"), "utf8")) : null;

d("stories260K-hf (cpu)", () => {
  test("top-5 logits after BOS match the float64 reference to 1e-3", async () => {
    const m = await loadModel(join(DATA, "stories260K-hf"), { backend: "cpu" });
    const logits = (await m.backend.download(m.forward(Int32Array.of(1)))) as Float32Array;
    const top = Array.from(logits, (v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 5);
    expect(top.map((t) => t[1])).toEqual(ref.bos_logits_top5.ids);
    top.forEach(([v], i) => expect(Math.abs(v - ref.bos_logits_top5.logits[i])).toBeLessThan(1e-3));
  });
  test("greedy generation from BOS gives the reference's 64 token ids (KV cache path)", async () => {
    const m = await loadModel(join(DATA, "stories260K-hf"), { backend: "cpu" });
    const ids = await generateIds(m, Int32Array.of(1), { maxNewTokens: 64, temperature: 0, stopAtEos: false });
    expect(ids.slice(0, ref.greedy_from_bos.token_ids.length)).toEqual(ref.greedy_from_bos.token_ids);
    expect(m.tokenizer.decode(ref.greedy_from_bos.token_ids, true)).toBe(ref.greedy_from_bos.text);
  });
  test("the reference window: same token ids and mean NLL 1.40052", async () => {
    const m = await loadModel(join(DATA, "stories260K-hf"), { backend: "cpu" });
    const text = readFileSync(join(DATA, "tinystories", "tinystories_val_excerpt.txt"), "utf8").split("\n\n").slice(1, 4).join("\n");
    const ids = m.tokenizer.encode(text).subarray(0, 256);
    expect(Array.from(ids)).toEqual(ref.nll_window.token_ids);
    const nll = await m.backend.nll(m.forward(ids), Int32Array.from({ length: 256 }, (_, t) => ids[Math.min(t + 1, 255)]!));
    const mean = nll.subarray(0, 255).reduce((a, b) => a + b, 0) / 255;
    expect(mean).toBeCloseTo(ref.nll_window.mean_nll_nats, 4);
  });
  test("perplexity on the TinyStories excerpt: 4.1069 (transformers) within 0.5%", async () => {
    const m = await loadModel(join(DATA, "stories260K-hf"), { backend: "cpu" });
    const r = await evaluate(m, readDatasetText(join(DATA, "tinystories", "tinystories_val_excerpt.txt")), { seqlen: 256, maxWindows: 40, progress: false });
    expect(r.windows).toBe(40);
    expect(Math.abs(r.perplexity / 4.1069 - 1)).toBeLessThan(0.005);
  });
});

d("gutenberg-llama-16m (cpu)", () => {
  test("fp16 model with grouped-query attention: perplexity 32.2659 (transformers) within 0.5%", async () => {
    const m = await loadModel(join(DATA, "gutenberg-llama-16m"), { backend: "cpu" });
    const r = await evaluate(m, readDatasetText(join(DATA, "gutenberg", "eval.txt")), { seqlen: 512, maxWindows: 40, progress: false });
    expect(Math.abs(r.perplexity / 32.2659 - 1)).toBeLessThan(0.005);
  });
  test("KV-cache decoding gives the same logits as the full forward pass", async () => {
    const m = await loadModel(join(DATA, "gutenberg-llama-16m"), { backend: "cpu" });
    const ids = m.tokenizer.encode("It was a dark and stormy night; the rain fell in torrents");
    const full = (await m.backend.download(m.forward(ids))) as Float32Array;
    const cache = m.newCache(64);
    const V = m.config.vocabSize;
    const a = (await m.backend.download(m.forward(ids.subarray(0, 5), { cache }))) as Float32Array;
    for (let i = 0; i < 5 * V; i++) expect(Math.abs(a[i]! - full[i]!)).toBeLessThan(1e-3);
    for (let t = 5; t < ids.length; t++) {
      const step = (await m.backend.download(m.forward(ids.subarray(t, t + 1), { cache }))) as Float32Array;
      const want = full.subarray(t * V, (t + 1) * V);
      let maxd = 0;
      for (let i = 0; i < V; i++) maxd = Math.max(maxd, Math.abs(step[i]! - want[i]!));
      expect(maxd).toBeLessThan(1e-3);
    }
  });
});

d("GPTQ checkpoint made by AutoGPTQ (cpu)", () => {
  test("gutenberg-llama-16m-gptq-w4g128: perplexity 33.0765 (transformers on its dequantized weights) within 0.5%", async () => {
    const m = await loadModel(join(DATA, "gutenberg-llama-16m-gptq-w4g128"), { backend: "cpu" });
    expect(m.layer(0).q.q).toBeDefined();
    const r = await evaluate(m, readDatasetText(join(DATA, "gutenberg", "eval.txt")), { seqlen: 512, maxWindows: 40, progress: false });
    expect(Math.abs(r.perplexity / 33.0765 - 1)).toBeLessThan(0.005);
  });
});
