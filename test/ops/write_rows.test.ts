// write_rows: dst [S, C] rows r .. r+T = src [T, C], r = row0 (+ rowTensor[0] when the work runs); the rest untouched
import { describe, expect, test } from "bun:test";
import { AWKWARD, cpu, devicePositions, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";

async function check(be: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const C of [1, 3, 130]) for (const row0 of [0, 5]) {
    const S = row0 + T + 4;
    const before = randn(S * C, r), src = randn(T * C, r);
    const want = Float32Array.from(before);
    want.set(src, row0 * C); // an independent reference: a typed-array copy
    const dst = be.upload(before, [S, C], "f32");
    be.writeRows(dst, be.upload(src, [T, C], "f32"), row0);
    expectClose(await dl(dst), want, 0, `writeRows T=${T} C=${C} row0=${row0}`);
    if (devicePositions(be)) {
      const d2 = be.upload(before, [S, C], "f32");
      be.writeRows(d2, be.upload(src, [T, C], "f32"), 2, be.upload(Int32Array.of(row0 - 2), [1], "i32"));
      expectClose(await dl(d2), want, 0, `writeRows (device row) T=${T} C=${C} row0=${row0}`);
    }
  }
}

describe("write_rows", () => {
  test("cpu vs typed-array copy", async () => check(await cpu()));
  test("rows past the end are refused", async () => {
    const be = await cpu();
    expect(() => be.writeRows(be.zeros([4, 2], "f32"), be.zeros([3, 2], "f32"), 2)).toThrow(/exceed/);
  });
  eachGpuBackend("vs typed-array copy", (be) => check(be));
});
