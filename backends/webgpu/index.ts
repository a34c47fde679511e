/**
 * The WebGPU backend: Dawn through bun-webgpu, one WGSL file per op in shaders/. Work is recorded into one
 * command encoder (dispatches share a compute pass) and submitted when something is read back or after a
 * batch of passes. Freed buffers, uniforms and the spare buffers of unused bindings are recycled once the
 * submit that last used them is queued (creating buffers costs more than a small dispatch). Float32 throughout
 * (weights are widened at upload); every dispatch larger than 65535 workgroups is laid out in two dimensions.
 * Tensors above maxStorageBufferBindingSize are bound as windows (see maxBinding) and the work split to fit.
 */
import { createGPUInstance, globalConstructors } from "bun-webgpu";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { AttentionOpts, Backend, BackendFactory, GptqBlockArgs, HostArray, ProbeResult, QuantParamsCfg, QuantWeight, QuantWeightSpec, RopeOpts } from "../../src/backend.ts";
import type { DType } from "../../src/dtype.ts";
import { bf16ToF32Array, f16ToF32Array } from "../../src/dtype.ts";
import type { Tensor } from "../../src/tensor.ts";
import { numel, shapeStr } from "../../src/tensor.ts";
import { BackendUnavailableError, InvalidArgumentError, NativeError, UnsupportedOpError } from "../../src/errors.ts";
import { pinDevice, pinned } from "./pin.ts";
import { checkIds, deviceIds, matmulDims, nllDims, rowsFit, sameSize } from "../../src/validate.ts";
import { contiguousGroups, packQweight, unpackQweight } from "../../src/gptq/pack.ts";

const { GPUBufferUsage: BU, GPUMapMode } = globalConstructors;
const STORAGE = BU.STORAGE | BU.COPY_SRC | BU.COPY_DST;
const SHADERS = process.env.GPTQ_SHADERS ?? join(import.meta.dir, "..", "..", "shaders");
/** GPTQ_WEBGPU_GEMM: "simple" (16 x 16 tiles) or "tiled" (64 x 64 register tiles) for every dense GEMM; unset: by shape */
function gemmForm(): "auto" | "simple" | "tiled" {
  const v = process.env.GPTQ_WEBGPU_GEMM;
  if (v === undefined || v === "") return "auto";
  if (v !== "simple" && v !== "tiled") throw new InvalidArgumentError(`GPTQ_WEBGPU_GEMM=${v}: use "simple" or "tiled" (or leave it unset)`);
  return v;
}
/** the shaders whose workgroup reductions come from reduce.wgsl (prepended to them) */
const REDUCES = new Set(["rms_norm", "log_softmax", "attention"]);
const POISON = () => Boolean(process.env.GPTQ_POISON);
/** recycled storage buffers: each at most 256 MiB, 1 GiB in all */
const POOL_MAX_BUFFER = 256 * 2 ** 20, POOL_MAX_BYTES = 2 ** 30;

interface WBuf { buf: GPUBuffer; bytes: number; freed: boolean }
class WebGpuTensor implements Tensor {
  constructor(readonly backend: Backend, readonly shape: readonly number[], readonly dtype: DType, readonly handle: WBuf) {}
}
interface QHandle {
  qweight: WBuf; zeros: WBuf; scales: WBuf; gIdx: WBuf;
  /** the 4-bit path: rows sorted into contiguous groups of gs (qweight4 = qweight, or its row-permuted copy) */
  fast4?: { gs: number; qweight4: WBuf; perm: WBuf | null };
}
/** add a buffer to a free list keyed by size */
function pushBySize(pool: Map<number, GPUBuffer[]>, b: GPUBuffer): void {
  const list = pool.get(b.size);
  if (list) list.push(b);
  else pool.set(b.size, [b]);
}
/**
 * WGSL has no conditional compilation: lines between `//#if <feature>` and `//#endif` (optionally `//#else`)
 * are kept only when the feature is on (`f16`, `subgroups`), and then its `enable` directive goes first.
 */
export function specialize(src: string, on: { f16: boolean; subgroups?: boolean }): string {
  const out: string[] = [];
  let keep = true, inside = false;
  for (const line of src.split("\n")) {
    const t = line.trim();
    const m = /^\/\/#if (\w+)$/.exec(t);
    if (m) {
      if (inside) throw new Error("specialize: nested //#if");
      inside = true;
      keep = Boolean((on as Record<string, boolean>)[m[1]!]);
      continue;
    }
    if (t === "//#else" && inside) { keep = !keep; continue; }
    if (t === "//#endif" && inside) { inside = false; keep = true; continue; }
    if (keep) out.push(line);
  }
  if (inside) throw new Error("specialize: //#if without //#endif");
  const enable = (["f16", "subgroups"] as const).filter((f) => on[f] && new RegExp(`^\\s*//#if ${f}\\s*$`, "m").test(src));
  return enable.map((f) => `enable ${f};\n`).join("") + out.join("\n");
}

/** a uniform value: integers are u32, {f} is f32 */
type Param = number | { f: number };
/** what a dispatch binds: a whole buffer, or a window of one (byte offset, aligned; byte size) */
class BufWindow {
  constructor(readonly buf: GPUBuffer, readonly off: number, readonly size: number) {}
}
type Bind = GPUBuffer | BufWindow;
const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
/** a binding limit tests may impose (limitBinding, GPTQ_WEBGPU_MAX_BINDING): whole bytes, a multiple of 256, >= 1 KiB */
const bindingLimitOk = (v: number) => Number.isInteger(v) && v >= 1024 && v % 256 === 0;
const MiB = (b: number) => (b < 2 ** 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

/**
 * GPTQ_WEBGPU_QV_CQ: the streaming GEMVs' column quads per workgroup, for every weight ("8") or per shape
 * ("4096x4096:4,11008x4096:8", K x N; shapes not listed keep the default): the value for K x N, or undefined
 */
export function columnQuadsKnob(v: string | undefined, K: number, N: number): number | undefined {
  if (!v) return undefined;
  const ok = (c: string) => ["1", "2", "4", "8", "16", "32"].includes(c);
  const bad = (why: string) => new InvalidArgumentError(`GPTQ_WEBGPU_QV_CQ=${v}: ${why}; use one count for every weight (e.g. 8) or KxN:count pairs (e.g. 4096x4096:4,11008x4096:8)`);
  if (!v.includes(":")) {
    if (!ok(v)) throw bad("column quads per workgroup must be 1, 2, 4, 8, 16 or 32");
    return Number(v);
  }
  let hit: number | undefined;
  for (const item of v.split(",")) {
    const m = /^(\d+)x(\d+):(\d+)$/.exec(item.trim());
    if (!m) throw bad(`"${item}" is not KxN:count`);
    if (!ok(m[3]!)) throw bad(`"${item}": column quads per workgroup must be 1, 2, 4, 8, 16 or 32`);
    if (Number(m[1]) === K && Number(m[2]) === N) hit = Number(m[3]);
  }
  return hit;
}

export class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  private pipelines = new Map<string, GPUComputePipeline>();
  private enc: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private passes = 0;
  /** set while gpuTimeUs records: every dispatch must land in its one timed pass */
  private timing = false;
  /** used by the recorded (unsubmitted) work, recycled at the next submit */
  private freedNow: GPUBuffer[] = [];
  /** ready for reuse: storage buffers by size (bounded) */
  private pool = new Map<number, GPUBuffer[]>();
  private poolBytes = 0;
  /**
   * Uniforms: one slot per dispatch in a ring (one buffer, bound with a dynamic offset), written on the host
   * and uploaded once per submit; bind groups are cached by the buffers they bind (creating one cost about
   * 10 of the 14 µs of host time per dispatch on lavapipe). Unused bindings get a fixed 16-byte buffer per
   * binding index (one shared dummy would alias a writable binding). Dawn puts a barrier before every dispatch
   * that writes a buffer used before (its Vulkan backend skips it only for a buffer's first use), so each
   * dispatch with a writable binding, used or not, waits for the work before it; stand-ins taken in turn
   * could not avoid that (each had been written before too; measured on 2026-12-07: no change), nor could
   * recycled outputs.
   */
  private readonly ring: { buf: GPUBuffer; host: ArrayBuffer; view: DataView; slot: number; slots: number; used: number };
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private dummies: GPUBuffer[] = [];
  private lost: string | null = null;
  private error: string | null = null;
  private readonly dummy: GPUBuffer;
  private readonly invFreq = new WeakMap<Float32Array, WBuf>();
  /**
   * A tensor may be as large as maxBufferSize; a dispatch binds at most maxStorageBufferBindingSize of a
   * buffer. Ops on larger tensors bind windows and split their work (gemm by tiles of M, N and K; row-wise
   * and element-wise ops by rows); ops that do not split refuse such tensors by name. GPTQ_WEBGPU_MAX_BINDING
   * (bytes) or limitBinding() lowers the limit, so that tests exercise the splitting on small tensors.
   */
  private maxBinding: number;
  readonly maxBuffer: number;
  private readonly align: number;
  /** activations are chunked (calibration) to stay within one binding */
  get maxTensorBytes(): number {
    return Math.min(this.maxBinding, this.maxBuffer);
  }
  get bindingLimit(): number {
    return this.maxBinding;
  }
  /** tests: pretend the adapter binds at most `bytes` (a multiple of 256) of a buffer; null restores it */
  limitBinding(bytes: number | null): void {
    const dev = this.dev.limits.maxStorageBufferBindingSize;
    if (bytes !== null && !bindingLimitOk(bytes)) throw new InvalidArgumentError(`limitBinding: bytes must be a whole number, a multiple of 256, at least 1024 (got ${bytes})`);
    this.maxBinding = Math.min(dev, bytes ?? dev);
  }

  constructor(private readonly dev: GPUDevice, readonly device: string, readonly info: Record<string, unknown>) {
    this.maxBinding = dev.limits.maxStorageBufferBindingSize;
    this.maxBuffer = dev.limits.maxBufferSize;
    this.align = dev.limits.minStorageBufferOffsetAlignment;
    const envLimit = process.env.GPTQ_WEBGPU_MAX_BINDING;
    if (envLimit) {
      const v = Number(envLimit);
      if (!bindingLimitOk(v)) throw new InvalidArgumentError(`GPTQ_WEBGPU_MAX_BINDING=${envLimit}: must be a whole number of bytes, a multiple of 256, at least 1024`);
      this.limitBinding(v);
    }
    this.dummy = dev.createBuffer({ size: 16, usage: STORAGE });
    const slot = Math.max(256, dev.limits.minUniformBufferOffsetAlignment), slots = 4096;
    const host = new ArrayBuffer(slot * slots);
    this.ring = { buf: dev.createBuffer({ size: slot * slots, usage: BU.UNIFORM | BU.COPY_DST }), host, view: new DataView(host), slot, slots, used: 0 };
    this.features.f16 = dev.features.has("shader-f16") && process.env.GPTQ_WEBGPU_F16 !== "0";
    this.features.dot4 = info.dot4 === true && process.env.GPTQ_WEBGPU_DOT4 !== "0";
    this.features.subgroups = dev.features.has("subgroups") && process.env.GPTQ_WEBGPU_SUBGROUPS !== "0";
    dev.lost.then((i) => { this.lost = `${i.reason}: ${i.message}`; });
    (dev as unknown as { onuncapturederror: ((e: { error: { message: string } }) => void) | null }).onuncapturederror = (e) => { this.error ??= e.error.message; };
  }

  // ---------------- plumbing ----------------
  private checkAlive(): void {
    if (this.lost) throw new NativeError(`WebGPU device lost (${this.lost}); restart the program`);
    if (this.error) {
      const e = this.error;
      this.error = null;
      throw new NativeError(`WebGPU error: ${e}`);
    }
  }
  private layouts = new Map<string, GPUBindGroupLayout>();
  /**
   * Optional features the shaders use: `f16` (shader-f16: q4_gemv_h, the packed matmul in f16 arithmetic),
   * `dot4` (WGSL's packed_4x8_integer_dot_product: dp4_gemv, the one-row packed matmul in integers) and
   * `subgroups` (the workgroup reductions of reduce.wgsl: RMSNorm, log-softmax, attention). On where the
   * implementation has them; GPTQ_WEBGPU_F16=0, GPTQ_WEBGPU_DOT4=0, GPTQ_WEBGPU_SUBGROUPS=0 or
   * useShaderFeatures turns them off. `sgAllSlots` (tests): the subgroup reductions read every slot, their path
   * for subgroup layouts other than consecutive runs.
   */
  private features = { f16: false, dot4: false, subgroups: false, sgAllSlots: false };
  /** tests and benchmarks: run the fallbacks (or the feature paths again, where the device has them) */
  useShaderFeatures(f: { f16?: boolean; dot4?: boolean; subgroups?: boolean; sgAllSlots?: boolean }): void {
    if (f.f16 !== undefined) this.features.f16 = f.f16 && this.dev.features.has("shader-f16");
    if (f.dot4 !== undefined) this.features.dot4 = f.dot4 && this.info.dot4 === true;
    if (f.subgroups !== undefined) this.features.subgroups = f.subgroups && this.dev.features.has("subgroups");
    if (f.sgAllSlots !== undefined) this.features.sgAllSlots = f.sgAllSlots;
  }
  get shaderFeatures(): { f16: boolean; dot4: boolean; subgroups: boolean; sgAllSlots: boolean } {
    return { ...this.features };
  }
  private source(name: string): string {
    // gptq_block and quant_params share quant.py's find_params (shaders/quantizer.wgsl); it reads `wt`,
    // which the file it is prepended to declares (WGSL allows use before declaration); the shaders that reduce
    // over a workgroup share reduce.wgsl
    const prefix = name === "gptq_block" || name === "quant_params" ? "quantizer" : REDUCES.has(name) ? "reduce" : null;
    const pre = prefix ? readFileSync(join(SHADERS, `${prefix}.wgsl`), "utf8") + "\n" : "";
    return specialize(pre + readFileSync(join(SHADERS, `${name}.wgsl`), "utf8"), this.features);
  }
  /** one explicit layout per shader file, from its declarations, shared by all its entry points */
  private layout(name: string): GPUBindGroupLayout {
    let l = this.layouts.get(name);
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      for (const m of this.source(name).matchAll(/@binding\((\d+)\)\s+var<(\w+)(?:,\s*(\w+))?>/g)) {
        const type = m[2] === "uniform" ? "uniform" : m[3] === "read_write" ? "storage" : "read-only-storage";
        entries.push({ binding: Number(m[1]), visibility: globalConstructors.GPUShaderStage.COMPUTE, buffer: { type, hasDynamicOffset: type === "uniform" } });
      }
      l = this.dev.createBindGroupLayout({ entries, label: name });
      this.layouts.set(name, l);
    }
    return l;
  }
  /** constants: values of the shader's `override` declarations (one pipeline per set) */
  private pipeline(name: string, entry = "main", constants?: Record<string, number>): GPUComputePipeline {
    if (this.features.sgAllSlots && this.features.subgroups && REDUCES.has(name)) constants = { ...constants, SG_ALL_SLOTS: 1 };
    const key = `${name}:${entry}:${this.features.f16 ? "f16" : ""}${this.features.subgroups ? "sg" : ""}${constants ? ":" + JSON.stringify(constants) : ""}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.dev.createShaderModule({ code: this.source(name), label: name });
      const layout = this.dev.createPipelineLayout({ bindGroupLayouts: [this.layout(name)] });
      p = this.dev.createComputePipeline({ layout, compute: { module, entryPoint: entry, constants }, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }
  private encoder(): GPUCommandEncoder {
    return (this.enc ??= this.dev.createCommandEncoder());
  }
  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }
  /** submit what is recorded */
  flush(): void {
    this.endPass();
    if (this.enc) {
      // the uniforms of everything recorded, uploaded ahead of it (queue order); the ring then starts over
      if (this.ring.used) this.dev.queue.writeBuffer(this.ring.buf, 0, this.ring.host, 0, this.ring.used * this.ring.slot);
      this.ring.used = 0;
      this.dev.queue.submit([this.enc.finish()]);
      this.enc = null;
      this.passes = 0;
      for (const b of this.freedNow) {
        if (b.size <= POOL_MAX_BUFFER && this.poolBytes + b.size <= POOL_MAX_BYTES) {
          pushBySize(this.pool, b);
          this.poolBytes += b.size;
        } else {
          b.destroy();
          this.bindGroups.clear(); // some may bind it
        }
      }
      this.freedNow = [];
    }
    this.checkAlive();
  }
  /** workgroup counts for n items of wg threads: [x, y] within maxComputeWorkgroupsPerDimension, and x·wg */
  private grid(n: number, wg: number): { groups: [number, number]; nx: number } {
    const total = Math.max(1, Math.ceil(n / wg));
    const lim = this.dev.limits.maxComputeWorkgroupsPerDimension;
    const x = Math.min(total, lim);
    return { groups: [x, Math.ceil(total / x)], nx: x * wg };
  }
  /** this dispatch's uniform slot in the ring (its byte offset); a full ring is submitted first */
  private uniform(params: Param[]): number {
    if (params.length * 4 > this.ring.slot) throw new InvalidArgumentError(`webgpu: ${params.length} uniform values exceed a ${this.ring.slot}-byte slot`);
    if (this.ring.used === this.ring.slots) {
      if (this.timing) throw new UnsupportedOpError("webgpu gpuTimeUs: the timed work needs more dispatches than one submit holds");
      this.flush();
    }
    const off = this.ring.used++ * this.ring.slot, dv = this.ring.view;
    params.forEach((v, i) => (typeof v === "number" ? dv.setUint32(off + i * 4, v >>> 0, true) : dv.setFloat32(off + i * 4, v.f, true)));
    return off;
  }
  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }
  /** the 16-byte stand-in for an unused binding (see the ring's comment above) */
  private dummyFor(binding: number): GPUBuffer {
    return (this.dummies[binding] ??= this.dev.createBuffer({ size: 16, usage: STORAGE }));
  }
  private bindGroup(name: string, bufs: Bind[]): GPUBindGroup {
    const real = bufs.map((b, binding) => {
      if (b === this.dummy) return { buf: this.dummyFor(binding), off: 0, size: 16 };
      if (b instanceof BufWindow) return b;
      if (b.size > this.maxBinding) throw new UnsupportedOpError(`webgpu ${name}: a tensor of ${MiB(b.size)} exceeds this adapter's storage binding limit (${MiB(this.maxBinding)}) and this op does not split its tensors; use the cuda or cpu backend for tensors this large`);
      return { buf: b, off: 0, size: b.size };
    });
    const key = `${name}:${real.map((b) => `${this.bufferId(b.buf)}@${b.off}+${b.size}`).join(",")}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      const entries: GPUBindGroupEntry[] = real.map((b, binding) => ({ binding, resource: { buffer: b.buf, offset: b.off, size: b.size } }));
      entries.push({ binding: bufs.length, resource: { buffer: this.ring.buf, offset: 0, size: this.ring.slot } });
      bg = this.dev.createBindGroup({ layout: this.layout(name), entries });
      if (this.bindGroups.size >= 8192) this.bindGroups.clear();
      this.bindGroups.set(key, bg);
    }
    return bg;
  }
  private run(name: string, entry: string, bufs: Bind[], params: Param[], groups: [number, number?, number?], constants?: Record<string, number>): void {
    this.checkAlive();
    const pipe = this.pipeline(name, entry, constants);
    const off = this.uniform(params); // may submit (a full ring): before the pass below is opened
    const bg = this.bindGroup(name, bufs);
    this.pass ??= pinned(() => this.encoder().beginComputePass());
    this.pass.setPipeline(pipe);
    this.pass.setBindGroup(0, bg, [off]);
    this.pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
    if (++this.passes >= 256 && !this.timing) this.flush();
  }
  /**
   * A window of `buf` from element `elem` on, `elems` long: the binding starts at the aligned byte offset at
   * or below it, so the shader finds element `elem` at index `skip`.
   */
  private win(buf: GPUBuffer, elem: number, elems: number): { bind: Bind; skip: number } {
    if (elem === 0 && buf.size <= this.maxBinding) return { bind: buf, skip: 0 }; // the same to the shader, and one bind group
    const off = Math.floor((elem * 4) / this.align) * this.align, skip = elem - off / 4;
    const size = Math.min(buf.size - off, (skip + elems) * 4);
    if (size > this.maxBinding) throw new UnsupportedOpError(`webgpu: a window of ${MiB(size)} exceeds the storage binding limit (${MiB(this.maxBinding)})`);
    return off === 0 && size === buf.size ? { bind: buf, skip } : { bind: new BufWindow(buf, off, size), skip };
  }
  /**
   * For shaders that take a window's base: the whole buffer (base 0) when it fits one binding, else a window
   * holding elements [first, first + elems), whose first element has index `base` in the tensor.
   */
  private view(buf: GPUBuffer, first: number, elems: number): { bind: Bind; base: number } {
    if (buf.size <= this.maxBinding) return { bind: buf, base: 0 };
    const w = this.win(buf, first, elems);
    return { bind: w.bind, base: first - w.skip };
  }
  /**
   * Spans [u0, u1) over n units (rows, elements) such that a window of each tensor (unit sizes in bytes)
   * fits one binding and starts aligned (so shaders index windows from 0). One span when all fit.
   */
  private spans(n: number, unitBytes: number[]): [number, number][] {
    const widest = Math.max(...unitBytes);
    if (n * widest <= this.maxBinding - this.align) return [[0, n]];
    let step = 1;
    for (const u of unitBytes) { const a = this.align / gcd(u, this.align); step = (step * a) / gcd(step, a); }
    const per = Math.floor((this.maxBinding - this.align) / widest / step) * step; // room for an unaligned view's start
    if (per === 0) throw new UnsupportedOpError(`webgpu: rows of ${MiB(widest)} (${step} at a time for alignment) exceed the storage binding limit (${MiB(this.maxBinding)})`);
    const out: [number, number][] = [];
    for (let u0 = 0; u0 < n; u0 += per) out.push([u0, Math.min(n, u0 + per)]);
    return out;
  }
  /** a storage buffer: zero-filled, or with `overwrite` (the caller writes all of it) any contents */
  private alloc(bytes: number, what = "tensor", overwrite = false): WBuf {
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    if (size > this.maxBuffer) {
      throw new UnsupportedOpError(`webgpu: a ${what} of ${MiB(bytes)} exceeds this adapter's largest buffer (maxBufferSize ${MiB(this.maxBuffer)}); use smaller batches (--nsamples/--seqlen) or the cuda/cpu backend`);
    }
    const reused = this.pool.get(size)?.pop();
    if (!reused) return { buf: this.dev.createBuffer({ size, usage: STORAGE }), bytes, freed: false }; // created zeroed
    this.poolBytes -= size;
    if (!overwrite) {
      this.endPass();
      this.encoder().clearBuffer(reused);
    }
    return { buf: reused, bytes, freed: false };
  }
  private wrap(shape: readonly number[], dtype: DType, b: WBuf): Tensor {
    return new WebGpuTensor(this, [...shape], dtype, b);
  }
  private b(t: Tensor): GPUBuffer {
    const h = t.handle as WBuf;
    if (h.freed) throw new InvalidArgumentError(`webgpu: tensor ${shapeStr(t.shape)} used after free`);
    return h.buf;
  }
  private hostBuf(data: ArrayBufferView, what = "tensor"): WBuf {
    const w = this.alloc(data.byteLength, what, true);
    if (data.byteLength) this.dev.queue.writeBuffer(w.buf, 0, data.buffer, data.byteOffset, Math.ceil(data.byteLength / 4) * 4 === data.byteLength ? data.byteLength : data.byteLength);
    return w;
  }
  private out(shape: readonly number[], dtype: DType = "f32"): Tensor {
    return this.empty(shape, dtype);
  }
  private release(w: WBuf): void {
    if (w.freed) return;
    w.freed = true;
    this.freedNow.push(w.buf); // recycled after the next submit, which may still use it
  }

  // ---------------- memory ----------------
  upload(data: HostArray, shape: readonly number[], dtype: DType): Tensor {
    const n = numel(shape);
    if (data.length !== n) throw new InvalidArgumentError(`upload: data has ${data.length} elements, shape ${shapeStr(shape)} needs ${n}`);
    let host: ArrayBufferView;
    if (dtype === "f16") host = f16ToF32Array(data as Uint16Array);
    else if (dtype === "bf16") host = bf16ToF32Array(data as Uint16Array);
    else if (dtype === "u8") host = Uint32Array.from(data as Uint8Array);
    else host = data;
    return this.wrap(shape, dtype, this.hostBuf(host));
  }
  zeros(shape: readonly number[], dtype: DType): Tensor {
    return this.wrap(shape, dtype, this.alloc(numel(shape) * 4));
  }
  empty(shape: readonly number[], dtype: DType): Tensor {
    const b = this.alloc(numel(shape) * 4, "tensor", true);
    if (POISON() && numel(shape)) this.dev.queue.writeBuffer(b.buf, 0, new Uint32Array(numel(shape)).fill(0xffffffff));
    return this.wrap(shape, dtype, b);
  }
  private async readBuf(buf: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.endPass();
    const rd = this.dev.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: BU.MAP_READ | BU.COPY_DST });
    this.encoder().copyBufferToBuffer(buf, 0, rd, 0, Math.ceil(bytes / 4) * 4);
    this.flush();
    await rd.mapAsync(GPUMapMode.READ);
    const out = rd.getMappedRange().slice(0, bytes);
    rd.unmap();
    rd.destroy();
    this.checkAlive();
    return out;
  }
  async download(t: Tensor): Promise<Float32Array | Int32Array | Uint8Array> {
    const n = numel(t.shape);
    if (n === 0) return t.dtype === "i32" ? new Int32Array(0) : t.dtype === "u8" ? new Uint8Array(0) : new Float32Array(0);
    const raw = await this.readBuf(this.b(t), n * 4);
    if (t.dtype === "i32") return new Int32Array(raw);
    if (t.dtype === "u8") return Uint8Array.from(new Uint32Array(raw));
    return new Float32Array(raw);
  }
  copy(t: Tensor): Tensor {
    const h = t.handle as WBuf;
    const w = this.alloc(h.bytes, "tensor", true);
    this.copyInto(this.b(t), w.buf, h.bytes);
    return this.wrap(t.shape, t.dtype, w);
  }
  /** bytes from src to dst: the vec4 copy shader when whole 16-byte units, else copyBufferToBuffer */
  private copyInto(src: GPUBuffer, dst: GPUBuffer, bytes: number): void {
    if (bytes % 16 === 0 && bytes > 0) {
      for (const [u0, u1] of this.spans(bytes / 16, [16])) {
        const g = this.grid(u1 - u0, 256);
        this.run("copy", "main", [this.win(src, u0 * 4, (u1 - u0) * 4).bind, this.win(dst, u0 * 4, (u1 - u0) * 4).bind], [u1 - u0, g.nx], g.groups);
      }
    } else {
      this.endPass();
      this.encoder().copyBufferToBuffer(src, 0, dst, 0, Math.ceil(bytes / 4) * 4);
    }
  }
  free(t: Tensor | QuantWeight): void {
    if (t instanceof WebGpuTensor) this.release(t.handle);
    else if ((t as QuantWeight)?.handle) {
      const h = (t as QuantWeight).handle as QHandle;
      for (const w of [h.qweight, h.zeros, h.scales, h.gIdx]) this.release(w);
      if (h.fast4 && h.fast4.qweight4 !== h.qweight) this.release(h.fast4.qweight4);
      if (h.fast4?.perm) this.release(h.fast4.perm);
    }
  }
  async sync(): Promise<void> {
    this.flush();
    await this.dev.queue.onSubmittedWorkDone();
    this.checkAlive();
  }

  // ---------------- decoder primitives ----------------
  /**
   * C = alpha·A·B + beta·C (+ bias) over strided views (shaders/matmul.wgsl). Operands above the binding limit
   * are bound as windows: the product is cut into tiles of M, N and K whose elements of A, B and C each fit
   * one binding (K tiles after the first accumulate, beta = 1, and add no bias). sym: the product is symmetric
   * (xᵀx into a Hessian, L21·L21ᵀ): where it fits one binding the tiled form computes one triangle of tiles and
   * mirrors each.
   */
  gemm(o: { M: number; N: number; K: number; A: GPUBuffer; aOff?: number; sam: number; sak: number; B: GPUBuffer; bOff?: number; sbk: number; sbn: number; C: GPUBuffer; cOff?: number; ldc: number; alpha?: number; beta?: number; bias?: GPUBuffer; biasOff?: number; sym?: boolean }): void {
    const { M, N, K } = o, aOff = o.aOff ?? 0, bOff = o.bOff ?? 0, cOff = o.cOff ?? 0, biasOff = o.biasOff ?? 0;
    if (M === 0 || N === 0) return;
    // the shader's entry: 64 x 64 register tiles where both M and N are at least 32, 16 x 16 tiles below
    // (GPTQ_WEBGPU_GEMM=simple|tiled forces one, for A/B runs)
    const form = gemmForm();
    const entry = (mm: number, nn: number) => (form === "simple" ? "main" : form === "tiled" || (mm >= 32 && nn >= 32) ? "tiled" : "main");
    const groups = (mm: number, nn: number): [number, number] => (entry(mm, nn) === "tiled" ? [Math.ceil(nn / 64), Math.ceil(mm / 64)] : [Math.ceil(nn / 16), Math.ceil(mm / 16)]);
    const dispatch = (m0: number, n0: number, k0: number, tm: number, tn: number, tk: number) => {
      const mm = Math.min(tm, M - m0), nn = Math.min(tn, N - n0), kk = Math.min(tk, K - k0);
      // the elements a tile touches: from its first to its last (strides are non-negative)
      const a = this.win(o.A, aOff + m0 * o.sam + k0 * o.sak, (mm - 1) * o.sam + Math.max(kk - 1, 0) * o.sak + 1);
      const b = this.win(o.B, bOff + k0 * o.sbk + n0 * o.sbn, Math.max(kk - 1, 0) * o.sbk + (nn - 1) * o.sbn + 1);
      const c = this.win(o.C, cOff + m0 * o.ldc + n0, (mm - 1) * o.ldc + nn);
      const bias = o.bias && k0 === 0 ? this.win(o.bias, biasOff + n0, nn) : null;
      this.run("matmul", entry(mm, nn), [a.bind, b.bind, c.bind, bias?.bind ?? this.dummy],
        [mm, nn, kk, a.skip, o.sam, o.sak, b.skip, o.sbk, o.sbn, c.skip, o.ldc, { f: o.alpha ?? 1 }, { f: k0 === 0 ? (o.beta ?? 0) : 1 }, bias ? 1 : 0, bias?.skip ?? 0, 0],
        groups(mm, nn));
    };
    const lim = this.maxBinding - this.align; // room for a window's unaligned start
    const spanA = (tm: number, tk: number) => 4 * ((tm - 1) * o.sam + Math.max(tk - 1, 0) * o.sak + 1);
    const spanB = (tk: number, tn: number) => 4 * (Math.max(tk - 1, 0) * o.sbk + (tn - 1) * o.sbn + 1);
    const spanC = (tm: number, tn: number) => 4 * ((tm - 1) * o.ldc + tn);
    const fits = (b: GPUBuffer | undefined) => !b || b.size <= this.maxBinding;
    if (fits(o.A) && fits(o.B) && fits(o.C) && fits(o.bias)) {
      // whole buffers, offsets as given (the bind group is then shared by every call on these tensors)
      this.run("matmul", entry(M, N), [o.A, o.B, o.C, o.bias ?? this.dummy],
        [M, N, K, aOff, o.sam, o.sak, bOff, o.sbk, o.sbn, cOff, o.ldc, { f: o.alpha ?? 1 }, { f: o.beta ?? 0 }, o.bias ? 1 : 0, biasOff, o.sym && !o.bias && M === N && entry(M, N) === "tiled" ? 1 : 0], groups(M, N));
      return;
    }
    // halve the dimension that contributes most to an operand that does not fit, until all do
    let tm = M, tn = N, tk = K;
    // about half, rounded down to whole tiles of `unit` (the shader's 16 x 16 tiles)
    const half = (v: number, unit: number) => { const h = Math.ceil(v / 2); return h >= unit ? Math.floor(h / unit) * unit : h; };
    for (let guard = 0; ; guard++) {
      if (guard > 200) throw new UnsupportedOpError(`webgpu gemm: no tiling of ${M}x${N}x${K} fits the storage binding limit (${MiB(this.maxBinding)})`);
      if (spanA(tm, tk) > lim) {
        if (tm > 1 && ((tm - 1) * o.sam >= (tk - 1) * o.sak || tk === 1)) tm = half(tm, 16);
        else if (tk > 1) tk = half(tk, 16);
        else throw new UnsupportedOpError(`webgpu gemm: one element row of A exceeds the storage binding limit`);
      } else if (spanB(tk, tn) > lim) {
        if (tn > 1 && ((tn - 1) * o.sbn >= (tk - 1) * o.sbk || tk === 1)) tn = half(tn, 16);
        else if (tk > 1) tk = half(tk, 16);
        else throw new UnsupportedOpError(`webgpu gemm: one element row of B exceeds the storage binding limit`);
      } else if (spanC(tm, tn) > lim) {
        if (tm > 1 && ((tm - 1) * o.ldc >= tn || tn === 1)) tm = half(tm, 16);
        else if (tn > 1) tn = half(tn, 16);
        else throw new UnsupportedOpError(`webgpu gemm: one element of C exceeds the storage binding limit`);
      } else break;
    }
    for (let k0 = 0; k0 < Math.max(K, 1); k0 += Math.max(tk, 1))
      for (let m0 = 0; m0 < M; m0 += tm)
        for (let n0 = 0; n0 < N; n0 += tn) dispatch(m0, n0, k0, tm, tn, tk);
  }
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const { M, N, K } = matmulDims(x, w);
    const y = this.out([M, N]);
    this.gemm({ M, N, K, A: this.b(x), sam: K, sak: 1, B: this.b(w), sbk: 1, sbn: K, C: this.b(y), ldc: N, bias: bias ? this.b(bias) : undefined });
    return y;
  }
  embedding(ids: Int32Array | Tensor, table: Tensor): Tensor {
    const [V, H] = table.shape as [number, number];
    const host = ids instanceof Int32Array;
    const T = host ? ids.length : deviceIds(this, ids);
    if (host) checkIds(ids, V);
    const idb = host ? this.hostBuf(ids) : null;
    const y = this.out([T, H]);
    // a table or output above the binding limit: windows of the output's rows, and in each one pass per window
    // of the table's rows that writes the outputs whose ids fall in it
    for (const [t0, t1] of this.spans(T, [H * 4])) {
      const g = this.grid((t1 - t0) * H, 256), out = this.win(this.b(y), t0 * H, (t1 - t0) * H).bind;
      for (const [v0, v1] of this.spans(V, [H * 4])) {
        this.run("embedding", "main", [this.win(this.b(table), v0 * H, (v1 - v0) * H).bind, idb?.buf ?? this.b(ids as Tensor), out], [t1 - t0, H, g.nx, v0, v1, t0], g.groups);
      }
    }
    if (idb) this.release(idb);
    return y;
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const H = x.shape[x.shape.length - 1]!;
    const T = numel(x.shape) / H;
    const y = this.out([T, H]);
    for (const [r0, r1] of this.spans(T, [H * 4])) {
      const g = this.grid(r1 - r0, 1);
      this.run("rms_norm", "main", [this.win(this.b(x), r0 * H, (r1 - r0) * H).bind, this.b(w), this.win(this.b(y), r0 * H, (r1 - r0) * H).bind, this.dummy, this.dummy], [H, { f: eps }, g.nx, r1 - r0], g.groups);
    }
    return y;
  }
  /** sum = x + r, norm = rmsNorm(sum, w): one dispatch per span of rows instead of two */
  addRmsNorm(x: Tensor, r: Tensor, w: Tensor, eps: number): { sum: Tensor; norm: Tensor } {
    const H = x.shape[x.shape.length - 1]!;
    const T = sameSize("addRmsNorm", x, r) / H;
    const sum = this.out([T, H]), norm = this.out([T, H]);
    for (const [r0, r1] of this.spans(T, [H * 4])) {
      const g = this.grid(r1 - r0, 1), rows = (t: Tensor) => this.win(this.b(t), r0 * H, (r1 - r0) * H).bind;
      this.run("rms_norm", "add_main", [rows(x), this.b(w), rows(norm), rows(r), rows(sum)], [H, { f: eps }, g.nx, r1 - r0], g.groups);
    }
    return { sum, norm };
  }
  rope(x: Tensor, o: RopeOpts): void {
    if (o.posTensor) throw new UnsupportedOpError("webgpu rope: device positions (posTensor) need graph support, which this backend does not have");
    let inv = this.invFreq.get(o.invFreq);
    if (!inv) this.invFreq.set(o.invFreq, (inv = this.hostBuf(o.invFreq)));
    const C = o.heads * o.headDim, T = numel(x.shape) / C;
    for (const [t0, t1] of this.spans(T, [C * 4])) {
      const g = this.grid(((t1 - t0) * C) / 2, 256);
      this.run("rope", "main", [this.win(this.b(x), t0 * C, (t1 - t0) * C).bind, inv.buf], [t1 - t0, o.heads, o.headDim, o.pos0, o.seqLen ?? T, { f: o.scale }, g.nx, t0], g.groups);
    }
  }
  writeRows(dst: Tensor, src: Tensor, row0: number, rowTensor?: Tensor): void {
    if (rowTensor) throw new UnsupportedOpError("webgpu writeRows: device rows (rowTensor) need graph support, which this backend does not have");
    const { C, n } = rowsFit(dst, src, row0);
    this.endPass();
    this.encoder().copyBufferToBuffer(this.b(src), 0, this.b(dst), row0 * C * 4, n * 4);
  }
  attention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOpts): Tensor {
    if (o.headDim > 256) throw new UnsupportedOpError(`webgpu attention: head_dim ${o.headDim} > 256 is not supported`);
    if (o.posTensor) throw new UnsupportedOpError("webgpu attention: device positions (posTensor) need graph support, which this backend does not have");
    const T = numel(q.shape) / (o.heads * o.headDim);
    const seq = o.seqLen ?? T;
    if (T % seq !== 0 || (o.seqLen && o.seqLen !== T && o.pos0 !== 0)) throw new InvalidArgumentError(`attention: ${T} rows do not split into sequences of ${seq} (pos0 must be 0 for several sequences)`);
    const y = this.out([T, o.heads * o.headDim]);
    // a workgroup per (block of four rows of a sequence, head): each key read once for the block's rows
    const g = this.grid((T / seq) * Math.ceil(seq / 4) * o.heads, 1);
    const K = this.b(k), V = this.b(v), KC = o.kvHeads * o.headDim, S = numel(k.shape) / KC;
    const base: Param[] = [T, o.pos0, o.seqLen ?? 0, o.heads, o.kvHeads, o.headDim, { f: 1 / Math.sqrt(o.headDim) }, g.nx];
    if (K.size <= this.maxBinding && V.size <= this.maxBinding) {
      this.run("attention", "main", [this.b(q), K, V, this.b(y), this.dummy], [...base, 0, S, 0, 1, 1], g.groups);
      return y;
    }
    // a cache above the binding limit: windows of its rows, the softmax state carried between them
    const spans = this.spans(S, [KC * 4]);
    const st = this.alloc(T * o.heads * (o.headDim + 2) * 4, "attention state", true);
    spans.forEach(([j0, j1], i) => {
      const kv = this.view(K, j0 * KC, (j1 - j0) * KC), vv = this.view(V, j0 * KC, (j1 - j0) * KC);
      if (kv.base !== vv.base) throw new UnsupportedOpError("webgpu attention: k and v caches of different sizes");
      this.run("attention", "main", [this.b(q), kv.bind, vv.bind, this.b(y), st.buf], [...base, j0, j1, kv.base, i === 0 ? 1 : 0, i === spans.length - 1 ? 1 : 0], g.groups);
    });
    this.release(st);
    return y;
  }
  private elementwise(name: string, a: Tensor, b: Tensor): Tensor {
    const n = sameSize(name, a, b);
    const y = this.out(a.shape);
    for (const [i0, i1] of this.spans(n, [4])) {
      const g = this.grid(i1 - i0, 256), w = (t: Tensor) => this.win(this.b(t), i0, i1 - i0).bind;
      this.run(name, "main", [w(a), w(b), w(y)], [i1 - i0, g.nx], g.groups);
    }
    return y;
  }
  siluMul(g: Tensor, u: Tensor): Tensor {
    return this.elementwise("silu_mul", g, u);
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.elementwise("add", a, b);
  }
  logSoftmax(x: Tensor): Tensor {
    const V = x.shape[x.shape.length - 1]!;
    const T = numel(x.shape) / V;
    const y = this.out(x.shape);
    for (const [r0, r1] of this.spans(T, [V * 4])) {
      const g = this.grid(r1 - r0, 1), w = (t: Tensor) => this.win(this.b(t), r0 * V, (r1 - r0) * V).bind;
      this.run("log_softmax", "main", [w(x), this.dummy, w(y)], [V, g.nx, 0, r1 - r0], g.groups);
    }
    return y;
  }
  async nll(logits: Tensor, targets: Int32Array): Promise<Float64Array> {
    const { T, V } = nllDims(logits, targets);
    const tb = this.hostBuf(targets);
    const ob = this.alloc(T * 4);
    for (const [r0, r1] of this.spans(T, [V * 4])) {
      const g = this.grid(r1 - r0, 1);
      this.run("log_softmax", "nll", [this.win(this.b(logits), r0 * V, (r1 - r0) * V).bind, tb.buf, ob.buf], [V, g.nx, r0, r1 - r0], g.groups);
    }
    const r = Float64Array.from(new Float32Array(await this.readBuf(ob.buf, T * 4)));
    this.release(tb);
    this.release(ob);
    return r;
  }

  // ---------------- GPTQ ----------------
  hessianAccumulate(h: Tensor, x: Tensor): void {
    const K = h.shape[0]!;
    const T = numel(x.shape) / K;
    // H [K, K] += xᵀx: A(m, t) = x[t, m], B(t, n) = x[t, n] (symmetric: one triangle of tiles, each mirrored)
    this.gemm({ M: K, N: K, K: T, A: this.b(x), sam: 1, sak: K, B: this.b(x), sbk: K, sbn: 1, C: this.b(h), ldc: K, beta: 1, sym: true });
  }
  scale(t: Tensor, s: number): void {
    for (const [i0, i1] of this.spans(numel(t.shape), [4])) {
      const g = this.grid(i1 - i0, 256);
      this.run("scale", "main", [this.win(this.b(t), i0, i1 - i0).bind], [i1 - i0, { f: s }, g.nx], g.groups);
    }
  }
  async diagonal(h: Tensor): Promise<Float32Array> {
    const n = h.shape[0]!;
    const d = this.alloc(n * 4);
    for (const [r0, r1] of this.spans(n, [n * 4])) {
      this.run("diagonal", "main", [this.win(this.b(h), r0 * n, (r1 - r0) * n).bind, d.buf], [n, r0, r1], [Math.ceil((r1 - r0) / 256)]);
    }
    const r = new Float32Array(await this.readBuf(d.buf, n * 4));
    this.release(d);
    return r;
  }
  gptqPrepare(w: Tensor, h: Tensor | null): Tensor {
    const [rows, cols] = w.shape as [number, number];
    const dead = this.alloc(cols * 4);
    const wt = this.out([cols, rows]);
    const W = this.b(w), WT = this.b(wt), d = this.dummy;
    if (h) {
      for (const [c0, c1] of this.spans(cols, [cols * 4])) {
        const hv = this.view(this.b(h), c0 * cols, (c1 - c0) * cols);
        this.run("gptq_prepare", "mark_dead", [d, hv.bind, dead.buf, d], [rows, cols, 0, c0, c1 - c0, 0, 0, 0, 0, hv.base], [Math.ceil((c1 - c0) / 256)]);
      }
    }
    // the transpose in tiles of columns × rows whose windows of W and Wt each fit one binding
    const lim = this.maxBinding - this.align;
    const nr = W.size <= this.maxBinding ? rows : Math.floor(lim / (cols * 4));
    const nc = WT.size <= this.maxBinding ? cols : Math.floor(lim / (rows * 4));
    if (nr < 1 || nc < 1) throw new UnsupportedOpError(`webgpu gptq_prepare: a row of the ${rows}x${cols} weight exceeds the storage binding limit (${MiB(this.maxBinding)})`);
    for (let c0 = 0; c0 < cols; c0 += nc) {
      for (let r0 = 0; r0 < rows; r0 += nr) {
        const tc = Math.min(nc, cols - c0), tr = Math.min(nr, rows - r0), g = this.grid(tc * tr, 256);
        const wv = this.view(W, r0 * cols + c0, (tr - 1) * cols + tc), tv = this.view(WT, c0 * rows + r0, (tc - 1) * rows + tr);
        this.run("gptq_prepare", "transpose", [wv.bind, d, dead.buf, tv.bind], [rows, cols, g.nx, c0, tc, r0, tr, wv.base, tv.base, 0], g.groups);
      }
    }
    this.release(dead);
    return wt;
  }
  quantParams(a: { wt: Tensor; c0: number; n: number; g: number; scales: Tensor; zeros: Tensor; cfg: QuantParamsCfg }): void {
    const rows = a.wt.shape[1]!, WT = this.b(a.wt), S = this.b(a.scales), Z = this.b(a.zeros), d = this.dummy;
    const cfg = [a.cfg.bits, a.cfg.sym ? 1 : 0, a.cfg.mse ? 1 : 0];
    const lim = this.maxBinding - this.align;
    if (WT.size <= this.maxBinding || a.n * rows * 4 <= lim) {
      const wv = this.view(WT, a.c0 * rows, a.n * rows);
      this.run("quant_params", "main", [wv.bind, S, Z, d], [rows, a.c0, a.n, a.g, ...cfg, wv.base, 0, rows, rows, 0, 0, 0], [Math.ceil(rows / 64)]);
      return;
    }
    // the n rows of Wt exceed one binding (per-channel parameters of a large weight): outputs in chunks of nr,
    // each gathered into [n, nr] from windows of Wt's rows
    const nr = Math.floor(lim / (a.n * 4));
    if (nr < 1) throw new UnsupportedOpError(`webgpu quant_params: ${a.n} inputs of one output exceed the storage binding limit (${MiB(this.maxBinding)})`);
    const tmp = this.alloc(a.n * Math.min(nr, rows) * 4, "parameter chunk", true);
    for (let r0 = 0; r0 < rows; r0 += nr) {
      const m = Math.min(nr, rows - r0);
      for (const [q0, q1] of this.spans(a.n, [rows * 4])) {
        const s0 = a.c0 + q0, s1 = a.c0 + q1, wv = this.view(WT, s0 * rows, (s1 - s0) * rows), g = this.grid((s1 - s0) * m, 256);
        this.run("quant_params", "gather", [wv.bind, d, d, tmp.buf], [rows, a.c0, a.n, a.g, ...cfg, wv.base, r0, m, m, s0, s1, g.nx], g.groups);
      }
      this.run("quant_params", "main", [tmp.buf, S, Z, d], [rows, 0, a.n, a.g, ...cfg, 0, r0, m, m, 0, 0, 0], [Math.ceil(m / 64)]);
    }
    this.release(tmp);
  }
  gptqPermute(wt: Tensor, h: Tensor, perm: Tensor): { wt: Tensor; h: Tensor } {
    const [cols, rows] = wt.shape as [number, number];
    const w2 = this.out([cols, rows]), h2 = this.out([cols, cols]);
    const [W, W2, H, H2, P] = [this.b(wt), this.b(w2), this.b(h), this.b(h2), this.b(perm)];
    const params = (nx: number, d0: number, nd: number, s0: number, s1: number, sb: number, db: number): Param[] => [rows, cols, nx, d0, nd, s0, s1, sb, db];
    this.gather({ rows: cols, width: rows, buf: W }, { rows: cols, width: rows, buf: W2 }, (sv, dv, g, d0, nd, s0, s1) =>
      this.run("gptq_permute", "rows", [sv.bind, P, dv.bind], params(g.nx, d0, nd, s0, s1, sv.base, dv.base), g.groups));
    this.gather({ rows: cols, width: cols, buf: H }, { rows: cols, width: cols, buf: H2 }, (sv, dv, g, d0, nd, s0, s1) =>
      this.run("gptq_permute", "sym", [sv.bind, P, dv.bind], params(g.nx, d0, nd, s0, s1, sv.base, dv.base), g.groups));
    return { wt: w2, h: h2 };
  }
  /**
   * A gather (rows of dst from rows of src through an index) in windows when above the binding limit: for each
   * span of dst rows, one dispatch per span of src rows (in order), which writes what comes from that span.
   * `dispatch` gets both views, the grid over the dst span's elements (one thread each), and the spans.
   */
  private gather(src: { rows: number; width: number; buf: GPUBuffer }, dst: { rows: number; width: number; buf: GPUBuffer },
    dispatch: (sv: { bind: Bind; base: number }, dv: { bind: Bind; base: number }, g: { groups: [number, number]; nx: number }, d0: number, nd: number, s0: number, s1: number) => void): void {
    const srcSpans = this.spans(src.rows, [src.width * 4]);
    for (const [d0, d1] of this.spans(dst.rows, [dst.width * 4])) {
      const dv = this.view(dst.buf, d0 * dst.width, (d1 - d0) * dst.width), g = this.grid((d1 - d0) * dst.width, 256);
      for (const [s0, s1] of srcSpans) dispatch(this.view(src.buf, s0 * src.width, (s1 - s0) * src.width), dv, g, d0, d1 - d0, s0, s1);
    }
  }
  async choleskyInverseUpper(h: Tensor, damp: number): Promise<boolean> {
    const n = h.shape[0]!;
    const a = this.alloc(n * n * 4, "Cholesky work matrix"), x = this.alloc(n * n * 4, "Cholesky work matrix"), st = this.alloc(4), sc = this.alloc(n * 4);
    const BLK = 64; // as in the shader
    // the panel below a diagonal block, T = L[i, :i]·X[:i, :i] (both up to BLK·n), a diagonal block's inverse
    const pan = this.alloc(BLK * n * 4, "Cholesky panel", true), tmp = this.alloc(BLK * n * 4, "Cholesky panel", true);
    const xd = this.alloc(BLK * BLK * 4, "Cholesky block", true);
    const H = this.b(h), d = this.dummy;
    // matrices above the binding limit are bound as windows of rows (views); every entry says where its start
    const run = (entry: string, v: { a?: { bind: Bind; base: number }; x?: { bind: Bind; base: number }; h?: { bind: Bind; base: number } }, j0: number, r0: number, r1: number, groups: [number, number?], nx = 0) =>
      this.run("cholesky_inverse_upper", entry, [v.a?.bind ?? d, v.x?.bind ?? d, v.h?.bind ?? d, st.buf, sc.buf, pan.buf, xd.buf],
        [n, { f: damp }, nx, j0, r0, r1, v.a?.base ?? 0, v.x?.base ?? 0, v.h?.base ?? 0], groups);
    const rows = (buf: GPUBuffer, r0: number, r1: number) => this.view(buf, r0 * n, (r1 - r0) * n);
    const spans = this.spans(n, [n * 4]);
    for (const [r0, r1] of spans) run("equil", { h: rows(H, r0, r1) }, 0, r0, r1, [Math.ceil((r1 - r0) / 256)]);
    for (const [r0, r1] of spans) {
      const g = this.grid((r1 - r0) * n, 256);
      run("reverse_damp", { a: rows(a.buf, r0, r1), x: rows(x.buf, r0, r1), h: rows(H, n - r1, n - r0) }, 0, r0, r1, g.groups, g.nx);
    }
    // blocks of BLK columns: the O(n³) work goes to GEMMs (see the shader)
    for (let j0 = 0; j0 < n; j0 += BLK) {
      const b = Math.min(BLK, n - j0), m = n - j0 - b, e = j0 + b;
      run("blk_factor", { a: rows(a.buf, j0, e) }, j0, 0, 0, [1]);
      if (m === 0) continue;
      for (const [q0, q1] of this.spans(m, [n * 4])) run("blk_panel", { a: rows(a.buf, e + q0, e + q1) }, j0, e + q0, e + q1, [Math.ceil((q1 - q0) / 64)]);
      // A22 −= L21·L21ᵀ with L21 = pan [m, b] (stride BLK): a symmetric product, one triangle of tiles mirrored
      this.gemm({ M: m, N: m, K: b, A: pan.buf, sam: BLK, sak: 1, B: pan.buf, sbk: 1, sbn: BLK, C: a.buf, cOff: e * n + e, ldc: n, alpha: -1, beta: 1, sym: true });
    }
    for (let i0 = 0; i0 < n; i0 += BLK) {
      const b = Math.min(BLK, n - i0);
      run("blk_inverse", { a: rows(a.buf, i0, i0 + b), x: rows(x.buf, i0, i0 + b) }, i0, 0, 0, [1]);
      if (i0 === 0) continue;
      // T [b, i0] = L[i0:i0+b, :i0]·X[:i0, :i0], then X[i0:i0+b, :i0] = −X_ii·T
      this.gemm({ M: b, N: i0, K: i0, A: a.buf, aOff: i0 * n, sam: n, sak: 1, B: x.buf, sbk: n, sbn: 1, C: tmp.buf, ldc: i0 });
      this.gemm({ M: b, N: i0, K: b, A: xd.buf, sam: BLK, sak: 1, B: tmp.buf, sbk: i0, sbn: 1, C: x.buf, cOff: i0 * n, ldc: n, alpha: -1 });
    }
    for (const [r0, r1] of spans) {
      const g = this.grid((r1 - r0) * n, 256);
      run("unreverse", { h: rows(H, r0, r1), x: rows(x.buf, n - r1, n - r0) }, 0, r0, r1, g.groups, g.nx);
    }
    const status = new Uint32Array(await this.readBuf(st.buf, 4))[0];
    for (const w of [a, x, st, sc, pan, tmp, xd]) this.release(w);
    return status === 0;
  }
  gptqBlock(a: GptqBlockArgs): void {
    const [cols, rows] = a.wt.shape as [number, number];
    if (a.i2 - a.i1 > 128) throw new UnsupportedOpError(`webgpu gptq_block: blocks of at most 128 columns (got ${a.i2 - a.i1})`);
    // windows (above the binding limit): Wt's rows of the block and of the groups that start in it, Hinv's and codes' rows of the block
    const wEnd = a.staticGroups ? a.i2 : Math.max(a.i2, Math.min(cols, a.i2 - 1 + a.groupSize));
    const wv = this.view(this.b(a.wt), a.i1 * rows, (wEnd - a.i1) * rows), hv = this.view(this.b(a.hinv), a.i1 * cols, (a.i2 - a.i1) * cols);
    const cv = this.view(this.b(a.codes), a.i1 * rows, (a.i2 - a.i1) * rows);
    this.run("gptq_block", "main", [wv.bind, hv.bind, cv.bind, this.b(a.err), this.b(a.loss), this.b(a.scales), this.b(a.zeros), this.b(a.groupOfCol)],
      [rows, cols, a.i1, a.i2, a.groupSize, a.staticGroups ? 1 : 0, a.cfg.bits, a.cfg.sym ? 1 : 0, a.cfg.mse ? 1 : 0, wv.base, hv.base, cv.base], [Math.ceil(rows / 64)]);
  }
  gptqUpdate(wt: Tensor, hinv: Tensor, err: Tensor, i1: number, i2: number): void {
    const [cols, rows] = wt.shape as [number, number];
    if (i2 >= cols) return;
    // Wt[i2:, :] -= Hinv[i1:i2, i2:]ᵀ · err: A(m, k) = Hinv[i1 + k, i2 + m], B(k, n) = err[k, n]
    this.gemm({ M: cols - i2, N: rows, K: i2 - i1, A: this.b(hinv), aOff: i1 * cols + i2, sam: 1, sak: cols, B: this.b(err), sbk: rows, sbn: 1, C: this.b(wt), cOff: i2 * rows, ldc: rows, alpha: -1, beta: 1 });
  }
  gptqFinish(wtq: Tensor, codes: Tensor, perm: Tensor | null, bits: number): { w: Tensor; qweight: Tensor } {
    const [cols, rows] = wtq.shape as [number, number];
    const words = Math.ceil(cols / 32) * bits;
    const w = this.out([rows, cols]);
    const qweight = this.out([words, rows], "i32");
    const ident = perm ? null : this.hostBuf(Int32Array.from({ length: cols }, (_, i) => i));
    const pb = perm ? this.b(perm) : ident!.buf;
    const inv = this.alloc(cols * 4), d = this.dummy;
    this.run("gptq_finish", "invert", [d, d, pb, inv.buf, d, d], [rows, cols, bits, words, 0, 0, 0, 0, 0, 0, 0], [Math.ceil(cols / 256)]);
    // gathers through inv (pack: the first source span, s0 = 0, writes each word, the others OR into it)
    const params = (nx: number, d0: number, nd: number, s0: number, s1: number, sb: number, db: number): Param[] => [rows, cols, bits, words, nx, d0, nd, s0, s1, sb, db];
    this.gather({ rows: cols, width: rows, buf: this.b(wtq) }, { rows, width: cols, buf: this.b(w) }, (sv, dv, g, d0, nd, s0, s1) =>
      this.run("gptq_finish", "weight", [sv.bind, d, d, inv.buf, dv.bind, d], params(g.nx, d0, nd, s0, s1, sv.base, dv.base), g.groups));
    this.gather({ rows: cols, width: rows, buf: this.b(codes) }, { rows: words, width: rows, buf: this.b(qweight) }, (sv, dv, g, d0, nd, s0, s1) =>
      this.run("gptq_finish", "pack", [d, sv.bind, d, inv.buf, d, dv.bind], params(g.nx, d0, nd, s0, s1, sv.base, dv.base), g.groups));
    this.release(inv);
    if (ident) this.release(ident);
    return { w, qweight };
  }

  // ---------------- packed int matmul ----------------
  prepareQuantWeight(s: QuantWeightSpec): QuantWeight {
    const { inFeatures: K, outFeatures: N, bits, groups: G } = s;
    const h: QHandle = {
      qweight: this.hostBuf(s.qweight, "qweight"), scales: this.hostBuf(s.scales, "scales"), gIdx: this.hostBuf(s.gIdx, "g_idx"),
      zeros: this.alloc(G * N * 4, "zeros", true),
    };
    const qz = this.hostBuf(s.qzeros, "qzeros");
    const g = this.grid(G * N, 256);
    this.run("quant_matmul", "unpack_zeros", [this.dummy, qz.buf, this.dummy, h.zeros.buf, this.dummy, this.dummy, this.dummy], [0, K, N, bits, G, s.zeroOffset, 0, g.nx, 0, 0, 0, 0, 0, 0], g.groups);
    this.release(qz);
    // the 4-bit path needs inputs sorted into contiguous groups of gs (a multiple of 8): true as stored, or after
    // a row permutation (act-order), which x then follows through `perm`
    const order = bits === 4 && K % 8 === 0 && N % 4 === 0 ? contiguousGroups(s.gIdx, G) : null;
    if (order && order.gs % 8 === 0) {
      const { perm, gs } = order;
      if (order.identity) h.fast4 = { gs, qweight4: h.qweight, perm: null };
      else {
        const codes = unpackQweight(s.qweight, K, N, 4), sorted = new Uint8Array(K * N);
        for (let i = 0; i < K; i++) sorted.set(codes.subarray(perm[i]! * N, perm[i]! * N + N), i * N);
        h.fast4 = { gs, qweight4: this.hostBuf(packQweight(sorted, K, N, 4), "qweight (act-order sorted)"), perm: this.hostBuf(perm, "perm") };
      }
    }
    const { qweight: _a, qzeros: _b, scales: _c, gIdx: _d, ...spec } = s;
    return { backend: this, spec: { ...spec }, handle: h };
  }
  quantMatmul(x: Tensor, w: QuantWeight, bias?: Tensor): Tensor {
    const h = w.handle as QHandle;
    const { inFeatures: K, outFeatures: N, bits, groups: G } = w.spec;
    if (x.shape[x.shape.length - 1] !== K) throw new InvalidArgumentError(`quantMatmul: x ${shapeStr(x.shape)} does not end in in_features ${K}`);
    const M = numel(x.shape) / K;
    const y = this.out([M, N]);
    const bb = bias ? this.b(bias) : this.dummy;
    const base = (nx = 0): Param[] => [M, K, N, bits, G, 0, bias ? 1 : 0, nx];
    if (h.fast4 && M <= 16) {
      for (let m0 = 0; m0 < M; m0 += 4) this.quantMatmulQ4(x, y, h, Math.min(4, M - m0), m0, K, N, bias ? bb : null);
    } else if (M > 16) {
      // W dequantized in chunks of outputs that fit one binding (all of it when it fits), the packed weight read
      // in windows of inputs when it exceeds one (kWindows), each chunk then a GEMM
      const nc = N * K * 4 <= this.maxBinding ? N : Math.max(64, Math.floor(this.maxBinding / (K * 4) / 64) * 64);
      const wd = this.alloc(Math.min(nc, N) * K * 4, "dequantized weight", true);
      const wins = this.kWindows(h.qweight.buf, K, N, bits);
      for (let n0 = 0; n0 < N; n0 += nc) {
        const c = Math.min(nc, N - n0);
        for (const w of wins) {
          const g = this.grid((w.k1 - w.k0) * c, 256);
          this.run("quant_matmul", "dequant", [this.dummy, w.bind, h.scales.buf, h.zeros.buf, h.gIdx.buf, this.dummy, wd.buf], [...base(g.nx), n0, c, w.k0, w.k1, w.base, 0], g.groups);
        }
        this.gemm({ M, N: c, K, A: this.b(x), sam: K, sak: 1, B: wd.buf, sbk: 1, sbn: K, C: this.b(y), cOff: n0, ldc: N, bias: bias ? bb : undefined, biasOff: n0 });
      }
      this.release(wd);
    } else {
      // windows of the packed weight when it exceeds one binding: the first writes y (+ bias), the rest add
      for (const w of this.kWindows(h.qweight.buf, K, N, bits)) {
        this.run("quant_matmul", "generic", [this.b(x), w.bind, h.scales.buf, h.zeros.buf, h.gIdx.buf, bb, this.b(y)], [...base(), 0, N, w.k0, w.k1, w.base, w.k0 > 0 ? 1 : 0], [Math.ceil(N / 64), M]);
      }
    }
    return y;
  }
  /**
   * The fast 4-bit path for rows m0 .. m0 + mm of x (mm <= 4) into the same rows of y. One row (decoding), where
   * WGSL has packed 4x8 integer dot products (features.dot4): dp4_gemv, each workgroup turning its k range of x
   * into 16-bit integers per packed row in workgroup memory, then four dot4I8Packed per packed word (H200
   * through Vulkan, four 7B shapes: 60.0 us of GPU time). Without them: q4_gemv_s, the same streaming in float32, act-
   * order input gathered first (86.5-87.8 us). More rows: q4_gemv / q4_gemv_h (short k ranges, x staged in
   * workgroup memory, always split; measured faster than either streaming form at M = 4). GPTQ_WEBGPU_GEMV=i,
   * s or old forces one for every slab (A/B, tests). Then q4_reduce over the splits. A packed weight above the
   * binding limit is bound as windows of whole splits, one dispatch each.
   */
  private quantMatmulQ4(x: Tensor, y: Tensor, h: QHandle, mm: number, m0: number, K: number, N: number, bias: Bind | null): void {
    const f = h.fast4!, rows = K / 8, Q = f.qweight4.buf, N4 = N / 4;
    const mode = process.env.GPTQ_WEBGPU_GEMV;
    if (mode !== undefined && !["i", "s", "old"].includes(mode)) throw new InvalidArgumentError(`GPTQ_WEBGPU_GEMV=${mode}: use i (the integer-dot GEMV), s (the float32 streaming GEMV) or old (the split-k GEMV) for every slab; unset: i (where WGSL has dot4I8Packed, else s) for one row, old for more`);
    if (mode === "i" && !this.features.dot4) throw new UnsupportedOpError("GPTQ_WEBGPU_GEMV=i: this WebGPU implementation has no packed 4x8 integer dot products (WGSL language feature packed_4x8_integer_dot_product, or GPTQ_WEBGPU_DOT4=0); use s or old");
    const dot4 = mode === "i" || (mode === undefined && mm === 1 && this.features.dot4);
    const stream = dot4 || mode === "s" || (mode === undefined && mm === 1);
    let rps: number, cq = 0, colGroups: number;
    let xb: Bind = this.b(x), xm0 = m0;
    const temps: WBuf[] = [];
    let cap = 0;
    if (stream) {
      // 32 columns per workgroup (8 column quads x 32 k-lanes) for wide weights, 16 (4 x 64) for narrow ones;
      // the k range split only when there are too few column blocks for the device (GPTQ_WEBGPU_QV_WGS, default
      // 256 workgroups), keeping >= 8 packed rows per k-lane
      const envCq = columnQuadsKnob(process.env.GPTQ_WEBGPU_QV_CQ, K, N), envWgs = process.env.GPTQ_WEBGPU_QV_WGS;
      if (envWgs && !(Number.isInteger(Number(envWgs)) && Number(envWgs) > 0)) throw new InvalidArgumentError(`GPTQ_WEBGPU_QV_WGS=${envWgs}: the target workgroup count must be a positive integer`);
      // The integer GEMV: short inputs (<= 512 packed rows) as many column quads as leave target / 2 column
      // blocks, so that there is no split (no q4_reduce dispatch); long ones 32 quads and a split (its workgroups
      // turn only their stretch of x into integers). H200 through Vulkan, per shape: o 4096x4096 7.9 us with 8
      // quads, 10.5 with 32 (8 splits); down 11008x4096 13.1 with 32 (8 splits), 19.7 with 8 (no split).
      const target = Number(envWgs) || 256;
      const fit = 2 ** Math.floor(Math.log2(Math.max(1, N4 / (target / 2))));
      cq = envCq ?? (dot4 ? (rows <= 512 ? Math.min(32, Math.max(4, fit)) : 32) : N4 / 8 >= 256 ? 8 : 4);
      colGroups = Math.ceil(N4 / cq);
      const maxSplit = Math.max(1, Math.floor(rows / (8 * (256 / cq))));
      const ks0 = colGroups >= target / 2 ? 1 : Math.min(maxSplit, Math.ceil(target / colGroups));
      rps = Math.ceil(rows / ks0);
      if (dot4) {
        // x turned into integers by each workgroup in workgroup memory: 24 bytes per packed row and row of x (16 of
        // integers, a scale and a sum), beside the 4 KiB of the k-lanes' sums (`red_s`; 64: alignment)
        cap = Math.floor(((this.dev.limits.maxComputeWorkgroupStorageSize - 4096 - 64) / mm - 4) / 24);
        if (cap < 8) throw new UnsupportedOpError(`webgpu quant_matmul: ${this.dev.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory hold too few rows of x for the integer GEMV; set GPTQ_WEBGPU_DOT4=0`);
        rps = Math.min(rps, cap);
      } else if (f.perm) {
        // act-order: x's rows gathered once into input order (q4_gemv_s then reads them as rows 0 .. mm)
        const gathered = this.alloc(mm * K * 4, "gathered activations", true);
        temps.push(gathered);
        const g = this.grid(mm * K, 256);
        this.run("quant_matmul_q4", "q4_gather", [xb, this.dummy, this.dummy, this.dummy, f.perm.buf, this.dummy, gathered.buf, this.dummy], [mm, K, N, f.gs, 1, rows, 0, 1, g.nx, m0, 0, 0, 0, 0], g.groups);
        xb = gathered.buf;
        xm0 = 0;
      }
    } else {
      // about 512 workgroups (1024 and 2048 measured no faster on an H200); every k-lane >= 4 packed rows; x of
      // a split fits workgroup memory (1024 floats)
      colGroups = Math.ceil(N / 256);
      rps = Math.ceil(rows / Math.max(1, Math.floor(512 / colGroups)));
      rps = Math.min(Math.max(rps, 16), Math.floor(1024 / (8 * mm)));
    }
    if (Q.size > this.maxBinding) rps = Math.max(1, Math.min(rps, Math.floor((this.maxBinding - this.align) / (N * 4))));
    // dp4_gemv's pipelined loop takes every k-lane's stretch in whole batches of 8 packed rows (the shader rounds the
    // stretches up, leaving the last k-lanes short): a split of several k ranges gets a multiple of 8 rows per
    // k-lane (rounded up where the limits above allow, else down), so that its k-lanes are equal
    const envPipe = process.env.GPTQ_WEBGPU_QV_PIPE;
    if (envPipe !== undefined && !["0", "1"].includes(envPipe)) throw new InvalidArgumentError(`GPTQ_WEBGPU_QV_PIPE=${envPipe}: use 0 (the integer GEMV's per-group loop everywhere, for A/B) or 1 (the pipelined loop where the k ranges allow it; the default)`);
    const pipe = envPipe !== "0";
    if (dot4 && pipe && rps < rows) {
      const unit = 8 * (256 / cq), lim = Math.min(cap, Q.size > this.maxBinding ? Math.floor((this.maxBinding - this.align) / (N * 4)) : rows);
      const up = Math.ceil(rps / unit) * unit, down = Math.floor(rps / unit) * unit;
      rps = up <= lim ? up : down >= unit ? down : rps;
    }
    const ks = Math.ceil(rows / rps);
    // dp4_gemv's workgroup memory, in packed rows: a power of two (few pipelines) unless that exceeds the device's
    const xr = Math.min(cap, 2 ** Math.ceil(Math.log2(rps)));
    // splits per window (all of them when the weight fits one binding)
    const perWin = Q.size <= this.maxBinding ? ks : Math.floor((this.maxBinding - this.align) / (rps * N * 4));
    if (perWin < 1) throw new UnsupportedOpError(`webgpu quant_matmul_q4: ${rps} packed rows of ${N} columns exceed the storage binding limit (${MiB(this.maxBinding)})`);
    const params: Param[] = [mm, K, N, f.gs, ks, rps, bias ? 1 : 0, f.perm && !stream ? 1 : 0, 0, m0, 0, 0, cq, xm0];
    const part = ks > 1 ? this.alloc(ks * mm * N * 4, "partial sums", true) : null;
    const entry = stream ? "q4_gemv_s" : this.features.f16 ? "q4_gemv_h" : "q4_gemv";
    const constants = stream ? { MR: mm } : undefined; // (one pipeline per row count: measured 87.8 vs 115.3 us at M = 1 with MR = 4)
    for (let k0 = 0; k0 < ks; k0 += perWin) {
      const nk = Math.min(perWin, ks - k0), r0 = k0 * rps, r1 = Math.min(rows, r0 + nk * rps);
      const qv = this.view(Q, r0 * N, (r1 - r0) * N); // u32 elements; its base is a multiple of 64
      const out = [part?.buf ?? this.dummy, this.b(y)];
      if (dot4) {
        this.run("quant_matmul_q4", "dp4_gemv", [xb, qv.bind, h.scales.buf, h.zeros.buf, f.perm?.buf ?? this.dummy, bias ?? this.dummy, ...out], [mm, K, N, f.gs, ks, rps, bias ? 1 : 0, f.perm ? 1 : 0, 0, m0, k0, qv.base / 4, cq, 0], [colGroups, nk], { MR: mm, XR: xr, PIPE: pipe ? 1 : 0 });
      } else {
        params[10] = k0;
        params[11] = qv.base / 4;
        this.run("quant_matmul_q4", entry, [xb, qv.bind, h.scales.buf, h.zeros.buf, f.perm?.buf ?? this.dummy, bias ?? this.dummy, ...out], [...params], [colGroups, nk], constants);
      }
    }
    for (const t of temps) this.release(t);
    if (part) {
      const g = this.grid(mm * N, 256);
      params[8] = g.nx;
      this.run("quant_matmul_q4", "q4_reduce", [this.dummy, this.dummy, this.dummy, this.dummy, this.dummy, bias ?? this.dummy, part.buf, this.b(y)], params, g.groups);
      this.release(part);
    }
  }
  /**
   * The packed weight [K·bits/32, N] u32 in windows of whole 32-input slabs (each column's bit stream in whole
   * words), each within one storage binding: inputs [k0, k1), the binding, and the index of its first word in
   * the whole weight. One window (all of it) when it fits.
   */
  private kWindows(q: GPUBuffer, K: number, N: number, bits: number): { k0: number; k1: number; bind: Bind; base: number }[] {
    if (q.size <= this.maxBinding) return [{ k0: 0, k1: K, bind: q, base: 0 }];
    const slab = bits * N * 4; // bytes of 32 inputs
    const per = Math.floor((this.maxBinding - this.align) / slab);
    if (per < 1) throw new UnsupportedOpError(`webgpu quant_matmul: 32 inputs of ${N} ${bits}-bit columns (${MiB(slab)}) exceed the storage binding limit (${MiB(this.maxBinding)})`);
    const out: { k0: number; k1: number; bind: Bind; base: number }[] = [];
    for (let k0 = 0; k0 < K; k0 += per * 32) {
      const k1 = Math.min(K, k0 + per * 32), w0 = (k0 / 32) * bits, w1 = Math.ceil((k1 * bits) / 32);
      const v = this.view(q, w0 * N, (w1 - w0) * N);
      out.push({ k0, k1, bind: v.bind, base: v.base });
    }
    return out;
  }

  /**
   * benchmarks: GPU time of fn's dispatches from timestamps written at the start and end of one compute pass
   * that holds all of them (median of reps). Null without timestamp-query. Dawn may quantize timestamps, so
   * fn should queue well over 100 µs of work.
   */
  async gpuTimeUs(fn: () => void, reps = 5): Promise<number | null> {
    if (!this.dev.features.has("timestamp-query")) return null;
    const qs = this.dev.createQuerySet({ type: "timestamp", count: 2 });
    const resolve = this.dev.createBuffer({ size: 16, usage: BU.QUERY_RESOLVE | BU.COPY_SRC });
    const read = this.dev.createBuffer({ size: 16, usage: BU.MAP_READ | BU.COPY_DST });
    const times: number[] = [];
    try {
      for (let r = 0; r < reps; r++) {
        this.flush();
        const pass = (this.pass = pinned(() => this.encoder().beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } })));
        this.timing = true;
        try {
          fn();
        } finally {
          this.timing = false;
        }
        if (this.pass !== pass) throw new UnsupportedOpError("webgpu gpuTimeUs: the timed work left its compute pass (a buffer clear or copy); it cannot be timed as one pass");
        this.endPass();
        this.encoder().resolveQuerySet(qs, 0, 2, resolve, 0);
        this.encoder().copyBufferToBuffer(resolve, 0, read, 0, 16);
        this.flush();
        await read.mapAsync(GPUMapMode.READ);
        const t = new BigUint64Array(read.getMappedRange().slice(0));
        read.unmap();
        times.push(Number(t[1]! - t[0]!) / 1000);
      }
    } finally {
      qs.destroy(); resolve.destroy(); read.destroy();
    }
    this.checkAlive();
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
  }

  /** benchmarks: a plain copy of the same bytes, the bandwidth the packed matmul is judged against */
  denseBaseline(M: number, N: number, K: number): { label: string; bytes: number; run(): void; free(): void } {
    // the copy shader: on NVIDIA's Vulkan driver it moves about twice what copyBufferToBuffer does
    const bytes = Math.ceil((N * K) / 2 / 16) * 16; // the 4-bit weights' bytes
    const a = this.alloc(bytes), b = this.alloc(bytes);
    return {
      label: "shader copy of the 4-bit bytes",
      bytes: 2 * bytes, // read + write
      run: () => this.copyInto(a.buf, b.buf, bytes),
      free: () => { this.release(a); this.release(b); },
    };
  }
}

// ---------------- probe and factory ----------------
let probed: Promise<{ result: ProbeResult; adapter?: GPUAdapter }> | null = null;
function probeOnce() {
  return (probed ??= (async () => {
    let gpu;
    try {
      gpu = createGPUInstance();
    } catch (e) {
      return { result: { name: "webgpu", available: false, reason: `Dawn (bun-webgpu) failed to load: ${(e as Error).message}` } };
    }
    const adapter = await pinned(() => gpu.requestAdapter({ powerPreference: "high-performance" }));
    if (!adapter) return { result: { name: "webgpu", available: false, reason: "no WebGPU adapter: install a Vulkan driver (on Debian without a GPU: mesa-vulkan-drivers from bookworm-backports; see setup.sh)" } };
    const info = adapter.info;
    const device = `${info.device || info.description} (${info.vendor}, ${info.architecture})`;
    if (info.device === "null-backend" || /null/i.test(info.description ?? "")) {
      return { result: { name: "webgpu", available: false, device, reason: "only Dawn's null backend is available (it computes nothing): install a Vulkan driver (Debian: mesa-vulkan-drivers from bookworm-backports)" } };
    }
    const features = [...adapter.features].filter((f) => ["shader-f16", "subgroups", "timestamp-query"].includes(f));
    const l = adapter.limits;
    // WGSL language features: dot4I8Packed (the one-row packed matmul in integers)
    const dot4 = (gpu as unknown as { wgslLanguageFeatures?: Set<string> }).wgslLanguageFeatures?.has("packed_4x8_integer_dot_product") === true;
    const software = info.architecture === "software" || /llvmpipe|lavapipe|swiftshader/i.test(`${info.device} ${info.description}`);
    const details = {
      vendor: info.vendor, architecture: info.architecture, description: info.description, features, dot4, software,
      limits: { maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize, maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension, maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup },
      subgroupSize: (info as unknown as { subgroupMinSize?: number }).subgroupMinSize,
    };
    return { result: { name: "webgpu", available: true, device, details }, adapter };
  })());
}

let instance: Promise<WebGpuBackend> | null = null;
export const webgpuFactory: BackendFactory = {
  name: "webgpu",
  async probe() {
    return (await probeOnce()).result;
  },
  create() {
    return (instance ??= (async () => {
      const p = await probeOnce();
      if (!p.result.available || !p.adapter) throw new BackendUnavailableError(`backend "webgpu" is unavailable: ${p.result.reason}`);
      // bun-webgpu needs every limit spelled out when any is (see ../shared/notes/toolchain.md)
      const requiredLimits: Record<string, number> = {};
      for (const k in p.adapter.limits) {
        const v = (p.adapter.limits as unknown as Record<string, unknown>)[k];
        if (typeof v === "number") requiredLimits[k] = v;
      }
      // optional features the adapter offers: timestamps (benchmarks); subgroups and shader-f16 are requested so
      // that shaders can be specialized for them
      const requiredFeatures = [...p.adapter.features].filter((f) => ["timestamp-query", "subgroups", "shader-f16"].includes(f)) as GPUFeatureName[];
      // (pinned: see ./pin.ts; the device's own methods are wrapped the same way)
      const dev = await pinned(() => p.adapter!.requestDevice({ requiredLimits, requiredFeatures }));
      return new WebGpuBackend(pinDevice(dev), p.result.device!, p.result.details ?? {});
    })());
  },
};
