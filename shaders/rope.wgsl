// rope: x [T, heads·hd] in place, Hugging Face half-split layout; position of row t = pos0 + t % seq_len.
// x may be bound as a window of its rows from t0 on (above the binding limit): row t of the window is row t0 + t.
struct P { T: u32, heads: u32, hd: u32, pos0: u32, seq_len: u32, scale: f32, nx: u32, t0: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let half = p.hd / 2u;
  let idx = g.x + g.y * p.nx;
  if (idx >= p.T * p.heads * half) { return; }
  let i = idx % half;
  let th = idx / half;
  let t = th / p.heads;
  let h = th % p.heads;
  let a = f32(p.pos0 + (p.t0 + t) % p.seq_len) * inv_freq[i];
  let c = cos(a) * p.scale;
  let s = sin(a) * p.scale;
  let b = t * p.heads * p.hd + h * p.hd;
  let x1 = x[b + i];
  let x2 = x[b + i + half];
  x[b + i] = x1 * c - x2 * s;
  x[b + i + half] = x2 * c + x1 * s;
}
