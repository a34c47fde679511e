/**
 * GPTQ for one linear layer, mirroring the reference gptq.py (IST-DASLab) / AutoGPTQ:
 *
 *   dead = diag(H) == 0: H[d,d] = 1, W[:, d] = 0
 *   act-order: permute columns by diag(H) descending;  static groups: group params up front
 *   H += damp·mean(diag H)·I  (retried with more damping until Cholesky succeeds)
 *   Hinv = upper Cholesky factor of H⁻¹
 *   for blocks of 128 columns: the fused column loop (quantize, error feedback), then the lazy
 *   batch update  W[:, i2:] -= Err · Hinv[i1:i2, i2:]
 *
 * The hot loops run on the backend (gptqBlock, gptqUpdate, choleskyInverseUpper); the host does the
 * O(cols) bookkeeping. Weights are handled transposed, Wt [cols=in, rows=out], so a column is contiguous.
 */
import type { Backend, QuantParamsCfg } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import { InvalidArgumentError, NumericalError } from "../errors.ts";
import { findParams, quantCode } from "./quantizer.ts";
import { checkBits } from "./pack.ts";

export interface GptqOptions {
  bits: number;
  /** columns per group; -1 = one group per output channel */
  groupSize: number;
  sym: boolean;
  descAct: boolean;
  staticGroups: boolean;
  /** fraction of mean(diag H) added to the diagonal (default 0.01) */
  damp: number;
  mse: boolean;
  blockSize?: number;
}

/** One quantized linear, in the original column order. */
export interface QuantizedLinear {
  bits: number;
  inFeatures: number;
  outFeatures: number;
  groupSize: number;
  /** integer codes [in, out] (row k = input channel k) */
  codes: Uint8Array;
  /** [groups, out] float32 */
  scales: Float32Array;
  /** [groups, out] integer zero points (unshifted) */
  zeros: Int32Array;
  gIdx: Int32Array;
  /** sum of (w − q)² / d² / 2 over the layer (the reference's "error") */
  loss: number;
  /** damp fraction finally used (0 for RTN) */
  damp: number;
  seconds: number;
}

export function validateOptions(o: GptqOptions, inF: number): void {
  checkBits(o.bits);
  if (!(o.groupSize === -1 || (Number.isInteger(o.groupSize) && o.groupSize > 0))) {
    throw new InvalidArgumentError(`--group-size: must be -1 (per channel) or a positive integer, got ${o.groupSize}`);
  }
  if (!(o.damp > 0 && o.damp < 1)) throw new InvalidArgumentError(`--damp: must be in (0, 1), got ${o.damp}`);
}

function groupCount(inF: number, gs: number): number {
  return gs === -1 ? 1 : Math.ceil(inF / gs);
}

/** Round to nearest with the same groups (the baseline): codes from min/max params per group. */
export function rtnQuantize(W: Float32Array, outF: number, inF: number, o: GptqOptions): QuantizedLinear {
  const t0 = performance.now();
  validateOptions(o, inF);
  const gs = o.groupSize === -1 ? inF : o.groupSize;
  const G = groupCount(inF, o.groupSize);
  const cfg: QuantParamsCfg = { bits: o.bits, sym: o.sym, mse: o.mse };
  const maxq = (1 << o.bits) - 1;
  const scales = new Float32Array(G * outF), zeros = new Int32Array(G * outF);
  const codes = new Uint8Array(inF * outF);
  const p = new Float64Array(2);
  let loss = 0;
  for (let g = 0; g < G; g++) {
    const c0 = g * gs, n = Math.min(gs, inF - c0);
    for (let r = 0; r < outF; r++) {
      const row = r * inF + c0;
      findParams((j) => W[row + j]!, n, cfg, p);
      scales[g * outF + r] = p[0]!;
      zeros[g * outF + r] = p[1]!;
      for (let j = 0; j < n; j++) {
        const q = quantCode(W[row + j]!, p[0]!, p[1]!, maxq);
        codes[(c0 + j) * outF + r] = q;
        loss += (W[row + j]! - p[0]! * (q - p[1]!)) ** 2;
      }
    }
  }
  const gIdx = Int32Array.from({ length: inF }, (_, k) => Math.floor(k / gs));
  return { bits: o.bits, inFeatures: inF, outFeatures: outF, groupSize: o.groupSize, codes, scales, zeros, gIdx, loss, damp: 0, seconds: (performance.now() - t0) / 1000 };
}

/**
 * GPTQ on one linear. W [out, in] (host, float32, not modified), H [in, in] (host, float32, the averaged
 * Hessian 2/n·ΣXᵀX). Returns codes and group parameters in the original column order.
 */
export async function gptqQuantize(be: Backend, W: Float32Array, outF: number, inF: number, Hhost: Float32Array, o: GptqOptions): Promise<QuantizedLinear> {
  const t0 = performance.now();
  validateOptions(o, inF);
  const rows = outF, cols = inF;
  const blockSize = o.blockSize ?? 128;
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  const G = groupCount(cols, o.groupSize);
  const cfg: QuantParamsCfg = { bits: o.bits, sym: o.sym, mse: o.mse };
  const H = Float32Array.from(Hhost);
  // transpose to Wt [cols, rows]
  const wt = new Float32Array(cols * rows);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) wt[c * rows + r] = W[r * cols + c]!;

  const scales = new Float32Array(G * rows), zeros = new Float32Array(G * rows);
  const p = new Float64Array(2);
  const paramsFor = (g: number, c0: number, n: number) => {
    for (let r = 0; r < rows; r++) {
      findParams((j) => wt[(c0 + j) * rows + r]!, n, cfg, p);
      scales[g * rows + r] = p[0]!;
      zeros[g * rows + r] = p[1]!;
    }
  };
  // per channel: params from the whole weight, before dead columns are zeroed (as the reference)
  if (o.groupSize === -1) paramsFor(0, 0, cols);

  // dead inputs
  for (let c = 0; c < cols; c++) {
    if (H[c * cols + c] === 0) {
      H[c * cols + c] = 1;
      wt.fill(0, c * rows, (c + 1) * rows);
    }
  }
  const staticGroups = o.groupSize === -1 || o.staticGroups;
  if (o.staticGroups && o.groupSize !== -1) for (let g = 0; g < G; g++) paramsFor(g, g * gs, Math.min(gs, cols - g * gs));

  // act-order: permute columns by diag(H) descending (stable, as torch.argsort on ties is not guaranteed anyway)
  let perm: Int32Array | null = null;
  let wtp = wt, Hp = H;
  if (o.descAct) {
    perm = Int32Array.from({ length: cols }, (_, i) => i).sort((a, b) => H[b * cols + b]! - H[a * cols + a]! || a - b);
    wtp = new Float32Array(cols * rows);
    Hp = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) {
      wtp.set(wt.subarray(perm[i]! * rows, (perm[i]! + 1) * rows), i * rows);
      const src = perm[i]! * cols;
      for (let j = 0; j < cols; j++) Hp[i * cols + j] = H[src + perm[j]!]!;
    }
  }
  const groupOfCol = Int32Array.from({ length: cols }, (_, i) => (o.groupSize === -1 ? 0 : Math.floor((perm ? perm[i]! : i) / gs)));

  // damping with retries
  let mean = 0;
  for (let c = 0; c < cols; c++) mean += Hp[c * cols + c]!;
  mean /= cols;
  const hT = be.upload(Hp, [cols, cols], "f32");
  let damp = o.damp;
  for (;;) {
    if (await be.choleskyInverseUpper(hT, damp * mean)) break;
    if (damp >= 1) {
      be.free(hT);
      throw new NumericalError(`Hessian is not positive-definite even with damp ${damp}; the calibration data may be degenerate (too few samples, or constant inputs)`);
    }
    damp = Math.min(1, damp * 2);
  }

  const wT = be.upload(wtp, [cols, rows], "f32");
  const codesT = be.empty([cols, rows], "u8");
  const errT = be.empty([blockSize, rows], "f32");
  const lossT = be.upload(new Float32Array(rows), [rows], "f32");
  const scalesT = be.upload(scales, [G, rows], "f32");
  const zerosT = be.upload(zeros, [G, rows], "f32");
  const gocT = be.upload(groupOfCol, [cols], "i32");
  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(i1 + blockSize, cols);
    be.gptqBlock({ wt: wT, hinv: hT, codes: codesT, err: errT, loss: lossT, scales: scalesT, zeros: zerosT, i1, i2, groupSize: gs, staticGroups, groupOfCol: gocT, cfg });
    be.gptqUpdate(wT, hT, errT, i1, i2);
  }
  const codesP = (await be.download(codesT)) as Uint8Array;
  const lossArr = (await be.download(lossT)) as Float32Array;
  const sc = (await be.download(scalesT)) as Float32Array;
  const zr = (await be.download(zerosT)) as Float32Array;
  for (const t of [hT, wT, codesT, errT, lossT, scalesT, zerosT, gocT]) be.free(t);

  // back to the original column order
  const codes = new Uint8Array(cols * rows);
  const gIdx = new Int32Array(cols);
  for (let i = 0; i < cols; i++) {
    const c = perm ? perm[i]! : i;
    codes.set(codesP.subarray(i * rows, (i + 1) * rows), c * rows);
    gIdx[c] = o.groupSize === -1 ? 0 : staticGroups ? Math.floor(c / gs) : Math.floor(i / gs);
  }
  let loss = 0;
  for (const v of lossArr) loss += v;
  if (!Number.isFinite(loss)) throw new NumericalError(`GPTQ produced a non-finite loss (${loss}); check the weights and calibration data for NaN/Inf`);
  return { bits: o.bits, inFeatures: inF, outFeatures: outF, groupSize: o.groupSize, codes, scales: sc, zeros: Int32Array.from(zr), gIdx, loss, damp, seconds: (performance.now() - t0) / 1000 };
}

/** dense dequantized weight [out, in] of a quantized linear (what the next layers see during calibration) */
export function dequantizeLinear(q: QuantizedLinear): Float32Array {
  const { inFeatures: K, outFeatures: N } = q;
  const w = new Float32Array(N * K);
  for (let k = 0; k < K; k++) {
    const g = q.gIdx[k]!;
    for (let n = 0; n < N; n++) w[n * K + k] = Math.fround(q.scales[g * N + n]! * (q.codes[k * N + n]! - q.zeros[g * N + n]!));
  }
  return w;
}

export type { Tensor };
