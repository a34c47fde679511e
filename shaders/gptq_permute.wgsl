// gptq_permute: act-order, Wt' = Wt[perm] (entry rows), H' = H[perm][:, perm] (entry sym)
struct P { rows: u32, cols: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> perm: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn rows(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.rows * p.cols) { return; }
  dst[idx] = src[u32(perm[idx / p.rows]) * p.rows + idx % p.rows];
}
@compute @workgroup_size(256)
fn sym(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  let n = p.cols;
  if (idx >= n * n) { return; }
  dst[idx] = src[u32(perm[idx / n]) * n + u32(perm[idx % n])];
}
