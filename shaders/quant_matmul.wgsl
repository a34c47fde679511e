// quant_matmul: y [M, N] = x [M, K] @ dequant(W)ᵀ (+ b), W[n, k] = scale[g, n]·(q[k, n] − zero[g, n]), g = g_idx[k]
//   unpack_zeros  zeros [G, N] f32 from qzeros (+ offset: 1 for checkpoint_format gptq)
//   generic       any bit width: one thread per output, the bit stream read directly, inputs [k0, k1) (added
//                 into y when accum: a packed weight above the binding limit goes by windows of whole words)
//   dequant       W[n0 : n0 + nc, k0 : k1] into wd [nc, K] f32, for large M (then matmul; outputs in chunks and
//                 inputs in windows when W is above the binding limit)
// qweight may be a window of the packed weight whose first word is word qb of the whole (0: all of it)
// (the fast 4-bit path for a few rows is quant_matmul_q4.wgsl)
struct P { M: u32, K: u32, N: u32, bits: u32, G: u32, offset: u32, has_bias: u32, nx: u32, n0: u32, nc: u32, k0: u32, k1: u32, qb: u32, accum: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> qweight: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> zeros: array<f32>;
@group(0) @binding(4) var<storage, read> gidx: array<i32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<uniform> p: P;

// value j of a little-endian bit stream of `bits`-bit values in qweight, word w at qweight[base + w·stride]
fn read_stream(base: u32, stride: u32, j: u32) -> u32 {
  let bit = j * p.bits;
  let wd = bit >> 5u;
  let off = bit & 31u;
  let mask = (1u << p.bits) - 1u;
  var v = (qweight[base + wd * stride - p.qb] >> off) & mask;
  if (off + p.bits > 32u) { v |= (qweight[base + (wd + 1u) * stride - p.qb] << (32u - off)) & mask; }
  return v;
}
// code of input k, output n: column n of qweight [K·bits/32, N] is one stream
fn code(k: u32, n: u32) -> f32 {
  return f32(read_stream(n, p.N, k));
}

@compute @workgroup_size(256)
fn unpack_zeros(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.G * p.N) { return; }
  // qzeros [G, N·bits/32] is passed as `qweight`: row g is one stream
  let v = read_stream((idx / p.N) * (p.N * p.bits / 32u), 1u, idx % p.N);
  zeros[idx] = f32(v + p.offset);
}

@compute @workgroup_size(64)
fn generic(@builtin(global_invocation_id) g: vec3u) {
  let n = g.x;
  let m = g.y;
  if (n >= p.N || m >= p.M) { return; }
  var acc = 0.0;
  for (var k = p.k0; k < p.k1; k++) {
    let gr = u32(gidx[k]);
    acc += x[m * p.K + k] * scales[gr * p.N + n] * (code(k, n) - zeros[gr * p.N + n]);
  }
  if (p.accum != 0u) { acc += y[m * p.N + n]; } else if (p.has_bias != 0u) { acc += bias[n]; }
  y[m * p.N + n] = acc;
}

@compute @workgroup_size(256)
fn dequant(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;  // over (k1 − k0)·nc, input order
  if (idx >= (p.k1 - p.k0) * p.nc) { return; }
  let k = p.k0 + idx / p.nc;
  let j = idx % p.nc;
  let n = p.n0 + j;
  let gr = u32(gidx[k]);
  y[j * p.K + k] = scales[gr * p.N + n] * (code(k, n) - zeros[gr * p.N + n]);
}
