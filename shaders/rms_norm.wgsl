// rms_norm: x [T, H], w [H] -> out = x · rsqrt(mean(x²) + eps) · w; one workgroup per row
struct P { H: u32, eps: f32, nx: u32, rows: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = wg.x + wg.y * p.nx;
  if (row >= p.rows) { return; } // the grid's second dimension may overshoot (uniform per workgroup)
  let base = row * p.H;
  var ss = 0.0;
  for (var i = l.x; i < p.H; i += 256u) { let v = x[base + i]; ss += v * v; }
  red[l.x] = ss;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (l.x < s) { red[l.x] += red[l.x + s]; }
    workgroupBarrier();
  }
  let r = 1.0 / sqrt(red[0] / f32(p.H) + p.eps);
  for (var i = l.x; i < p.H; i += 256u) { out[base + i] = (x[base + i] * r) * w[i]; }
}
