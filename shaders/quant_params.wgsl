// quant_params: group scale/zero per output row over Wt rows [c0, c0+n)  (quantizer.wgsl is prepended)
struct P { rows: u32, c0: u32, n: u32, g: u32, bits: u32, sym: u32, mse: u32 }
@group(0) @binding(0) var<storage, read> wt: array<f32>;
@group(0) @binding(1) var<storage, read_write> scales: array<f32>;
@group(0) @binding(2) var<storage, read_write> zeros: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gi: vec3u) {
  let r = gi.x;
  if (r >= p.rows) { return; }
  let sz = find_params(p.c0 * p.rows + r, p.rows, p.n, p.bits, p.sym, p.mse);
  scales[p.g * p.rows + r] = sz.x;
  zeros[p.g * p.rows + r] = sz.y;
}
