import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync, readFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Checkpoint, openSafetensors, typedView, writeSafetensors } from "../src/model/safetensors.ts";
import { SafetensorsError } from "../src/errors.ts";
import { DATA, hasData } from "./helpers.ts";

const tmp = () => mkdtempSync(join(tmpdir(), "gptq-st-"));

function rawFile(header: object, data: Uint8Array): Uint8Array {
  const h = Buffer.from(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe("safetensors", () => {
  test("writes and maps back every dtype, with metadata", () => {
    const d = tmp(), p = join(d, "a.safetensors");
    const tensors = [
      { name: "f32", dtype: "F32" as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6.5]) },
      { name: "f16", dtype: "F16" as const, shape: [1], data: Uint16Array.of(0x3c00) },
      { name: "bf16", dtype: "BF16" as const, shape: [2], data: Uint16Array.of(0x3f80, 0xc000) },
      { name: "i32", dtype: "I32" as const, shape: [2], data: Int32Array.of(-1, 7) },
      { name: "i64", dtype: "I64" as const, shape: [1], data: BigInt64Array.of(-5n) },
      { name: "i8", dtype: "I8" as const, shape: [3], data: Int8Array.of(-1, 0, 1) },
      { name: "u8", dtype: "U8" as const, shape: [1], data: Uint8Array.of(200) },
      { name: "bool", dtype: "BOOL" as const, shape: [2], data: Uint8Array.of(1, 0) },
      { name: "empty", dtype: "F32" as const, shape: [0, 4], data: new Float32Array(0) },
    ];
    writeSafetensors(p, tensors, { format: "pt" });
    expect(readdirSync(d)).toEqual(["a.safetensors"]); // temp file renamed away
    const f = openSafetensors(p);
    expect(f.metadata).toEqual({ format: "pt" });
    for (const t of tensors) {
      const info = f.tensors.get(t.name)!;
      expect(info.dtype).toBe(t.dtype);
      expect(info.shape).toEqual(t.shape);
      expect(Array.from(typedView(f.data.subarray(info.begin, info.end), info.dtype) as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
    }
  });

  const bad: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
    ["truncated", (b) => b.subarray(0, b.length - 10), /truncated|past the end|data section/],
    ["header-corrupted", (b) => { const c = b.slice(); c[12] = 0x7b; c[13] = 0x7b; return c; }, /not valid JSON|corrupted/],
    ["huge header length", (b) => { const c = b.slice(); new DataView(c.buffer).setBigUint64(0, 1n << 40n, true); return c; }, /implausible|corrupted/],
    ["shorter than 8 bytes", () => Uint8Array.of(1, 2, 3), /too short/],
  ];
  for (const [what, mutate, re] of bad) {
    test(`${what} file: a clear error naming the file`, () => {
      const d = tmp(), p = join(d, "m.safetensors");
      writeSafetensors(p, [{ name: "w", dtype: "F32", shape: [4, 4], data: new Float32Array(16) }]);
      const broken = join(d, `${what.replace(/ /g, "-")}.safetensors`);
      writeFileSync(broken, mutate(new Uint8Array(readFileSync(p))));
      let err: unknown;
      try { openSafetensors(broken); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toContain(broken);
      expect((err as Error).message).toMatch(re);
    });
  }
  const inconsistent: [string, object, number, RegExp][] = [
    ["wrong offset (size mismatch)", { w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 12] } }, 16, /needs 16.*wrong offset/],
    ["out of bounds", { w: { dtype: "F32", shape: [2, 2], data_offsets: [8, 24] } }, 16, /data section/],
    ["overlap", { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, 16, /overlap/],
    ["unknown dtype", { w: { dtype: "F8", shape: [1], data_offsets: [0, 1] } }, 1, /dtype "F8".*not supported/],
    ["bad shape", { w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4, /shape/],
  ];
  for (const [what, header, n, re] of inconsistent) {
    test(`${what}: error names file and tensor`, () => {
      const p = join(tmp(), "x.safetensors");
      writeFileSync(p, rawFile(header, new Uint8Array(n)));
      expect(() => openSafetensors(p)).toThrow(re);
      expect(() => openSafetensors(p)).toThrow(p);
    });
  }

  test("sharded checkpoints through model.safetensors.index.json", () => {
    const d = tmp();
    writeSafetensors(join(d, "model-00001-of-00002.safetensors"), [{ name: "a", dtype: "F32", shape: [1], data: Float32Array.of(1) }]);
    writeSafetensors(join(d, "model-00002-of-00002.safetensors"), [{ name: "b", dtype: "F32", shape: [1], data: Float32Array.of(2) }]);
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" } }));
    const c = new Checkpoint(d);
    expect(c.names().sort()).toEqual(["a", "b"]);
    expect(Array.from(typedView(c.bytes("b"), "F32") as Float32Array)).toEqual([2]);
    expect(() => c.info("zzz")).toThrow(/"zzz" not found/);
  });

  test.skipIf(!hasData)("maps the real model and reads every tensor header", () => {
    const f = openSafetensors(join(DATA, "gutenberg-llama-16m", "model.safetensors"));
    expect(f.tensors.size).toBe(75);
    expect(f.tensors.get("model.embed_tokens.weight")!.shape).toEqual([4096, 384]);
    expect(existsSync(join(DATA, "gutenberg-llama-16m", "model.safetensors"))).toBe(true);
  });
});
