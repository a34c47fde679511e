// WebGPU memory: descriptors kept alive through bun-webgpu's native calls (backends/webgpu/pin.ts), and new
// buffers. Small ones are mapped at creation (zeroed by Dawn on the host, copied in ahead of the
// submit's work) instead of Dawn's lazy clear inside the compute pass (GPTQ_WEBGPU_EAGER_INIT=0). Either way a
// new buffer must read as zeros where the backend promises zeros, and ops writing into new buffers must agree
// with the CPU backend. Sizes are fresh per run (odd element counts no other test uses), so the pool cannot
// hand out a buffer made before.
import { afterEach, describe, expect, test } from "bun:test";
import { createGPUInstance, globalConstructors } from "bun-webgpu";
import { pinDevice, pinned } from "../backends/webgpu/pin.ts";
import { cpu, dl, expectClose, gpuBackends, randn, rng } from "./helpers.ts";
import type { Backend } from "../src/backend.ts";
import { InvalidArgumentError } from "../src/errors.ts";
import { randomQuant } from "./synthetic.ts";

const GPU = (await gpuBackends()).find((b) => b.name === "webgpu");
const be = GPU?.backend;
const d = be ? describe : describe.skip;
const saved = process.env.GPTQ_WEBGPU_EAGER_INIT;

d(`webgpu memory: descriptors kept alive through native calls; new buffers zeroed ahead or lazily${be ? "" : ` [webgpu unavailable: ${GPU?.reason ?? "not registered"}]`}`, () => {
  afterEach(() => {
    if (saved === undefined) delete process.env.GPTQ_WEBGPU_EAGER_INIT;
    else process.env.GPTQ_WEBGPU_EAGER_INIT = saved;
  });
  const r = rng();
  // element counts no other test allocates: primes above 10^4, different per run and per mode
  let next = 10007 + Math.floor(r() * 5000) * 2;
  const fresh = () => (next += 2 * (1 + Math.floor(r() * 50)));

  for (const mode of ["1", "0"]) {
    test(`GPTQ_WEBGPU_EAGER_INIT=${mode}: zeros() of new sizes read as zeros, also beside writes in the same submit`, async () => {
      process.env.GPTQ_WEBGPU_EAGER_INIT = mode;
      for (let i = 0; i < 4; i++) {
        const n = fresh();
        // a write into another new buffer first (same submit), then the zeros
        const a = be!.upload(randn(n, r), [n], "f32");
        const s = be!.add(a, a);
        const z = be!.zeros([n], "f32");
        const got = (await dl(z)) as Float32Array;
        expect(got.length).toBe(n);
        expect(got.every((v) => v === 0)).toBe(true);
        for (const t of [a, s, z]) be!.free(t);
      }
    });

    test(`GPTQ_WEBGPU_EAGER_INIT=${mode}: the packed matmul into new outputs (and partial sums) agrees with cpu`, async () => {
      process.env.GPTQ_WEBGPU_EAGER_INIT = mode;
      const c: Backend = await cpu();
      // N = 8 · an odd count: output sizes not used elsewhere; K long enough for a k split (partial sums)
      for (const [M, K, N] of [[1, 4096, 8 * 127], [3, 1024, 8 * 31]] as const) {
        const { spec } = randomQuant(r, 4, K, N, 128, false, true);
        const x = randn(M * K, r);
        const run = async (B: Backend) => {
          const w = B.prepareQuantWeight(spec), xt = B.upload(x, [M, K], "f32");
          const y = await dl(B.quantMatmul(xt, w));
          B.free(xt);
          B.free(w);
          return y;
        };
        expectClose(await run(be!), await run(c), 2e-3, `quantMatmul M=${M} K=${K} N=${N} (eager init ${mode})`);
      }
    });
  }

  test("a device made, a shader compiled and run while a garbage collection runs inside each string packing", async () => {
    // bun-webgpu passes Dawn the addresses of arrays nothing keeps alive (see pin.ts); a full collection after every
    // TextEncoder.encode frees them before the call. Unpinned, requestDevice already fails that way ("Invalid
    // feature required", 2026-12-07, bun-webgpu as locked); pinned, the whole sequence must work.
    const { GPUBufferUsage: BU, GPUMapMode, GPUShaderStage } = globalConstructors;
    const enc = TextEncoder.prototype.encode;
    let collections = 0;
    TextEncoder.prototype.encode = function (this: TextEncoder, input?: string) {
      const u = enc.call(this, input);
      Bun.gc(true);
      collections++;
      return u;
    };
    try {
      const gpu = createGPUInstance();
      const adapter = await pinned(() => gpu.requestAdapter({ powerPreference: "high-performance" }));
      const dev = pinDevice(await pinned(() => adapter!.requestDevice()));
      const errors: string[] = [];
      (dev as unknown as { onuncapturederror: (e: { error: { message: string } }) => void }).onuncapturederror = (e) => errors.push(e.error.message);
      // a long source (a large allocation of its own once encoded), a non-default entry point
      const n = 1000 + Math.floor(r() * 1000), k = 1 + Math.floor(r() * 100);
      const code = `// ${"padding ".repeat(4000)}\n@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n` +
        `@compute @workgroup_size(64) fn put_ids(@builtin(global_invocation_id) g: vec3u) { if (g.x < arrayLength(&o)) { o[g.x] = g.x * 3u + ${k}u; } }`;
      const layout = dev.createBindGroupLayout({ entries: [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } }], label: "pinned-test" });
      const pipe = dev.createComputePipeline({ layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module: dev.createShaderModule({ code, label: "pinned-test" }), entryPoint: "put_ids" }, label: "pinned-test" });
      const out = dev.createBuffer({ size: n * 4, usage: BU.STORAGE | BU.COPY_SRC });
      const rd = dev.createBuffer({ size: n * 4, usage: BU.MAP_READ | BU.COPY_DST });
      const e = dev.createCommandEncoder();
      const pass = pinned(() => e.beginComputePass());
      pass.setPipeline(pipe);
      pass.setBindGroup(0, dev.createBindGroup({ layout, entries: [{ binding: 0, resource: { buffer: out } }], label: "pinned-test" }));
      pass.dispatchWorkgroups(Math.ceil(n / 64));
      pass.end();
      e.copyBufferToBuffer(out, 0, rd, 0, n * 4);
      dev.queue.submit([e.finish()]);
      await rd.mapAsync(GPUMapMode.READ);
      const got = new Uint32Array(rd.getMappedRange().slice(0));
      rd.unmap();
      expect(errors).toEqual([]);
      expect(collections).toBeGreaterThan(3);
      expect(Array.from(got)).toEqual(Array.from({ length: n }, (_, i) => i * 3 + k));
      for (const b of [out, rd]) b.destroy();
      dev.destroy();
    } finally {
      TextEncoder.prototype.encode = enc;
    }
  });

  test("GPTQ_WEBGPU_EAGER_INIT takes 0 or 1 and names both", () => {
    process.env.GPTQ_WEBGPU_EAGER_INIT = "yes";
    expect(() => be!.zeros([fresh()], "f32")).toThrow(InvalidArgumentError);
    expect(() => be!.zeros([fresh()], "f32")).toThrow(/GPTQ_WEBGPU_EAGER_INIT=yes: use 1 \(.*\) or 0 \(.*\)/);
  });
});
