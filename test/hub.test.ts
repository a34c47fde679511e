// Hub downloads through HF_ENDPOINT, against a loopback server of our own serving a fixture repository.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { DATA, hasData } from "./helpers.ts";
import { resolveModel } from "../src/model/hub.ts";
import { HubError, InvalidArgumentError } from "../src/errors.ts";
import { loadModel } from "../src/index.ts";

const SHA = "0123456789abcdef0123456789abcdef01234567";
const REPO = "test-org/stories260K";
let server: ReturnType<typeof Bun.serve> | null = null;
const requests: string[] = [];
let authSeen = "";

function files(): Map<string, Uint8Array> {
  const dir = join(DATA, "stories260K-hf");
  return new Map(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));
}
const oid = (b: Uint8Array) => createHash("sha1").update(b).digest("hex");

beforeAll(() => {
  if (!hasData) return;
  const repo = files();
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const u = new URL(req.url);
      requests.push(`${req.method} ${u.pathname}`);
      authSeen = req.headers.get("authorization") ?? authSeen;
      const p = decodeURIComponent(u.pathname);
      if (p.startsWith(`/api/models/${REPO}/revision/`)) return Response.json({ _id: "x", id: REPO, sha: SHA, private: false, downloads: 0, likes: 0, gated: false, tags: [], lastModified: "2026-01-01T00:00:00.000Z" });
      if (p.startsWith(`/api/models/${REPO}/tree/`)) return Response.json([...repo].map(([path, b]) => ({ type: "file", path, oid: oid(b), size: b.length })));
      if (p.startsWith(`/api/models/${REPO}/paths-info/`)) {
        const body = (await req.json()) as { paths: string[] };
        return Response.json(body.paths.filter((x) => repo.has(x)).map((path) => ({ type: "file", path, oid: oid(repo.get(path)!), size: repo.get(path)!.length, lastCommit: { id: SHA, title: "init", date: "2026-01-01T00:00:00.000Z" } })));
      }
      const m = p.match(new RegExp(`^/${REPO}/resolve/[^/]+/(.+)$`));
      if (m && repo.has(m[1]!)) {
        const b = repo.get(m[1]!)!;
        const range = req.headers.get("range")?.match(/bytes=(\d+)-(\d*)/);
        const start = range ? Number(range[1]) : 0, end = range && range[2] ? Number(range[2]) : b.length - 1;
        return new Response(b.slice(start, end + 1), {
          status: range ? 206 : 200,
          headers: { "content-range": `bytes ${start}-${end}/${b.length}`, etag: `"${oid(b)}"`, "content-length": String(end + 1 - start), "accept-ranges": "bytes" },
        });
      }
      return new Response("not found", { status: 404, headers: { "X-Error-Code": "RepoNotFound" } });
    },
  });
});
afterAll(() => server?.stop(true));

describe.skipIf(!hasData)("hub download", () => {
  test("a hub id downloads into HF_HUB_CACHE through HF_ENDPOINT, with HF_TOKEN sent; offline reuses the cache", async () => {
    const cache = mkdtempSync(join(tmpdir(), "gptq-hub-"));
    Object.assign(process.env, { HF_ENDPOINT: `http://127.0.0.1:${server!.port}`, HF_HUB_CACHE: cache, HF_TOKEN: "hf_test_token" });
    delete process.env.HF_HUB_OFFLINE;
    try {
      const dir = await resolveModel(REPO, { quiet: true });
      expect(dir).toBe(join(cache, "models--test-org--stories260K", "snapshots", SHA));
      expect(readFileSync(join(cache, "models--test-org--stories260K", "refs", "main"), "utf8")).toBe(SHA);
      for (const [f, b] of files()) expect(new Uint8Array(readFileSync(join(dir, f))) as Uint8Array).toEqual(b as Uint8Array);
      expect(authSeen).toBe("Bearer hf_test_token");
      // the downloaded model works
      const m = await loadModel(REPO, { backend: "cpu" });
      const logits = (await m.backend.download(m.forward(Int32Array.of(1)))) as Float32Array;
      expect(logits.indexOf(Math.max(...logits))).toBe(403);
      // offline: no request goes out, the cached snapshot is used
      process.env.HF_HUB_OFFLINE = "1";
      const before = requests.length;
      expect(await resolveModel(REPO, { quiet: true })).toBe(dir);
      expect(requests.length).toBe(before);
      await expect(resolveModel("test-org/not-cached", { quiet: true })).rejects.toThrow(/HF_HUB_OFFLINE/);
    } finally {
      for (const k of ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"]) delete process.env[k];
    }
  });

  test("a repository the hub does not have is a HubError naming it", async () => {
    const cache = mkdtempSync(join(tmpdir(), "gptq-hub-"));
    Object.assign(process.env, { HF_ENDPOINT: `http://127.0.0.1:${server!.port}`, HF_HUB_CACHE: cache });
    try {
      const e = await resolveModel("test-org/missing", { quiet: true }).catch((x) => x);
      expect(e).toBeInstanceOf(HubError);
      expect(e.message).toContain("test-org/missing");
      expect(existsSync(join(cache, "models--test-org--missing", "snapshots"))).toBe(false);
    } finally {
      delete process.env.HF_ENDPOINT;
      delete process.env.HF_HUB_CACHE;
    }
  });

  test("neither a folder nor a hub id: says so", async () => {
    await expect(resolveModel("./no/such/dir/here")).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
