// attention: q [T, heads·hd], caches k/v [S, kv_heads·hd] -> out [T, heads·hd]; causal, grouped-query heads.
// Row t of a sequence sits at position pos0 + t and sees keys 0..pos0+t; with seq_len > 0 the T rows are
// T/seq_len independent sequences (pos0 = 0). A workgroup per (block of four consecutive rows of a sequence,
// head): keys in chunks of 64 with a running max and sum (online softmax) per row, each key's k and v rows read
// once for the block's rows, the outputs accumulated per head dimension (hd <= 256). Per invocation a key's
// four scores (vec4 over the rows) and the four rows' outputs of its head dimensions; each row masked to its
// own causal length. Blocks do not straddle sequences (T/seq_len sequences of ceil(seq_len/4) blocks;
// seq_len 0: one sequence of T rows); rows past a sequence's end are computed masked and never written, so a
// single row (decoding) is a block of one (the same memory traffic; the unused lanes' arithmetic is idle work).
// Caches above the binding limit: one dispatch per window of cache rows [j0, j1), bound from element kv_base on;
// the softmax state (max, sum, unnormalized output) of each (row, head) is carried in st between them (first:
// start it, last: write out). Unsplit: one dispatch, j0 = 0, j1 = all rows, first = last = 1.
struct P { T: u32, pos0: u32, seq_len: u32, heads: u32, kvh: u32, hd: u32, scale: f32, nx: u32, j0: u32, j1: u32, kv_base: u32, first: u32, last: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> st: array<f32>;  // [T·heads, hd + 2]: max, sum, output
@group(0) @binding(5) var<uniform> p: P;
var<workgroup> qs4: array<vec4<f32>, 256>;  // [i < hd]: q at dimension i, rows 0..3 as x..w
var<workgroup> sc4: array<vec4<f32>, 64>;   // [key of the chunk]: its weights for rows 0..3

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let sq = select(p.T, p.seq_len, p.seq_len > 0u);
  let nb = (sq + 3u) / 4u;                      // blocks per sequence
  let wid = wg.x + wg.y * p.nx;
  if (wid >= (p.T / sq) * nb * p.heads) { return; }
  let blk = wid / p.heads;
  let h = wid % p.heads;
  let kv = h / (p.heads / p.kvh);
  let QC = p.heads * p.hd;
  let KC = p.kvh * p.hd;
  let seqi = blk / nb;
  let r0 = (blk % nb) * 4u;                     // the block's first row within its sequence
  let t0 = seqi * sq + r0;
  let nrow = min(4u, sq - r0);                  // rows of the block inside the sequence
  let k0 = seqi * sq * select(0u, 1u, p.seq_len > 0u);  // first cache row of this sequence
  // each row's causal length (0 for rows past the sequence's end: all masked)
  let Lr = vec4<u32>(p.pos0 + r0 + 1u, p.pos0 + r0 + 2u, p.pos0 + r0 + 3u, p.pos0 + r0 + 4u) * vec4<u32>(vec4<bool>(nrow > 0u, nrow > 1u, nrow > 2u, nrow > 3u));
  let L = p.pos0 + r0 + nrow;                   // the longest of them
  for (var i = l.x; i < p.hd; i += 64u) {
    var qv = vec4<f32>(0.0);
    for (var r = 0u; r < nrow; r++) { qv[r] = q[(t0 + r) * QC + h * p.hd + i]; }
    qs4[i] = qv;
  }
  workgroupBarrier();
  var m = vec4<f32>(-3.0e38);
  var lsum = vec4<f32>(0.0);
  var o = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));  // [dimension l.x + 64·d]
  if (p.first == 0u) {
    for (var r = 0u; r < nrow; r++) {
      let sb = ((t0 + r) * p.heads + h) * (p.hd + 2u);
      m[r] = st[sb];
      lsum[r] = st[sb + 1u];
      for (var d = 0u; d < 4u; d++) { let i = l.x + d * 64u; if (i < p.hd) { o[d][r] = st[sb + 2u + i]; } }
    }
  }
  let cs = select(0u, p.j0 - k0, p.j0 > k0);
  let ce = min(L, select(0u, p.j1 - k0, p.j1 > k0));
  for (var c0 = cs; c0 < ce; c0 += 64u) {
    let j = c0 + l.x;
    let live = (vec4<u32>(j) < Lr) & vec4<bool>(j < ce);  // this key counts for row r
    var s = vec4<f32>(-3.0e38);
    if (j < ce) {
      var d4 = vec4<f32>(0.0);
      let kb = (k0 + j) * KC + kv * p.hd - p.kv_base;
      for (var i = 0u; i < p.hd; i++) { d4 += qs4[i] * k[kb + i]; }
      s = select(vec4<f32>(-3.0e38), d4 * p.scale, live);
    }
    let mnew = max(m, wg_max4(s, l.x, 64u));
    let pj = select(vec4<f32>(0.0), exp(s - mnew), live);
    sc4[l.x] = pj;  // (visible to all after wg_sum4's barriers)
    let csum = wg_sum4(pj, l.x, 64u);
    let corr = exp(m - mnew);
    lsum = lsum * corr + csum;
    let cnt = min(64u, ce - c0);
    for (var d = 0u; d < 4u; d++) {
      let i = l.x + d * 64u;
      if (i < p.hd) {
        var acc = o[d] * corr;
        for (var jj = 0u; jj < cnt; jj++) { acc += sc4[jj] * v[(k0 + c0 + jj) * KC + kv * p.hd + i - p.kv_base]; }
        o[d] = acc;
      }
    }
    m = mnew;
    workgroupBarrier();
  }
  for (var r = 0u; r < nrow; r++) {
    let t = t0 + r;
    if (p.last == 0u) {
      let sb = (t * p.heads + h) * (p.hd + 2u);
      if (l.x == 0u) { st[sb] = m[r]; st[sb + 1u] = lsum[r]; }
      for (var d = 0u; d < 4u; d++) { let i = l.x + d * 64u; if (i < p.hd) { st[sb + 2u + i] = o[d][r]; } }
    } else {
      for (var d = 0u; d < 4u; d++) { let i = l.x + d * 64u; if (i < p.hd) { out[t * QC + h * p.hd + i] = o[d][r] / lsum[r]; } }
    }
  }
}
