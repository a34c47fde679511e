// gptq_finish: back to the original input order. inv[perm[i]] = i (entry invert); W [rows, cols] with
// W[r, c] = Wtq[inv[c], r] (entry weight); codes packed as the standard qweight [words, rows], value k of
// column r at bit k·bits of the column's stream (entry pack).
// weight and pack gather over windows (tensors above the binding limit): a dispatch writes the output rows
// [d0, d0 + nd) from the source rows (of Wtq, codes) in [s0, s1), bound from element src_base on; pack ORs
// into the words when s0 > 0. *_base is where a bound window starts (0: the whole tensor).
struct P { rows: u32, cols: u32, bits: u32, words: u32, nx: u32, d0: u32, nd: u32, s0: u32, s1: u32, src_base: u32, dst_base: u32 }
@group(0) @binding(0) var<storage, read> wtq: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> perm: array<i32>;
@group(0) @binding(3) var<storage, read_write> inv: array<u32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> qweight: array<u32>;
@group(0) @binding(6) var<uniform> p: P;
@compute @workgroup_size(256)
fn invert(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.cols) { inv[u32(perm[g.x])] = g.x; }
}
@compute @workgroup_size(256)
fn weight(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;  // over rows [d0, d0 + nd) of W, output order
  if (idx >= p.nd * p.cols) { return; }
  let r = p.d0 + idx / p.cols;
  let c = idx % p.cols;
  let s = inv[c];
  if (s < p.s0 || s >= p.s1) { return; }
  w[r * p.cols + c - p.dst_base] = wtq[s * p.rows + r - p.src_base];
}
@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;  // over words [d0, d0 + nd) of qweight
  if (idx >= p.nd * p.rows) { return; }
  let wd = p.d0 + idx / p.rows;
  let r = idx % p.rows;
  let b0 = wd * 32u;
  let k0 = b0 / p.bits;
  let k1 = (b0 + 32u + p.bits - 1u) / p.bits;
  var word = 0u;
  for (var k = k0; k < k1; k++) {
    var v = 0u;
    if (k < p.cols) {
      let s = inv[k];
      if (s >= p.s0 && s < p.s1) { v = codes[s * p.rows + r - p.src_base]; }
    }
    let shift = i32(k * p.bits) - i32(b0);
    if (shift >= 0) { word |= v << u32(shift); } else { word |= v >> u32(-shift); }
  }
  let o = wd * p.rows + r - p.dst_base;
  if (p.s0 == 0u) { qweight[o] = word; } else { qweight[o] |= word; }
}
