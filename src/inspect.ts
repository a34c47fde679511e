/** A summary of a model folder: architecture, sizes, parameter count, dtypes, quantization, tensor table. */
import { parseConfig } from "./model/config.ts";
import { Checkpoint } from "./model/safetensors.ts";
import { resolveModel } from "./model/hub.ts";

export interface InspectResult {
  dir: string;
  architecture: string;
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  tiedEmbeddings: boolean;
  rope: { theta: number; type: string };
  dtype: string;
  /** logical parameters (packed weights counted as in·out) */
  parameters: number;
  fileBytes: number;
  quantization: Record<string, unknown> | null;
  tensors: { name: string; dtype: string; shape: number[]; file: string }[];
}

export async function inspectModel(modelArg: string): Promise<InspectResult> {
  const dir = await resolveModel(modelArg);
  const c = parseConfig(dir);
  const ck = new Checkpoint(dir, c.quantization?.modelFileBaseName ?? "model");
  let params = 0, bytes = 0;
  const tensors = [];
  for (const name of ck.names().sort(naturalCompare)) {
    const t = ck.info(name);
    bytes += t.end - t.begin;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (name.endsWith(".qweight")) params += (n * 32) / c.quantization!.bits;
    else if (!/\.(qzeros|scales|g_idx)$/.test(name)) params += n;
    tensors.push({ name, dtype: t.dtype, shape: t.shape, file: t.file.slice(dir.length + 1) });
  }
  return {
    dir,
    architecture: String((c.raw.architectures as string[] | undefined)?.[0] ?? c.modelType),
    modelType: c.modelType,
    hiddenSize: c.hiddenSize,
    intermediateSize: c.intermediateSize,
    layers: c.numLayers,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    vocabSize: c.vocabSize,
    maxPositions: c.maxPositions,
    tiedEmbeddings: c.tieWordEmbeddings,
    rope: { theta: c.rope.theta, type: c.rope.type },
    dtype: c.dtype,
    parameters: params,
    fileBytes: bytes,
    quantization: c.quantization ? c.quantization.raw : null,
    tensors,
  };
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, undefined, { numeric: true });
}

export function formatInspect(r: InspectResult): string {
  const lines = [
    `model         ${r.dir}`,
    `architecture  ${r.architecture} (${r.modelType})`,
    `layers        ${r.layers}, hidden ${r.hiddenSize}, intermediate ${r.intermediateSize}`,
    `attention     ${r.heads} heads, ${r.kvHeads} kv heads, head_dim ${r.headDim}, rope theta ${r.rope.theta} (${r.rope.type})`,
    `vocab         ${r.vocabSize}, context ${r.maxPositions}, tied embeddings ${r.tiedEmbeddings}`,
    `dtype         ${r.dtype}`,
    `parameters    ${(r.parameters / 1e6).toFixed(2)}M (${r.parameters})`,
    `file size     ${(r.fileBytes / 1e6).toFixed(2)} MB`,
    `quantization  ${r.quantization ? JSON.stringify(r.quantization) : "none"}`,
    "",
    "tensors:",
  ];
  const w = Math.max(...r.tensors.map((t) => t.name.length));
  for (const t of r.tensors) lines.push(`  ${t.name.padEnd(w)}  ${t.dtype.padEnd(4)}  [${t.shape.join(", ")}]`);
  return lines.join("\n");
}
