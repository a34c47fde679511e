// WebGPU: bun-webgpu's packed descriptors kept alive through the native calls (backends/webgpu/pin.ts).
import { describe, expect, test } from "bun:test";
import { createGPUInstance, globalConstructors } from "bun-webgpu";
import { pinDevice, pinned } from "../backends/webgpu/pin.ts";
import { gpuBackends, rng } from "./helpers.ts";

const GPU = (await gpuBackends()).find((b) => b.name === "webgpu");
const be = GPU?.backend;
const d = be ? describe : describe.skip;

d(`webgpu: descriptors kept alive through bun-webgpu's native calls${be ? "" : ` [webgpu unavailable: ${GPU?.reason ?? "not registered"}]`}`, () => {
  const r = rng();
  test("a device made, a shader compiled and run while a garbage collection runs inside each string packing", async () => {
    // bun-webgpu passes Dawn the addresses of arrays nothing keeps alive (see pin.ts); a full collection after every
    // TextEncoder.encode frees them before the call. Unpinned (checked on 2026-12-07 with bun-webgpu as locked) this
    // fails with "Error while parsing WGSL: :1:1 error: null character found", and the backend's own requestDevice
    // (with required features) with "Invalid feature required"; pinned, the whole sequence must work.
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
});
