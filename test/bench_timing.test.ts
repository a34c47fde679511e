// The pieces benchmarks and WebGPU shader variants rest on: WGSL specialization (//#if blocks), device
// timestamps (WebGPU gpuTimeUs) and the timing helper that picks graph replays or host launches.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { specialize } from "../backends/webgpu/index.ts";
import { timeDeviceUs } from "../src/bench.ts";
import { cpu, eachGpuBackend } from "./helpers.ts";

const SHADERS = join(import.meta.dir, "..", "shaders");

describe("specialize (WGSL //#if blocks)", () => {
  const src = ["a", "//#if f16", "b", "//#else", "c", "//#endif", "d"].join("\n");
  test("keeps the feature block and enables f16 when on", () => {
    expect(specialize(src, { f16: true })).toBe(["enable f16;", "a", "b", "d"].join("\n"));
  });
  test("keeps the #else block and enables nothing when off", () => {
    expect(specialize(src, { f16: false })).toBe(["a", "c", "d"].join("\n"));
  });
  test("a source without blocks is unchanged either way", () => {
    expect(specialize("x\ny", { f16: true })).toBe("x\ny");
  });
  test("unbalanced or nested blocks are errors", () => {
    expect(() => specialize("//#if f16\nx", { f16: true })).toThrow(/without \/\/#endif/);
    expect(() => specialize("//#if f16\n//#if f16\n//#endif\n//#endif", { f16: true })).toThrow(/nested/);
  });
  test("each feature enables only its own directive, in a fixed order", () => {
    const two = ["//#if subgroups", "s", "//#endif", "//#if f16", "h", "//#endif"].join("\n");
    expect(specialize(two, { f16: true, subgroups: true })).toBe(["enable f16;", "enable subgroups;", "s", "h"].join("\n"));
    expect(specialize(two, { f16: false, subgroups: true })).toBe(["enable subgroups;", "s"].join("\n"));
    expect(specialize(two, { f16: true })).toBe(["enable f16;", "h"].join("\n"));
  });
  test("every shader file specializes every way, and only feature code mentions f16 types or subgroup builtins", () => {
    for (const f of readdirSync(SHADERS).filter((n) => n.endsWith(".wgsl"))) {
      const s = readFileSync(join(SHADERS, f), "utf8");
      const off = specialize(s, { f16: false, subgroups: false });
      expect(off).not.toMatch(/\bf16\b|vec[234]<f16>/);
      expect(off).not.toMatch(/\bsubgroup[A-Z]\w*\(|\benable /);
      specialize(s, { f16: true, subgroups: true });
    }
  });
});

describe("benchmark timing", () => {
  test("timeDeviceUs times from the host where the backend has no graphs", async () => {
    const be = await cpu();
    const x = be.upload(new Float32Array(64).fill(1), [64], "f32");
    const t = await timeDeviceUs(be, () => be.free(be.add(x, x)), 5);
    expect(t.timing).toBe("eager");
    expect(t.us).toBeGreaterThan(0);
    expect(Number.isFinite(t.us)).toBe(true);
  });
  eachGpuBackend("gpuTimeUs: device timestamps around queued work, or null without them", async (be) => {
    if (!be.gpuTimeUs) return expect(be.name).toBe("cuda"); // CUDA benchmarks replay graphs instead
    const x = be.upload(new Float32Array(1 << 16).fill(1), [1 << 16], "f32");
    const us = await be.gpuTimeUs(() => { for (let i = 0; i < 20; i++) be.free(be.add(x, x)); }, 3);
    if (us === null) return; // the adapter has no timestamp-query
    expect(Number.isFinite(us)).toBe(true);
    expect(us).toBeGreaterThanOrEqual(0);
  });
});
