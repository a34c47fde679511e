// The README's quality table: quantize gutenberg-llama-16m several ways on one backend and evaluate each.
// npx bun bench/quality.ts [--backend cpu] [--nsamples 128] [--seqlen 512]
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, evaluate, readDatasetText, quantize, type QuantizeOptions } from "../src/index.ts";

const arg = (k: string, d: string) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1]! : d; };
const backend = arg("backend", "cpu"), nsamples = Number(arg("nsamples", "128")), seqlen = Number(arg("seqlen", "512"));
const data = join(import.meta.dir, "..", "..", "shared", "data");
const model = join(data, "gutenberg-llama-16m"), calib = join(data, "wikitext-2-raw", "wiki.valid.raw");
const text = readDatasetText(join(data, "gutenberg", "eval.txt"));
const root = mkdtempSync(join(tmpdir(), "gptq-quality-"));
const ppl = async (dir: string) => (await evaluate(await loadModel(dir, { backend }), text, { seqlen: 512, maxWindows: 40, progress: false })).perplexity;

const rows: [string, Partial<QuantizeOptions> | null][] = [
  ["fp16", null],
  ["rtn w4 g128", { method: "rtn", bits: 4 }],
  ["gptq w4 g128", { bits: 4 }],
  ["gptq w4 g128 act-order", { bits: 4, descAct: true }],
  ["gptq w4 g128 sym act-order", { bits: 4, sym: true, descAct: true }],
  ["gptq w4 per-channel", { bits: 4, groupSize: -1 }],
  ["rtn w3 g128", { method: "rtn", bits: 3 }],
  ["gptq w3 g128", { bits: 3 }],
  ["gptq w3 g128 act-order", { bits: 3, descAct: true }],
  ["gptq w2 g64", { bits: 2, groupSize: 64 }],
  ["gptq w8 g128", { bits: 8 }],
];
console.log(`| config | perplexity | quantize seconds (${backend}) |\n| --- | --- | --- |`);
for (const [name, o] of rows) {
  let dir = model, secs = 0;
  if (o) {
    dir = join(root, name.replace(/\W+/g, "-"));
    const r = await quantize(model, { out: dir, dataset: calib, nsamples, seqlen, backend, progress: false, ...o });
    secs = r.totals.seconds;
  }
  console.log(`| ${name} | ${(await ppl(dir)).toFixed(2)} | ${o ? secs.toFixed(1) : "-"} |`);
}
