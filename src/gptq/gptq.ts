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
import { checkBits, packQweight } from "./pack.ts";
import { PhaseTimer } from "../progress.ts";

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
  /** the standard packed codes: int32 [in·bits/32, out] */
  qweight: Int32Array;
  /** [groups, out] float32 */
  scales: Float32Array;
  /** [groups, out] integer zero points (unshifted) */
  zeros: Int32Array;
  gIdx: Int32Array;
  /** sum of (w − q)² / d² / 2 over the layer (the reference's "error"); RTN: sum of (w − q)² */
  loss: number;
  /** damp fraction finally used (0 for RTN) */
  damp: number;
  seconds: number;
}

export function validateOptions(o: GptqOptions): void {
  checkBits(o.bits);
  if (!(o.groupSize === -1 || (Number.isInteger(o.groupSize) && o.groupSize > 0))) {
    throw new InvalidArgumentError(`--group-size: must be -1 (per channel) or a positive integer, got ${o.groupSize}`);
  }
  if (!(o.damp > 0 && o.damp < 1)) throw new InvalidArgumentError(`--damp: must be in (0, 1), got ${o.damp}`);
}

function groupCount(inF: number, gs: number): number {
  return gs === -1 ? 1 : Math.ceil(inF / gs);
}

/** Round to nearest with the same groups (the baseline): codes from min/max params per group. Host-side. */
export function rtnQuantize(W: Float32Array, outF: number, inF: number, o: GptqOptions): QuantizedLinear {
  const t0 = performance.now();
  validateOptions(o);
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
  return { bits: o.bits, inFeatures: inF, outFeatures: outF, groupSize: o.groupSize, qweight: packQweight(codes, inF, outF, o.bits), scales, zeros, gIdx, loss, damp: 0, seconds: (performance.now() - t0) / 1000 };
}

/**
 * GPTQ on one linear. w [out, in] (any float dtype, on the backend), h [in, in] float32 (the averaged
 * Hessian 2/n·ΣXᵀX, on the backend; not modified). Returns the packed result in the original column order
 * and, on the backend, the dequantized weight [out, in] that later layers are calibrated with.
 * h = null: round to nearest on the backend (what rtnQuantize does on the host): the same column loop with
 * an identity inverse Hessian, so no error feeds forward, every code is the nearest, and each group's
 * parameters come from its original weights; no act-order, no damping; loss Σ (w − q)² as rtnQuantize's.
 */
export async function gptqQuantize(be: Backend, w: Tensor, h: Tensor | null, o: GptqOptions): Promise<QuantizedLinear & { weight: Tensor }> {
  validateOptions(o);
  await be.sync(); // time this linear alone, not the forward work queued before it
  const t0 = performance.now();
  const prof = new PhaseTimer(be, "gptq");
  const [rows, cols] = w.shape as [number, number];
  const blockSize = o.blockSize ?? 128;
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  const G = groupCount(cols, o.groupSize);
  const cfg: QuantParamsCfg = { bits: o.bits, sym: o.sym, mse: o.mse };
  const owned: Tensor[] = [];
  const own = <T extends Tensor>(t: T): T => (owned.push(t), t);
  try {
    const scales = own(be.empty([G, rows], "f32")), zeros = own(be.empty([G, rows], "f32"));
    const rtn = h === null;
    let H = own(rtn ? be.zeros([cols, cols], "f32") : be.copy(h)); // rtn: H + 1·I below is I, its factor I
    // per channel: params from the whole weight, before dead columns are zeroed (as the reference)
    if (o.groupSize === -1) {
      const wt0 = be.gptqPrepare(w, null);
      be.quantParams({ wt: wt0, c0: 0, n: cols, g: 0, scales, zeros, cfg });
      be.free(wt0);
    }
    let wt = own(be.gptqPrepare(w, rtn ? null : H)); // transposed, dead inputs handled
    const staticGroups = o.groupSize === -1 || o.staticGroups;
    if (o.staticGroups && o.groupSize !== -1) for (let g = 0; g < G; g++) be.quantParams({ wt, c0: g * gs, n: Math.min(gs, cols - g * gs), g, scales, zeros, cfg });

    // act-order: columns by decreasing diag(H)
    const diag = rtn ? new Float32Array(cols) : await be.diagonal(H);
    let perm: Int32Array | null = null;
    let permT: Tensor | null = null;
    if (o.descAct && !rtn) {
      perm = Int32Array.from({ length: cols }, (_, i) => i).sort((a, b) => diag[b]! - diag[a]! || a - b);
      permT = own(be.upload(perm, [cols], "i32"));
      const p = be.gptqPermute(wt, H, permT);
      wt = own(p.wt);
      H = own(p.h);
    }
    const groupOfCol = own(be.upload(Int32Array.from({ length: cols }, (_, i) => (o.groupSize === -1 ? 0 : Math.floor((perm ? perm[i]! : i) / gs))), [cols], "i32"));

    // damping, raised (x2) until the Cholesky factorisation succeeds
    let mean = 0;
    for (const v of diag) mean += v;
    mean /= cols;
    let damp = rtn ? 0 : o.damp;
    await prof.mark("prepare");
    if (rtn && !(await be.choleskyInverseUpper(H, 1))) throw new NumericalError(`${be.name}: the Cholesky factorization of the identity failed (rtn); the backend is broken`);
    while (!rtn && !(await be.choleskyInverseUpper(H, damp * mean))) {
      if (damp >= 1) throw new NumericalError(`Hessian is not positive-definite even with damp ${damp}; the calibration data may be degenerate (too few samples, or constant inputs)`);
      damp = Math.min(1, damp * 2);
    }
    await prof.mark("cholesky");

    const codes = own(be.empty([cols, rows], "u8"));
    const err = own(be.empty([blockSize, rows], "f32"));
    const lossT = own(be.zeros([rows], "f32"));
    for (let i1 = 0; i1 < cols; i1 += blockSize) {
      const i2 = Math.min(i1 + blockSize, cols);
      be.gptqBlock({ wt, hinv: H, codes, err, loss: lossT, scales, zeros, i1, i2, groupSize: gs, staticGroups, groupOfCol, cfg });
      if (!rtn) be.gptqUpdate(wt, H, err, i1, i2); // (rtn: Hinv's off-diagonal is zero)
    }
    await prof.mark("blocks");
    const fin = be.gptqFinish(wt, codes, permT, o.bits);
    own(fin.qweight);
    const [qweight, sc, zr, lossArr] = await Promise.all([be.download(fin.qweight), be.download(scales), be.download(zeros), be.download(lossT)]);
    await prof.mark("finish");
    prof.flush(`gptq ${rows}x${cols}`);
    const gIdx = new Int32Array(cols);
    for (let i = 0; i < cols; i++) {
      const c = perm ? perm[i]! : i;
      gIdx[c] = o.groupSize === -1 ? 0 : staticGroups ? Math.floor(c / gs) : Math.floor(i / gs);
    }
    let loss = 0;
    for (const v of lossArr as Float32Array) loss += v;
    if (rtn) loss *= 2; // the block's loss is Σ (w − q)² / d² / 2 with d = 1
    if (!Number.isFinite(loss)) throw new NumericalError(`GPTQ produced a non-finite loss (${loss}); check the weights and calibration data for NaN/Inf`);
    return {
      bits: o.bits, inFeatures: cols, outFeatures: rows, groupSize: o.groupSize,
      qweight: qweight as Int32Array, scales: sc as Float32Array, zeros: Int32Array.from(zr as Float32Array), gIdx,
      loss, damp, seconds: (performance.now() - t0) / 1000, weight: fin.w,
    };
  } finally {
    for (const t of owned) be.free(t);
  }
}
