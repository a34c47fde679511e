// gptq_permute: act-order, Wt' = Wt[perm] (entry rows), H' = H[perm][:, perm] (entry sym).
// A gather over windows: this dispatch writes dst rows [d0, d0 + nd) whose source row perm[i] lies in the
// window of src rows [s0, s1); *_base is the element index where a bound window starts (0: the whole tensor).
struct P { rows: u32, cols: u32, nx: u32, d0: u32, nd: u32, s0: u32, s1: u32, src_base: u32, dst_base: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> perm: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn rows(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.nd * p.rows) { return; }
  let i = p.d0 + idx / p.rows;
  let s = u32(perm[i]);
  if (s < p.s0 || s >= p.s1) { return; }
  let r = idx % p.rows;
  dst[i * p.rows + r - p.dst_base] = src[s * p.rows + r - p.src_base];
}
@compute @workgroup_size(256)
fn sym(@builtin(global_invocation_id) g: vec3u) {
  let n = p.cols;
  let idx = g.x + g.y * p.nx;
  if (idx >= p.nd * n) { return; }
  let i = p.d0 + idx / n;
  let s = u32(perm[i]);
  if (s < p.s0 || s >= p.s1) { return; }
  let j = idx % n;
  dst[i * n + j - p.dst_base] = src[s * n + u32(perm[j]) - p.src_base];
}
