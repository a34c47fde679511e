// quant_matmul, the fast 4-bit path for a few rows (decoding) in integer arithmetic: rows m0 .. m0+M of y (M <= 4)
//   y [M, N] = x [M, K] @ dequant(W)ᵀ (+ b),  W[n, k] = scale[g, n]·(q[k, n] − zero[g, n]),  g = k / gs
// Each workgroup first turns its k range of x into 16-bit integers per group (in workgroup memory):
//   x ≈ sx·xi,  xi = round(x / sx) in [−32639, 32639],  sx = max|x over the group's rows in this range| / 32639
// each xi as two signed bytes xi = 256·hi + lo (hi = (xi + 128) >> 8 in [−127, 127], lo in [−128, 127]); per
// packed row of 8 inputs 8r + j one vec4<u32> of bytes (hi at j = 0, 2, 4, 6; hi at 1, 3, 5, 7; lo at 0, 2, 4,
// 6; lo at 1, 3, 5, 7): the order of a packed word's nibbles after `w & 0x0F0F0F0F` (even j) and
// `(w >> 4) & 0x0F0F0F0F` (odd j). Four dot4I8Packed per word then give Σ q·hi and Σ q·lo over its 8 inputs,
// exact, summed in i32 over a run of rows of one group, and per run
//   y += scale·sx·(256·Σ q·hi + Σ q·lo − zero·Σ xi)
// Three integer ops and four dot products for 8 inputs of a column, where the float32 form (q4_gemv_s) takes a
// shift, an and/or and an FMA per input. 16 bits per value against the group's largest: finer than the f16
// staging of the CUDA GEMV for all but a group's smallest values, whose products count least.
// Workgroup and k split as q4_gemv_s: 256 = p.cq column quads x 256/p.cq k-lanes, each k-lane over a
// contiguous stretch of the split's packed rows; splits go to `part` for q4_reduce (quant_matmul_q4.wgsl).
// H200 through Vulkan, four 7B shapes, M = 1: 66.8 us of GPU time, against 86.5 for q4_gemv_s (48% and 37% of
// a copy's bandwidth). x made integers by a dispatch of its own instead: 83.9 us (65.5 for this part alone).
struct P { M: u32, K: u32, N: u32, gs: u32, ksplit: u32, rows_per_split: u32, has_bias: u32, has_perm: u32, nx: u32, m0: u32, ks0: u32, qbase: u32, cq: u32 }
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;  // [rows, K] (K % 8 == 0)
@group(0) @binding(1) var<storage, read> qweight: array<vec4<u32>>;  // [K/8, N/4] from vec4 qbase on
@group(0) @binding(2) var<storage, read> scales: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> zeros: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> perm: array<u32>;  // act-order: x's input index of sorted input k
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<uniform> p: P;

// MR: rows of x the pipeline is made for (p.M <= MR); XR: packed rows of x a workgroup holds (>= the split's)
override MR: u32 = 1u;
override XR: u32 = 512u;
var<workgroup> xqs: array<vec4<u32>, XR * MR>;  // [m][packed row of the split] bytes as above
var<workgroup> xrs: array<i32, XR * MR>;  // [m][packed row] Σ xi over its 8 inputs
var<workgroup> gmx: array<atomic<u32>, (XR + 1u) * MR>;  // [m][group − the split's first] bits of max |x|
var<workgroup> red: array<vec4<f32>, 256>;

const XMAX = 32639.0;  // 127·256 + 127
const NIB = vec4<u32>(0x0F0F0F0Fu);

// the 8 inputs of sorted packed row r of x's row m (through perm for act-order)
fn xrow(m: u32, r: u32) -> array<f32, 8> {
  let b = (p.m0 + m) * p.K;
  if (p.has_perm != 0u) {
    var o: array<f32, 8>;
    for (var j = 0u; j < 8u; j++) { let i = b + perm[8u * r + j]; o[j] = x[i / 4u][i % 4u]; }
    return o;
  }
  let u = x[(b + 8u * r) / 4u];
  let v = x[(b + 8u * r) / 4u + 1u];
  return array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w);
}

// the sums of one packed row r (4 columns) into ih (Σ q·hi), il (Σ q·lo) and sx (Σ xi), per row m of x
fn row_i(ih: ptr<function, array<vec4<i32>, 4>>, il: ptr<function, array<vec4<i32>, 4>>, sxi: ptr<function, vec4<i32>>, w: vec4<u32>, i: u32) {
  let e = w & NIB;
  let o = (w >> vec4<u32>(4u)) & NIB;
  for (var m = 0u; m < MR; m++) {
    if (m < p.M) {
      let v = xqs[m * XR + i];
      (*ih)[m] += vec4<i32>(dot4I8Packed(e.x, v.x) + dot4I8Packed(o.x, v.y), dot4I8Packed(e.y, v.x) + dot4I8Packed(o.y, v.y),
                            dot4I8Packed(e.z, v.x) + dot4I8Packed(o.z, v.y), dot4I8Packed(e.w, v.x) + dot4I8Packed(o.w, v.y));
      (*il)[m] += vec4<i32>(dot4I8Packed(e.x, v.z) + dot4I8Packed(o.x, v.w), dot4I8Packed(e.y, v.z) + dot4I8Packed(o.y, v.w),
                            dot4I8Packed(e.z, v.z) + dot4I8Packed(o.z, v.w), dot4I8Packed(e.w, v.z) + dot4I8Packed(o.w, v.w));
      (*sxi)[m] += xrs[m * XR + i];
    }
  }
}

@compute @workgroup_size(256)
fn dp4_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let N4 = p.N / 4u;
  let CQ = p.cq;
  let KL = 256u / CQ;
  let cq = li % CQ;
  let kl = li / CQ;
  let n4 = wg.x * CQ + cq;
  let nc = min(n4, N4 - 1u);  // columns past N compute on a valid address and are dropped
  let ks = p.ks0 + wg.y;
  let s0 = ks * p.rows_per_split;
  let s1 = min(s0 + p.rows_per_split, p.K / 8u);
  let gr = p.gs / 8u;  // packed rows per group
  let g0 = s0 / gr;
  let nr = s1 - s0;
  // x of the split: each group's largest |x| (as bits: integer order is float order for |x|, and puts NaN above
  // infinity, so a non-finite group shows), then the integers; a thread's first row kept in registers between
  let nx = nr * p.M;
  var v0: array<f32, 8>;
  if (li < nx) { v0 = xrow(li / nr, s0 + li % nr); }
  for (var i = li; i < nx; i += 256u) {
    let m = i / nr;
    let r = s0 + i % nr;
    var v = v0;
    if (i != li) { v = xrow(m, r); }
    var b = 0u;
    for (var j = 0u; j < 8u; j++) { b = max(b, bitcast<u32>(v[j]) & 0x7FFFFFFFu); }
    atomicMax(&gmx[m * (XR + 1u) + r / gr - g0], b);
  }
  workgroupBarrier();
  for (var i = li; i < nx; i += 256u) {
    let m = i / nr;
    let r = s0 + i % nr;
    var v = v0;
    if (i != li) { v = xrow(m, r); }
    let bits = atomicLoad(&gmx[m * (XR + 1u) + r / gr - g0]);
    let inv = select(0.0, XMAX / bitcast<f32>(bits), bits < 0x7F800000u && bits != 0u);
    var hi: array<i32, 8>;
    var lo: array<i32, 8>;
    var s = 0i;
    for (var j = 0u; j < 8u; j++) {
      let xi = clamp(i32(round(v[j] * inv)), -32639i, 32639i);
      hi[j] = (xi + 128i) >> 8u;
      lo[j] = xi - 256i * hi[j];
      s += xi;
    }
    xqs[m * XR + i % nr] = vec4<u32>(pack4xI8(vec4<i32>(hi[0], hi[2], hi[4], hi[6])), pack4xI8(vec4<i32>(hi[1], hi[3], hi[5], hi[7])),
                                     pack4xI8(vec4<i32>(lo[0], lo[2], lo[4], lo[6])), pack4xI8(vec4<i32>(lo[1], lo[3], lo[5], lo[7])));
    xrs[m * XR + i % nr] = s;
  }
  workgroupBarrier();
  let L = (nr + KL - 1u) / KL;
  let ra = min(s0 + kl * L, s1);
  let rb = min(ra + L, s1);
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  // runs [a, e) of this k-lane's rows within one group g each
  var a = ra;
  var g = ra / gr;
  loop {
    if (a >= rb) { break; }
    let e = min((g + 1u) * gr, rb);
    let sc = scales[g * N4 + nc];
    let zr = zeros[g * N4 + nc];
    var ih = array<vec4<i32>, 4>(vec4<i32>(0), vec4<i32>(0), vec4<i32>(0), vec4<i32>(0));
    var il = array<vec4<i32>, 4>(vec4<i32>(0), vec4<i32>(0), vec4<i32>(0), vec4<i32>(0));
    var sxi = vec4<i32>(0);
    var r = a;
    loop {
      if (r + 8u > e) { break; }
      let q = r * N4 + nc - p.qbase;
      // all eight loads issued before the first is used
      let w0 = qweight[q];
      let w1 = qweight[q + N4];
      let w2 = qweight[q + 2u * N4];
      let w3 = qweight[q + 3u * N4];
      let w4 = qweight[q + 4u * N4];
      let w5 = qweight[q + 5u * N4];
      let w6 = qweight[q + 6u * N4];
      let w7 = qweight[q + 7u * N4];
      let i = r - s0;
      row_i(&ih, &il, &sxi, w0, i);
      row_i(&ih, &il, &sxi, w1, i + 1u);
      row_i(&ih, &il, &sxi, w2, i + 2u);
      row_i(&ih, &il, &sxi, w3, i + 3u);
      row_i(&ih, &il, &sxi, w4, i + 4u);
      row_i(&ih, &il, &sxi, w5, i + 5u);
      row_i(&ih, &il, &sxi, w6, i + 6u);
      row_i(&ih, &il, &sxi, w7, i + 7u);
      r += 8u;
    }
    for (; r < e; r++) { row_i(&ih, &il, &sxi, qweight[r * N4 + nc - p.qbase], r - s0); }
    // the run's sums: scale·sx·(256·Σ q·hi + Σ q·lo − zero·Σ xi); sx NaN where the group held a NaN or an infinity
    for (var m = 0u; m < MR; m++) {
      if (m < p.M) {
        let bits = atomicLoad(&gmx[m * (XR + 1u) + g - g0]);
        let sx = select(bitcast<f32>(bits) / XMAX, bitcast<f32>(bits | 0x00400000u), bits >= 0x7F800000u);
        let t = 256.0 * vec4<f32>(ih[m]) + vec4<f32>(il[m]) - zr * f32(sxi[m]);
        acc[m] += t * (sc * sx);
      }
    }
    a = e;
    g++;
  }
  // the k-lanes' sums: a tree over k-lanes in workgroup memory, one row m at a time
  for (var m = 0u; m < MR; m++) {
    if (m >= p.M) { break; }
    red[li] = acc[m];
    workgroupBarrier();
    for (var st = KL / 2u; st > 0u; st >>= 1u) {
      if (kl < st) { red[li] = red[li] + red[li + st * CQ]; }
      workgroupBarrier();
    }
    if (kl == 0u && n4 < N4) {
      let n = n4 * 4u;
      let v = red[cq];
      if (p.ksplit == 1u) {
        var b = vec4<f32>(0.0);
        if (p.has_bias != 0u) { b = vec4<f32>(bias[n], bias[n + 1u], bias[n + 2u], bias[n + 3u]); }
        let o = v + b;
        let yo = (p.m0 + m) * p.N + n;
        y[yo] = o.x; y[yo + 1u] = o.y; y[yo + 2u] = o.z; y[yo + 3u] = o.w;
      } else {
        let o = (ks * p.M + m) * p.N + n;
        part[o] = v.x; part[o + 1u] = v.y; part[o + 2u] = v.z; part[o + 3u] = v.w;
      }
    }
    workgroupBarrier();
  }
}
