// End to end on every GPU backend against the CPU backend: perplexity, greedy generation, and a whole
// GPTQ quantization (codes, losses and perplexity). GPTQ_E2E_MODEL overrides the model quantized.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DATA, expectClose, gpuBackends, has } from "./helpers.ts";
import { Decoder, type LlamaModel } from "../src/model/llama.ts";
import { loadModel, evaluate, readDatasetText, generateIds, quantize } from "../src/index.ts";
import { Checkpoint, floatsF32, typedView } from "../src/model/safetensors.ts";
import { unpackQweight } from "../src/gptq/pack.ts";

const STORIES = join(DATA, "stories260K-hf");

/** how many of the 4-bit codes of packed tensor `name` are the same in two checkpoints, of how many */
function codesAgree(a: Checkpoint, b: Checkpoint, name: string): { same: number; total: number } {
  const [w, N] = b.info(name).shape as [number, number];
  const codes = (c: Checkpoint) => unpackQweight(typedView(c.bytes(name), "I32") as Int32Array, w * 8, N, 4);
  const x = codes(a), y = codes(b);
  let same = 0;
  for (let i = 0; i < x.length; i++) if (x[i] === y[i]) same++;
  return { same, total: x.length };
}
const E2E = process.env.GPTQ_E2E_MODEL ?? join(DATA, "gutenberg-llama-16m");
const backends = await gpuBackends();

for (const b of backends) {
  const d = b.backend ? describe : describe.skip;
  d(`${b.name} vs cpu, end to end${b.backend ? "" : ` [unavailable: ${b.reason}]`}`, () => {
    test.skipIf(!has("stories260K-hf"))("stories260K perplexity within 0.2% of the CPU backend", async () => {
      const text = readDatasetText(join(DATA, "tinystories", "tinystories_val_excerpt.txt"));
      const opts = { seqlen: 256, maxWindows: 40, progress: false };
      const g = await evaluate(await loadModel(STORIES, { backend: b.backend! }), text, opts);
      const c = await evaluate(await loadModel(STORIES, { backend: "cpu" }), text, opts);
      expect(g.backend).toBe(b.name);
      expect(Math.abs(g.perplexity / c.perplexity - 1)).toBeLessThan(0.002);
    });
    test.skipIf(!has("stories260K", "reference_outputs.json"))("greedy generation from BOS gives the reference ids (KV cache on the GPU)", async () => {
      const ref = JSON.parse(readFileSync(join(DATA, "stories260K", "reference_outputs.json"), "utf8"));
      const m = await loadModel(STORIES, { backend: b.backend! });
      const ids = await generateIds(m, Int32Array.of(1), { maxNewTokens: 64, stopAtEos: false });
      expect(ids.slice(0, ref.greedy_from_bos.token_ids.length)).toEqual(ref.greedy_from_bos.token_ids);
    });
    test.skipIf(!b.backend?.graphs || !existsSync(E2E))("decode graph: replayed steps give the eager steps' logits (4-bit model)", async () => {
      // a 4-bit model (RTN is enough to exercise the packed kernels), quantized here on this backend
      const dir = join(mkdtempSync(join(tmpdir(), "gptq-graph-")), "q4");
      await quantize(E2E, { out: dir, method: "rtn", bits: 4, groupSize: 128, progress: false, backend: b.backend! });
      const m = await loadModel(dir, { backend: b.backend! });
      const run = async (graph: boolean) => {
        const cache = m.newCache(48), d = new Decoder(m, cache, { graph });
        const logits: Float32Array[] = [];
        let input = Int32Array.from([1, 450, 1996, 1354, 701].map((i) => i % m.config.vocabSize));
        for (let i = 0; i < 32; i++) {
          const l = await d.step(input);
          logits.push(l.slice());
          let best = 0;
          for (let j = 1; j < l.length; j++) if (l[j]! > l[best]!) best = j;
          input = Int32Array.of(best);
        }
        const r = { logits, mode: d.mode, error: d.graphError };
        d.free();
        m.freeCache(cache);
        return r;
      };
      const e = await run(false), g = await run(true);
      expect(g.error).toBeNull();
      expect([e.mode, g.mode]).toEqual(["eager", "graph"]);
      // same kernels either way; only the prompt pass (5 rows: the tensor-core kernel's atomic split-K sums)
      // differs run to run in the last bits, and that difference stays in the KV cache (seen: 1.05e-4 at step 13)
      for (let i = 0; i < e.logits.length; i++) expectClose(g.logits[i]!, e.logits[i]!, 3e-4, `step ${i}`);
    });
    test.skipIf(!b.backend?.graphs?.argmaxNext || !existsSync(E2E))("pipelined greedy decoding (tokens picked on the device, a step queued ahead) gives the host loop's ids", async () => {
      const dir = join(mkdtempSync(join(tmpdir(), "gptq-pipe-")), "q4");
      await quantize(E2E, { out: dir, method: "rtn", bits: 4, groupSize: 128, progress: false, backend: b.backend! });
      const m = await loadModel(dir, { backend: b.backend! });
      const prompt = Int32Array.from([1, 450, 1996, 1354, 701].map((i) => i % m.config.vocabSize));
      const modes: string[] = [];
      const run = (pipeline: boolean) => generateIds(m, prompt, { maxNewTokens: 40, stopAtEos: false, pipeline, onDecoder: (d) => modes.push(d.mode) });
      const host = await run(false), piped = await run(true);
      expect(modes).toEqual(["graph", "pipelined"]);
      expect(piped).toEqual(host);
      // stopping early: the step queued behind the last one is waited for and not counted, and host steps go on
      const cache = m.newCache(64), d = new Decoder(m, cache);
      await d.step(prompt);
      await d.step(Int32Array.of(host[5]!)); // (one eager single-token step before the graph)
      expect(d.canPipeline).toBe(true);
      const seen: number[] = [];
      const got = d.greedy(host[6]!, 20, (id) => { seen.push(id); return seen.length < 10; });
      expect(got).toEqual(host.slice(7, 17));
      expect(cache.length).toBe(16);
      const l = await d.step(Int32Array.of(host[16]!));
      expect(l.indexOf(Math.max(...l))).toBe(host[17]!);
      expect(cache.length).toBe(17);
      expect(() => d.greedy(host[17]!, 64, () => true)).toThrow(/exceeds the KV cache/);
      d.free();
      m.freeCache(cache);
    });
    test.skipIf(!b.backend || !existsSync(E2E))("4-bit decode through the packed GEMV: each step's logits agree with the CPU backend's", async () => {
      // teacher-forced single-token steps (M = 1: the GEMV kernels, on WebGPU the f16 one where the adapter has it)
      const dir = join(mkdtempSync(join(tmpdir(), "gptq-gemv-")), "q4");
      await quantize(E2E, { out: dir, method: "rtn", bits: 4, groupSize: 128, progress: false, backend: "cpu" });
      const steps = async (backend: NonNullable<typeof b.backend> | "cpu") => {
        const m = await loadModel(dir, { backend });
        const cache = m.newCache(32), d = new Decoder(m, cache, { graph: false });
        const out: Float32Array[] = [];
        for (const t of [1, 450, 1996, 1354, 701, 278, 3186, 310, 13, 29871, 1576, 9]) out.push((await d.step(Int32Array.of(t % m.config.vocabSize))).slice());
        d.free();
        m.freeCache(cache);
        return out;
      };
      const g = await steps(b.backend!), c = await steps("cpu");
      for (let i = 0; i < c.length; i++) expectClose(g[i]!, c[i]!, 5e-3, `step ${i}`); // f16 arithmetic: about 6e-4 measured
    });
    test.skipIf(!b.backend?.graphs)("graph capture refuses uploads and tensors left alive inside it", async () => {
      const be = b.backend!;
      expect(() => be.graphs!.capture(() => { be.upload(new Float32Array(4), [4], "f32"); })).toThrow(/graph capture/);
      expect(() => be.graphs!.capture(() => { be.zeros([4], "f32"); })).toThrow(/not freed inside/);
      // and still works afterwards: a captured add, replayed on new inputs
      const a = be.upload(Float32Array.of(1, 2, 3), [1, 3], "f32"), c = be.zeros([1, 3], "f32");
      const g = be.graphs!.capture(() => { const s = be.add(a, a); be.writeRows(c, s, 0); be.free(s); });
      expect(Array.from((await be.download(c)) as Float32Array)).toEqual([0, 0, 0]); // captured, not run
      g.replay();
      expect(Array.from((await be.download(c)) as Float32Array)).toEqual([2, 4, 6]);
      be.graphs!.write(a, Float32Array.of(5, 6, 7));
      g.replay();
      expect(Array.from((await be.download(c)) as Float32Array)).toEqual([10, 12, 14]);
      g.free();
    });
    test.skipIf(!existsSync(E2E))(`rtn on the backend (identity inverse Hessian) gives the host's codes, scales and losses`, async () => {
      const root = mkdtempSync(join(tmpdir(), "gptq-rtn-"));
      const o = { method: "rtn" as const, bits: 4, groupSize: 128, progress: false };
      const rg = await quantize(E2E, { ...o, out: join(root, "gpu"), backend: b.backend! });
      const rc = await quantize(E2E, { ...o, out: join(root, "cpu"), backend: "cpu" });
      expect(rg.backend).toBe(b.name);
      rg.modules.forEach((m, i) => expect(Math.abs(m.loss / rc.modules[i]!.loss - 1)).toBeLessThan(1e-4));
      const cg = new Checkpoint(join(root, "gpu")), cc = new Checkpoint(join(root, "cpu"));
      let same = 0, total = 0;
      for (const name of cc.names().filter((n) => n.endsWith(".qweight"))) {
        const r = codesAgree(cg, cc, name);
        same += r.same;
        total += r.total;
        const sn = name.replace(/qweight$/, "scales");
        const scales = (ck: Checkpoint) => floatsF32(typedView(ck.bytes(sn), ck.info(sn).dtype), ck.info(sn).dtype)!;
        expectClose(scales(cg), scales(cc), 1e-3, sn);
      }
      // the same rounding of the same weights: only exact ties (x·(1/scale) landing on .5 in one precision and
      // not the other) may differ
      console.log(`${b.name}: rtn: ${((100 * same) / total).toFixed(4)}% of ${total} codes agree with the host's`);
      expect(same / total).toBeGreaterThan(0.9999);
    });
    test.skipIf(!has("wikitext-2-raw", "wiki.valid.raw"))(`quantize ${E2E.split("/").pop()}: same codes where inputs agree, same losses, perplexity within 0.5% (fp32 CUDA; 1% WebGPU, 2% CUDA with TF32)`, async () => {
      const root = mkdtempSync(join(tmpdir(), "gptq-e2e-"));
      const o = { dataset: join(DATA, "wikitext-2-raw", "wiki.valid.raw"), nsamples: 32, seqlen: 256, bits: 4, groupSize: 128, progress: false };
      const rg = await quantize(E2E, { ...o, out: join(root, "gpu"), backend: b.backend! });
      const rc = await quantize(E2E, { ...o, out: join(root, "cpu"), backend: "cpu" });
      expect(rg.backend).toBe(b.name);
      // GPTQ is chaotic: a 1e-6 difference in a layer's inputs (attention, norms computed in another order) flips
      // some rounding decisions, whose error feedback moves later codes, and later layers see those. So: where
      // the inputs agree up to rounding (layer 0's q/k/v), the codes must agree but for rare flips at near-ties;
      // everywhere, the quantization must be as good (per-module loss) and so must the model (perplexity).
      rg.modules.forEach((m, i) => expect(Math.abs(m.loss / rc.modules[i]!.loss - 1)).toBeLessThan(0.03));
      const cg = new Checkpoint(join(root, "gpu")), cc = new Checkpoint(join(root, "cpu"));
      for (const lin of ["q_proj", "k_proj", "v_proj"]) {
        const { same, total } = codesAgree(cg, cc, `model.layers.0.self_attn.${lin}.qweight`);
        console.log(`${b.name}: layer 0 ${lin}: ${((100 * same) / total).toFixed(3)}% of codes agree with the CPU backend's`);
        expect(same / total).toBeGreaterThan(0.995);
      }
      const text = readDatasetText(join(DATA, has("gutenberg", "eval.txt") ? "gutenberg/eval.txt" : "tinystories/tinystories_val_excerpt.txt"));
      const ev = { seqlen: 256, maxWindows: 20, progress: false };
      const pg = (await evaluate(await loadModel(join(root, "gpu"), { backend: b.backend! }), text, ev)).perplexity;
      const pc = (await evaluate(await loadModel(join(root, "cpu"), { backend: "cpu" }), text, ev)).perplexity;
      console.log(`${b.name}: perplexity ${pg.toFixed(3)} (quantized and evaluated on ${b.name}) vs ${pc.toFixed(3)} (cpu)`);
      // Bounds: the CPU backend's own spread over calibration seeds on this setup is about 0.5% (32.72, 32.85,
      // 32.89 for seeds 0-2). CUDA in exact fp32 mode stays within 0.5% of the CPU run; CUDA's fast mode (TF32
      // forward, fp16-rounded activations in the Hessian, as the reference's fp16 forward) and WebGPU's float32
      // Cholesky land within 1% (WebGPU on lavapipe at seed 0: 0.69%, 0.61%, and 0.83% since the tiled GEMM
      // reorders the rounding; seeds 1 and 2 then −0.50% and −0.01%).
      const exact = b.name === "cuda" && process.env.GPTQ_CUDA_TF32 === "0";
      expect(Math.abs(pg / pc - 1)).toBeLessThan(exact ? 0.005 : b.name === "cuda" ? 0.02 : 0.01);
    }, 2_400_000); // (lavapipe on 2 cores: 15 minutes and more, past the suite's 900 s default)
  });
}
if (backends.length === 0) test("no GPU backends are registered", () => expect(backends).toEqual([]));
