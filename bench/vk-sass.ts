// The machine code NVIDIA's Vulkan driver made of our WGSL shaders, for register counts and instruction mixes
// (Dawn and Vulkan expose neither). The driver keeps compiled shaders in its disk cache
// (__GL_SHADER_DISK_CACHE_PATH), as zstd frames after a header; this unpacks every frame (its end found from
// the frame's block headers) and scans the cache files and the frames for CUDA ELF images (e_machine 190),
// writes each to <out>/<n>.cubin and prints what `cuobjdump -res-usage` says of it, with its count of packed
// integer dot products (IDP.4A) and of all instructions, so the integer GEMV's entry can be told apart.
//   bun bench/vk-sass.ts <cache dir> <out dir> [cuobjdump]
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const [dir, out, tool = "cuobjdump"] = process.argv.slice(2);
if (!dir || !out) throw new Error("usage: bun bench/vk-sass.ts <cache dir> <out dir> [cuobjdump]");
mkdirSync(out, { recursive: true });
const files: string[] = [];
const walk = (d: string) => {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else files.push(p);
  }
};
walk(dir);
console.log(`${files.length} cache files under ${dir}`);
// the zstd frames in b (magic 28 B5 2F FD), each decompressed; a frame's length from its header and block headers
function frames(b: Buffer): Buffer[] {
  const outs: Buffer[] = [];
  for (let i = b.indexOf(ZSTD); i >= 0; i = b.indexOf(ZSTD, i + 4)) {
    const fhd = b[i + 4]!;
    const single = (fhd >> 5) & 1, fcsFlag = fhd >> 6, dictFlag = fhd & 3, checksum = (fhd >> 2) & 1;
    let p = i + 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag]! + (fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag]!);
    for (;;) {
      if (p + 3 > b.length) { p = -1; break; }
      const h = b.readUIntLE(p, 3);
      const type = (h >> 1) & 3, size = h >>> 3;
      p += 3 + (type === 1 ? 1 : size);
      if (h & 1) break;
    }
    if (p < 0 || p + 4 * checksum > b.length) continue;
    try { outs.push(Buffer.from(Bun.zstdDecompressSync(b.subarray(i, p + 4 * checksum)))); } catch { /* not a frame */ }
  }
  return outs;
}
const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
let n = 0;
const blobs: [string, Buffer][] = [];
for (const f of files) {
  const raw = readFileSync(f);
  blobs.push([f, raw]);
  const fr = frames(raw);
  console.log(`${f}: ${raw.length} bytes, ${fr.length} zstd frames (${fr.map((x) => x.length).join(", ")} bytes)`);
  fr.forEach((x, j) => {
    blobs.push([`${f}#${j}`, x]);
    writeFileSync(join(out, `frame-${blobs.length}.bin`), x);  // (for a look by hand where no image is found)
  });
}
for (const [f, b] of blobs) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = b.indexOf("\x7fELF", 0, "latin1"); i >= 0; i = b.indexOf("\x7fELF", i + 4, "latin1")) {
    if (i + 64 > b.length || b[i + 4] !== 2 || dv.getUint16(i + 0x12, true) !== 190) continue; // 64-bit, EM_CUDA
    const shoff = Number(dv.getBigUint64(i + 0x28, true)), shent = dv.getUint16(i + 0x3a, true), shnum = dv.getUint16(i + 0x3c, true);
    const phoff = Number(dv.getBigUint64(i + 0x20, true)), phent = dv.getUint16(i + 0x36, true), phnum = dv.getUint16(i + 0x38, true);
    const size = Math.max(shoff + shent * shnum, phoff + phent * phnum);
    if (size <= 64 || i + size > b.length) continue;
    const p = join(out, `${n++}.cubin`);
    writeFileSync(p, b.subarray(i, i + size));
    const res = Bun.spawnSync([tool, "-res-usage", p]).stdout.toString();
    const sass = Bun.spawnSync([tool, "-sass", p]).stdout.toString();
    const ins = sass.split("\n").filter((l) => /^\s+\/\*[0-9a-f]{4}\*\/\s/.test(l));
    const idp = ins.filter((l) => /IDP\.4A/.test(l)).length;
    const lines = res.split("\n").filter((l) => /Function|REG/.test(l)).map((l) => l.trim());
    console.log(`${p} (${size} bytes, from ${f}): ${ins.length} instructions, ${idp} IDP.4A\n  ${lines.join("\n  ")}`);
    if (idp > 0) {
      writeFileSync(join(out, `${n - 1}.sass.txt`), sass);
      // the opcode mix (predicates dropped), local-memory traffic (spills) first
      const ops = new Map<string, number>();
      for (const l of ins) {
        const m = /^\s+\/\*[0-9a-f]{4}\*\/\s+(?:@!?U?P[0-9T]+\s+)?([A-Z][A-Z0-9._]*)/.exec(l);
        if (m) ops.set(m[1]!, (ops.get(m[1]!) ?? 0) + 1);
      }
      const local = [...ops].filter(([o]) => /^(LDL|STL)/.test(o));
      console.log(`  local memory: ${local.length ? local.map(([o, c]) => `${o} ${c}`).join(", ") : "none"}`);
      console.log(`  ${[...ops].sort((a, b) => b[1] - a[1]).slice(0, 16).map(([o, c]) => `${o} ${c}`).join(", ")}`);
    }
  }
}
console.log(`${n} CUDA images`);
