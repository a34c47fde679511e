// embedding: table [V,H], ids [T] -> [T,H]
import { describe, expect, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";
import { f32ToF16Array, f16ToF32Array } from "../../src/dtype.ts";

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const [V, H] of [[5, 3], [130, 127]] as const) {
    const table = f32ToF16Array(randn(V * H, r));
    const ids = Int32Array.from({ length: T }, () => Math.floor(r() * V));
    const got = await dl(be.embedding(ids, be.upload(table, [V, H], "f16")));
    let want: Float32Array;
    if (oracle) want = await dl(oracle.embedding(ids, oracle.upload(table, [V, H], "f16")));
    else {
      const t32 = f16ToF32Array(table);
      want = new Float32Array(T * H);
      ids.forEach((id, t) => want.set(t32.subarray(id * H, id * H + H), t * H));
    }
    expectClose(got, want, 0, `embedding T=${T} V=${V} H=${H}`);
    // ids already on the device (a graph's input)
    const gotT = await dl(be.embedding(be.upload(ids, [T], "i32"), be.upload(table, [V, H], "f16")));
    expectClose(gotT, want, 0, `embedding (device ids) T=${T} V=${V} H=${H}`);
  }
}

describe("embedding", () => {
  test("cpu vs row copy", async () => check(await cpu()));
  test("cpu rejects an out-of-range id", async () => {
    const be = await cpu();
    expect(() => be.embedding(Int32Array.of(5), be.upload(new Float32Array(10), [5, 2], "f32"))).toThrow(/out of range/);
  });
  eachGpuBackend("vs cpu", (be, c) => check(be, c));
});
