// gptq_prepare: W [rows, cols] -> Wt [cols, rows]; dead inputs (H[d,d] == 0): H[d,d] = 1 and Wt[d] = 0.
// Tensors above the binding limit are bound as windows: *_base is the element index where a window starts;
// mark_dead covers columns [c0, c0 + nc), transpose the tile of columns [c0, c0 + nc) × rows [r0, r0 + nr).
struct P { rows: u32, cols: u32, nx: u32, c0: u32, nc: u32, r0: u32, nr: u32, w_base: u32, wt_base: u32, h_base: u32 }
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> H: array<f32>;
@group(0) @binding(2) var<storage, read_write> dead: array<u32>;
@group(0) @binding(3) var<storage, read_write> wt: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256)
fn mark_dead(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= p.nc) { return; }
  let c = p.c0 + g.x;
  let i = c * p.cols + c - p.h_base;
  let d = H[i] == 0.0;
  if (d) { H[i] = 1.0; }
  dead[c] = select(0u, 1u, d);
}
@compute @workgroup_size(256)
fn transpose(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;  // over the tile, output order
  if (idx >= p.nc * p.nr) { return; }
  let c = p.c0 + idx / p.nr;
  let r = p.r0 + idx % p.nr;
  wt[c * p.rows + r - p.wt_base] = select(w[r * p.cols + c - p.w_base], 0.0, dead[c] != 0u);
}
