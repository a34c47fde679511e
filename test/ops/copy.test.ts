// copy: a new tensor with the same contents (WebGPU: a vec4 copy shader for whole 16-byte units)
import { describe, test } from "bun:test";
import { AWKWARD, cpu, dl, eachGpuBackend, expectClose, randn, rng } from "../helpers.ts";
import type { Backend } from "../../src/backend.ts";

async function check(be: Backend) {
  const r = rng();
  for (const T of AWKWARD) for (const C of [1, 4, 7, 1024]) {
    const a = randn(T * C, r);
    const src = be.upload(a, [T, C], "f32");
    const c = be.copy(src);
    be.free(src); // the copy must not alias its source
    expectClose(await dl(c), a, 0, `copy [${T}, ${C}]`);
  }
  const ids = Int32Array.from({ length: 129 }, (_, i) => i * 7 - 300);
  const ci = be.copy(be.upload(ids, [129], "i32"));
  const got = (await be.download(ci)) as Int32Array;
  expectClose(got, ids, 0, "copy i32 [129]");
}

describe("copy", () => {
  test("cpu vs source", async () => check(await cpu()));
  eachGpuBackend("vs source", (be) => check(be));
});
