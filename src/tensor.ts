import type { DType } from "./dtype.ts";
import type { Backend } from "./backend.ts";

/** A tensor is a handle owned by one backend, with a shape and an element type. It does no math itself. */
export interface Tensor {
  readonly backend: Backend;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** backend-private storage (Float32Array on the CPU, a device pointer on CUDA, a GPUBuffer on WebGPU) */
  readonly handle: unknown;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
