/**
 * The standard GPTQ packing: values are a continuous little-endian bit stream in int32 words, value j at
 * bit j·bits (for 2/4/8 bits that is 32/bits values per word; for 3 bits, 32 values in 3 words with values
 * 10 and 21 straddling word boundaries, exactly as AutoGPTQ's QuantLinear.pack writes them).
 *   qweight int32 [in·bits/32, out]: packed along the input dimension (column n is one stream)
 *   qzeros  int32 [groups, out·bits/32]: packed along the output dimension (row g is one stream)
 */
import { InvalidArgumentError } from "../errors.ts";

export const SUPPORTED_BITS = [2, 3, 4, 8] as const;

export function checkBits(bits: number): void {
  if (!(SUPPORTED_BITS as readonly number[]).includes(bits)) {
    throw new InvalidArgumentError(`--bits: ${bits} is not supported; use one of ${SUPPORTED_BITS.join(", ")}`);
  }
}

/** number of int32 words holding `n` values of `bits` bits (n·bits must be a multiple of 32) */
export function packedLen(n: number, bits: number, what: string): number {
  if ((n * bits) % 32 !== 0) {
    throw new InvalidArgumentError(`${what}: ${n} values of ${bits} bits do not fill whole int32 words (n·bits must be a multiple of 32)`);
  }
  return (n * bits) / 32;
}

/** read value j of a bit stream that starts at words[base] with stride `stride` words */
export function readStream(words: Int32Array, base: number, stride: number, j: number, bits: number): number {
  const bit = j * bits;
  const w = bit >>> 5;
  const off = bit & 31;
  const mask = (1 << bits) - 1;
  let v = (words[base + w * stride]! >>> off) & mask;
  if (off + bits > 32) v |= (words[base + (w + 1) * stride]! << (32 - off)) & mask;
  return v;
}

function writeStream(words: Int32Array, base: number, stride: number, j: number, bits: number, v: number): void {
  const bit = j * bits;
  const w = bit >>> 5;
  const off = bit & 31;
  const mask = (1 << bits) - 1;
  v &= mask;
  words[base + w * stride]! |= v << off;
  if (off + bits > 32) words[base + (w + 1) * stride]! |= v >>> (32 - off);
}

/** codes [rows=in, cols=out] (row-major) -> qweight int32 [in·bits/32, out] */
export function packQweight(codes: Uint8Array | Int32Array, inF: number, outF: number, bits: number): Int32Array {
  const words = packedLen(inF, bits, "qweight rows (in_features)");
  const q = new Int32Array(words * outF);
  for (let k = 0; k < inF; k++) for (let n = 0; n < outF; n++) writeStream(q, n, outF, k, bits, codes[k * outF + n]!);
  return q;
}

/** qweight int32 [in·bits/32, out] -> codes [in, out] */
export function unpackQweight(q: Int32Array, inF: number, outF: number, bits: number): Uint8Array {
  const codes = new Uint8Array(inF * outF);
  for (let k = 0; k < inF; k++) for (let n = 0; n < outF; n++) codes[k * outF + n] = readStream(q, n, outF, k, bits);
  return codes;
}

/** zeros [groups, out] (integers, may be -1 for v1 storage) -> qzeros int32 [groups, out·bits/32] */
export function packQzeros(zeros: ArrayLike<number>, groups: number, outF: number, bits: number): Int32Array {
  const words = packedLen(outF, bits, "qzeros columns (out_features)");
  const q = new Int32Array(groups * words);
  for (let g = 0; g < groups; g++) for (let n = 0; n < outF; n++) writeStream(q, g * words, 1, n, bits, zeros[g * outF + n]!);
  return q;
}

/** qzeros -> stored zero values [groups, out] (v1 readers add 1 afterwards) */
export function unpackQzeros(q: Int32Array, groups: number, outF: number, bits: number): Int32Array {
  const words = (outF * bits) / 32;
  const z = new Int32Array(groups * outF);
  for (let g = 0; g < groups; g++) for (let n = 0; n < outF; n++) z[g * outF + n] = readStream(q, g * words, 1, n, bits);
  return z;
}

/**
 * The input order that makes groups contiguous: perm = inputs stably sorted by g_idx, when every group then
 * holds exactly gs = K / groups consecutive inputs (plain GPTQ, and act-order GPTQ as a permutation); null
 * otherwise. identity: the stored order already is that order. Packed-matmul kernels repack by it.
 */
export function contiguousGroups(gIdx: Int32Array, groups: number): { perm: Int32Array; gs: number; identity: boolean } | null {
  const K = gIdx.length, gs = K / groups;
  if (!Number.isInteger(gs)) return null;
  const perm = Int32Array.from({ length: K }, (_, i) => i).sort((a, b) => gIdx[a]! - gIdx[b]! || a - b);
  for (let k = 0; k < K; k++) if (gIdx[perm[k]!] !== Math.floor(k / gs)) return null;
  return { perm, gs, identity: perm.every((v, i) => v === i) };
}
