#!/usr/bin/env bun
/** The command line. Each command calls the library (src/index.ts); nothing here computes. */
import { cac } from "cac";
import { quantize } from "./src/gptq/quantize.ts";
import { loadModel, evaluate, readDatasetText, generate, inspectModel, formatInspect, probeAll, GptqError, InvalidArgumentError } from "./src/index.ts";

const cli = cac("gptq");
const verbose = process.argv.includes("--verbose");
const log = (s: string) => process.stderr.write(`${s}\n`);

function num(name: string, v: unknown, opts: { int?: boolean; min?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new InvalidArgumentError(`--${name}: "${v}" is not ${opts.int ? "an integer" : "a number"}${opts.min !== undefined ? ` >= ${opts.min}` : ""}`);
  }
  return n;
}

cli.option("--backend <name>", "auto | cuda | webgpu | cpu (default: $GPTQ_BACKEND or auto)");
cli.option("--verbose", "show stack traces on errors");

cli
  .command("eval <model>", "perplexity on a text file (GPTQ paper protocol: non-overlapping windows)")
  .option("--dataset <file>", "text file to evaluate on")
  .option("--seqlen <n>", "window length in tokens", { default: 2048 })
  .option("--max-windows <n>", "evaluate only the first n windows")
  .option("--batch <n>", "windows per forward pass", { default: 4 })
  .option("--json", "print one JSON object on stdout")
  .example("bun run gptq.ts eval ../shared/data/gutenberg-llama-16m --dataset ../shared/data/gutenberg/eval.txt --seqlen 512 --max-windows 40")
  .action(async (model: string, o) => {
    if (!o.dataset) throw new InvalidArgumentError("--dataset: required (a text file to evaluate on)");
    const text = readDatasetText(o.dataset);
    const m = await loadModel(model, { backend: o.backend, log });
    let seqlen = num("seqlen", o.seqlen, { int: true, min: 2 })!;
    if (seqlen > m.config.maxPositions) {
      log(`--seqlen ${seqlen} capped at the model's context ${m.config.maxPositions}`);
      seqlen = m.config.maxPositions;
    }
    const r = await evaluate(m, text, { seqlen, maxWindows: num("max-windows", o.maxWindows, { int: true, min: 1 }), batch: num("batch", o.batch, { int: true, min: 1 }) });
    if (o.json) console.log(JSON.stringify({ model, dataset: o.dataset, ...r }));
    else console.log(`perplexity ${r.perplexity.toFixed(4)} (${r.windows} windows of ${r.seqlen} tokens, backend ${r.backend}, ${r.seconds.toFixed(1)} s)`);
  });

cli
  .command("generate <model>", "generate text, streaming tokens as they come")
  .option("--prompt <text>", "prompt text", { default: "" })
  .option("--max-new-tokens <n>", "tokens to generate", { default: 64 })
  .option("--temperature <t>", "0 = greedy", { default: 0 })
  .option("--top-p <p>", "nucleus sampling mass", { default: 1 })
  .option("--seed <s>", "sampling seed", { default: 0 })
  .action(async (model: string, o) => {
    const m = await loadModel(model, { backend: o.backend, log });
    const prompt = String(o.prompt ?? "");
    process.stdout.write(prompt);
    let mode = "", t0 = 0;
    const r = await generate(m, prompt, {
      maxNewTokens: num("max-new-tokens", o.maxNewTokens, { int: true, min: 0 }),
      temperature: num("temperature", o.temperature, { min: 0 }),
      topP: num("top-p", o.topP),
      seed: num("seed", o.seed, { int: true }),
      onText: (s) => process.stdout.write(s),
      onToken: () => { t0 ||= performance.now(); }, // (after the prompt's pass)
      onDecoder: (d) => { mode = d.mode; },
    });
    process.stdout.write("\n");
    const n = r.ids.length - r.promptTokens, s = (performance.now() - t0) / 1000;
    log(`${n} tokens generated (backend ${m.backend.name}, ${mode} decoding${n > 1 ? `, ${((n - 1) / s).toFixed(1)} tokens/s after the first` : ""})`);
  });

cli
  .command("inspect <model>", "architecture, sizes, parameter count, dtype, quantization config, tensor table")
  .option("--json", "print JSON")
  .action(async (model: string, o) => {
    const r = await inspectModel(model);
    console.log(o.json ? JSON.stringify(r, null, 2) : formatInspect(r));
  });

cli
  .command("quantize <model>", "GPTQ-quantize a Hugging Face causal LM into a standard GPTQ checkpoint")
  .option("--out <dir>", "output folder (written atomically)")
  .option("--dataset <path>", "calibration text: a text file, .jsonl with a text field, or a folder")
  .option("--bits <n>", "2 | 3 | 4 | 8", { default: 4 })
  .option("--group-size <n>", "columns per group, -1 = per output channel", { default: 128 })
  .option("--desc-act", "act-order: quantize columns by decreasing Hessian diagonal")
  .option("--static-groups", "group parameters computed up front on contiguous groups")
  .option("--sym", "symmetric quantization (default asymmetric)")
  .option("--damp <f>", "dampening as a fraction of mean(diag H); raised automatically if needed", { default: 0.01 })
  .option("--mse", "grid-search the clipping range (quant.py's MSE search)")
  .option("--nsamples <n>", "calibration windows", { default: 128 })
  .option("--seqlen <n>", "tokens per calibration window (capped by the model's context)", { default: 2048 })
  .option("--seed <n>", "calibration sampling seed", { default: 0 })
  .option("--no-true-sequential", "take all Hessians from the unquantized layer")
  .option("--method <m>", "gptq | rtn (round to nearest, the baseline)", { default: "gptq" })
  .option("--format <f>", "gptq (v1 zeros, what most loaders expect) | gptq_v2", { default: "gptq" })
  .option("--max-shard-size <size>", "shard the weights above this size", { default: "2GB" })
  .option("--overwrite", "replace --out if it exists")
  .example("bun run gptq.ts quantize ../shared/data/gutenberg-llama-16m --out /tmp/q4 --dataset ../shared/data/wikitext-2-raw/wiki.valid.raw --seqlen 512")
  .action(async (model: string, o) => {
    if (!o.out) throw new InvalidArgumentError("--out: required (the folder to write the checkpoint to)");
    const r = await quantize(model, {
      out: o.out,
      dataset: o.dataset,
      bits: num("bits", o.bits, { int: true }),
      groupSize: num("group-size", o.groupSize, { int: true }),
      descAct: Boolean(o.descAct),
      staticGroups: Boolean(o.staticGroups),
      sym: Boolean(o.sym),
      damp: num("damp", o.damp),
      mse: Boolean(o.mse),
      nsamples: num("nsamples", o.nsamples, { int: true, min: 1 }),
      seqlen: num("seqlen", o.seqlen, { int: true, min: 2 }),
      seed: num("seed", o.seed, { int: true }),
      trueSequential: o.trueSequential !== false,
      method: o.method,
      format: o.format,
      maxShardSize: o.maxShardSize,
      overwrite: Boolean(o.overwrite),
      backend: o.backend,
      log,
    });
    log(`wrote ${r.out} (${r.totals.modules} modules, total loss ${r.totals.loss.toExponential(4)}, ${r.totals.seconds.toFixed(1)} s on ${r.backend})`);
  });

cli
  .command("bench [what] [model]", "benchmarks: matmul (packed 4-bit vs the dense baseline), layer (GPTQ of one 7B-shaped layer), quantize <model>, decode <model>")
  .option("--m <list>", "batch sizes for matmul", { default: "1,16,64" })
  .option("--group-size <n>", "group size for matmul", { default: 128 })
  .option("--act-order", "matmul with an act-order g_idx")
  .option("--per-shape", "matmul: also time each shape alone")
  .option("--iters <n>", "calls per timing", { default: 50 })
  .option("--tokens <n>", "tokens for decode", { default: 128 })
  .option("--dataset <path>", "calibration text for quantize")
  .option("--nsamples <n>", "calibration windows for quantize", { default: 128 })
  .option("--seqlen <n>", "calibration window length for quantize", { default: 2048 })
  .option("--out <dir>", "output folder for quantize")
  .option("--json", "print JSON")
  .action(async (what: string | undefined, model: string | undefined, o) => {
    const { selectBackend } = await import("./src/backend.ts");
    const bench = await import("./src/bench.ts");
    const be = await selectBackend(o.backend, log);
    const card = `${be.name} on ${be.device}`;
    what ??= "matmul";
    if (what === "matmul") {
      const ms = String(o.m).split(",").map((v) => num("m", v, { int: true, min: 1 })!);
      const rows = await bench.benchMatmul(be, { ms, groupSize: num("group-size", o.groupSize, { int: true }), actOrder: Boolean(o.actOrder), perShape: Boolean(o.perShape), iters: num("iters", o.iters, { int: true, min: 1 }) });
      if (o.json) return console.log(JSON.stringify({ card, shapes: bench.LLAMA2_7B_SHAPES, rows }));
      console.log(`packed 4-bit matmul, Llama-2-7B layer shapes (K x N: ${bench.LLAMA2_7B_SHAPES.map(([, k, n]) => `${k}x${n}`).join(", ")}), group ${o.groupSize}${o.actOrder ? ", act-order" : ""}, ${card}`);
      if (rows[0]?.timing === "graph") console.log("timed as replays of a captured CUDA graph of 10 call sets (both columns); int4 eager = the same calls launched from the host");
      const gpuCols = rows.some((r) => r.quantGpuUs !== null);
      if (gpuCols) console.log("GPU columns: the device's timestamps around the dispatches (host dispatch cost excluded); the other columns are wall time per call set");
      const pct = (a: number, b: number | null) => (b ? ((100 * a) / b).toFixed(0) + "%" : "-");
      console.log(`|  M | int4 us | baseline us | speedup | int4 GB/s | baseline GB/s | int4 / baseline bandwidth | baseline | int4 eager us |${gpuCols ? " int4 GPU us | baseline GPU us | GPU bandwidth ratio |" : ""}`);
      console.log(`| --- | --- | --- | --- | --- | --- | --- | --- | --- |${gpuCols ? " --- | --- | --- |" : ""}`);
      for (const r of rows) {
        const gpu = gpuCols && r.quantGpuUs && r.baselineGpuUs ? ` ${r.quantGpuUs.toFixed(1)} | ${r.baselineGpuUs.toFixed(1)} | ${pct(r.bytes / r.quantGpuUs, r.baselineBytes / r.baselineGpuUs)} |` : gpuCols ? " - | - | - |" : "";
        for (const p of r.perShape ?? []) {
          const g = p.quantGpuUs !== null ? ` GPU ${p.quantGpuUs.toFixed(1)} / ${p.baselineGpuUs?.toFixed(1) ?? "-"} |` : "";
          console.log(`| ${r.m} ${p.name} | ${p.quantUs.toFixed(1)} | ${p.baselineUs?.toFixed(1) ?? "-"} | ${p.baselineUs ? (p.baselineUs / p.quantUs).toFixed(2) + "x" : "-"} |${g}`);
        }
        console.log(`| ${r.m} | ${r.quantUs.toFixed(1)} | ${r.baselineUs?.toFixed(1) ?? "-"} | ${r.speedup ? r.speedup.toFixed(2) + "x" : "-"} | ${r.gbps.toFixed(0)} | ${r.baselineGbps?.toFixed(0) ?? "-"} | ${r.baselineGbps ? pct(r.gbps, r.baselineGbps) : "-"} | ${r.baseline || "-"} | ${r.quantEagerUs?.toFixed(1) ?? "-"} |${gpu}`);
      }
      for (const r of rows) {
        const b = r.baselineOne;
        if (!b) continue;
        const g = b.gpuUs !== null && r.quantGpuUs !== null ? `, GPU ${b.gpuUs.toFixed(1)} us: int4 GPU bandwidth ${pct(r.bytes / r.quantGpuUs, b.bytes / b.gpuUs)} of it` : "";
        console.log(`M = ${r.m}: the baseline as one call over all four shapes' weights ${b.us.toFixed(1)} us (${(b.us / r.quantUs).toFixed(2)}x int4's time; int4 bandwidth ${pct(r.gbps, b.bytes / (b.us * 1e3))} of it)${g}`);
      }
    } else if (what === "layer") {
      const r = await bench.benchLayer(be, num("seqlen", o.seqlen, { int: true, min: 16 }));
      console.log(o.json ? JSON.stringify({ card, ...r }) : `one Llama-2-7B-shaped layer (${o.seqlen} tokens, 4-bit g128): ${r.seconds.toFixed(2)} s (Hessians ${r.hessianSeconds.toFixed(2)} s, GPTQ of 7 linears ${r.gptqSeconds.toFixed(2)} s), ${card}`);
    } else if (what === "decode") {
      if (!model) throw new InvalidArgumentError("bench decode: give a model folder");
      const m = await loadModel(model, { backend: be, log });
      const rs = await bench.benchDecode(m, num("tokens", o.tokens, { int: true, min: 1 })!);
      if (o.json) console.log(JSON.stringify({ card, model, runs: rs }));
      else for (const r of rs) {
        const vs = r === rs[0] ? "" : ` = ${(r.tokensPerSecond / rs[0]!.tokensPerSecond).toFixed(2)}x eager${r.mode === "pipelined" && rs[1]?.mode === "graph" ? `, ${(r.tokensPerSecond / rs[1].tokensPerSecond).toFixed(3)}x graph` : ""}`;
        console.log(`decode (${r.mode}) ${r.tokensPerSecond.toFixed(1)} tokens/s (${r.msPerToken.toFixed(2)} ms/token)${vs}, batch 1, ${card}; before: ${r.warmupMs.toFixed(1)} ms for the first single-token step${r.mode === "eager" ? "" : " and the capture"}${r.graphError ? ` [graph capture failed: ${r.graphError}]` : ""}`);
      }
    } else if (what === "quantize") {
      if (!model || !o.dataset || !o.out) throw new InvalidArgumentError("bench quantize: give <model>, --dataset and --out");
      const r = await quantize(model, { out: o.out, dataset: o.dataset, nsamples: num("nsamples", o.nsamples, { int: true, min: 1 }), seqlen: num("seqlen", o.seqlen, { int: true, min: 2 }), backend: be, overwrite: true, log });
      const layers = r.totals.layers;
      const perLayer = r.modules.reduce((a, x) => a + x.seconds, 0) / layers;
      console.log(o.json ? JSON.stringify({ card, totals: r.totals, gptqSecondsPerLayer: perLayer }) : `quantized ${layers} layers in ${r.totals.seconds.toFixed(1)} s (${(r.totals.seconds / layers).toFixed(2)} s/layer, of which GPTQ ${perLayer.toFixed(2)} s), ${card}`);
    } else throw new InvalidArgumentError(`bench: unknown benchmark "${what}"; use matmul, layer, quantize or decode`);
  });

cli.command("backends", "probe every backend and say what it found or why it is unavailable").option("--json", "print JSON").action(async (o) => {
  const rs = await probeAll();
  if (o.json) return console.log(JSON.stringify(rs, null, 2));
  for (const r of rs) {
    console.log(`${r.name.padEnd(7)} ${r.available ? "available  " : "unavailable"} ${r.device ?? ""}`);
    if (r.reason) console.log(`        reason: ${r.reason}`);
    for (const [k, v] of Object.entries(r.details ?? {})) console.log(`        ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
});

cli.help();
cli.version("0.1.0");

async function main() {
  try {
    cli.parse(process.argv, { run: false });
    if (!cli.matchedCommand) {
      if (cli.args.length) throw new InvalidArgumentError(`unknown command "${cli.args[0]}"; run with --help to list commands`);
      if (!cli.options.help && !cli.options.version) cli.outputHelp();
      return;
    }
    await cli.runMatchedCommand();
  } catch (e) {
    const err = e as Error;
    const known = err instanceof GptqError || err.name === "CACError";
    log(`error: ${err.message}`);
    if (verbose) log(err.stack ?? "");
    else if (!known) log("(run with --verbose for the stack trace)");
    process.exit(1);
  }
}
await main();
