// gptq_block: the GPTQ column loop of one block [i1, i2) (<= 128 columns) on Wt [cols, rows] with
// Hinv = U [cols, cols]; one thread per output row, the block's values in a private array.
// (quantizer.wgsl is prepended.) Wt, Hinv and codes may be bound as windows (tensors above the binding limit)
// from element wt_base, h_base, codes_base on: Wt's covers rows [i1, i2) and the groups starting in them,
// Hinv's and codes' rows [i1, i2).
struct P { rows: u32, cols: u32, i1: u32, i2: u32, gs: u32, static_groups: u32, bits: u32, sym: u32, mse: u32, wt_base: u32, h_base: u32, codes_base: u32 }
@group(0) @binding(0) var<storage, read_write> wt: array<f32>;
@group(0) @binding(1) var<storage, read> hinv: array<f32>;
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;
@group(0) @binding(3) var<storage, read_write> err: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> scales: array<f32>;
@group(0) @binding(6) var<storage, read_write> zeros: array<f32>;
@group(0) @binding(7) var<storage, read> goc: array<i32>;
@group(0) @binding(8) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gi: vec3u) {
  let r = gi.x;
  if (r >= p.rows) { return; }
  let rows = p.rows;
  let cnt = p.i2 - p.i1;
  let maxq = f32((1u << p.bits) - 1u);
  var w: array<f32, 128>;
  for (var i = 0u; i < cnt; i++) { w[i] = wt[(p.i1 + i) * rows + r - p.wt_base]; }
  var l = 0.0;
  for (var i = 0u; i < cnt; i++) {
    let c = p.i1 + i;
    var g: u32;
    if (p.static_groups == 0u) {
      g = c / p.gs;
      // a group starts: params from Wt as it was at block start (written back only at the end)
      if (c % p.gs == 0u) {
        let sz = find_params(c * rows + r - p.wt_base, rows, min(p.gs, p.cols - c), p.bits, p.sym, p.mse);
        scales[g * rows + r] = sz.x;
        zeros[g * rows + r] = sz.y;
      }
    } else {
      g = u32(goc[c]);
    }
    let s = scales[g * rows + r];
    let z = zeros[g * rows + r];
    let d = hinv[c * p.cols + c - p.h_base];
    let x = w[i];
    let q = clamp(round(div_rn(x, s)) + z, 0.0, maxq);
    let dq = s * (q - z);
    codes[c * rows + r - p.codes_base] = u32(q);
    let e = (x - dq) / d;
    l += (x - dq) * (x - dq) / (d * d) / 2.0;
    err[i * rows + r] = e;
    w[i] = dq;
    for (var j = i + 1u; j < cnt; j++) { w[j] -= e * hinv[c * p.cols + p.i1 + j - p.h_base]; }
  }
  for (var i = 0u; i < cnt; i++) { wt[(p.i1 + i) * rows + r - p.wt_base] = w[i]; }
  loss[r] += l;
}
