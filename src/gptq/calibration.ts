/**
 * Calibration data: text files, .jsonl (a "text" field per line) or a folder of them, tokenized once
 * (texts joined by blank lines, as the reference does for WikiText-2), then `nsamples` random windows
 * of `seqlen` tokens drawn with a seeded generator.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { InvalidArgumentError } from "../errors.ts";
import type { Tokenizer } from "../model/tokenizer.ts";

export function readCalibrationTexts(path: string): string[] {
  if (!existsSync(path)) throw new InvalidArgumentError(`--dataset: "${path}" not found (give a text file, a .jsonl file with a "text" field, or a folder of them)`);
  if (statSync(path).isDirectory()) {
    const files = readdirSync(path).filter((f) => [".txt", ".raw", ".jsonl", ".text", ".md"].includes(extname(f))).sort();
    if (!files.length) throw new InvalidArgumentError(`--dataset: folder "${path}" has no .txt/.raw/.jsonl/.md files`);
    return files.flatMap((f) => readCalibrationTexts(join(path, f)));
  }
  const raw = readFileSync(path, "utf8");
  if (extname(path) === ".jsonl") {
    const out: string[] = [];
    raw.split("\n").forEach((line, i) => {
      if (!line.trim()) return;
      let j: { text?: unknown };
      try {
        j = JSON.parse(line);
      } catch {
        throw new InvalidArgumentError(`--dataset: ${path}:${i + 1} is not valid JSON`);
      }
      if (typeof j.text !== "string") throw new InvalidArgumentError(`--dataset: ${path}:${i + 1} has no string "text" field`);
      out.push(j.text);
    });
    return out;
  }
  return [raw];
}

/** mulberry32: a small seeded PRNG (calibration windows, sampling, tests) */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** nsamples windows of seqlen tokens: ids [nsamples·seqlen] */
export function calibrationWindows(tok: Tokenizer, texts: string[], nsamples: number, seqlen: number, seed: number): Int32Array {
  const ids = tok.encode(texts.join("\n\n"));
  if (ids.length <= seqlen) throw new InvalidArgumentError(`--dataset: ${ids.length} tokens are not enough for windows of --seqlen ${seqlen}; give more text or a smaller --seqlen`);
  const rand = seededRandom(seed);
  const out = new Int32Array(nsamples * seqlen);
  for (let s = 0; s < nsamples; s++) {
    const i = Math.floor(rand() * (ids.length - seqlen));
    out.set(ids.subarray(i, i + seqlen), s * seqlen);
  }
  return out;
}
