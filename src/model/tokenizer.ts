/**
 * Tokenizers from the model folder (tokenizer.json + tokenizer_config.json), fully offline, through
 * @huggingface/tokenizers: the same pure-JS implementation @huggingface/transformers uses, without its
 * 430 MB of onnxruntime. Accepts any tokenizer_class, including transformers 5's "TokenizersBackend".
 */
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelFormatError } from "../errors.ts";
import { readJson } from "./config.ts";

export class Tokenizer {
  private constructor(private readonly tok: HfTokenizer, readonly dir: string) {}

  static load(dir: string): Tokenizer {
    const tj = join(dir, "tokenizer.json");
    if (!existsSync(tj)) throw new ModelFormatError(`${dir}: no tokenizer.json (a fast-tokenizer file is required; save the tokenizer with transformers' save_pretrained)`);
    const cfgPath = join(dir, "tokenizer_config.json");
    const cfg = existsSync(cfgPath) ? readJson(cfgPath) : {};
    try {
      return new Tokenizer(new HfTokenizer(readJson(tj) as never, cfg as never), dir);
    } catch (e) {
      throw new ModelFormatError(`${tj}: cannot build the tokenizer (${(e as Error).message})`);
    }
  }

  /** encode with the tokenizer's defaults (special tokens such as BOS added as the tokenizer says) */
  encode(text: string, addSpecialTokens = true): Int32Array {
    return Int32Array.from(this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids);
  }
  decode(ids: ArrayLike<number>, skipSpecial = false): string {
    const arr = Array.from(ids);
    if (arr.length === 0) return "";
    return this.tok.decode(arr, { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false });
  }
}
