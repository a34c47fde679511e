// The command line as a user runs it: exit codes, one-line errors, --json, --help.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DATA, hasData } from "./helpers.ts";

const CLI = join(import.meta.dir, "..", "gptq.ts");
async function run(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([process.execPath, CLI, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GPTQ_QUIET: "1", ...env } });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, stdout, stderr };
}
const STORIES = join(DATA, "stories260K-hf");

describe("cli", () => {
  test("--help lists the commands; each command has its own --help", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["eval", "generate", "inspect", "backends", "quantize"]) expect(r.stdout).toContain(c);
    const e = await run(["eval", "--help"]);
    expect(e.stdout).toContain("--max-windows");
  });
  test.skipIf(!hasData)("an unknown backend is one line naming the valid ones, exit 1, no stack", async () => {
    const r = await run(["eval", STORIES, "--dataset", join(DATA, "tinystories", "tinystories_val_excerpt.txt"), "--backend", "tpu"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('error: --backend: unknown backend "tpu"; valid: auto, cuda, webgpu, cpu');
  });
  test.skipIf(!hasData)("GPTQ_BACKEND is honoured the same way", async () => {
    const r = await run(["generate", STORIES], { GPTQ_BACKEND: "nope" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown backend "nope"');
  });
  test("a missing model folder: one clear line", async () => {
    const r = await run(["inspect", "/no/such/model"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("/no/such/model");
    expect(r.stderr).not.toContain("    at ");
  });
  test("--verbose adds the stack trace", async () => {
    const r = await run(["inspect", "/no/such/model", "--verbose"]);
    expect(r.stderr).toContain("    at ");
  });
  test("backends prints every backend's probe", async () => {
    const r = await run(["backends"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^cpu +available/m);
    for (const b of ["cuda", "webgpu"]) expect(r.stdout).toMatch(new RegExp(`^${b} +(available|unavailable)`, "m"));
    const j = JSON.parse((await run(["backends", "--json"])).stdout);
    expect(j.map((x: { name: string }) => x.name)).toEqual(["cuda", "webgpu", "cpu"]);
  });
  test.skipIf(!hasData)("eval --json: one JSON object on stdout", async () => {
    const r = await run(["eval", STORIES, "--dataset", join(DATA, "tinystories", "tinystories_val_excerpt.txt"), "--seqlen", "256", "--max-windows", "40", "--backend", "cpu", "--json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.windows).toBe(40);
    expect(j.tokens).toBe(10240);
    expect(j.backend).toBe("cpu");
    expect(Math.abs(j.perplexity / 4.1069 - 1)).toBeLessThan(0.005);
  });
  test.skipIf(!hasData)("GPTQ_BACKEND=webgpu eval: the CPU backend's perplexity within 0.2% (software Vulkan in CI)", async () => {
    const probe = JSON.parse((await run(["backends", "--json"])).stdout).find((b: { name: string }) => b.name === "webgpu");
    if (!probe?.available) return console.log(`webgpu unavailable here: ${probe?.reason}`);
    const r = await run(["eval", STORIES, "--dataset", join(DATA, "tinystories", "tinystories_val_excerpt.txt"), "--seqlen", "256", "--max-windows", "40", "--json"], { GPTQ_BACKEND: "webgpu" });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.backend).toBe("webgpu");
    expect(Math.abs(j.perplexity / 4.1069 - 1)).toBeLessThan(0.002);
  });
  test.skipIf(!hasData)("bad numbers name the option", async () => {
    const r = await run(["eval", STORIES, "--dataset", join(DATA, "tinystories", "tinystories_val_excerpt.txt"), "--seqlen", "abc"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--seqlen");
  });
  test.skipIf(!hasData)("generate streams the greedy continuation", async () => {
    const r = await run(["generate", STORIES, "--prompt", "Once upon a time", "--max-new-tokens", "20", "--backend", "cpu"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("Once upon a time, there was a little");
    // a continuation that starts a new word keeps its space ("Once upon" + " a time", not "Once upona time")
    const s = await run(["generate", STORIES, "--prompt", "Once upon", "--max-new-tokens", "3", "--backend", "cpu"]);
    expect(s.code).toBe(0);
    expect(s.stdout).toStartWith("Once upon a time");
  });
  test.skipIf(!hasData)("generate with sampling is reproducible by seed", async () => {
    const a = await run(["generate", STORIES, "--temperature", "1", "--top-p", "0.9", "--seed", "7", "--max-new-tokens", "30", "--backend", "cpu"]);
    const b = await run(["generate", STORIES, "--temperature", "1", "--top-p", "0.9", "--seed", "7", "--max-new-tokens", "30", "--backend", "cpu"]);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout.length).toBeGreaterThan(20);
  });
  test.skipIf(!hasData)("inspect shows architecture, parameters, quantization and the tensor table", async () => {
    const r = await run(["inspect", join(DATA, "gutenberg-llama-16m-gptq-w4g128")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("LlamaForCausalLM");
    expect(r.stdout).toContain("6 heads, 2 kv heads");
    expect(r.stdout).toMatch(/parameters +15\.\d+M/);
    expect(r.stdout).toContain('"bits":4');
    expect(r.stdout).toMatch(/model\.layers\.0\.mlp\.down_proj\.qweight +I32 +\[128, 384\]/);
  });
});
