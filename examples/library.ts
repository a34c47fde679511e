// The README's library example, runnable: npx bun examples/library.ts [model] [calibration text] [eval text]
import { loadModel, evaluate, generate, quantize, readDatasetText } from "../src/index.ts";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const data = join(import.meta.dir, "..", "..", "shared", "data");
const modelDir = process.argv[2] ?? join(data, "gutenberg-llama-16m");
const calib = process.argv[3] ?? join(data, "wikitext-2-raw", "wiki.valid.raw");
const evalText = process.argv[4] ?? join(data, "gutenberg", "eval.txt");

const model = await loadModel(modelDir, { backend: process.env.GPTQ_BACKEND ?? "auto" });
const r = await evaluate(model, readDatasetText(evalText), { seqlen: 512, maxWindows: 8 });
console.log(`fp16 perplexity ${r.perplexity.toFixed(3)} on ${r.backend}`);

const out = await generate(model, "Once upon a time", { maxNewTokens: 20, onText: (s) => process.stdout.write(s) });
process.stdout.write("\n");

const dir = join(mkdtempSync(join(tmpdir(), "gptq-example-")), "q4");
const report = await quantize(modelDir, { out: dir, dataset: calib, nsamples: 32, seqlen: 512, bits: 4, groupSize: 128, progress: false });
const q = await loadModel(dir);
const rq = await evaluate(q, readDatasetText(evalText), { seqlen: 512, maxWindows: 8 });
console.log(JSON.stringify({ generated: out.text.length > 0, modules: report.totals.modules, fp16: r.perplexity, w4g128: rq.perplexity }));
