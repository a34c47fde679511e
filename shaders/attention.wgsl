// attention: q [T, heads·hd], caches k/v [S, kv_heads·hd] -> out [T, heads·hd]; causal, grouped-query heads.
// Row t of a sequence sits at position pos0 + t and sees keys 0..pos0+t; with seq_len > 0 the T rows are
// T/seq_len independent sequences (pos0 = 0). One workgroup per (row, head): keys in chunks of 64 with a
// running max and sum (online softmax), the output accumulated per head dimension (hd <= 256).
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
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let wid = wg.x + wg.y * p.nx;
  if (wid >= p.T * p.heads) { return; }
  let t = wid / p.heads;
  let h = wid % p.heads;
  let kv = h / (p.heads / p.kvh);
  let QC = p.heads * p.hd;
  let KC = p.kvh * p.hd;
  let sq = select(p.T, p.seq_len, p.seq_len > 0u);
  let k0 = (t / sq) * sq * select(0u, 1u, p.seq_len > 0u);  // first cache row of this sequence
  let L = p.pos0 + t % sq + 1u;
  for (var i = l.x; i < p.hd; i += 64u) { qs[i] = q[t * QC + h * p.hd + i]; }
  workgroupBarrier();
  var m = -3.0e38;
  var lsum = 0.0;
  var o = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  let sb = wid * (p.hd + 2u);
  if (p.first == 0u) {
    m = st[sb];
    lsum = st[sb + 1u];
    for (var r = 0u; r < 4u; r++) { let i = l.x + r * 64u; if (i < p.hd) { o[r] = st[sb + 2u + i]; } }
  }
  // this window's keys of the sequence: cache rows k0 + [cs, ce) within [j0, j1)
  let cs = select(0u, p.j0 - k0, p.j0 > k0);
  let ce = min(L, select(0u, p.j1 - k0, p.j1 > k0));
  for (var c0 = cs; c0 < ce; c0 += 64u) {
    let j = c0 + l.x;
    var s = -3.0e38;
    if (j < ce) {
      var d = 0.0;
      let kb = (k0 + j) * KC + kv * p.hd - p.kv_base;
      for (var i = 0u; i < p.hd; i++) { d += qs[i] * k[kb + i]; }
      s = d * p.scale;
    }
    let mnew = max(m, wg_max(s, l.x, 64u));
    let pj = select(0.0, exp(s - mnew), j < ce);
    sc[l.x] = pj;  // (visible to all after wg_sum's barriers)
    let cs = wg_sum(pj, l.x, 64u);
    let corr = exp(m - mnew);
    lsum = lsum * corr + cs;
    let cnt = min(64u, ce - c0);
    for (var r = 0u; r < 4u; r++) {
      let i = l.x + r * 64u;
      if (i < p.hd) {
        var acc = o[r] * corr;
        for (var jj = 0u; jj < cnt; jj++) { acc += sc[jj] * v[(k0 + c0 + jj) * KC + kv * p.hd + i - p.kv_base]; }
        o[r] = acc;
      }
    }
    m = mnew;
    workgroupBarrier();
  }
  if (p.last == 0u) {
    if (l.x == 0u) { st[sb] = m; st[sb + 1u] = lsum; }
    for (var r = 0u; r < 4u; r++) { let i = l.x + r * 64u; if (i < p.hd) { st[sb + 2u + i] = o[r]; } }
    return;
  }
  for (var r = 0u; r < 4u; r++) {
    let i = l.x + r * 64u;
    if (i < p.hd) { out[t * QC + h * p.hd + i] = o[r] / lsum; }
  }
}
