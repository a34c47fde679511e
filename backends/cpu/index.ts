/**
 * The CPU reference backend: the oracle every other backend is tested against, and the fallback on
 * machines with no GPU. Storage is Float32Array (f16/bf16 weights are widened once at upload), math is
 * float32 with float64 where it matters (softmax sums, NLL, Cholesky), and every O(n³) loop goes to BLAS.
 */
import type { Backend, BackendFactory, GptqBlockArgs, QuantParamsCfg, HostArray, ProbeResult, QuantWeight, QuantWeightSpec, AttentionOpts, RopeOpts } from "../../src/backend.ts";
import type { DType } from "../../src/dtype.ts";
import { bf16ToF32Array, f16ToF32Array } from "../../src/dtype.ts";
import type { Tensor } from "../../src/tensor.ts";
import { numel, shapeStr } from "../../src/tensor.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { checkIds, checkScalar, deviceIds, matmulDims, nllDims, rowsFit, sameSize } from "../../src/validate.ts";
import { blasAvailable, dpotrfUpper, dpotriUpper, sgemm, ssyrkT } from "./blas.ts";
import { findParams, quantCode } from "../../src/gptq/quantizer.ts";
import { packQweight, readStream } from "../../src/gptq/pack.ts";
import { cpus } from "node:os";

type Store = Float32Array | Int32Array | Uint8Array;

/** GPTQ_POISON=1 (the tests set it): fresh outputs start as NaN so an element a kernel forgets to write shows */
const POISON = Boolean(process.env.GPTQ_POISON);
function outF32(n: number): Float32Array {
  const a = new Float32Array(n);
  return POISON ? a.fill(NaN) : a;
}

class CpuTensor implements Tensor {
  constructor(readonly backend: Backend, readonly shape: readonly number[], readonly dtype: DType, readonly handle: Store) {}
}

const f = (t: Tensor) => t.handle as Float32Array;
/** the value of an optional device scalar (i32 [1]); on the CPU "when the work runs" is now */
const scalar = (t?: Tensor) => (t ? (t.handle as Int32Array)[0]! : 0);

function expectShape(name: string, t: Tensor, rank: number): void {
  if (t.shape.length !== rank) throw new InvalidArgumentError(`${name}: expected rank ${rank}, got shape ${shapeStr(t.shape)}`);
}

export class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly device = `${cpus()[0]?.model ?? "cpu"} x${cpus().length}`;

  private make(shape: readonly number[], dtype: DType, data: Store): Tensor {
    return new CpuTensor(this, [...shape], dtype, data);
  }

  // ---------------- memory ----------------
  upload(data: HostArray, shape: readonly number[], dtype: DType): Tensor {
    const n = numel(shape);
    if (data.length !== n) throw new InvalidArgumentError(`upload: data has ${data.length} elements, shape ${shapeStr(shape)} needs ${n}`);
    let store: Store;
    if (dtype === "f16") store = f16ToF32Array(data as Uint16Array);
    else if (dtype === "bf16") store = bf16ToF32Array(data as Uint16Array);
    else if (dtype === "f32") store = Float32Array.from(data as Float32Array);
    else if (dtype === "i32") store = Int32Array.from(data as Int32Array);
    else store = Uint8Array.from(data as Uint8Array);
    return this.make(shape, dtype, store);
  }
  zeros(shape: readonly number[], dtype: DType): Tensor {
    const n = numel(shape);
    return this.make(shape, dtype, dtype === "i32" ? new Int32Array(n) : dtype === "u8" ? new Uint8Array(n) : new Float32Array(n));
  }
  empty(shape: readonly number[], dtype: DType): Tensor {
    const n = numel(shape);
    const store = dtype === "i32" ? new Int32Array(n).fill(POISON ? -1 : 0) : dtype === "u8" ? new Uint8Array(n).fill(POISON ? 255 : 0) : outF32(n);
    return this.make(shape, dtype, store);
  }
  async download(t: Tensor): Promise<Float32Array | Int32Array | Uint8Array> {
    return (t.handle as Store).slice();
  }
  copy(t: Tensor): Tensor {
    return this.make(t.shape, t.dtype, (t.handle as Store).slice());
  }
  free(_t: Tensor | QuantWeight): void {}
  async sync(): Promise<void> {}

  // ---------------- decoder primitives ----------------
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    // x [M,K] @ w [N,K]ᵀ (+ b [N]) -> [M,N]
    const { M, N, K } = matmulDims(x, w);
    const out = outF32(M * N);
    if (bias) for (let m = 0; m < M; m++) out.set(f(bias), m * N);
    sgemm(false, true, M, N, K, 1, f(x), K, f(w), K, bias ? 1 : 0, out, N);
    return this.make([M, N], "f32", out);
  }

  embedding(idsIn: Int32Array | Tensor, table: Tensor): Tensor {
    // table [V,H], ids [T] -> [T,H]
    const [V, H] = table.shape as [number, number];
    if (!(idsIn instanceof Int32Array)) deviceIds(this, idsIn);
    const ids = idsIn instanceof Int32Array ? idsIn : (idsIn.handle as Int32Array);
    checkIds(ids, V);
    const out = outF32(ids.length * H);
    const tb = f(table);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t]!;
      out.set(tb.subarray(id * H, id * H + H), t * H);
    }
    return this.make([ids.length, H], "f32", out);
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    // x [T,H] -> x · rsqrt(mean(x²) + eps) · w
    const H = x.shape[x.shape.length - 1]!;
    const T = numel(x.shape) / H;
    const xs = f(x), ws = f(w);
    const out = outF32(T * H);
    for (let t = 0; t < T; t++) {
      let ss = 0;
      for (let i = 0; i < H; i++) ss += xs[t * H + i]! * xs[t * H + i]!;
      const r = 1 / Math.sqrt(ss / H + eps);
      for (let i = 0; i < H; i++) out[t * H + i] = Math.fround(xs[t * H + i]! * r) * ws[i]!;
    }
    return this.make([T, H], "f32", out);
  }

  rope(x: Tensor, o: RopeOpts): void {
    // x [T, heads·hd], in place: (x1, x2) -> (x1·cos − x2·sin, x2·cos + x1·sin), halves of each head
    const hd = o.headDim, half = hd / 2, C = o.heads * hd;
    const T = numel(x.shape) / C;
    const xs = f(x);
    const cos = new Float32Array(half), sin = new Float32Array(half);
    checkScalar("rope", this, o.posTensor);
    const pos0 = o.pos0 + scalar(o.posTensor);
    for (let t = 0; t < T; t++) {
      const p = pos0 + (o.seqLen ? t % o.seqLen : t);
      for (let i = 0; i < half; i++) {
        const a = Math.fround(p * o.invFreq[i]!);
        cos[i] = Math.cos(a) * o.scale;
        sin[i] = Math.sin(a) * o.scale;
      }
      for (let h = 0; h < o.heads; h++) {
        const b = t * C + h * hd;
        for (let i = 0; i < half; i++) {
          const x1 = xs[b + i]!, x2 = xs[b + i + half]!;
          xs[b + i] = x1 * cos[i]! - x2 * sin[i]!;
          xs[b + i + half] = x2 * cos[i]! + x1 * sin[i]!;
        }
      }
    }
  }

  writeRows(dst: Tensor, src: Tensor, row0In: number, rowTensor?: Tensor): void {
    checkScalar("writeRows", this, rowTensor);
    const row0 = row0In + scalar(rowTensor);
    const { C } = rowsFit(dst, src, row0);
    f(dst).set(f(src), row0 * C);
  }

  attention(q: Tensor, kCache: Tensor, vCache: Tensor, o: AttentionOpts): Tensor {
    // q [T, heads·hd]; caches [S, kvHeads·hd] hold rows [0, pos0+T) (or B sequences of seqLen rows); out [T, heads·hd]
    const { heads, kvHeads, headDim: hd } = o;
    checkScalar("attention", this, o.posTensor);
    const pos0 = o.pos0 + scalar(o.posTensor);
    const QC = heads * hd;
    const T = numel(q.shape) / QC;
    const out = outF32(T * QC);
    const seq = o.seqLen ?? T;
    if (T % seq !== 0 || (o.seqLen && o.seqLen !== T && pos0 !== 0)) throw new InvalidArgumentError(`attention: ${T} rows do not split into sequences of ${seq} (pos0 must be 0 for several sequences)`);
    for (let b = 0; b < T / seq; b++) {
      attendOne(f(q), f(kCache), f(vCache), out, b * seq, seq, pos0, b * seq, heads, kvHeads, hd);
    }
    return this.make([T, QC], "f32", out);
  }

  siluMul(g: Tensor, u: Tensor): Tensor {
    const gs = f(g), us = f(u);
    const out = outF32(gs.length);
    for (let i = 0; i < gs.length; i++) {
      const v = gs[i]!;
      out[i] = (v / (1 + Math.exp(-v))) * us[i]!;
    }
    return this.make(g.shape, "f32", out);
  }

  add(a: Tensor, b: Tensor): Tensor {
    sameSize("add", a, b);
    const as = f(a), bs = f(b);
    const out = outF32(as.length);
    for (let i = 0; i < as.length; i++) out[i] = as[i]! + bs[i]!;
    return this.make(a.shape, "f32", out);
  }

  logSoftmax(x: Tensor): Tensor {
    const V = x.shape[x.shape.length - 1]!;
    const T = numel(x.shape) / V;
    const xs = f(x);
    const out = outF32(T * V);
    for (let t = 0; t < T; t++) {
      const lse = logSumExp(xs, t * V, V);
      for (let j = 0; j < V; j++) out[t * V + j] = xs[t * V + j]! - lse;
    }
    return this.make(x.shape, "f32", out);
  }

  async nll(logits: Tensor, targets: Int32Array): Promise<Float64Array> {
    const { T, V } = nllDims(logits, targets);
    const xs = f(logits);
    const out = new Float64Array(T);
    for (let t = 0; t < T; t++) out[t] = logSumExp(xs, t * V, V) - xs[t * V + targets[t]!]!;
    return out;
  }

  // ---------------- GPTQ ----------------
  hessianAccumulate(h: Tensor, x: Tensor): void {
    // H [K,K] += xᵀx, x [T,K]; syrk fills the upper triangle, then mirror it
    const K = h.shape[0]!;
    const T = numel(x.shape) / K;
    const H = f(h);
    ssyrkT(K, T, 1, f(x), K, 1, H);
    for (let i = 0; i < K; i++) for (let j = i + 1; j < K; j++) H[j * K + i] = H[i * K + j]!;
  }

  scale(t: Tensor, sc: number): void {
    const a = f(t);
    for (let i = 0; i < a.length; i++) a[i]! *= sc;
  }

  async diagonal(h: Tensor): Promise<Float32Array> {
    const n = h.shape[0]!, H = f(h);
    return Float32Array.from({ length: n }, (_, i) => H[i * n + i]!);
  }

  gptqPrepare(w: Tensor, h: Tensor | null): Tensor {
    // W [rows, cols] -> Wt [cols, rows]; dead inputs: H[d,d] = 1, Wt[d] = 0
    const [rows, cols] = w.shape as [number, number];
    const W = f(w);
    const wt = new Float32Array(cols * rows);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) wt[c * rows + r] = W[r * cols + c]!;
    const H = h ? f(h) : null;
    for (let c = 0; H && c < cols; c++) {
      if (H[c * cols + c] === 0) {
        H[c * cols + c] = 1;
        wt.fill(0, c * rows, (c + 1) * rows);
      }
    }
    return this.make([cols, rows], "f32", wt);
  }

  quantParams(a: { wt: Tensor; c0: number; n: number; g: number; scales: Tensor; zeros: Tensor; cfg: QuantParamsCfg }): void {
    const rows = a.wt.shape[1]!;
    const W = f(a.wt), S = f(a.scales), Z = f(a.zeros);
    const p = new Float64Array(2);
    for (let r = 0; r < rows; r++) {
      findParams((j) => W[(a.c0 + j) * rows + r]!, a.n, a.cfg, p);
      S[a.g * rows + r] = p[0]!;
      Z[a.g * rows + r] = p[1]!;
    }
  }

  gptqPermute(wt: Tensor, h: Tensor, perm: Tensor): { wt: Tensor; h: Tensor } {
    const [cols, rows] = wt.shape as [number, number];
    const P = perm.handle as Int32Array, W = f(wt), H = f(h);
    const w2 = new Float32Array(cols * rows), h2 = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) {
      w2.set(W.subarray(P[i]! * rows, (P[i]! + 1) * rows), i * rows);
      const src = P[i]! * cols;
      for (let j = 0; j < cols; j++) h2[i * cols + j] = H[src + P[j]!]!;
    }
    return { wt: this.make([cols, rows], "f32", w2), h: this.make([cols, cols], "f32", h2) };
  }

  gptqFinish(wtq: Tensor, codes: Tensor, perm: Tensor | null, bits: number): { w: Tensor; qweight: Tensor } {
    const [cols, rows] = wtq.shape as [number, number];
    const Q = f(wtq), C = codes.handle as Uint8Array, P = perm?.handle as Int32Array | undefined;
    const w = new Float32Array(rows * cols);
    const padded = Math.ceil(cols / 32) * 32; // whole int32 words for any width (zero codes past cols)
    const orig = new Uint8Array(padded * rows); // codes [in, out] in the original input order
    for (let i = 0; i < cols; i++) {
      const c = P ? P[i]! : i;
      orig.set(C.subarray(i * rows, (i + 1) * rows), c * rows);
      for (let r = 0; r < rows; r++) w[r * cols + c] = Q[i * rows + r]!;
    }
    const q = packQweight(orig, padded, rows, bits);
    return { w: this.make([rows, cols], "f32", w), qweight: this.make([q.length / rows, rows], "i32", q) };
  }

  async choleskyInverseUpper(h: Tensor, damp: number): Promise<boolean> {
    // H + damp·I = LLᵀ; H⁻¹ from the factor; then H⁻¹ = UᵀU, all in float64
    const n = h.shape[0]!;
    const H = f(h);
    const a = Float64Array.from(H);
    for (let i = 0; i < n; i++) a[i * n + i]! += damp;
    if (dpotrfUpper(a, n) !== 0) return false;
    if (dpotriUpper(a, n) !== 0) return false;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[j * n + i] = a[i * n + j]!;
    if (dpotrfUpper(a, n) !== 0) return false;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] = j >= i ? a[i * n + j]! : 0;
    return true;
  }

  gptqBlock(a: GptqBlockArgs): void {
    const [cols, rows] = a.wt.shape as [number, number];
    const W = f(a.wt), Hinv = f(a.hinv), err = f(a.err), loss = f(a.loss);
    const scales = f(a.scales), zeros = f(a.zeros);
    const codes = a.codes.handle as Uint8Array;
    const gOf = a.groupOfCol.handle as Int32Array;
    const maxq = (1 << a.cfg.bits) - 1;
    // the reference finds group params on W as it was at block start (in-block updates live in a copy)
    const start = W.slice(a.i1 * rows, a.i2 * rows);
    const p = new Float64Array(2);
    for (let i = a.i1; i < a.i2; i++) {
      if (!a.staticGroups && i % a.groupSize === 0) {
        const g = i / a.groupSize;
        const n = Math.min(a.groupSize, cols - i);
        for (let r = 0; r < rows; r++) {
          findParams((j) => (i + j < a.i2 ? start[(i + j - a.i1) * rows + r]! : W[(i + j) * rows + r]!), n, a.cfg, p);
          scales[g * rows + r] = p[0]!;
          zeros[g * rows + r] = p[1]!;
        }
      }
      const g = a.staticGroups ? gOf[i]! : Math.floor(i / a.groupSize);
      const d = Hinv[i * cols + i]!;
      const e0 = (i - a.i1) * rows;
      for (let r = 0; r < rows; r++) {
        const w = W[i * rows + r]!;
        const s = scales[g * rows + r]!, z = zeros[g * rows + r]!;
        const q = quantCode(w, s, z, maxq);
        const dq = Math.fround(s * (q - z));
        codes[i * rows + r] = q;
        W[i * rows + r] = dq;
        const e = (w - dq) / d;
        err[e0 + r] = e;
        loss[r]! += ((w - dq) * (w - dq)) / (d * d) / 2;
      }
      // W[i+1:i2] -= err_i ⊗ Hinv[i, i+1:i2]
      for (let j = i + 1; j < a.i2; j++) {
        const hij = Hinv[i * cols + j]!;
        if (hij === 0) continue;
        const o = j * rows;
        for (let r = 0; r < rows; r++) W[o + r]! -= err[e0 + r]! * hij;
      }
    }
  }

  gptqUpdate(wt: Tensor, hinv: Tensor, err: Tensor, i1: number, i2: number): void {
    // Wt[i2:, :] -= Hinv[i1:i2, i2:]ᵀ @ err [i2-i1, rows]
    const [cols, rows] = wt.shape as [number, number];
    if (i2 >= cols) return;
    sgemm(true, false, cols - i2, rows, i2 - i1, -1, f(hinv).subarray(i1 * cols + i2), cols, f(err), rows, 1, f(wt).subarray(i2 * rows), rows);
  }

  // ---------------- packed int matmul: dequantize once at load, then BLAS ----------------
  prepareQuantWeight(s: QuantWeightSpec): QuantWeight {
    const { inFeatures: K, outFeatures: N, bits } = s;
    const w = dequantize(s);
    const { qweight: _a, qzeros: _b, scales: _c, gIdx: _d, ...spec } = s;
    return { backend: this, spec, handle: this.make([N, K], "f32", w) };
  }
  quantMatmul(x: Tensor, w: QuantWeight, bias?: Tensor): Tensor {
    return this.matmul(x, w.handle as Tensor, bias);
  }
}

/** causal attention of q rows [r0, r0+T) (positions pos0..) over cache rows [k0, k0+pos0+T) */
function attendOne(qs: Float32Array, ks: Float32Array, vs: Float32Array, out: Float32Array, r0: number, T: number, pos0: number, k0: number, heads: number, kvHeads: number, hd: number): void {
  const QC = heads * hd, KC = kvHeads * hd;
  const L = pos0 + T;
  const rep = heads / kvHeads;
  const S = new Float32Array(T * L);
  const scale = 1 / Math.sqrt(hd);
  for (let h = 0; h < heads; h++) {
    const kv = Math.floor(h / rep);
    // S [T, L] = Q_h [T, hd] @ K_kv [L, hd]ᵀ · scale
    sgemm(false, true, T, L, hd, scale, qs.subarray(r0 * QC + h * hd), QC, ks.subarray(k0 * KC + kv * hd), KC, 0, S, L);
    for (let t = 0; t < T; t++) {
      const row = t * L, last = pos0 + t; // causal: keys 0..last
      let mx = -Infinity;
      for (let j = 0; j <= last; j++) if (S[row + j]! > mx) mx = S[row + j]!;
      let sum = 0;
      for (let j = 0; j <= last; j++) {
        const e = Math.exp(S[row + j]! - mx);
        S[row + j] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let j = 0; j <= last; j++) S[row + j]! *= inv;
      for (let j = last + 1; j < L; j++) S[row + j] = 0;
    }
    // O_h [T, hd] = P [T, L] @ V_kv [L, hd]
    sgemm(false, false, T, hd, L, 1, S, L, vs.subarray(k0 * KC + kv * hd), KC, 0, out.subarray(r0 * QC + h * hd), QC);
  }
}

function logSumExp(xs: Float32Array, off: number, n: number): number {
  let mx = -Infinity;
  for (let j = 0; j < n; j++) if (xs[off + j]! > mx) mx = xs[off + j]!;
  let s = 0;
  for (let j = 0; j < n; j++) s += Math.exp(xs[off + j]! - mx);
  return mx + Math.log(s);
}

/** The standard GPTQ layout -> dense W [out, in] float32: W[n,k] = scale[g,n] · (q[k,n] − (z[g,n] + zeroOffset)), g = g_idx[k]. */
export function dequantize(s: QuantWeightSpec): Float32Array {
  const { inFeatures: K, outFeatures: N, bits, groups } = s;
  const zw = (N * bits) / 32;
  const zero = new Float32Array(groups * N);
  for (let g = 0; g < groups; g++) for (let n = 0; n < N; n++) zero[g * N + n] = readStream(s.qzeros, g * zw, 1, n, bits) + s.zeroOffset;
  const w = new Float32Array(N * K);
  for (let k = 0; k < K; k++) {
    const g = s.gIdx[k]!;
    if (g < 0 || g >= groups) throw new InvalidArgumentError(`g_idx[${k}] = ${g} is outside [0, ${groups})`);
    for (let n = 0; n < N; n++) {
      const q = readStream(s.qweight, n, N, k, bits);
      w[n * K + k] = s.scales[g * N + n]! * (q - zero[g * N + n]!);
    }
  }
  return w;
}

export const cpuFactory: BackendFactory = {
  name: "cpu",
  async probe(): Promise<ProbeResult> {
    const b = blasAvailable();
    const device = `${cpus()[0]?.model ?? "cpu"} x${cpus().length}`;
    if (!b.ok) return { name: "cpu", available: false, device, reason: b.reason };
    return { name: "cpu", available: true, device, details: { blas: b.path } };
  },
  async create() {
    return new CpuBackend();
  },
};
