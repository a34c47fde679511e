// silu_mul: silu(g)·u;  add: a + b;  write_rows: dst[row0:row0+T] = src   (all [T, C])
import { describe, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";

async function check(be: Backend, oracle?: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const C of [1, 3, 172, 1031]) {
    const g = randn(T * C, r, 4), u = randn(T * C, r);
    const up = (B: Backend, a: Float32Array) => B.upload(a, [T, C], "f32");
    const silu = async (B: Backend) => dl(B.siluMul(up(B, g), up(B, u)));
    const add = async (B: Backend) => dl(B.add(up(B, g), up(B, u)));
    const wr = async (B: Backend) => {
      const dst = B.upload(new Float32Array((T + 4) * C).fill(7), [T + 4, C], "f32");
      B.writeRows(dst, up(B, g), 2);
      return dl(dst);
    };
    const refWr = new Float32Array((T + 4) * C).fill(7);
    refWr.set(g, 2 * C);
    expectClose(await silu(be), oracle ? await silu(oracle) : Array.from(g, (x, i) => (x / (1 + Math.exp(-x))) * u[i]!), 1e-6, `siluMul T=${T} C=${C}`);
    expectClose(await add(be), oracle ? await add(oracle) : Array.from(g, (x, i) => x + u[i]!), 1e-7, `add T=${T} C=${C}`);
    expectClose(await wr(be), oracle ? await wr(oracle) : refWr, 0, `writeRows T=${T} C=${C}`);
  }
}

describe("silu_mul / add / write_rows", () => {
  test("cpu vs formulas", async () => check(await cpu()));
  eachGpuBackend("vs cpu", (be, c) => check(be, c));
});
