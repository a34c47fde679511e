/**
 * Resolve a model argument: a local folder, or a hub id ("org/name[@revision]") downloaded with
 * @huggingface/hub into the standard Hugging Face cache. Honours HF_HOME, HF_HUB_CACHE, HF_TOKEN,
 * HF_ENDPOINT and HF_HUB_OFFLINE. Downloads show a progress bar on stderr.
 */
import { existsSync, statSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { snapshotDownload } from "@huggingface/hub";
import { HubError, InvalidArgumentError } from "../errors.ts";
import { Progress } from "../progress.ts";

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+(@[\w./-]+)?$/;

export function hubCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  const home = process.env.HF_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

function offline(): boolean {
  const v = (process.env.HF_HUB_OFFLINE ?? "").toLowerCase();
  return v === "1" || v === "true" || v === "yes" || v === "on";
}

/** a snapshot already in the cache: refs/<revision> -> snapshots/<sha> */
function cachedSnapshot(repo: string, revision: string): string | null {
  const root = join(hubCacheDir(), `models--${repo.replace("/", "--")}`);
  let sha = revision;
  const ref = join(root, "refs", revision);
  if (existsSync(ref)) sha = readFileSync(ref, "utf8").trim();
  const snap = join(root, "snapshots", sha);
  return existsSync(snap) && readdirSync(snap).length > 0 ? snap : null;
}

export async function resolveModel(arg: string, opts: { quiet?: boolean } = {}): Promise<string> {
  if (existsSync(arg)) {
    if (!statSync(arg).isDirectory()) throw new InvalidArgumentError(`<model>: "${arg}" is a file; pass the model folder (with config.json and *.safetensors)`);
    return arg;
  }
  if (!HUB_ID.test(arg)) {
    throw new InvalidArgumentError(`<model>: "${arg}" is neither an existing folder nor a hub id like "org/name" (optionally "@revision")`);
  }
  const [repo, revision = "main"] = arg.split("@") as [string, string?];
  const cached = cachedSnapshot(repo, revision);
  if (offline()) {
    if (cached) return cached;
    throw new HubError(`${repo}@${revision} is not in the cache ${hubCacheDir()} and HF_HUB_OFFLINE is set; unset it to download, or pass a local folder`);
  }
  const endpoint = process.env.HF_ENDPOINT ?? "https://huggingface.co";
  const bar = opts.quiet ? null : new Progress(`download ${repo}`, 0, "B");
  // count bytes of file downloads through a wrapping fetch
  const countingFetch: typeof fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const res = await fetch(input, init);
    const url = String(input instanceof Request ? input.url : input);
    if (!bar || !res.body || !url.includes("/resolve/")) return res;
    const len = Number(res.headers.get("content-length") ?? 0);
    if (len) bar.addTotal(len);
    const reader = res.body.getReader();
    const stream = new ReadableStream({
      async pull(ctrl) {
        const { done, value } = await reader.read();
        if (done) return ctrl.close();
        bar.tick(value.byteLength);
        ctrl.enqueue(value);
      },
    });
    return new Response(stream, { status: res.status, statusText: res.statusText, headers: res.headers });
  }) as typeof fetch;
  // @huggingface/hub logs every file with console.debug (stdout): keep stdout clean for --json
  const debug = console.debug;
  console.debug = process.env.GPTQ_DEBUG ? (...a: unknown[]) => console.error(...a) : () => {};
  try {
    const dir = await snapshotDownload({
      repo: { type: "model", name: repo },
      revision,
      hubUrl: endpoint,
      cacheDir: hubCacheDir(),
      accessToken: process.env.HF_TOKEN || undefined,
      fetch: countingFetch,
    });
    bar?.done();
    return dir;
  } catch (e) {
    bar?.done();
    if (cached) return cached;
    throw new HubError(`downloading ${repo}@${revision} from ${endpoint} failed: ${(e as Error).message}. Check the id, HF_TOKEN for gated/private repos, or pass a local folder`, { cause: e });
  } finally {
    console.debug = debug;
  }
}
