// The machine code NVIDIA's Vulkan driver made of our WGSL shaders: registers per thread, spills and the
// instruction mix (neither Dawn nor Vulkan exposes them). The driver keeps compiled shaders in its disk cache
// (__GL_SHADER_DISK_CACHE_PATH) as zstd frames after a header; the frames that hold GPU code start with
// "NVDANVVMNVuc", and (as seen with driver 580.159) hold the code's size at byte 0x4c and its offset less 8 at
// 0x50: raw instructions that `nvdisasm --binary SM<xy>` disassembles. For each such frame this prints the
// instruction count, the registers (highest Rn + 1; the hardware allocates them 8 at a time), local-memory
// instructions (spills), barriers, IDP.4A (the integer GEMV's dot products) and the commonest opcodes, and
// writes the disassembly to <out>/<n>.sass.
//   bun bench/vk-sass.ts <cache dir> <out dir> [nvdisasm] [SM90]
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [dir, out, tool = "nvdisasm", arch = "SM90"] = process.argv.slice(2);
if (!dir || !out) throw new Error("usage: bun bench/vk-sass.ts <cache dir> <out dir> [nvdisasm] [SM90]");
mkdirSync(out, { recursive: true });
const files = readdirSync(dir, { recursive: true, encoding: "utf8" }).map((e) => join(dir, e)).filter((p) => statSync(p).isFile());
console.log(`${files.length} cache files under ${dir}`);

const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
// the zstd frames in b, each decompressed; a frame's length from its header and block headers
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

const MAGIC = Buffer.from("NVDANVVMNVuc", "latin1");
let n = 0;
for (const f of files) {
  for (const fr of frames(readFileSync(f))) {
    if (fr.length < 0x58 || !fr.subarray(0, MAGIC.length).equals(MAGIC)) continue;
    const size = fr.readUInt32LE(0x4c), off = fr.readUInt32LE(0x50) + 8;
    const id = n++;
    if (size % 16 || off + size > fr.length) { console.log(`#${id}: ${fr.length} bytes, code at ${off} + ${size} does not fit: an unknown layout`); continue; }
    const bin = join(out, `${id}.bin`);
    writeFileSync(bin, fr.subarray(off, off + size));
    const r = Bun.spawnSync([tool, "--binary", arch, bin]);
    const sass = r.stdout.toString(), errors = r.stderr.toString().split("\n").filter((l) => /error/i.test(l)).length;
    writeFileSync(join(out, `${id}.sass`), sass);
    const ops = new Map<string, number>();
    let regs = 0;
    for (const l of sass.split("\n")) {
      const m = /^\s+\/\*[0-9a-f]{4,}\*\/\s+(?:@!?U?P[0-9T]+\s+)?([A-Z][A-Z0-9._]*)(.*)$/.exec(l);
      if (!m) continue;
      ops.set(m[1]!, (ops.get(m[1]!) ?? 0) + 1);
      for (const x of m[2]!.matchAll(/\bR(\d+)\b/g)) regs = Math.max(regs, Number(x[1]) + 1);
    }
    const count = (re: RegExp) => [...ops].filter(([o]) => re.test(o)).reduce((a, [, c]) => a + c, 0);
    const total = [...ops.values()].reduce((a, c) => a + c, 0);
    console.log(`#${id} (${size} bytes of code${errors ? `, ${errors} undecoded` : ""}): ${total} instructions, ${regs} registers, ` +
      `local memory ${count(/^(LDL|STL)/)}, BAR ${count(/^BAR/)}, IDP.4A ${count(/^IDP/)}, LDG ${count(/^LDG/)}, LDS ${count(/^LDS/)}`);
    if (total > 200) console.log(`  ${[...ops].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([o, c]) => `${o} ${c}`).join(", ")}`);
  }
}
console.log(`${n} shaders`);
