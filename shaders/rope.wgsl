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
  // the angle reduced to [−π, π] before cos/sin (Cody–Waite: 2π = 6.28125 + 0.00193530717958..., the first
  // exact in 8 bits, so k·6.28125 is exact up to k = 65535): Vulkan's cos/sin are accurate only near 0 (NVIDIA's
  // lose about |a|·2⁻²² absolute, and rotary angles grow with the position)
  let k = round(a * 0.15915494309189535);
  let r = fma(-k, 0.0019353071795864769, fma(-k, 6.28125, a));
  let c = cos(r) * p.scale;
  let s = sin(r) * p.scale;
  let b = t * p.heads * p.hd + h * p.hd;
  let x1 = x[b + i];
  let x2 = x[b + i + half];
  x[b + i] = x1 * c - x2 * s;
  x[b + i + half] = x2 * c + x1 * s;
}
