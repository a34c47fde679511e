// rms_norm: x [T, H], w [H] -> out = x · rsqrt(mean(x²) + eps) · w; one workgroup per row
//   main      out = rms_norm(x)
//   add_main  sum = x + r, out = rms_norm(sum) (the residual add fused into the next norm)
struct P { H: u32, eps: f32, nx: u32, rows: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = wg.x + wg.y * p.nx;
  if (row >= p.rows) { return; } // the grid's second dimension may overshoot (uniform per workgroup)
  let base = row * p.H;
  var ss = 0.0;
  for (var i = l.x; i < p.H; i += 256u) { let v = x[base + i]; ss += v * v; }
  norm_row(base, ss, l.x, false);
}
@compute @workgroup_size(256)
fn add_main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = wg.x + wg.y * p.nx;
  if (row >= p.rows) { return; }
  let base = row * p.H;
  var ss = 0.0;
  for (var i = l.x; i < p.H; i += 256u) { let v = x[base + i] + r[base + i]; sum[base + i] = v; ss += v * v; }
  norm_row(base, ss, l.x, true);
}
// the workgroup's sum of squares (reduce.wgsl), then the scaled row (of sum when `added`: each invocation reads back
// only the elements it wrote)
fn norm_row(base: u32, ss: f32, lx: u32, added: bool) {
  let rs = 1.0 / sqrt(wg_sum(ss, lx, 256u) / f32(p.H) + p.eps);
  for (var i = lx; i < p.H; i += 256u) {
    var v: f32;
    if (added) { v = sum[base + i]; } else { v = x[base + i]; }
    out[base + i] = (v * rs) * w[i];
  }
}
