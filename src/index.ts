/** The library API: everything the CLI does, importable from TypeScript. */
export { LlamaModel, Decoder, type LoadOptions, type LayerWeights, type Linear, type KVCache } from "./model/llama.ts";
export { evaluate, readDatasetText, type EvalOptions, type EvalResult } from "./eval.ts";
export { generate, generateIds, type GenerateOptions } from "./generate.ts";
export { inspectModel, formatInspect, type InspectResult } from "./inspect.ts";
export { selectBackend, probeAll, backendNames, type Backend, type ProbeResult } from "./backend.ts";
export { Tokenizer } from "./model/tokenizer.ts";
export { Checkpoint, openSafetensors, writeSafetensors } from "./model/safetensors.ts";
export { parseConfig, type LlamaConfig } from "./model/config.ts";
export { resolveModel } from "./model/hub.ts";
export * from "./errors.ts";
export { quantize, type QuantizeOptions, type QuantizeReport } from "./gptq/quantize.ts";
export { gptqQuantize, rtnQuantize, type GptqOptions, type QuantizedLinear } from "./gptq/gptq.ts";
import "./backends.ts";

import { LlamaModel, type LoadOptions } from "./model/llama.ts";
/** Load a model folder or hub id on a backend (`auto` by default). */
export function loadModel(model: string, opts: LoadOptions = {}): Promise<LlamaModel> {
  return LlamaModel.load(model, opts);
}
