/**
 * The quantizer of the reference GPTQ code (quant.py): min/max (optionally MSE-searched) asymmetric or
 * symmetric uniform quantization per output row of a group of columns. Scales are float32 as in torch;
 * rounding is half-to-even as torch.round.
 */
import type { QuantParamsCfg } from "../backend.ts";

const fr = Math.fround;

/** round half to even, as torch.round */
export function rne(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** q = clamp(round(x/s) + z, 0, maxq) */
export function quantCode(x: number, s: number, z: number, maxq: number): number {
  const q = rne(fr(x / s)) + z;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/**
 * Group params for one row, from the values get(0..n-1).
 * Writes into out[0] = scale, out[1] = zero. Mirrors quant.py Quantizer.find_params (weight=True, perchannel).
 */
export function findParams(get: (j: number) => number, n: number, cfg: QuantParamsCfg, out: Float64Array): void {
  const maxq = (1 << cfg.bits) - 1;
  let xmin = 0;
  let xmax = 0;
  for (let j = 0; j < n; j++) {
    const v = get(j);
    if (v < xmin) xmin = v;
    if (v > xmax) xmax = v;
  }
  if (cfg.sym) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  let scale = fr((xmax - xmin) / maxq);
  let zero = cfg.sym ? (maxq + 1) / 2 : rne(fr(-xmin / scale));
  if (cfg.mse) {
    // quant.py defaults: grid 100, maxshrink 0.8, norm 2.4
    let best = Infinity;
    for (let i = 0; i < 80; i++) {
      const p = 1 - i / 100;
      const xmin1 = fr(p * xmin);
      const xmax1 = fr(p * xmax);
      const s1 = fr((xmax1 - xmin1) / maxq);
      const z1 = cfg.sym ? zero : rne(fr(-xmin1 / s1));
      let err = 0;
      for (let j = 0; j < n; j++) {
        const v = get(j);
        const q = fr(s1 * (quantCode(v, s1, z1, maxq) - z1));
        err += Math.abs(q - v) ** 2.4;
      }
      if (err < best) {
        best = err;
        scale = s1;
        zero = z1;
      }
    }
  }
  out[0] = scale;
  out[1] = zero;
}
