// embedding: table [V, H], ids [T] -> out [T, H]
struct P { T: u32, H: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.T * p.H) { return; }
  let t = idx / p.H;
  out[idx] = table[u32(ids[t]) * p.H + idx % p.H];
}
