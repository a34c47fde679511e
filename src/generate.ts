/** Token-by-token generation with a KV cache: greedy at temperature 0, else temperature + top-p sampling. */
import { InvalidArgumentError } from "./errors.ts";
import { Decoder, type LlamaModel } from "./model/llama.ts";
import { seededRandom as rng } from "./gptq/calibration.ts";

export interface GenerateOptions {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  /** stop at an EOS token (default true) */
  stopAtEos?: boolean;
  /** called with each new token id and the text it adds */
  onToken?: (id: number, text: string) => void;
  /** replay the decode step as a device graph where the backend has them (default: on, GPTQ_GRAPHS=0 turns off) */
  graph?: boolean;
  /**
   * greedy decoding (temperature 0) with graphs: pick tokens on the device and keep the next step queued while
   * the host takes this one's token (Decoder.greedy; default: on where the backend can, GPTQ_DECODE_PIPELINE=0
   * turns off). Same ids either way.
   */
  pipeline?: boolean;
  /** receives the decoder's final state (mode, graph error) */
  onDecoder?: (d: Decoder) => void;
}

export function sampleToken(logits: Float32Array, temperature: number, topP: number, rand: () => number): number {
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let mx = -Infinity;
  for (const v of logits) if (v > mx) mx = v;
  const p = Array.from(logits, (v, i) => ({ i, p: Math.exp((v - mx) / temperature) }));
  const z = p.reduce((a, b) => a + b.p, 0);
  p.sort((a, b) => b.p - a.p);
  let cum = 0, keep = 0;
  for (; keep < p.length; keep++) {
    cum += p[keep]!.p / z;
    if (cum >= topP) { keep++; break; }
  }
  const kept = p.slice(0, Math.max(1, keep));
  const kz = kept.reduce((a, b) => a + b.p, 0);
  let r = rand() * kz;
  for (const e of kept) if ((r -= e.p) <= 0) return e.i;
  return kept[kept.length - 1]!.i;
}

/** generate from prompt ids; returns all ids (prompt + new) */
export async function generateIds(model: LlamaModel, prompt: Int32Array, opts: GenerateOptions = {}): Promise<number[]> {
  const maxNew = opts.maxNewTokens ?? 64;
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  if (!(maxNew >= 0)) throw new InvalidArgumentError(`--max-new-tokens: must be >= 0, got ${maxNew}`);
  if (!(temperature >= 0)) throw new InvalidArgumentError(`--temperature: must be >= 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new InvalidArgumentError(`--top-p: must be in (0, 1], got ${topP}`);
  if (prompt.length === 0) throw new InvalidArgumentError(`prompt: encodes to no tokens`);
  const maxLen = Math.min(model.config.maxPositions, prompt.length + maxNew);
  if (prompt.length > maxLen) throw new InvalidArgumentError(`prompt: ${prompt.length} tokens exceed the model's context of ${model.config.maxPositions}`);
  const rand = rng(opts.seed ?? 0);
  const cache = model.newCache(maxLen);
  const dec = new Decoder(model, cache, { graph: opts.graph });
  const ids = Array.from(prompt);
  const eos = new Set(model.config.eosTokenIds);
  const stopAt = (id: number) => (opts.stopAtEos ?? true) && eos.has(id);
  const pipeline = temperature <= 0 && (opts.pipeline ?? process.env.GPTQ_DECODE_PIPELINE !== "0");
  try {
    let input = prompt;
    while (ids.length < maxLen) {
      if (pipeline && input.length === 1 && dec.canPipeline) {
        dec.greedy(input[0]!, maxLen - ids.length, (id) => {
          ids.push(id);
          opts.onToken?.(id, "");
          return !stopAt(id);
        });
        break;
      }
      const last = await dec.step(input);
      const next = sampleToken(last, temperature, topP, rand);
      ids.push(next);
      opts.onToken?.(next, "");
      if (stopAt(next)) break;
      input = Int32Array.of(next);
    }
  } finally {
    opts.onDecoder?.(dec);
    dec.free();
    model.freeCache(cache);
  }
  return ids;
}

/** generate text from a prompt, streaming decoded text through onText */
export async function generate(model: LlamaModel, prompt: string, opts: GenerateOptions & { onText?: (s: string) => void } = {}): Promise<{ text: string; ids: number[]; promptTokens: number }> {
  const tok = model.tokenizer;
  const p = tok.encode(prompt);
  let shown = "";
  const ids_: number[] = Array.from(p);
  // the continuation is decoded after the prompt's last token, then that token's text is cut off: decoded
  // alone, its first token would lose its leading space (SentencePiece strips it at the start of a text,
  // "Once upon" + "a time"); one token of context, not the whole prompt, on every new token
  const anchor = p[p.length - 1]!, head = tok.decode([anchor], true);
  const tail = (cont: number[]) => {
    const all = tok.decode([anchor, ...cont], true);
    return all.startsWith(head) ? all.slice(head.length) : tok.decode(cont, true);
  };
  const ids = await generateIds(model, p, {
    ...opts,
    onToken: (id) => {
      // decode the whole continuation so multi-byte characters come out whole
      const text = tail(ids_.slice(p.length).concat(id));
      const delta = text.slice(shown.length);
      if (delta && !text.endsWith("\uFFFD")) {
        opts.onText?.(delta);
        shown = text;
      }
      ids_.push(id);
      opts.onToken?.(id, delta);
    },
  });
  const text = tail(ids.slice(p.length));
  if (text.length > shown.length) opts.onText?.(text.slice(shown.length));
  return { text, ids, promptTokens: p.length };
}
