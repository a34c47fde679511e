// The standard GPTQ bit layout, checked against hand-packed words (independent of our packer).
import { describe, expect, test } from "bun:test";
import { contiguousGroups, packQweight, packQzeros, unpackQweight, unpackQzeros } from "../src/gptq/pack.ts";
import { rng } from "./helpers.ts";

const u32 = (a: Int32Array) => Array.from(a, (x) => x >>> 0);

describe("pack", () => {
  test("4-bit: values 0..7 down one column -> 0x76543210", () => {
    const codes = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]); // [in=8, out=1]
    expect(u32(packQweight(codes, 8, 1, 4))).toEqual([0x76543210]);
    expect(Array.from(unpackQweight(Int32Array.of(0xfedcba98 | 0), 8, 1, 4))).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
  });
  test("8-bit: [1, 2, 3, 250] -> 0xfa030201", () => {
    expect(u32(packQweight(Uint8Array.from([1, 2, 3, 250]), 4, 1, 8))).toEqual([0xfa030201]);
  });
  test("2-bit: 16 values 0,1,2,3,... -> 0xe4e4e4e4", () => {
    const codes = Uint8Array.from({ length: 16 }, (_, i) => i % 4);
    expect(u32(packQweight(codes, 16, 1, 2))).toEqual([0xe4e4e4e4]);
  });
  test("3-bit: 32 values as AutoGPTQ's pack loop writes them (values 10 and 21 straddle words)", () => {
    const v = Array.from({ length: 32 }, (_, i) => (i * 5 + 3) % 8);
    // AutoGPTQ QuantLinear.pack for bits == 3, transcribed with plain integer ops
    const w = [0, 0, 0];
    let i = 0;
    for (let j = 0; j < 10; j++) w[0]! |= v[i + j]! << (3 * j);
    i += 10;
    w[0]! |= v[i]! << 30;
    w[1]! |= (v[i]! >> 2) & 1;
    i += 1;
    for (let j = 0; j < 10; j++) w[1]! |= v[i + j]! << (3 * j + 1);
    i += 10;
    w[1]! |= v[i]! << 31;
    w[2]! |= (v[i]! >> 1) & 3;
    i += 1;
    for (let j = 0; j < 10; j++) w[2]! |= v[i + j]! << (3 * j + 2);
    expect(u32(packQweight(Uint8Array.from(v), 32, 1, 3))).toEqual(w.map((x) => x >>> 0));
    expect(Array.from(unpackQweight(Int32Array.from(w), 32, 1, 3))).toEqual(v);
  });
  test("qweight packs along the input dimension, column by column", () => {
    // [in=8, out=2]: column 0 = 0..7, column 1 = 7..0
    const codes = new Uint8Array(16);
    for (let k = 0; k < 8; k++) { codes[k * 2] = k; codes[k * 2 + 1] = 7 - k; }
    expect(u32(packQweight(codes, 8, 2, 4))).toEqual([0x76543210, 0x01234567]);
  });
  test("qzeros pack along the output dimension; v1 stores zero − 1 (−1 wraps to all ones)", () => {
    expect(u32(packQzeros(Int32Array.from([7, 6, 5, 4, 3, 2, 1, 0]), 1, 8, 4))).toEqual([0x01234567]);
    expect(u32(packQzeros(Int32Array.from([-1, 0, 0, 0, 0, 0, 0, 0]), 1, 8, 4))).toEqual([0x0000000f]);
  });
  test("random round trips for 2/3/4/8 bits", () => {
    const r = rng();
    for (const bits of [2, 3, 4, 8]) {
      const K = 96, N = 64, G = 3;
      const codes = Uint8Array.from({ length: K * N }, () => Math.floor(r() * (1 << bits)));
      expect(unpackQweight(packQweight(codes, K, N, bits), K, N, bits)).toEqual(codes);
      const z = Int32Array.from({ length: G * N }, () => Math.floor(r() * (1 << bits)));
      expect(unpackQzeros(packQzeros(z, G, N, bits), G, N, bits)).toEqual(z);
    }
  });
  test("sizes that do not fill whole words are refused with the rule named", () => {
    expect(() => packQweight(new Uint8Array(10), 10, 1, 3)).toThrow(/multiple of 32/);
  });
  test("contiguousGroups: the order that makes groups contiguous, or null", () => {
    // plain: already in order
    expect(contiguousGroups(Int32Array.of(0, 0, 1, 1, 2, 2), 3)).toEqual({ perm: Int32Array.of(0, 1, 2, 3, 4, 5), gs: 2, identity: true });
    // act-order: groups of 2 scattered; stable within a group
    expect(contiguousGroups(Int32Array.of(1, 0, 2, 0, 1, 2), 3)).toEqual({ perm: Int32Array.of(1, 3, 0, 4, 2, 5), gs: 2, identity: false });
    // unequal groups, or K not a multiple of the group count
    expect(contiguousGroups(Int32Array.of(0, 0, 0, 1, 2, 2), 3)).toBeNull();
    expect(contiguousGroups(Int32Array.of(0, 0, 1, 1, 2), 3)).toBeNull();
  });
});
