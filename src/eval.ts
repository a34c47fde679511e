/**
 * Perplexity by the GPTQ paper's protocol: tokenize the whole text once (tokenizer defaults), cut it into
 * non-overlapping windows of seqlen tokens, keep the first maxWindows, perplexity = exp(mean NLL of
 * tokens 2..seqlen of every window).
 */
import { readFileSync, existsSync } from "node:fs";
import { InvalidArgumentError } from "./errors.ts";
import { chunkRows, widestActivation, type LlamaModel } from "./model/llama.ts";
import { Progress } from "./progress.ts";

export interface EvalOptions {
  seqlen: number;
  maxWindows?: number;
  /** windows per forward pass (bigger matmuls); default 4 */
  batch?: number;
  progress?: boolean;
}
export interface EvalResult {
  perplexity: number;
  nll: number;
  windows: number;
  tokens: number;
  seqlen: number;
  backend: string;
  seconds: number;
}

export function readDatasetText(path: string): string {
  if (!existsSync(path)) throw new InvalidArgumentError(`--dataset: file "${path}" not found`);
  return readFileSync(path, "utf8");
}

export async function evaluate(model: LlamaModel, text: string, opts: EvalOptions): Promise<EvalResult> {
  const { seqlen } = opts;
  if (!Number.isInteger(seqlen) || seqlen < 2) throw new InvalidArgumentError(`--seqlen: must be an integer >= 2, got ${seqlen}`);
  if (seqlen > model.config.maxPositions) throw new InvalidArgumentError(`--seqlen: ${seqlen} exceeds the model's max_position_embeddings ${model.config.maxPositions}`);
  const t0 = performance.now();
  const ids = model.tokenizer.encode(text);
  let windows = Math.floor(ids.length / seqlen);
  if (opts.maxWindows !== undefined) windows = Math.min(windows, opts.maxWindows);
  if (windows < 1) throw new InvalidArgumentError(`--dataset: ${ids.length} tokens are fewer than one window of --seqlen ${seqlen}`);
  // windows per forward pass: up to --batch, fewer where the backend limits tensor size
  const batch = chunkRows(model.backend, widestActivation(model.config), seqlen, Math.max(1, opts.batch ?? 4) * seqlen) / seqlen;
  const bar = opts.progress === false ? null : new Progress("eval", windows);
  let sum = 0, count = 0;
  for (let w0 = 0; w0 < windows; w0 += batch) {
    const nb = Math.min(batch, windows - w0);
    const chunk = ids.subarray(w0 * seqlen, (w0 + nb) * seqlen);
    const logits = model.forward(chunk, { seqLen: seqlen });
    // target of row t is token t+1 of the same window; the last row of each window has none
    const targets = new Int32Array(nb * seqlen);
    for (let b = 0; b < nb; b++) for (let t = 0; t < seqlen; t++) targets[b * seqlen + t] = t + 1 < seqlen ? chunk[b * seqlen + t + 1]! : 0;
    const nll = await model.backend.nll(logits, targets);
    model.backend.free(logits);
    for (let b = 0; b < nb; b++) for (let t = 0; t < seqlen - 1; t++) {
      const v = nll[b * seqlen + t]!;
      if (!Number.isFinite(v)) throw new Error(`eval: non-finite NLL at window ${w0 + b}, token ${t + 1} (backend ${model.backend.name})`);
      sum += v;
      count++;
    }
    bar?.tick(nb, `ppl ${Math.exp(sum / count).toFixed(3)}`);
  }
  bar?.done();
  const nll = sum / count;
  return { perplexity: Math.exp(nll), nll, windows, tokens: windows * seqlen, seqlen, backend: model.backend.name, seconds: (performance.now() - t0) / 1000 };
}
