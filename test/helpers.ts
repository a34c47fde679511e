/** Shared test helpers: fresh random data, backends under test, and a strict comparison (NaN never passes). */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import "../src/backends.ts";
import { probeAll, selectBackend, type Backend } from "../src/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import { seededRandom } from "../src/gptq/calibration.ts";

/** ../shared/data beside the checkout (GPTQ_DATA overrides, e.g. on the GPU machine) */
export const DATA = process.env.GPTQ_DATA ?? join(import.meta.dir, "..", "..", "shared", "data");
export const hasData = existsSync(DATA);
/** a data file or model folder is there (the GPU machine carries only a subset) */
export const has = (...parts: string[]) => existsSync(join(DATA, ...parts));

/** a fresh seed per run (printed on failure through the test name), so kernels meet new inputs every time */
export const SEED = Number(process.env.GPTQ_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

export function rng(seed = SEED): () => number {
  return seededRandom(seed);
}
/** normal(0, std) samples */
export function randn(n: number, r: () => number, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12), v = r();
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** relative error ‖a − b‖ / ‖b‖, failing outright on any non-finite value in a */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (!Number.isFinite(x)) throw new Error(`non-finite output at ${i}: ${x} (reference ${y})`);
    num += (x - y) ** 2;
    den += y * y;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}
export function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what = ""): void {
  const e = relErr(a, b);
  if (!(e <= tol)) throw new Error(`${what} relative error ${e.toExponential(3)} > ${tol} (seed ${SEED})`);
  expect(e).toBeLessThanOrEqual(tol);
}

/**
 * Each element within tol of the size of what was summed to make it: |a_i − b_i| <= tol · scale_i, with scale_i
 * a sum of magnitudes (Σ_k |x_k·w_k| + |bias| for a dot product: float rounding's own bound). For outputs that
 * can cancel to nearly zero, where a relative error is rounding noise over a tiny value. NaN never passes.
 */
export function expectCloseScaled(a: ArrayLike<number>, b: ArrayLike<number>, scale: ArrayLike<number>, tol: number, what = ""): void {
  if (a.length !== b.length || a.length !== scale.length) throw new Error(`${what}: length ${a.length} vs ${b.length} (scales ${scale.length})`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!) / Math.max(scale[i]!, 1e-30);
    if (!(d <= tol)) throw new Error(`${what} element ${i}: ${a[i]} vs ${b[i]}, error ${d.toExponential(3)} of the summed magnitude ${scale[i]} > ${tol} (seed ${SEED})`);
    worst = Math.max(worst, d);
  }
  expect(worst).toBeLessThanOrEqual(tol);
}

/** the awkward sizes every kernel is tried on */
export const AWKWARD = [1, 3, 127, 129];

let cached: { name: string; backend: Backend | null; reason?: string }[] | null = null;
/**
 * Every registered backend except cpu, each with a Backend if its probe succeeds here. GPTQ_TEST_BACKENDS
 * (comma list) narrows it. CPU is the oracle and is tested against independent references separately.
 */
export async function gpuBackends(): Promise<{ name: string; backend: Backend | null; reason?: string }[]> {
  if (cached) return cached;
  const want = process.env.GPTQ_TEST_BACKENDS?.split(",");
  const out = [];
  for (const p of await probeAll()) {
    if (p.name === "cpu" || (want && !want.includes(p.name))) continue;
    out.push(p.available ? { name: p.name, backend: await selectBackend(p.name) } : { name: p.name, backend: null, reason: p.reason });
  }
  return (cached = out);
}
export async function cpu(): Promise<Backend> {
  return selectBackend("cpu");
}

/** the GPU backends of this machine, resolved before any test file declares its tests */
const GPU = await gpuBackends();

/**
 * Declare `body` once per non-CPU backend: it runs against the CPU backend as oracle. An unavailable
 * backend shows up as a skipped test with its probe's reason in the name. Synchronous, so the tests are
 * registered while the file is collected.
 */
export function eachGpuBackend(label: string, body: (be: Backend, ref: Backend) => Promise<void> | void, timeout = 300_000, requires?: keyof Backend): void {
  for (const b of GPU) {
    if (!b.backend) test.skip(`${label} [${b.name}: unavailable: ${b.reason}]`, () => {});
    else if (requires && !b.backend[requires]) test.skip(`${label} [${b.name}: has no ${String(requires)}]`, () => {});
    else test(`${label} [${b.name}]`, async () => body(b.backend!, await cpu()), timeout);
  }
}

/**
 * Runs body once per shader variant the backend can switch between, so that feature paths and their fallbacks
 * are all tested (WebGPU: "dot4", the integer-dot GEMV for every slab of 1-4 rows, where WGSL has
 * dot4I8Packed; "f16" with shader-f16 where the device has it; "f32", neither).
 */
export async function eachShaderVariant(be: Backend, body: (variant: string) => Promise<void>): Promise<void> {
  const gemv = process.env.GPTQ_WEBGPU_GEMV;
  return eachFeatureVariant(be, "shader variant", [
    { name: "dot4", f: { f16: true, dot4: true }, needs: "dot4", env: ["GPTQ_WEBGPU_GEMV", "i"] },
    { name: "f16", f: { f16: true, dot4: false }, needs: "f16", env: ["GPTQ_WEBGPU_GEMV", gemv] },
    { name: "f32", f: { f16: false, dot4: false }, env: ["GPTQ_WEBGPU_GEMV", gemv] },
  ], body);
}
/**
 * body once per variant: the backend's shader features set as the variant says (useShaderFeatures; skipped where
 * `needs` did not turn on: the device lacks it) and an environment variable set for it; features restored after,
 * a failure named by its variant. A backend without shader features runs body once, "default".
 */
type FeatureVariant = { name: string; f: Record<string, boolean>; needs?: string; env?: [string, string | undefined] };
async function eachFeatureVariant(be: Backend, label: string, variants: FeatureVariant[], body: (variant: string) => Promise<void>): Promise<void> {
  const w = be as unknown as { useShaderFeatures?: (f: Record<string, boolean>) => void; shaderFeatures?: Record<string, boolean> };
  if (!w.useShaderFeatures || !w.shaderFeatures) return body("default");
  const before = w.shaderFeatures;
  try {
    for (const v of variants) {
      w.useShaderFeatures(v.f);
      if (v.needs && !w.shaderFeatures[v.needs]) continue; // the device lacks it
      const run = async () => {
        try {
          await body(v.name);
        } catch (e) {
          (e as Error).message = `[${label} ${v.name}] ${(e as Error).message}`;
          throw e;
        }
      };
      await (v.env ? withEnv(v.env[0], v.env[1], run) : run());
    }
  } finally {
    w.useShaderFeatures(before);
  }
}

/** body with process.env[name] set to value (undefined: unset), restored after */
export async function withEnv<T>(name: string, value: string | undefined, body: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  const put = (v: string | undefined) => (v === undefined ? delete process.env[name] : (process.env[name] = v));
  put(value);
  try {
    return await body();
  } finally {
    put(before);
  }
}

/**
 * Runs body with the workgroup reductions through subgroups (WebGPU, where the device has them: the usual path,
 * then the path for other subgroup layouts) and through the tree in workgroup memory, so that every path of
 * reduce.wgsl is tested (other backends: once, "default").
 */
export async function eachReduceVariant(be: Backend, body: (variant: string) => Promise<void>): Promise<void> {
  return eachFeatureVariant(be, "reduction", [
    { name: "subgroups", f: { subgroups: true, sgAllSlots: false }, needs: "subgroups" },
    { name: "subgroups, every slot", f: { subgroups: true, sgAllSlots: true }, needs: "subgroups" },
    { name: "tree", f: { subgroups: false, sgAllSlots: false } },
  ], body);
}

/** backends whose ops take positions as device scalars (graphs), and the CPU oracle */
export const devicePositions = (be: Backend) => be.name === "cpu" || Boolean(be.graphs);

/** an output tensor pre-filled with NaN so unwritten elements show */
export function poisoned(be: Backend, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return be.upload(new Float32Array(n).fill(NaN), shape, "f32");
}

export async function dl(t: Tensor): Promise<Float32Array> {
  return (await t.backend.download(t)) as Float32Array;
}
