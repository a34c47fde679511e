/**
 * safetensors I/O. The reader maps the file (no copy) and validates the header completely: size, JSON,
 * dtypes, shape/offset consistency, bounds, overlaps. Sharded checkpoints come through
 * model.safetensors.index.json. The writer streams tensors to a temp file and renames it into place.
 *
 * The npm package `safetensors` (0.0.1) is a placeholder with no reader we could use; this file is ours.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { SafetensorsError } from "../errors.ts";
import { bf16ToF32Array, f16ToF32Array } from "../dtype.ts";

export type StDtype = "F32" | "F16" | "BF16" | "I32" | "I64" | "I8" | "U8" | "BOOL";
export const ST_DTYPE_BYTES: Record<StDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, I8: 1, U8: 1, BOOL: 1 };

export interface TensorInfo {
  name: string;
  dtype: StDtype;
  shape: number[];
  /** byte range inside the data section */
  begin: number;
  end: number;
  file: string;
}

export interface SafetensorsFile {
  path: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** the raw bytes of the data section (mapped) */
  data: Uint8Array;
}

const MAX_HEADER = 100 * 1024 * 1024;

/** Open and validate one .safetensors file. The data is mapped (Bun.mmap), not read. */
export function openSafetensors(path: string): SafetensorsFile {
  const fail = (what: string): never => {
    throw new SafetensorsError(`${path}: ${what}`);
  };
  if (!existsSync(path)) fail("file not found");
  const size = statSync(path).size;
  if (size < 8) fail(`file is ${size} bytes, too short for a safetensors header (truncated?)`);
  const buf = size > 0 ? Bun.mmap(path, { shared: false }) : new Uint8Array(0);
  const n = Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER) fail(`header length ${n} is implausible (over ${MAX_HEADER} bytes): corrupted header`);
  if (8 + n > size) fail(`header length ${n} runs past the end of the ${size}-byte file (truncated or corrupted)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message}): corrupted header`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("header is not a JSON object");
  const data = buf.subarray(8 + n);
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== "object" || t === null) fail(`tensor "${name}": entry is not an object`);
    if (typeof t.dtype !== "string" || !(t.dtype in ST_DTYPE_BYTES)) {
      fail(`tensor "${name}": dtype ${JSON.stringify(t.dtype)} is not supported (supported: ${Object.keys(ST_DTYPE_BYTES).join(", ")})`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor "${name}": shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[0] > off[1]) {
      fail(`tensor "${name}": data_offsets ${JSON.stringify(off)} must be [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = off as [number, number];
    const shape = t.shape as number[];
    const dtype = t.dtype as StDtype;
    const want = shape.reduce((a, b) => a * b, 1) * ST_DTYPE_BYTES[dtype];
    if (end - begin !== want) fail(`tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${want} (wrong offset)`);
    if (end > data.length) fail(`tensor "${name}": data ends at byte ${end} but the data section has ${data.length} bytes (truncated file or wrong offset)`);
    tensors.set(name, { name, dtype, shape, begin, end, file: path });
  }
  // overlaps: sort by begin, every range must start at or after the previous end
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) fail(`tensors "${sorted[i - 1]!.name}" and "${sorted[i]!.name}" overlap (wrong offset)`);
  }
  return { path, tensors, metadata, data };
}

/** A checkpoint: one file, or the shards named by model.safetensors.index.json. */
export class Checkpoint {
  readonly files: SafetensorsFile[] = [];
  readonly index = new Map<string, { info: TensorInfo; file: SafetensorsFile }>();

  constructor(readonly dir: string, baseName = "model") {
    const single = join(dir, `${baseName}.safetensors`);
    const idx = join(dir, `${baseName}.safetensors.index.json`);
    let names: string[];
    if (existsSync(idx)) {
      let j: { weight_map?: Record<string, string> };
      try {
        j = JSON.parse(readFileSync(idx, "utf8"));
      } catch (e) {
        throw new SafetensorsError(`${idx}: not valid JSON (${(e as Error).message})`);
      }
      if (!j.weight_map) throw new SafetensorsError(`${idx}: no "weight_map"`);
      names = [...new Set(Object.values(j.weight_map))];
    } else if (existsSync(single)) {
      names = [`${baseName}.safetensors`];
    } else {
      const any = existsSync(dir) ? [...new Bun.Glob("*.safetensors").scanSync(dir)].sort() : [];
      if (any.length === 0) throw new SafetensorsError(`${dir}: no ${baseName}.safetensors, no index, and no *.safetensors files`);
      names = any;
    }
    for (const n of names) {
      const file = openSafetensors(join(dir, n));
      this.files.push(file);
      for (const info of file.tensors.values()) this.index.set(info.name, { info, file });
    }
  }

  has(name: string): boolean {
    return this.index.has(name);
  }
  info(name: string): TensorInfo {
    const e = this.index.get(name);
    if (!e) throw new SafetensorsError(`${this.dir}: tensor "${name}" not found in the checkpoint`);
    return e.info;
  }
  /** raw bytes of a tensor, a view into the mapped file (copied to align if needed) */
  bytes(name: string): Uint8Array {
    const e = this.index.get(name);
    if (!e) throw new SafetensorsError(`${this.dir}: tensor "${name}" not found in the checkpoint`);
    return e.file.data.subarray(e.info.begin, e.info.end);
  }
  names(): string[] {
    return [...this.index.keys()];
  }
}

/** A typed view over raw little-endian bytes (copies when unaligned). */
export function typedView(bytes: Uint8Array, dtype: StDtype): Float32Array | Uint16Array | Int32Array | BigInt64Array | Int8Array | Uint8Array {
  const el = ST_DTYPE_BYTES[dtype];
  const b = bytes.byteOffset % el === 0 ? bytes : bytes.slice();
  const n = b.byteLength / el;
  switch (dtype) {
    case "F32": return new Float32Array(b.buffer, b.byteOffset, n);
    case "F16": case "BF16": return new Uint16Array(b.buffer, b.byteOffset, n);
    case "I32": return new Int32Array(b.buffer, b.byteOffset, n);
    case "I64": return new BigInt64Array(b.buffer, b.byteOffset, n);
    case "I8": return new Int8Array(b.buffer, b.byteOffset, n);
    default: return new Uint8Array(b.buffer, b.byteOffset, n);
  }
}

/** A float tensor (its typedView) as a new Float32Array (F32 copied, F16/BF16 widened); null for other dtypes. */
export function floatsF32(v: ReturnType<typeof typedView>, dtype: StDtype): Float32Array | null {
  if (dtype === "F32") return Float32Array.from(v as Float32Array);
  if (dtype === "F16") return f16ToF32Array(v as Uint16Array);
  if (dtype === "BF16") return bf16ToF32Array(v as Uint16Array);
  return null;
}

export interface TensorToWrite {
  name: string;
  dtype: StDtype;
  shape: number[];
  data: Uint8Array | ArrayBufferView;
}

/**
 * Write a safetensors file atomically: header + tensors streamed to `<path>.tmp-<pid>`, fsync, rename.
 * Tensor data is written in the given order, aligned to 8 bytes as the reference writer does.
 */
export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * ST_DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== n) throw new SafetensorsError(`${path}: tensor "${t.name}" has ${t.data.byteLength} bytes, ${t.dtype} ${JSON.stringify(t.shape)} needs ${n}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let hjson = JSON.stringify(header);
  const pad = (8 - ((8 + Buffer.byteLength(hjson)) % 8)) % 8;
  hjson += " ".repeat(pad);
  const hbytes = Buffer.from(hjson, "utf8");
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  const fd = openSync(tmp, "w");
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hbytes.length));
    writeSync(fd, len);
    writeSync(fd, hbytes);
    for (const t of tensors) {
      const u8 = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      let done = 0;
      while (done < u8.length) done += writeSync(fd, u8, done, Math.min(u8.length - done, 1 << 26));
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch {}
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}
