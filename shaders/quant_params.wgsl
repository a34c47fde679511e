// quant_params: group scale/zero per output row over Wt rows [c0, c0+n)  (quantizer.wgsl is prepended).
// main: rows r0 .. r0 + nr of the output, Wt read at stride `stride` from element c0·stride on, bound from
// element wt_base on (a window, for tensors above the binding limit).
// gather: when even a window of n rows of Wt is above the limit (per-channel parameters over all columns),
// outputs are done in chunks of nr rows: tmp [n, nr] = Wt[c0 + j, r0 + r] for j in [s0, s1) (a window of Wt's
// rows), then main runs on tmp (bound as wt, stride nr).
struct P { rows: u32, c0: u32, n: u32, g: u32, bits: u32, sym: u32, mse: u32, wt_base: u32, r0: u32, nr: u32, stride: u32, s0: u32, s1: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> wt: array<f32>;
@group(0) @binding(1) var<storage, read_write> scales: array<f32>;
@group(0) @binding(2) var<storage, read_write> zeros: array<f32>;
@group(0) @binding(3) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gi: vec3u) {
  let r = gi.x;
  if (r >= p.nr) { return; }
  let sz = find_params(p.c0 * p.stride + r - p.wt_base, p.stride, p.n, p.bits, p.sym, p.mse);
  scales[p.g * p.rows + p.r0 + r] = sz.x;
  zeros[p.g * p.rows + p.r0 + r] = sz.y;
}
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= (p.s1 - p.s0) * p.nr) { return; }
  let j = p.s0 + idx / p.nr;
  let r = idx % p.nr;
  tmp[(j - p.c0) * p.nr + r] = wt[j * p.rows + p.r0 + r - p.wt_base];
}
