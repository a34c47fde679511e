// diagonal: out [n] = diag(H [n, n]); H may be bound as a window of rows [r0, r1) (then those rows' entries)
struct P { n: u32, r0: u32, r1: u32 }
@group(0) @binding(0) var<storage, read> H: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = p.r0 + g.x;
  if (i < p.r1) { out[i] = H[(i - p.r0) * p.n + i]; }
}
