/**
 * The backend contract: memory, the primitives of a Llama-family forward pass, the GPTQ kernels,
 * and the packed-int matmul. Every backend (cpu, cuda, webgpu) implements all of it; the CPU one is
 * the oracle the others are tested against.
 */
import type { DType } from "./dtype.ts";
import type { Tensor } from "./tensor.ts";
import { BackendUnavailableError, InvalidArgumentError } from "./errors.ts";

export type HostArray = Float32Array | Int32Array | Uint16Array | Uint8Array;

export interface ProbeResult {
  name: string;
  available: boolean;
  /** device name: CPU model, GPU name, adapter description */
  device?: string;
  /** why it is unavailable, with what to do */
  reason?: string;
  details?: Record<string, unknown>;
}

/** A packed GPTQ linear layer as found on disk (standard layout), host side. */
export interface QuantWeightSpec {
  bits: number;
  inFeatures: number;
  outFeatures: number;
  groups: number;
  /** int32 [in*bits/32, out], packed along the input dimension, lowest index in the lowest bits */
  qweight: Int32Array;
  /** int32 [groups, out*bits/32], packed along the output dimension */
  qzeros: Int32Array;
  /** [groups, out] as float32 on the host (converted from fp16/bf16) */
  scales: Float32Array;
  /** int32 [in]: group of every input channel (not monotone under act-order) */
  gIdx: Int32Array;
  /** 1 for checkpoint_format "gptq" (v1: stored zero = zero - 1), 0 for "gptq_v2" */
  zeroOffset: number;
}

/** Backend-prepared quantized weight: the backend may repack at load time. */
export interface QuantWeight {
  readonly backend: Backend;
  readonly spec: Omit<QuantWeightSpec, "qweight" | "qzeros" | "scales" | "gIdx">;
  readonly handle: unknown;
}

export interface AttentionOpts {
  /** position of the first query row in the sequence; the caches hold keys/values for [0, pos0+T) */
  pos0: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** when set (pos0 = 0): the T rows are T/seqLen independent sequences, each attending to its own rows of the caches */
  seqLen?: number;
  /** i32 [1]: added to pos0 when the work runs, not when it is queued (graph replay; see `graphs`) */
  posTensor?: Tensor;
}

export interface RopeOpts {
  heads: number;
  headDim: number;
  pos0: number;
  /** when set: row t has position pos0 + t % seqLen (independent sequences side by side) */
  seqLen?: number;
  /** [headDim/2] inverse frequencies (rope scaling already applied) */
  invFreq: Float32Array;
  /** attention scaling factor applied to cos/sin (1 except some rope types) */
  scale: number;
  /** i32 [1]: added to pos0 when the work runs, not when it is queued (graph replay; see `graphs`) */
  posTensor?: Tensor;
}

/** A recorded sequence of queued work, replayed with one call. */
export interface DeviceGraph {
  replay(): void;
  free(): void;
}

/**
 * Optional (CUDA): record the work a function queues and replay it later with one launch, so that host
 * overhead does not bound a decode step. Values that change between replays (the token, the position) live
 * in device tensors that the ops read when they run: embedding(ids: Tensor), RopeOpts/AttentionOpts
 * posTensor, writeRows(…, rowTensor). Inside capture nothing may be uploaded or downloaded, and tensors
 * created inside must be freed inside (write results into tensors made before).
 */
export interface GraphSupport {
  /**
   * records fn's device work as a graph. arena (default true): tensors made inside come from memory reserved
   * for the graph, not from allocation nodes between its kernels, so that the kernels' programmatic dependent
   * launches (CUDA PDL) stay in force when it is replayed (decode: 443 -> 488 tokens/s on an H200); false
   * keeps the allocation nodes (bench matmul: kernel time without PDL overlap, comparable across runs)
   */
  capture(fn: () => void, opts?: { arena?: boolean }): DeviceGraph;
  /** host data into an existing tensor (outside a capture) */
  write(t: Tensor, data: HostArray): void;
  /**
   * optional: greedy decoding on the device, so that decode steps can be queued ahead of the host. Queues
   * tok[0] = argmax(logits [V]) (the host's rule: the first of equal maxima, NaN never wins), ring slot
   * pos[0] % ring.size = the same, then pos[0] += 1 (tok, pos: i32 [1])
   */
  argmaxNext?(logits: Tensor, tok: Tensor, pos: Tensor, ring: TokenRing): void;
  /** optional (with argmaxNext): host memory that the device writes tokens into */
  tokenRing?(size: number): TokenRing;
}

/** Slots of host memory that queued device work writes token ids into (GraphSupport.argmaxNext). */
export interface TokenRing {
  readonly size: number;
  /** marks every slot empty (-1) */
  reset(): void;
  /** waits until the device has written slot i, returns its token and marks it empty; throws if the work failed */
  take(slot: number): number;
  free(): void;
}

/** Quantizer settings for the GPTQ column block. */
export interface QuantParamsCfg {
  bits: number;
  sym: boolean;
  /** MSE grid search of the clipping range (quant.py: grid 100, maxshrink 0.8, norm 2.4) */
  mse: boolean;
}

export interface Backend {
  readonly name: string;
  /** what this backend runs on, for messages and tables */
  readonly device: string;
  /** the largest tensor this backend can hold in one piece (bytes), when it has such a limit */
  readonly maxTensorBytes?: number;

  // ---- memory ----
  /** copy host data in; f16/bf16 come as their uint16 bits. */
  upload(data: HostArray, shape: readonly number[], dtype: DType): Tensor;
  /** a zero-filled tensor */
  zeros(shape: readonly number[], dtype: DType): Tensor;
  /** a tensor of the given shape whose contents are unspecified */
  empty(shape: readonly number[], dtype: DType): Tensor;
  /** copy out: f32/f16/bf16 come back as Float32Array, i32 as Int32Array, u8 as Uint8Array */
  download(t: Tensor): Promise<Float32Array | Int32Array | Uint8Array>;
  /** a new tensor with the same contents */
  copy(t: Tensor): Tensor;
  free(t: Tensor | QuantWeight): void;
  /** wait for queued work */
  sync(): Promise<void>;

  // ---- decoder primitives (activations f32; weights f32/f16/bf16) ----
  /** x [M,K] @ w[N,K]ᵀ (+ bias [N]) -> [M,N] */
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor;
  /**
   * optional: w (a weight uploaded as f16) will often be multiplied by 1-4 rows (the LM head when decoding):
   * the backend may keep a copy in f16 beside its own (exact) for a GEMV that reads half the bytes. Returns
   * whether it did.
   */
  keepHalf?(w: Tensor): boolean;
  /** table [V,H], ids [T] (host, or an i32 tensor on this backend) -> [T,H] */
  embedding(ids: Int32Array | Tensor, table: Tensor): Tensor;
  /** x [T,H], w [H] -> x / rms(x) * w */
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor;
  /** optional: sum = x + r and norm = rmsNorm(sum, w) in one pass (the residual add fused into the next norm) */
  addRmsNorm?(x: Tensor, r: Tensor, w: Tensor, eps: number): { sum: Tensor; norm: Tensor };
  /** in place on x [T, heads*headDim], Hugging Face half-split layout (rotate_half) */
  rope(x: Tensor, opts: RopeOpts): void;
  /**
   * optional, decoding through a cache: rope on q [T, heads·hd] and k [T, kvHeads·hd] in place, then k and v
   * written to rows pos0 (+ posTensor) + t of the caches, in one launch (same as two ropes and two writeRows)
   */
  ropeWriteKV?(q: Tensor, k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, opts: RopeOpts & { kvHeads: number }): void;
  /**
   * optional, decoding through a cache: ropeWriteKV then attention of q over the caches (one launch where the
   * backend can: CUDA for one query row). q and k are consumed: afterwards they hold either the rotated or the
   * original values.
   */
  ropeAttention?(q: Tensor, k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, opts: RopeOpts & { kvHeads: number }): Tensor;
  /** dst[r : r+T, :] = src [T, C] with r = row0 (+ rowTensor[0] when the work runs) (KV-cache write) */
  writeRows(dst: Tensor, src: Tensor, row0: number, rowTensor?: Tensor): void;
  /** causal GQA attention: q [T, heads*hd], kCache/vCache [S, kvHeads*hd] -> [T, heads*hd] */
  attention(q: Tensor, kCache: Tensor, vCache: Tensor, opts: AttentionOpts): Tensor;
  /** silu(g) * u, both [T, I] */
  siluMul(g: Tensor, u: Tensor): Tensor;
  /** a + b, same shape */
  add(a: Tensor, b: Tensor): Tensor;
  /** row-wise log-softmax of x [T, V] */
  logSoftmax(x: Tensor): Tensor;
  /** per-row negative log-likelihood of targets under logits [T, V] -> [T] (float64 on the host) */
  nll(logits: Tensor, targets: Int32Array): Promise<Float64Array>;

  // ---- GPTQ (the algorithm in src/gptq/gptq.ts drives these; all data stays on the backend) ----
  /** H [K,K] += xᵀx for x [T,K] (float32 accumulate) */
  hessianAccumulate(h: Tensor, x: Tensor): void;
  /** t *= s, in place */
  scale(t: Tensor, s: number): void;
  /** the diagonal of a square matrix, on the host */
  diagonal(h: Tensor): Promise<Float32Array>;
  /**
   * W [rows, cols] (any float dtype) -> Wt [cols, rows] float32. With h: dead inputs (H[d,d] == 0) get
   * H[d,d] = 1 (in place on h) and a zero row in Wt.
   */
  gptqPrepare(w: Tensor, h: Tensor | null): Tensor;
  /** group params over Wt rows [c0, c0+n) for every output row -> scales[g, :], zeros[g, :] */
  quantParams(a: { wt: Tensor; c0: number; n: number; g: number; scales: Tensor; zeros: Tensor; cfg: QuantParamsCfg }): void;
  /** act-order: Wt' = Wt[perm], H' = H[perm][:, perm] (new tensors; perm i32 [cols]) */
  gptqPermute(wt: Tensor, h: Tensor, perm: Tensor): { wt: Tensor; h: Tensor };
  /**
   * In place: H [K,K] (+ damp on the diagonal) -> upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), lower part zeroed.
   * Returns false (H untouched) if H + damp·I is not positive-definite.
   */
  choleskyInverseUpper(h: Tensor, damp: number): Promise<boolean>;
  /**
   * The GPTQ column block [i1, i2) on the transposed weight Wt [cols, rows] with Hinv = U [cols, cols]:
   * for each column: group params when a group starts (unless static), quantize, error feedback inside
   * the block. Writes codes [cols, rows] (u8), err [i2-i1, rows], loss [rows] (+=), and group params into
   * scales/zeros [groups, rows] (f32). Wt[i1:i2] ends holding the dequantized values.
   */
  gptqBlock(args: GptqBlockArgs): void;
  /** Wt[i2:, :] -= Hinv[i1:i2, i2:]ᵀ @ err [i2-i1, rows] (the lazy batch update) */
  gptqUpdate(wt: Tensor, hinv: Tensor, err: Tensor, i1: number, i2: number): void;
  /**
   * Back to the original column order: the dequantized weight W [rows, cols] f32 (what later layers see
   * during calibration), and the codes packed into the standard qweight int32 [⌈cols/32⌉·bits, rows]
   * (zero codes pad the last word when cols is not a multiple of 32).
   * perm null = identity.
   */
  gptqFinish(wtq: Tensor, codes: Tensor, perm: Tensor | null, bits: number): { w: Tensor; qweight: Tensor };

  // ---- packed int matmul ----
  prepareQuantWeight(spec: QuantWeightSpec): QuantWeight;
  /** x [M, in] @ dequant(W)ᵀ (+ bias) -> [M, out] */
  quantMatmul(x: Tensor, w: QuantWeight, bias?: Tensor): Tensor;
  /**
   * optional: quantMatmul for several weights sharing x (q/k/v, gate/up), in one launch where the backend can;
   * same results as one quantMatmul each
   */
  quantMatmulMany?(x: Tensor, ws: QuantWeight[], biases?: (Tensor | undefined)[]): Tensor[];
  /** optional: quantMatmul(siluMul(g, u), w, bias), the gate fused into the matmul where the backend can */
  quantMatmulGated?(g: Tensor, u: Tensor, w: QuantWeight, bias?: Tensor): Tensor;
  /**
   * optional (decoding): the residual add fused into a packed matmul, y = residual + x' @ dequant(W)ᵀ (+ bias)
   * with x' = x, or siluMul(x, gate). With `inPlace` the residual is the caller's to give up: y may be the
   * residual tensor itself, accumulated in place (then the residual is not to be freed apart from y). Null where
   * the backend cannot fuse these arguments (then add and quantMatmul as usual).
   */
  quantMatmulAdd?(x: Tensor, w: QuantWeight, residual: Tensor, o?: { gate?: Tensor; bias?: Tensor; inPlace?: boolean }): Tensor | null;
  /**
   * optional: quantMatmulMany(rmsNorm(x, normW, eps), ws, biases) in one launch (the norm's scalar applied to
   * the sums, its weight to x as it is staged): the RMSNorm after a residual add deferred into the matmuls
   * that take it; null where not fusable
   */
  quantMatmulManyNormed?(x: Tensor, normW: Tensor, eps: number, ws: QuantWeight[], biases?: (Tensor | undefined)[]): Tensor[] | null;

  /** optional: CUDA graphs (see GraphSupport); the CPU backend implements the device-scalar op variants too */
  readonly graphs?: GraphSupport;

  /**
   * benchmarks (optional): device time in µs of the work `fn` queues, from the device's own timestamps around it
   * (median of `reps` runs), or null when the device cannot time (WebGPU without timestamp-query)
   */
  gpuTimeUs?(fn: () => void, reps?: number): Promise<number | null>;

  /** benchmarks: the dense baseline this backend is judged against on an [M,K]·[N,K]ᵀ product (optional) */
  denseBaseline?(M: number, N: number, K: number): { label: string; bytes: number; run(): void; free(): void };
}

export interface GptqBlockArgs {
  wt: Tensor; // f32 [cols, rows]
  hinv: Tensor; // f32 [cols, cols] upper
  codes: Tensor; // u8 [cols, rows]
  err: Tensor; // f32 [blocksize, rows]
  loss: Tensor; // f32 [rows]
  scales: Tensor; // f32 [groups, rows]
  zeros: Tensor; // f32 [groups, rows]
  i1: number;
  i2: number;
  /** columns per group; `cols` for one group per output channel */
  groupSize: number;
  /** true: params were computed up front (static groups, or per-channel); use groupOfCol */
  staticGroups: boolean;
  /** i32 [cols]: group index of permuted column i (used when staticGroups) */
  groupOfCol: Tensor;
  cfg: QuantParamsCfg;
}

// ---------------- registry and selection ----------------

export interface BackendFactory {
  name: string;
  probe(): Promise<ProbeResult>;
  create(): Promise<Backend>;
}

const registry = new Map<string, BackendFactory>();
export const AUTO_ORDER = ["cuda", "webgpu", "cpu"] as const;

export function registerBackend(f: BackendFactory): void {
  registry.set(f.name, f);
}
export function backendNames(): string[] {
  return [...registry.keys()];
}

export async function probeAll(): Promise<ProbeResult[]> {
  const out: ProbeResult[] = [];
  for (const name of AUTO_ORDER) {
    const f = registry.get(name);
    if (!f) continue;
    try {
      out.push(await f.probe());
    } catch (e) {
      out.push({ name, available: false, reason: (e as Error).message });
    }
  }
  return out;
}

const instances = new Map<string, Promise<Backend>>();

/**
 * `auto` (or undefined): cuda, then webgpu, then cpu, the first whose probe succeeds.
 * A named backend that is unavailable is an error that says why; it never falls back.
 * GPTQ_BACKEND is read when `name` is undefined.
 */
export async function selectBackend(name?: string, log?: (msg: string) => void): Promise<Backend> {
  const want = (name ?? process.env.GPTQ_BACKEND ?? "auto").toLowerCase();
  const valid = ["auto", ...AUTO_ORDER];
  if (!valid.includes(want)) {
    throw new InvalidArgumentError(`--backend: unknown backend "${want}"; valid: ${valid.join(", ")}`);
  }
  const cached = instances.get(want);
  if (cached) return cached;
  const p = (async () => {
    if (want !== "auto") {
      const f = registry.get(want);
      if (!f) throw new BackendUnavailableError(`backend "${want}" is not registered in this build`);
      const pr = await f.probe();
      if (!pr.available) throw new BackendUnavailableError(`backend "${want}" is unavailable: ${pr.reason}`);
      return f.create();
    }
    const reasons: string[] = [];
    for (const n of AUTO_ORDER) {
      const f = registry.get(n);
      if (!f) continue;
      const pr = await f.probe().catch((e: Error) => ({ name: n, available: false, reason: e.message }) as ProbeResult);
      // a software adapter (Mesa's lavapipe) is correct but slower than the CPU backend: auto passes it by
      if (pr.available && pr.details?.software) {
        reasons.push(`${n}: ${pr.device} is a software renderer (use --backend ${n} to force it)`);
        continue;
      }
      if (pr.available) {
        if (reasons.length) log?.(`backend auto: using ${n} (${reasons.join("; ")})`);
        return f.create();
      }
      reasons.push(`${n}: ${pr.reason}`);
    }
    throw new BackendUnavailableError(`no backend available: ${reasons.join("; ")}`);
  })();
  instances.set(want, p);
  p.catch(() => instances.delete(want));
  return p;
}
