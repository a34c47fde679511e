// Per-module code agreement of a whole quantization on cuda vs cpu. npx bun bench/diag2.ts <model>
import { quantize } from "../src/index.ts";
import { Checkpoint, typedView } from "../src/model/safetensors.ts";
import { unpackQweight } from "../src/gptq/pack.ts";
const model = process.argv[2]!, data = process.env.GPTQ_DATA!;
const o = { dataset: `${data}/wikitext-2-raw/wiki.valid.raw`, nsamples: 32, seqlen: 256, bits: 4, groupSize: 128, progress: false, overwrite: true };
const rg = await quantize(model, { ...o, out: "/tmp/dq-gpu", backend: "cuda" });
const rc = await quantize(model, { ...o, out: "/tmp/dq-cpu", backend: "cpu" });
const cg = new Checkpoint("/tmp/dq-gpu"), cc = new Checkpoint("/tmp/dq-cpu");
rg.modules.forEach((m, i) => {
  const name = `${m.name}.qweight`;
  const [w, N] = cc.info(name).shape as [number, number];
  const a = unpackQweight(typedView(cg.bytes(name), "I32") as Int32Array, w * 8, N, 4), c = unpackQweight(typedView(cc.bytes(name), "I32") as Int32Array, w * 8, N, 4);
  let s = 0; for (let j = 0; j < a.length; j++) if (a[j] === c[j]) s++;
  console.log(`${m.name.padEnd(36)} agree ${(100 * s / a.length).toFixed(2)}%  loss cuda ${m.loss.toExponential(4)} cpu ${rc.modules[i]!.loss.toExponential(4)}`);
});
