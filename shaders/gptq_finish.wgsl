// gptq_finish: back to the original input order. inv[perm[i]] = i (entry invert); W [rows, cols] with
// W[r, c] = Wtq[inv[c], r] (entry weight); codes packed as the standard qweight [words, rows], value k of
// column r at bit k·bits of the column's stream (entry pack)
struct P { rows: u32, cols: u32, bits: u32, words: u32, nx: u32 }
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
  let idx = g.x + g.y * p.nx;  // over rows·cols, output order
  if (idx >= p.rows * p.cols) { return; }
  let r = idx / p.cols;
  let c = idx % p.cols;
  w[idx] = wtq[inv[c] * p.rows + r];
}
@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.words * p.rows) { return; }
  let wd = idx / p.rows;
  let r = idx % p.rows;
  let b0 = wd * 32u;
  let k0 = b0 / p.bits;
  let k1 = (b0 + 32u + p.bits - 1u) / p.bits;
  var word = 0u;
  for (var k = k0; k < k1; k++) {
    var v = 0u;
    if (k < p.cols) { v = codes[inv[k] * p.rows + r]; }
    let shift = i32(k * p.bits) - i32(b0);
    if (shift >= 0) { word |= v << u32(shift); } else { word |= v >> u32(-shift); }
  }
  qweight[idx] = word;
}
