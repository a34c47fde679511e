/**
 * Writing the standard GPTQ checkpoint, atomically: everything goes into a hidden sibling folder
 * `.<out>.partial-<pid>` (no config.json there until the very end), which is renamed to `<out>` only when
 * complete. A killed run leaves at most that hidden partial folder, never something that looks finished.
 * Shards are streamed as they fill (`maxShardBytes`), with an index when there is more than one.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { InvalidArgumentError } from "../errors.ts";
import { writeSafetensors, type StDtype, type TensorToWrite } from "../model/safetensors.ts";
import { f32ToF16Array } from "../dtype.ts";
import { packQzeros } from "./pack.ts";
import type { QuantizedLinear } from "./gptq.ts";

export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja"];

/** the packed tensors of one linear: qweight, qzeros, scales (fp16), g_idx */
export function packLinear(prefix: string, q: QuantizedLinear, format: "gptq" | "gptq_v2"): TensorToWrite[] {
  const groups = q.scales.length / q.outFeatures;
  const zeros = format === "gptq" ? q.zeros.map((z) => z - 1) : q.zeros;
  return [
    { name: `${prefix}.qweight`, dtype: "I32", shape: [(q.inFeatures * q.bits) / 32, q.outFeatures], data: q.qweight },
    { name: `${prefix}.qzeros`, dtype: "I32", shape: [groups, (q.outFeatures * q.bits) / 32], data: packQzeros(zeros, groups, q.outFeatures, q.bits) },
    { name: `${prefix}.scales`, dtype: "F16", shape: [groups, q.outFeatures], data: f32ToF16Array(q.scales) },
    { name: `${prefix}.g_idx`, dtype: "I32", shape: [q.inFeatures], data: q.gIdx },
  ];
}

export function parseSize(s: string | number): number {
  if (typeof s === "number") return s;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KIB|MIB|GIB)?\s*$/i.exec(s);
  if (!m) throw new InvalidArgumentError(`--max-shard-size: "${s}" is not a size like 2GB or 500MB`);
  const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 1024, MIB: 1024 ** 2, GIB: 1024 ** 3 };
  return Math.floor(Number(m[1]) * mult[(m[2] ?? "B").toUpperCase()]!);
}

export class CheckpointWriter {
  readonly tmp: string;
  private pending: TensorToWrite[] = [];
  private pendingBytes = 0;
  private shards: { file: string; names: string[] }[] = [];
  private totalBytes = 0;
  private finished = false;
  private readonly cleanup = (sig: string) => {
    this.abort();
    process.exit(sig === "SIGINT" ? 130 : 143);
  };

  constructor(readonly out: string, private readonly maxShardBytes: number, private readonly overwrite = false) {
    this.out = resolve(out);
    if (existsSync(this.out) && !overwrite) {
      const nonEmpty = statSync(this.out).isDirectory() ? readdirSync(this.out).length > 0 : true;
      if (nonEmpty) throw new InvalidArgumentError(`--out: "${out}" already exists; choose another folder or pass --overwrite`);
    }
    this.tmp = join(dirname(this.out), `.${basename(this.out)}.partial-${process.pid}`);
    rmSync(this.tmp, { recursive: true, force: true });
    mkdirSync(this.tmp, { recursive: true });
    process.on("SIGINT", this.cleanup);
    process.on("SIGTERM", this.cleanup);
  }

  add(t: TensorToWrite): void {
    this.pending.push(t);
    this.pendingBytes += t.data.byteLength;
    if (this.pendingBytes >= this.maxShardBytes) this.flush();
  }

  private flush(): void {
    if (!this.pending.length) return;
    const file = `shard-${String(this.shards.length + 1).padStart(5, "0")}.safetensors`;
    writeSafetensors(join(this.tmp, file), this.pending, { format: "pt" });
    this.shards.push({ file, names: this.pending.map((t) => t.name) });
    this.totalBytes += this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** write the JSON files, copy tokenizer files, name the shards, then rename into place */
  finish(json: Record<string, unknown>, copyFrom: string, base = "model"): void {
    this.flush();
    const n = this.shards.length;
    const weightMap: Record<string, string> = {};
    this.shards.forEach((s, i) => {
      const name = n === 1 ? `${base}.safetensors` : `${base}-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`;
      renameSync(join(this.tmp, s.file), join(this.tmp, name));
      for (const t of s.names) weightMap[t] = name;
    });
    if (n > 1) writeFileSync(join(this.tmp, `${base}.safetensors.index.json`), JSON.stringify({ metadata: { total_size: this.totalBytes }, weight_map: weightMap }, null, 2));
    for (const f of TOKENIZER_FILES) if (existsSync(join(copyFrom, f))) copyFileSync(join(copyFrom, f), join(this.tmp, f));
    for (const [name, obj] of Object.entries(json)) writeFileSync(join(this.tmp, name), JSON.stringify(obj, null, 2) + "\n");
    if (existsSync(this.out)) rmSync(this.out, { recursive: true, force: true });
    renameSync(this.tmp, this.out);
    this.finished = true;
    this.detach();
  }

  abort(): void {
    if (!this.finished) rmSync(this.tmp, { recursive: true, force: true });
    this.detach();
  }
  private detach(): void {
    process.off("SIGINT", this.cleanup);
    process.off("SIGTERM", this.cleanup);
  }
}

export type { StDtype };
