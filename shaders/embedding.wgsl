// embedding: table [V, H], ids [T] -> out [T, H]. Above the binding limit the table is bound as a window of
// rows [v0, v1) (only outputs whose ids fall in it are written) and out as a window of T rows from t0 on.
struct P { T: u32, H: u32, nx: u32, v0: u32, v1: u32, t0: u32 }
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.T * p.H) { return; }
  let id = u32(ids[p.t0 + idx / p.H]);
  if (id < p.v0 || id >= p.v1) { return; }
  out[idx] = table[(id - p.v0) * p.H + idx % p.H];
}
