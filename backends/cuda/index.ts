/**
 * The CUDA backend: every op is one call into libgptq_cuda (kernels/*.cu) through bun:ffi. Work is queued on
 * one stream, so calls return at once; download() and sync() wait. Device memory comes from CUDA's
 * stream-ordered pool. Dense weights are widened to f32 on the device at upload.
 */
import type { AttentionOpts, Backend, BackendFactory, DeviceGraph, GptqBlockArgs, GraphSupport, HostArray, ProbeResult, QuantParamsCfg, QuantWeight, QuantWeightSpec, RopeOpts, TokenRing } from "../../src/backend.ts";
import type { DType } from "../../src/dtype.ts";
import { DTYPE_BYTES } from "../../src/dtype.ts";
import type { Tensor } from "../../src/tensor.ts";
import { numel, shapeStr } from "../../src/tensor.ts";
import { BackendUnavailableError, InvalidArgumentError, NativeError } from "../../src/errors.ts";
import { read, toArrayBuffer, type Pointer } from "bun:ffi";
import { findNvidiaLibrary, openLibrary, type CudaLib } from "./ffi.ts";
import { checkIds, checkScalar, deviceIds, matmulDims, nllDims, rowsFit, sameSize } from "../../src/validate.ts";
import { contiguousGroups } from "../../src/gptq/pack.ts";

type Ptr = Pointer;
const POISON = () => Boolean(process.env.GPTQ_POISON);
const cstr = (s: string) => Buffer.from(`${s}\0`);

/** half: an fp16 twin of this f32 buffer (keepHalf), freed with it */
interface Buf { ptr: Ptr; bytes: number; freed: boolean; inGraph?: boolean; arena?: boolean; half?: Buf }
/** a bump allocator over one buffer, for the tensors made inside a graph capture */
interface Arena { buf: Buf; off: number }
/** bytes at the start of a capture's zeroed arena that belong to the library (GQ_QM_SCRATCH in kernels/gptq_cuda.h) */
const ZEROED_SCRATCH = 16384;

class CudaTensor implements Tensor {
  constructor(readonly backend: CudaBackend, readonly shape: readonly number[], readonly dtype: DType, readonly handle: Buf) {}
}

interface QHandle {
  fast: boolean;
  groupSize: number;
  qweight: Buf; scales: Buf; zeros: Buf; gIdx: Buf;
  packed?: Buf; sz?: Buf; perm?: Buf;
}

/** storage bytes per element: floats are kept as f32 on the device */
const elBytes = (dt: DType) => (dt === "i32" ? 4 : dt === "u8" ? 1 : 4);

/**
 * Token slots in pinned host memory that kernels write (argmaxNext). take() spins on its slot (the token is
 * needed at once, and a blocking wait would add the wake-up latency to every step); every 256 reads it asks
 * the stream, so a step that failed, or finished without writing its token, is an error and not a hang.
 */
class CudaTokenRing implements TokenRing {
  private readonly view: Int32Array;
  private readonly busy = new Int32Array(1); // (gq_query's answer)
  freed = false;
  constructor(private readonly lib: CudaLib, private readonly host: Ptr, readonly dev: Ptr, readonly size: number) {
    this.view = new Int32Array(toArrayBuffer(host, 0, size * 4));
    this.reset();
  }
  reset(): void {
    if (this.freed) throw new InvalidArgumentError("tokenRing: reset after free");
    this.view.fill(-1);
  }
  take(slot: number): number {
    if (this.freed) throw new InvalidArgumentError("tokenRing: take after free");
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.size) throw new InvalidArgumentError(`tokenRing.take: slot must be an integer in [0, ${this.size}), got ${slot}`);
    const busy = this.busy;
    for (let n = 1; ; n++) {
      const v = read.i32(this.host, slot * 4); // (an FFI read: not a load the JIT could keep in a register)
      if (v !== -1) {
        this.view[slot] = -1;
        return v;
      }
      if (n % 256 === 0) {
        if (this.lib.gq_query(busy) !== 0) throw new NativeError(`cuda decode step: ${this.lib.gq_last_error()}`);
        if (!busy[0] && read.i32(this.host, slot * 4) === -1) throw new NativeError(`cuda decode step: the device finished without writing token slot ${slot} (no argmaxNext queued for it?)`);
      }
    }
  }
  free(): void {
    if (!this.freed) this.lib.gq_host_free(this.host); // (callers free it after the work that writes it)
    this.freed = true;
  }
}

export class CudaBackend implements Backend {
  readonly name = "cuda";
  private readonly registry = new FinalizationRegistry<Buf>((b) => this.release(b));
  private readonly invFreqCache = new WeakMap<Float32Array, Buf>();

  /** set while a graph is being captured: buffers made inside, frees of outside buffers put off until the end */
  private capture: { inside: Set<Buf>; deferred: Buf[]; arena: Arena | null; zeroed: Arena | null } | null = null;
  /** bytes the last capture took from its arena (the next one reserves that much, at least 32 MiB) */
  private arenaHint = 32 << 20;
  /** likewise for the arena of GEMV outputs that each replay zeroes first (at least 8 MiB) */
  private zeroedHint = 8 << 20;

  /** compute capability 8.0+: the packed matmul's tensor-core kernel (mma.sync m16n8k16, cp.async) for 5..64 rows */
  readonly tensorCoreMatmul: boolean;
  constructor(readonly lib: CudaLib, readonly device: string, readonly info: Record<string, unknown>) {
    this.tensorCoreMatmul = Number(info.computeCapability ?? "8.0") >= 8;
  }

  readonly graphs: GraphSupport = {
    capture: (fn: () => void, opts: { arena?: boolean } = {}): DeviceGraph => {
      if (this.capture) throw new InvalidArgumentError("cuda: graph captures do not nest");
      // the tensors made inside come from an arena reserved before the capture (GPTQ_GRAPH_ARENA=0: stream-ordered
      // allocations, which become memory nodes of the graph): with no allocation node between two kernels, their
      // programmatic dependency (PDL) survives the capture. Past the arena's end, stream-ordered allocations.
      // With the arena, the outputs of the GEMVs (at most 4 rows) come from a second one that every replay sets
      // to zero before its first kernel (one memset node, the used part only): a GEMV whose k range is split
      // across blocks then adds the blocks' sums into its output with atomics (see gq_qm_zeroed).
      const arena = opts.arena !== false && process.env.GPTQ_GRAPH_ARENA !== "0" ? { buf: this.alloc(this.arenaHint), off: 0 } : null;
      // (its first ZEROED_SCRATCH bytes are the library's: the GEMVs' shared sums, see gq_qm_zeroed)
      const zeroed = arena ? { buf: this.alloc(this.zeroedHint), off: ZEROED_SCRATCH } : null;
      const freeArenas = () => { if (arena) this.release(arena.buf); if (zeroed) this.release(zeroed.buf); };
      try {
        this.check(this.lib.gq_graph_begin(), "graph capture");
      } catch (e) {
        freeArenas();
        throw e;
      }
      if (zeroed) this.check(this.lib.gq_qm_zeroed(zeroed.buf.ptr, zeroed.buf.bytes), "qm_zeroed");
      const cap = (this.capture = { inside: new Set<Buf>(), deferred: [] as Buf[], arena, zeroed });
      const exec = new BigUint64Array(1);
      let err: unknown = null;
      try {
        fn();
      } catch (e) {
        err = e;
      } finally {
        if (zeroed) this.lib.gq_qm_zeroed(null, 0);
        // (nothing to zero unless a GEMV output was made)
        const zbytes = zeroed && zeroed.off > ZEROED_SCRATCH ? Math.min(zeroed.off, zeroed.buf.bytes) : 0;
        const rc = this.lib.gq_graph_end(exec, zbytes ? zeroed!.buf.ptr : null, zbytes);
        this.capture = null;
        for (const b of cap.deferred) this.release(b);
        if (!err && rc !== 0) err = new NativeError(`cuda graph: ${this.lib.gq_last_error()}`);
        if (!err && cap.inside.size) err = new InvalidArgumentError(`cuda graph: ${cap.inside.size} tensor(s) created inside the capture were not freed inside it; write results into tensors made before the capture`);
      }
      const handle = Number(exec[0]) as Ptr;
      if (arena) this.arenaHint = Math.max(this.arenaHint, arena.off);
      if (zeroed) this.zeroedHint = Math.max(this.zeroedHint, zeroed.off);
      if (err) {
        for (const b of cap.inside) b.freed = true; // graph memory that never existed outside the graph
        if (handle) this.lib.gq_graph_free(handle);
        freeArenas();
        throw err;
      }
      let live = true;
      return {
        replay: () => {
          if (!live) throw new InvalidArgumentError("cuda graph: replay after free");
          this.check(this.lib.gq_graph_launch(handle), "graph launch");
        },
        free: () => {
          if (live) {
            this.lib.gq_graph_free(handle);
            freeArenas(); // (stream-ordered: after the graph's last replay)
          }
          live = false;
        },
      };
    },
    write: (t: Tensor, data: HostArray) => {
      const b = t.handle as Buf;
      if (data.byteLength > b.bytes) throw new InvalidArgumentError(`write: ${data.byteLength} bytes do not fit tensor ${shapeStr(t.shape)} (${b.bytes} bytes)`);
      this.noCapture("write");
      this.check(this.lib.gq_upload(this.p(t), data, data.byteLength), "upload");
    },
    // logits [V] f32 -> tok [1], ring slot pos % size (host memory), pos += 1 (kernels/argmax_next.cu)
    argmaxNext: (logits: Tensor, tok: Tensor, pos: Tensor, ring: TokenRing) => {
      const V = numel(logits.shape);
      if (logits.dtype === "i32" || logits.dtype === "u8") throw new InvalidArgumentError(`argmaxNext: logits must be float, got ${logits.dtype}`);
      for (const [name, t] of [["tok", tok], ["pos", pos]] as const) {
        if (t.dtype !== "i32" || numel(t.shape) !== 1) throw new InvalidArgumentError(`argmaxNext: ${name} must be i32 [1], got ${t.dtype} ${shapeStr(t.shape)}`);
      }
      const r = ring as CudaTokenRing;
      if (!(r instanceof CudaTokenRing) || r.freed) throw new InvalidArgumentError("argmaxNext: ring must be a live tokenRing() of this backend");
      this.check(this.lib.gq_argmax_next(this.p(logits), V, this.p(tok), this.p(pos), r.dev, r.size), "argmax_next");
    },
    tokenRing: (size: number) => {
      if (!Number.isInteger(size) || size < 2) throw new InvalidArgumentError(`tokenRing: size must be an integer >= 2, got ${size}`);
      const host = new BigUint64Array(1), dev = new BigUint64Array(1);
      this.check(this.lib.gq_host_alloc(host, dev, size * 4), "host_alloc");
      return new CudaTokenRing(this.lib, Number(host[0]) as Ptr, Number(dev[0]) as Ptr, size);
    },
  };

  private noCapture(what: string): void {
    if (this.capture) throw new InvalidArgumentError(`cuda: ${what} cannot run inside a graph capture (it waits for the device)`);
  }

  check(rc: number, what: string): void {
    if (rc !== 0) throw new NativeError(`cuda ${what}: ${this.lib.gq_last_error()}`);
  }
  /** zeroedArena: inside a capture, from the arena that each replay zeroes first (GEMV outputs) */
  private alloc(bytes: number, zeroedArena = false): Buf {
    const size = Math.ceil(Math.max(bytes, 1) / 256) * 256;
    const z = zeroedArena ? this.capture?.zeroed : null;
    let ar = this.capture?.arena;
    if (z && z.off + size <= z.buf.bytes) ar = z;
    else if (z) z.off += size; // (full: counted for the next capture, taken from the other arena)
    if (ar && ar.off + size <= ar.buf.bytes) {
      const b: Buf = { ptr: (ar.buf.ptr + ar.off) as Ptr, bytes, freed: false, inGraph: true, arena: true };
      ar.off += size;
      this.capture!.inside.add(b);
      return b;
    }
    if (ar) ar.off += size; // (counted: the next capture reserves enough)
    const out = new BigUint64Array(1);
    this.check(this.lib.gq_malloc(out, Math.max(bytes, 1)), `malloc(${bytes})`);
    const b: Buf = { ptr: Number(out[0]) as Ptr, bytes, freed: false };
    if (this.capture) {
      b.inGraph = true;
      this.capture.inside.add(b);
    }
    return b;
  }
  private release(b: Buf): void {
    if (b.freed) return;
    if (this.capture) {
      if (!this.capture.inside.delete(b)) {
        this.capture.deferred.push(b); // made outside: its free must not become part of the graph
        return;
      }
    }
    b.freed = true;
    if (!b.arena) this.lib.gq_free(b.ptr);
    if (b.half) this.release(b.half);
  }
  private wrap(shape: readonly number[], dtype: DType, b: Buf): Tensor {
    const t = new CudaTensor(this, [...shape], dtype, b);
    this.registry.register(t, b, b);
    return t;
  }
  private p(t: Tensor): Ptr {
    const b = t.handle as Buf;
    if (b.freed) throw new InvalidArgumentError(`cuda: tensor ${shapeStr(t.shape)} used after free`);
    return b.ptr;
  }
  private scratch(bytes: number): Buf {
    return this.alloc(bytes);
  }
  private hostUpload(data: HostArray): Buf {
    this.noCapture("upload");
    const b = this.alloc(data.byteLength);
    this.check(this.lib.gq_upload(b.ptr, data, data.byteLength), "upload");
    return b;
  }
  private out(shape: readonly number[], dtype: DType = "f32"): Tensor {
    return this.empty(shape, dtype);
  }
  /** a GEMV's output (f32): inside a capture with arenas, zero at the start of each replay (see capture) */
  private gemvOut(shape: readonly number[]): Tensor {
    return this.capture?.zeroed ? this.wrap(shape, "f32", this.alloc(numel(shape) * 4, true)) : this.out(shape);
  }

  // ---------------- memory ----------------
  upload(data: HostArray, shape: readonly number[], dtype: DType): Tensor {
    const n = numel(shape);
    if (data.length !== n) throw new InvalidArgumentError(`upload: data has ${data.length} elements, shape ${shapeStr(shape)} needs ${n}`);
    if (dtype === "f16" || dtype === "bf16") {
      const raw = this.hostUpload(data);
      const b = this.alloc(n * 4);
      this.check(this.lib.gq_convert(b.ptr, raw.ptr, n, dtype === "f16" ? 1 : 2), "convert");
      this.release(raw);
      return this.wrap(shape, dtype, b);
    }
    if (data.byteLength !== n * DTYPE_BYTES[dtype]) throw new InvalidArgumentError(`upload: ${data.constructor.name} does not hold ${dtype} data`);
    return this.wrap(shape, dtype, this.hostUpload(data));
  }
  zeros(shape: readonly number[], dtype: DType): Tensor {
    const bytes = numel(shape) * elBytes(dtype);
    const b = this.alloc(bytes);
    this.check(this.lib.gq_memset(b.ptr, 0, bytes), "memset");
    return this.wrap(shape, dtype, b);
  }
  empty(shape: readonly number[], dtype: DType): Tensor {
    const bytes = numel(shape) * elBytes(dtype);
    const b = this.alloc(bytes);
    if (POISON()) this.check(this.lib.gq_memset(b.ptr, 0xff, bytes), "memset"); // NaN for f32, -1, 255
    return this.wrap(shape, dtype, b);
  }
  async download(t: Tensor): Promise<Float32Array | Int32Array | Uint8Array> {
    this.noCapture("download");
    const n = numel(t.shape);
    const out = t.dtype === "i32" ? new Int32Array(n) : t.dtype === "u8" ? new Uint8Array(n) : new Float32Array(n);
    if (n) this.check(this.lib.gq_download(out, this.p(t), out.byteLength), "download");
    return out;
  }
  copy(t: Tensor): Tensor {
    const b = this.alloc((t.handle as Buf).bytes);
    this.check(this.lib.gq_copy(b.ptr, this.p(t), b.bytes), "copy");
    return this.wrap(t.shape, t.dtype, b);
  }
  free(t: Tensor | QuantWeight): void {
    if (t instanceof CudaTensor) {
      this.registry.unregister(t.handle);
      this.release(t.handle);
    } else if (t && (t as QuantWeight).handle) {
      const h = (t as QuantWeight).handle as QHandle;
      for (const b of [h.qweight, h.scales, h.zeros, h.gIdx, h.packed, h.sz]) if (b) this.release(b);
      if (h.perm) this.permUnref(h.perm);
    }
  }
  async sync(): Promise<void> {
    this.check(this.lib.gq_sync(), "sync");
  }

  // ---------------- decoder primitives ----------------
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const { M, N, K } = matmulDims(x, w);
    const y = this.out([M, N]);
    const half = (w.handle as Buf).half;
    if (half && M >= 1 && M <= 4) this.check(this.lib.gq_half_gemv(this.p(y), this.p(x), half.ptr, M, N, K), "half_gemv");
    else this.check(this.lib.gq_gemm(0, 1, M, N, K, 1, this.p(x), K, this.p(w), K, 0, this.p(y), N), "gemm");
    if (bias) this.check(this.lib.gq_add_bias(this.p(y), this.p(bias), M, N), "add_bias");
    return y;
  }
  /** an fp16 twin of a weight uploaded as f16 (exact), for matmul at 1-4 rows (kernels/half_gemv.cu) */
  keepHalf(w: Tensor): boolean {
    if (w.dtype !== "f16" || w.shape.length !== 2 || process.env.GPTQ_HALF_GEMV === "0") return false;
    this.noCapture("keepHalf");
    const b = w.handle as Buf, n = numel(w.shape), src = this.p(w);
    if (!b.half) {
      const h = this.alloc(n * 2);
      this.check(this.lib.gq_to_half(h.ptr, src, n), "to_half");
      b.half = h;
    }
    return true;
  }
  embedding(ids: Int32Array | Tensor, table: Tensor): Tensor {
    const [V, H] = table.shape as [number, number];
    if (!(ids instanceof Int32Array)) {
      // ids on the device (a graph input) cannot be checked here: the kernel reads an out-of-range id as row 0
      const T = deviceIds(this, ids);
      const y = this.out([T, H]);
      this.check(this.lib.gq_embedding(this.p(y), this.p(table), this.p(ids), T, H, V), "embedding");
      return y;
    }
    checkIds(ids, V);
    const idb = this.hostUpload(ids);
    const y = this.out([ids.length, H]);
    this.check(this.lib.gq_embedding(this.p(y), this.p(table), idb.ptr, ids.length, H, V), "embedding");
    this.release(idb);
    return y;
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const H = x.shape[x.shape.length - 1]!;
    const T = numel(x.shape) / H;
    const y = this.out([T, H]);
    this.check(this.lib.gq_rms_norm(this.p(y), this.p(x), this.p(w), T, H, eps), "rms_norm");
    return y;
  }
  addRmsNorm(x: Tensor, r: Tensor, w: Tensor, eps: number): { sum: Tensor; norm: Tensor } {
    const H = x.shape[x.shape.length - 1]!;
    const T = sameSize("addRmsNorm", x, r) / H;
    const sum = this.out([T, H]), norm = this.out([T, H]);
    this.check(this.lib.gq_add_rms_norm(this.p(sum), this.p(norm), this.p(x), this.p(r), this.p(w), T, H, eps), "add_rms_norm");
    return { sum, norm };
  }
  private invFreq(f: Float32Array): Buf {
    let inv = this.invFreqCache.get(f);
    if (!inv) {
      inv = this.hostUpload(f);
      this.invFreqCache.set(f, inv);
    }
    return inv;
  }
  rope(x: Tensor, o: RopeOpts): void {
    const inv = this.invFreq(o.invFreq);
    const T = numel(x.shape) / (o.heads * o.headDim);
    checkScalar("rope", this, o.posTensor);
    this.check(this.lib.gq_rope(this.p(x), inv.ptr, T, o.heads, o.headDim, o.pos0, o.posTensor ? this.p(o.posTensor) : null, o.seqLen ?? 0, o.scale), "rope");
  }
  /** the rows of q; k, v, the caches and the options checked against them */
  private ropeKVRows(op: string, q: Tensor, k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, o: RopeOpts & { kvHeads: number }): number {
    const T = numel(q.shape) / (o.heads * o.headDim), C = o.kvHeads * o.headDim;
    if (!Number.isInteger(T) || numel(k.shape) !== T * C || numel(v.shape) !== T * C || kCache.shape[1] !== C || vCache.shape[1] !== C || kCache.shape[0] !== vCache.shape[0]) {
      throw new InvalidArgumentError(`${op}: q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}, caches ${shapeStr(kCache.shape)} / ${shapeStr(vCache.shape)} do not fit rows of ${o.heads}/${o.kvHeads} heads of ${o.headDim}`);
    }
    if (o.seqLen) throw new InvalidArgumentError(`${op}: one sequence through a cache (no seqLen)`);
    checkScalar(op, this, o.posTensor);
    return T;
  }
  ropeWriteKV(q: Tensor, k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, o: RopeOpts & { kvHeads: number }): void {
    const T = this.ropeKVRows("ropeWriteKV", q, k, v, kCache, vCache, o);
    const inv = this.invFreq(o.invFreq);
    this.check(this.lib.gq_rope_kv(this.p(q), this.p(k), this.p(v), this.p(kCache), this.p(vCache), inv.ptr, T, o.heads, o.kvHeads, o.headDim, o.pos0, o.posTensor ? this.p(o.posTensor) : null, kCache.shape[0]!, o.scale), "rope_kv");
  }
  ropeAttention(q: Tensor, k: Tensor, v: Tensor, kCache: Tensor, vCache: Tensor, o: RopeOpts & { kvHeads: number }): Tensor {
    const T = this.ropeKVRows("ropeAttention", q, k, v, kCache, vCache, o);
    const inv = this.invFreq(o.invFreq);
    const y = this.out([T, o.heads * o.headDim]);
    this.check(this.lib.gq_rope_attention(this.p(y), this.p(q), this.p(k), this.p(v), this.p(kCache), this.p(vCache), inv.ptr, T, o.heads, o.kvHeads, o.headDim, o.pos0, o.posTensor ? this.p(o.posTensor) : null, kCache.shape[0]!, o.scale), "rope_attention");
    return y;
  }
  writeRows(dst: Tensor, src: Tensor, row0: number, rowTensor?: Tensor): void {
    const { C, n } = rowsFit(dst, src, row0);
    checkScalar("writeRows", this, rowTensor);
    // a kernel rather than cudaMemcpyAsync: a graph capture rejects copies from memory the graph allocates
    this.check(this.lib.gq_write_rows(this.p(dst), this.p(src), row0, rowTensor ? this.p(rowTensor) : null, dst.shape[0]!, n / C, C), "write_rows");
  }
  attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOpts): Tensor {
    const T = numel(q.shape) / (o.heads * o.headDim);
    const y = this.out([T, o.heads * o.headDim]);
    checkScalar("attention", this, o.posTensor);
    this.check(this.lib.gq_attention(this.p(y), this.p(q), this.p(k), this.p(v), T, o.pos0, o.posTensor ? this.p(o.posTensor) : null, k.shape[0]!, o.seqLen ?? 0, o.heads, o.kvHeads, o.headDim), "attention");
    return y;
  }
  siluMul(g: Tensor, u: Tensor): Tensor {
    const y = this.out(g.shape);
    this.check(this.lib.gq_silu_mul(this.p(y), this.p(g), this.p(u), numel(g.shape)), "silu_mul");
    return y;
  }
  add(a: Tensor, b: Tensor): Tensor {
    const n = sameSize("add", a, b);
    const y = this.out(a.shape);
    this.check(this.lib.gq_add(this.p(y), this.p(a), this.p(b), n), "add");
    return y;
  }
  logSoftmax(x: Tensor): Tensor {
    const V = x.shape[x.shape.length - 1]!;
    const y = this.out(x.shape);
    this.check(this.lib.gq_log_softmax(this.p(y), this.p(x), numel(x.shape) / V, V), "log_softmax");
    return y;
  }
  async nll(logits: Tensor, targets: Int32Array): Promise<Float64Array> {
    const { T, V } = nllDims(logits, targets);
    const tb = this.hostUpload(targets);
    const ob = this.alloc(T * 8);
    this.check(this.lib.gq_nll(ob.ptr, this.p(logits), tb.ptr, T, V), "nll");
    const out = new Float64Array(T);
    this.check(this.lib.gq_download(out, ob.ptr, T * 8), "download");
    this.release(tb);
    this.release(ob);
    return out;
  }

  // ---------------- GPTQ ----------------
  hessianAccumulate(h: Tensor, x: Tensor): void {
    const K = h.shape[0]!;
    this.check(this.lib.gq_hessian_accumulate(this.p(h), this.p(x), numel(x.shape) / K, K), "hessian_accumulate");
  }
  scale(t: Tensor, s: number): void {
    this.check(this.lib.gq_scale(this.p(t), s, numel(t.shape)), "scale");
  }
  async diagonal(h: Tensor): Promise<Float32Array> {
    const n = h.shape[0]!;
    const d = this.out([n]);
    this.check(this.lib.gq_diagonal(this.p(d), this.p(h), n), "diagonal");
    const r = (await this.download(d)) as Float32Array;
    this.free(d);
    return r;
  }
  gptqPrepare(w: Tensor, h: Tensor | null): Tensor {
    const [rows, cols] = w.shape as [number, number];
    const wt = this.out([cols, rows]);
    this.check(this.lib.gq_gptq_prepare(this.p(wt), this.p(w), h ? this.p(h) : null, rows, cols), "gptq_prepare");
    return wt;
  }
  quantParams(a: { wt: Tensor; c0: number; n: number; g: number; scales: Tensor; zeros: Tensor; cfg: QuantParamsCfg }): void {
    this.check(this.lib.gq_quant_params(this.p(a.wt), a.wt.shape[1]!, a.c0, a.n, a.g, this.p(a.scales), this.p(a.zeros), a.cfg.bits, a.cfg.sym ? 1 : 0, a.cfg.mse ? 1 : 0), "quant_params");
  }
  gptqPermute(wt: Tensor, h: Tensor, perm: Tensor): { wt: Tensor; h: Tensor } {
    const [cols, rows] = wt.shape as [number, number];
    const w2 = this.out([cols, rows]), h2 = this.out([cols, cols]);
    this.check(this.lib.gq_gptq_permute(this.p(w2), this.p(h2), this.p(wt), this.p(h), this.p(perm), rows, cols), "gptq_permute");
    return { wt: w2, h: h2 };
  }
  async choleskyInverseUpper(h: Tensor, damp: number): Promise<boolean> {
    const ok = new Int32Array(1);
    this.check(this.lib.gq_cholesky_inverse_upper(this.p(h), h.shape[0]!, damp, ok), "cholesky_inverse_upper");
    return ok[0] === 1;
  }
  gptqBlock(a: GptqBlockArgs): void {
    const [cols, rows] = a.wt.shape as [number, number];
    this.check(
      this.lib.gq_gptq_block(this.p(a.wt), this.p(a.hinv), this.p(a.codes), this.p(a.err), this.p(a.loss), this.p(a.scales), this.p(a.zeros), this.p(a.groupOfCol),
        rows, cols, a.i1, a.i2, a.groupSize, a.staticGroups ? 1 : 0, a.cfg.bits, a.cfg.sym ? 1 : 0, a.cfg.mse ? 1 : 0),
      "gptq_block",
    );
  }
  gptqUpdate(wt: Tensor, hinv: Tensor, err: Tensor, i1: number, i2: number): void {
    const [cols, rows] = wt.shape as [number, number];
    this.check(this.lib.gq_gptq_update(this.p(wt), this.p(hinv), this.p(err), rows, cols, i1, i2), "gptq_update");
  }
  gptqFinish(wtq: Tensor, codes: Tensor, perm: Tensor | null, bits: number): { w: Tensor; qweight: Tensor } {
    const [cols, rows] = wtq.shape as [number, number];
    const w = this.out([rows, cols]);
    const qweight = this.out([Math.ceil(cols / 32) * bits, rows], "i32");
    this.check(this.lib.gq_gptq_finish(this.p(w), this.p(qweight), this.p(wtq), this.p(codes), perm ? this.p(perm) : null, rows, cols, bits), "gptq_finish");
    return { w, qweight };
  }

  // ---------------- packed int matmul ----------------
  prepareQuantWeight(s: QuantWeightSpec): QuantWeight {
    const { inFeatures: K, outFeatures: N, bits, groups: G } = s;
    const qweight = this.hostUpload(s.qweight), scales = this.hostUpload(s.scales), gIdx = this.hostUpload(s.gIdx);
    const zeros = this.alloc(G * N * 4), qz = this.hostUpload(s.qzeros);
    this.check(this.lib.gq_qm_unpack_zeros(zeros.ptr, qz.ptr, G, N, bits, s.zeroOffset), "unpack_zeros");
    this.release(qz);
    const h: QHandle = { fast: false, groupSize: 0, qweight, scales, zeros, gIdx };
    // the fast 4-bit kernel needs K sorted into equal contiguous groups (act-order: a permutation of x)
    const order = bits === 4 && K % 16 === 0 && N % 64 === 0 ? contiguousGroups(s.gIdx, G) : null;
    if (order && order.gs % 16 === 0) {
      const { perm, gs, identity } = order;
      h.perm = identity ? undefined : this.permRef(perm);
      h.packed = this.alloc(K * N / 2);
      h.sz = this.alloc(G * N * 4);
      h.fast = true;
      h.groupSize = gs;
      this.check(this.lib.gq_qm_repack4(h.packed.ptr, h.sz.ptr, qweight.ptr, scales.ptr, zeros.ptr, h.perm?.ptr ?? null, K, N, G, gs), "repack4");
    }
    const { qweight: _a, qzeros: _b, scales: _c, gIdx: _d, ...spec } = s;
    return { backend: this, spec, handle: h };
  }
  /**
   * One act-order permutation on the device per distinct content (q/k/v, and gate/up, share theirs: the same
   * Hessian orders them), so that weights sharing x can share one GEMV launch (quantMatmulMany).
   */
  private perms = new Map<number | bigint, { host: Int32Array; buf: Buf; refs: number }[]>();
  private permRef(perm: Int32Array): Buf {
    const key = Bun.hash(new Uint8Array(perm.buffer, perm.byteOffset, perm.byteLength));
    const list = this.perms.get(key) ?? [];
    let e = list.find((x) => x.host.length === perm.length && x.host.every((v, i) => v === perm[i]));
    if (!e) {
      e = { host: Int32Array.from(perm), buf: this.hostUpload(perm), refs: 0 };
      list.push(e);
      this.perms.set(key, list);
    }
    e.refs++;
    return e.buf;
  }
  private permUnref(buf: Buf): void {
    for (const [key, list] of this.perms) {
      const i = list.findIndex((x) => x.buf === buf);
      if (i < 0) continue;
      if (--list[i]!.refs === 0) {
        this.release(buf);
        list.splice(i, 1);
        if (!list.length) this.perms.delete(key);
      }
      return;
    }
    this.release(buf);
  }
  /**
   * y_i = x @ dequant(W_i)ᵀ (+ b_i) for up to 3 weights sharing x (q/k/v, gate/up): with at most 4 rows, one
   * GEMV launch over all their columns; otherwise (or when the weights differ in group size, permutation or
   * kernel) one call each
   */
  quantMatmulMany(x: Tensor, ws: QuantWeight[], biases?: (Tensor | undefined)[]): Tensor[] {
    const g = ws.length >= 2 ? this.sharedGemv(x, ws, biases) : null;
    if (!g) return ws.map((w, i) => this.quantMatmul(x, w, biases?.[i]));
    this.check(this.lib.gq_qm_matmul4_many(...g.args), "quant_matmul_many (4-bit)");
    return g.ys;
  }
  /**
   * 1-3 weights sharing x as one GEMV launch: their outputs and the arguments of gq_qm_matmul4_many (count, the
   * host arrays of outputs, packed weights, scale/zeros and biases, widths, x, perm, M, K, group size); null
   * unless one launch can take them (fast layout, at most 4 rows, the same K, group size and permutation)
   */
  private sharedGemv(x: Tensor, ws: QuantWeight[], biases?: (Tensor | undefined)[]) {
    const hs = ws.map((w) => w.handle as QHandle);
    const K = ws[0]?.spec.inFeatures ?? 0;
    const M = numel(x.shape) / (K || 1);
    const fusable = ws.length >= 1 && ws.length <= 3 && M <= 4 && x.shape[x.shape.length - 1] === K &&
      hs.every((h, i) => h.fast && ws[i]!.spec.inFeatures === K && h.groupSize === hs[0]!.groupSize && h.perm === hs[0]!.perm);
    if (!fusable) return null;
    const ys = ws.map((w) => this.gemvOut([M, w.spec.outFeatures]));
    const ptrs = (f: (i: number) => Ptr | null) => BigUint64Array.from(ws, (_, i) => BigInt(f(i) ?? 0));
    const args = [ws.length, ptrs((i) => this.p(ys[i]!)), ptrs((i) => hs[i]!.packed!.ptr), ptrs((i) => hs[i]!.sz!.ptr),
      biases?.some(Boolean) ? ptrs((i) => (biases[i] ? this.p(biases[i]!) : null)) : null,
      Int32Array.from(ws, (w) => w.spec.outFeatures), this.p(x), hs[0]!.perm?.ptr ?? null, M, K, hs[0]!.groupSize] as const;
    return { ys, args };
  }
  /**
   * y = residual + x' @ dequant(W)ᵀ (+ bias), x' = x or siluMul(x, gate): one GEMV launch, at most 4 rows of a
   * 4-bit weight in the fast layout; else null. inPlace: y is the residual (a k split across blocks then adds
   * its sums with atomics instead of the last block adding partial sums; GPTQ_QV_ATOMIC=0: not)
   */
  quantMatmulAdd(x: Tensor, w: QuantWeight, residual: Tensor, o: { gate?: Tensor; bias?: Tensor; inPlace?: boolean } = {}): Tensor | null {
    const h = w.handle as QHandle;
    const { inFeatures: K, outFeatures: N } = w.spec;
    if (x.shape[x.shape.length - 1] !== K) throw new InvalidArgumentError(`quantMatmulAdd: x ${shapeStr(x.shape)} does not end in in_features ${K}`);
    const M = numel(x.shape) / K;
    if (o.gate) sameSize("quantMatmulAdd (gate)", x, o.gate);
    if (numel(residual.shape) !== M * N) throw new InvalidArgumentError(`quantMatmulAdd: residual ${shapeStr(residual.shape)} is not [${M}, ${N}]`);
    if (!h.fast || M > 4 || process.env.GPTQ_FUSE_NORM === "0") return null; // (GPTQ_FUSE_NORM=0: add and norm unfused, for A/B)
    const y = o.inPlace ? residual : this.out([M, N]);
    this.check(this.lib.gq_qm_matmul4_add(this.p(y), this.p(x), o.gate ? this.p(o.gate) : null, this.p(residual), h.packed!.ptr, h.sz!.ptr, h.perm?.ptr ?? null,
      o.bias ? this.p(o.bias) : null, M, K, N, h.groupSize), "quant_matmul_add (4-bit)");
    return y;
  }
  /** quantMatmulMany(rmsNorm(x, normW, eps), ws, biases): one GEMV launch (at most 4 rows), else null */
  quantMatmulManyNormed(x: Tensor, normW: Tensor, eps: number, ws: QuantWeight[], biases?: (Tensor | undefined)[]): Tensor[] | null {
    const K = ws[0]?.spec.inFeatures ?? 0;
    if (numel(normW.shape) !== K) return null;
    const g = this.sharedGemv(x, ws, biases);
    if (!g) return null;
    this.check(this.lib.gq_qm_matmul4_many_normed(...g.args, this.p(normW), eps), "quant_matmul_many_normed (4-bit)");
    return g.ys;
  }
  /** quantMatmul(siluMul(g, u), w, bias): with at most 4 rows one GEMV launch that gates its input as it stages it */
  quantMatmulGated(g: Tensor, u: Tensor, w: QuantWeight, bias?: Tensor): Tensor {
    const h = w.handle as QHandle;
    const { inFeatures: K, outFeatures: N } = w.spec;
    const n = sameSize("quantMatmulGated", g, u);
    if (g.shape[g.shape.length - 1] !== K) throw new InvalidArgumentError(`quantMatmulGated: g ${shapeStr(g.shape)} does not end in in_features ${K}`);
    const M = n / K;
    if (!h.fast || M > 4) {
      const act = this.siluMul(g, u);
      const y = this.quantMatmul(act, w, bias);
      this.free(act);
      return y;
    }
    const y = this.gemvOut([M, N]);
    this.check(this.lib.gq_qm_matmul4_gated(this.p(y), this.p(g), this.p(u), h.packed!.ptr, h.sz!.ptr, h.perm?.ptr ?? null, bias ? this.p(bias) : null, M, K, N, h.groupSize), "quant_matmul_gated (4-bit)");
    return y;
  }
  quantMatmul(x: Tensor, w: QuantWeight, bias?: Tensor): Tensor {
    const h = w.handle as QHandle;
    const { inFeatures: K, outFeatures: N, bits } = w.spec;
    if (x.shape[x.shape.length - 1] !== K) throw new InvalidArgumentError(`quantMatmul: x ${shapeStr(x.shape)} does not end in in_features ${K}`);
    const M = numel(x.shape) / K;
    const y = h.fast && M <= 4 ? this.gemvOut([M, N]) : this.out([M, N]);
    const b = bias ? this.p(bias) : null;
    // the GEMV (M <= 4) runs on sm_75 too; the tensor-core kernel for more rows needs compute capability 8.0
    if (h.fast && (M <= 4 || (this.tensorCoreMatmul && M <= 64))) {
      this.check(this.lib.gq_qm_matmul4(this.p(y), this.p(x), h.packed!.ptr, h.sz!.ptr, h.perm?.ptr ?? null, b, M, K, N, h.groupSize), "quant_matmul (4-bit)");
    } else if (M <= 8) {
      this.check(this.lib.gq_qm_matmul_generic(this.p(y), this.p(x), h.qweight.ptr, h.scales.ptr, h.zeros.ptr, h.gIdx.ptr, b, M, K, N, bits), "quant_matmul (generic)");
    } else {
      const wd = this.scratch(N * K * 4);
      this.check(this.lib.gq_qm_dequant(wd.ptr, h.qweight.ptr, h.scales.ptr, h.zeros.ptr, h.gIdx.ptr, K, N, bits), "dequant");
      this.check(this.lib.gq_gemm(0, 1, M, N, K, 1, this.p(x), K, wd.ptr, K, 0, this.p(y), N), "gemm");
      if (b) this.check(this.lib.gq_add_bias(this.p(y), b, M, N), "add_bias");
      this.release(wd);
    }
    return y;
  }
}

export interface CudaBackend {
  denseBaseline(M: number, N: number, K: number): { label: string; bytes: number; run(): void; free(): void };
}
CudaBackend.prototype.denseBaseline = function (this: CudaBackend, M: number, N: number, K: number) {
  // fp16 inputs and output, fp32 accumulate: what a dense fp16 model runs
  const alloc = (n: number) => {
    const out = new BigUint64Array(1);
    this.check(this.lib.gq_malloc(out, n), "malloc");
    return Number(out[0]) as Pointer;
  };
  const a = alloc(M * K * 2), b = alloc(N * K * 2), c = alloc(M * N * 2);
  for (const [p, n] of [[a, M * K * 2], [b, N * K * 2]] as const) this.check(this.lib.gq_memset(p, 0x3c, n), "memset"); // fp16 ~1.06, not zeros
  return {
    label: "cuBLAS fp16",
    bytes: (M * K + N * K + M * N) * 2,
    run: () => this.check(this.lib.gq_hgemm_nt(a, b, c, M, N, K), "hgemm"),
    free: () => { for (const p of [a, b, c]) this.lib.gq_free(p); },
  };
};

// ---------------- probe and factory ----------------
let probed: { result: ProbeResult; lib?: CudaLib; cublas?: string; cusolver?: string } | null = null;

function probeSync() {
  if (probed) return probed;
  const lib = openLibrary();
  if ("error" in lib) return (probed = { result: { name: "cuda", available: false, reason: lib.error } });
  const L = lib.lib;
  const n = new Int32Array(1);
  if (L.gq_device_count(n) !== 0 || n[0] === 0) {
    const why = n[0] === 0 ? "no CUDA device" : String(L.gq_last_error());
    return (probed = { result: { name: "cuda", available: false, reason: `no usable NVIDIA GPU (${why})`, details: { library: lib.path } } });
  }
  const name = Buffer.alloc(256), maj = new Int32Array(1), min = new Int32Array(1), mem = new BigInt64Array(1), sms = new Int32Array(1);
  if (L.gq_device_info(0, name, 256, maj, min, mem, sms) !== 0) return (probed = { result: { name: "cuda", available: false, reason: String(L.gq_last_error()) } });
  const device = name.toString("utf8", 0, name.indexOf(0));
  const cc = `${maj[0]}.${min[0]}`;
  const details: Record<string, unknown> = { computeCapability: cc, memoryGiB: +(Number(mem[0]) / 2 ** 30).toFixed(1), multiprocessors: sms[0], library: lib.path, devices: n[0] };
  if (maj[0]! * 10 + min[0]! < 75) return (probed = { result: { name: "cuda", available: false, device, reason: `compute capability ${cc} is below 7.5 (CUDA 13 builds for sm_75 and newer)`, details } });
  const cublas = findNvidiaLibrary("libcublas", "GPTQ_CUBLAS"), cusolver = findNvidiaLibrary("libcusolver", "GPTQ_CUSOLVER");
  if (!cublas.path || !cusolver.path) {
    const missing = !cublas.path ? "cuBLAS (libcublas.so)" : "cuSOLVER (libcusolver.so)";
    return (probed = { result: { name: "cuda", available: false, device, details, reason: `${missing} not found: install the CUDA toolkit or the nvidia-cublas/nvidia-cusolver wheels, or set GPTQ_CUBLAS / GPTQ_CUSOLVER (GPTQ_DEBUG=1 lists the paths tried)` } });
  }
  details.cublas = cublas.path;
  details.cusolver = cusolver.path;
  return (probed = { result: { name: "cuda", available: true, device, details }, lib: L, cublas: cublas.path, cusolver: cusolver.path });
}

let instance: CudaBackend | null = null;
export const cudaFactory: BackendFactory = {
  name: "cuda",
  async probe() {
    return probeSync().result;
  },
  async create() {
    if (instance) return instance;
    const p = probeSync();
    if (!p.result.available || !p.lib) throw new BackendUnavailableError(`backend "cuda" is unavailable: ${p.result.reason}`);
    const tf32 = process.env.GPTQ_CUDA_TF32 === "0" ? 0 : 1;
    if (p.lib.gq_init(0, cstr(p.cublas!), cstr(p.cusolver!), tf32) !== 0) throw new BackendUnavailableError(`cuda init failed: ${p.lib.gq_last_error()}`);
    return (instance = new CudaBackend(p.lib, p.result.device!, { ...p.result.details, tf32: Boolean(tf32) }));
  },
};
