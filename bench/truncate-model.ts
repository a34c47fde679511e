// Keep the first N decoder layers of a model (real weights): a small stand-in for device runs.
// npx bun bench/truncate-model.ts <model> <out> <layers>
import { mkdirSync, copyFileSync, existsSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Checkpoint } from "../src/model/safetensors.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";

const [src, out, n] = [process.argv[2]!, process.argv[3]!, Number(process.argv[4])];
mkdirSync(out, { recursive: true });
const ck = new Checkpoint(src);
const keep = ck.names().filter((t) => { const m = /^model\.layers\.(\d+)\./.exec(t); return !m || Number(m[1]) < n; });
writeSafetensors(join(out, "model.safetensors"), keep.map((t) => ({ name: t, dtype: ck.info(t).dtype, shape: ck.info(t).shape, data: ck.bytes(t) })));
const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
cfg.num_hidden_layers = n;
writeFileSync(join(out, "config.json"), JSON.stringify(cfg, null, 2));
for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) if (existsSync(join(src, f))) copyFileSync(join(src, f), join(out, f));
console.log(`${out}: ${keep.length} tensors, ${n} layers`);
