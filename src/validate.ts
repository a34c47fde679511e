/** Argument checks at the Backend boundary, shared by every backend (same rule, same message everywhere). */
import type { Tensor } from "./tensor.ts";
import { numel, shapeStr } from "./tensor.ts";
import { InvalidArgumentError } from "./errors.ts";

/** x [..., K] @ w [N, K]ᵀ: the dimensions, or an error naming both shapes */
export function matmulDims(x: Tensor, w: Tensor): { M: number; N: number; K: number } {
  const K = x.shape[x.shape.length - 1]!;
  const [N, K2] = w.shape as [number, number];
  if (K2 !== K) throw new InvalidArgumentError(`matmul: x ${shapeStr(x.shape)} and w ${shapeStr(w.shape)} disagree on K`);
  return { M: numel(x.shape) / K, N, K };
}

/** every token id within [0, V) */
export function checkIds(ids: Int32Array, V: number): void {
  for (const id of ids) if (id < 0 || id >= V) throw new InvalidArgumentError(`embedding: token id ${id} out of range [0, ${V})`);
}

/** src fits into dst [S, C] from row0: the row width and element count */
export function rowsFit(dst: Tensor, src: Tensor, row0: number): { C: number; n: number } {
  const C = dst.shape[1]!;
  const n = numel(src.shape);
  if (row0 * C + n > numel(dst.shape)) throw new InvalidArgumentError(`writeRows: rows ${row0}+${n / C} exceed ${shapeStr(dst.shape)}`);
  return { C, n };
}

/** elementwise operands hold the same number of elements */
export function sameSize(op: string, a: Tensor, b: Tensor): number {
  if (numel(a.shape) !== numel(b.shape)) throw new InvalidArgumentError(`${op}: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} differ`);
  return numel(a.shape);
}

/** logits [T, V] and one target per row */
export function nllDims(logits: Tensor, targets: Int32Array): { T: number; V: number } {
  const V = logits.shape[logits.shape.length - 1]!;
  const T = numel(logits.shape) / V;
  if (targets.length !== T) throw new InvalidArgumentError(`nll: ${targets.length} targets for ${T} rows`);
  return { T, V };
}
