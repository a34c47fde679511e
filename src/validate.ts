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

/** token ids given as a tensor (a graph's input): i32 on this backend; their number. Values are read on the device. */
export function deviceIds(be: unknown, ids: Tensor): number {
  if (ids.dtype !== "i32" || ids.backend !== be) throw new InvalidArgumentError(`embedding: ids must be an Int32Array or an i32 tensor of this backend, got ${ids.dtype} on ${ids.backend.name}`);
  return numel(ids.shape);
}

/** a device scalar (position, row) given to an op: an i32 tensor of one element on the same backend */
export function checkScalar(op: string, be: unknown, t: Tensor | undefined): void {
  if (!t) return;
  if (t.dtype !== "i32" || numel(t.shape) !== 1) throw new InvalidArgumentError(`${op}: a position tensor must be i32 with one element, got ${t.dtype} ${shapeStr(t.shape)}`);
  if (t.backend !== be) throw new InvalidArgumentError(`${op}: the position tensor lives on backend "${t.backend.name}", not this one`);
}

/** src fits into dst [S, C] from row0: the row width and element count */
export function rowsFit(dst: Tensor, src: Tensor, row0: number): { C: number; n: number } {
  if (dst.shape.length !== 2) throw new InvalidArgumentError(`writeRows: dst must be [rows, C], got ${shapeStr(dst.shape)}`);
  const C = dst.shape[1]!;
  const n = numel(src.shape);
  if (n % C !== 0 || src.shape[src.shape.length - 1] !== C) throw new InvalidArgumentError(`writeRows: src ${shapeStr(src.shape)} is not rows of ${C}`);
  if (!(Number.isInteger(row0) && row0 >= 0)) throw new InvalidArgumentError(`writeRows: row0 must be a whole number >= 0, got ${row0}`);
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
