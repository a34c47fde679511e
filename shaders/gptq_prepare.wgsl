// gptq_prepare: W [rows, cols] -> Wt [cols, rows]; dead inputs (H[d,d] == 0): H[d,d] = 1 and Wt[d] = 0
struct P { rows: u32, cols: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> H: array<f32>;
@group(0) @binding(2) var<storage, read_write> dead: array<u32>;
@group(0) @binding(3) var<storage, read_write> wt: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256)
fn mark_dead(@builtin(global_invocation_id) g: vec3u) {
  let c = g.x;
  if (c >= p.cols) { return; }
  let i = c * p.cols + c;
  let d = H[i] == 0.0;
  if (d) { H[i] = 1.0; }
  dead[c] = select(0u, 1u, d);
}
@compute @workgroup_size(256)
fn transpose(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;  // over cols·rows, output order
  if (idx >= p.rows * p.cols) { return; }
  let c = idx / p.rows;
  let r = idx % p.rows;
  wt[idx] = select(w[r * p.cols + c], 0.0, dead[c] != 0u);
}
