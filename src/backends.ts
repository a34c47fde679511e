/** Registers every backend with the registry (import for its side effect). */
import { registerBackend } from "./backend.ts";
import { cpuFactory } from "../backends/cpu/index.ts";
import { cudaFactory } from "../backends/cuda/index.ts";
import { webgpuFactory } from "../backends/webgpu/index.ts";

registerBackend(cudaFactory);
registerBackend(webgpuFactory);
registerBackend(cpuFactory);
