// scale: x *= s
struct P { n: u32, s: f32, nx: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x + g.y * p.nx;
  if (i < p.n) { x[i] *= p.s; }
}
