// log_softmax: x [T, V] -> x − logsumexp(x) per row (entry main);  nll: out[t] = logsumexp(x_t) − x_t[target_t] (entry nll)
struct P { V: u32, nx: u32, r0: u32, rows: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
fn lse(base: u32, lx: u32) -> f32 {
  var mx = -3.4e38;
  for (var j = lx; j < p.V; j += 256u) { mx = max(mx, x[base + j]); }
  let m = wg_max(mx, lx, 256u);
  var sum = 0.0;
  for (var j = lx; j < p.V; j += 256u) { sum += exp(x[base + j] - m); }
  return m + log(wg_sum(sum, lx, 256u));
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = wg.x + wg.y * p.nx;
  if (row >= p.rows) { return; } // the grid's second dimension may overshoot (uniform per workgroup)
  let base = row * p.V;
  let z = lse(base, l.x);
  for (var j = l.x; j < p.V; j += 256u) { out[base + j] = x[base + j] - z; }
}
@compute @workgroup_size(256)
fn nll(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  // x may be bound as a window of rows from r0 on (logits above the binding limit); targets and out are whole
  let row = wg.x + wg.y * p.nx;
  if (row >= p.rows) { return; } // uniform per workgroup: lse's barriers are not split
  let z = lse(row * p.V, l.x);
  if (l.x == 0u) { out[p.r0 + row] = z - x[row * p.V + u32(targets[p.r0 + row])]; }
}
