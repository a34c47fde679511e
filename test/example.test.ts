// The README's library example runs as written (examples/library.ts).
import { expect, test } from "bun:test";
import { join } from "node:path";
import { hasData } from "./helpers.ts";

test.skipIf(!hasData)("examples/library.ts: load, evaluate, generate, quantize, evaluate the result", async () => {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "..", "examples", "library.ts")], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GPTQ_BACKEND: "cpu", GPTQ_QUIET: "1" } });
  const [out, err] = [await new Response(p.stdout).text(), await new Response(p.stderr).text()];
  expect(await p.exited, err).toBe(0);
  const last = JSON.parse(out.trim().split("\n").pop()!);
  expect(last.generated).toBe(true);
  expect(last.modules).toBe(56);
  expect(last.w4g128).toBeGreaterThan(last.fp16);
  expect(last.w4g128).toBeLessThan(last.fp16 * 1.1);
});
