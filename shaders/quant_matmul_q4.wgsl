// quant_matmul, the fast 4-bit path for a few rows (decoding): rows m0 .. m0+M of x and y, M <= 4
//   y [M, N] = x [M, K] @ dequant(W)ᵀ (+ b),  W[n, k] = scale[g, n]·(q[k, n] − zero[g, n]),  g = k / gs
// The standard qweight [K/8, N] read as vec4<u32>: one thread takes 4 adjacent columns of one packed row of
// 8 inputs (16 bytes; a row of 64 threads reads 1 KiB in one go). K is sorted so that groups are contiguous
// (act-order checkpoints are row-permuted at load time, x is gathered through `perm`).
//   q4_gemv    workgroup (64, 4): 256 columns x 4 k-lanes over one k range of `rows_per_split` packed rows;
//              x of that range is staged in workgroup memory; per row Σ x·q and Σ x (codes taken as
//              floats 1 + q/16, see f16q), then scale·(Σ x·q − zero·Σ x); the k-lanes are added in workgroup memory and the
//              result goes to y (one split) or to partial sums [ksplit, M, N] in `part`
//   q4_reduce  y = bias + Σ over splits of `part`
//   q4_gemv_s  workgroup 256 = p.cq column quads x 256/p.cq k-lanes, each k-lane over a contiguous stretch of
//              the split's packed rows (see below); x rows from p.xm0 (q4_gather's copy for act-order)
//   q4_gather  act-order: x's rows in input order, once per call, for q4_gemv_s
//   dp4_gemv   the streaming form in integers (WGSL's packed 4x8 integer dot products), see its section
// A qweight above the binding limit is bound as windows of whole splits: this dispatch's workgroup y is split
// ks0 + y, and the window starts at vec4 qbase of qweight (0: the whole tensor, one dispatch).
struct P { M: u32, K: u32, N: u32, gs: u32, ksplit: u32, rows_per_split: u32, has_bias: u32, has_perm: u32, nx: u32, m0: u32, ks0: u32, qbase: u32, cq: u32, xm0: u32 }
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;  // [M, K] (K % 8 == 0)
@group(0) @binding(1) var<storage, read> qweight: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> scales: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> zeros: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> perm: array<u32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<uniform> p: P;

// workgroup memory within WebGPU's guaranteed 16 KiB: 4 KiB of x, 12 KiB for the sums of k-lanes 1..3
const MAX_X = 1024u;  // M · rows_per_split · 8 <= MAX_X (the host picks rows_per_split)
var<workgroup> xs: array<vec4<f32>, 256>;  // MAX_X floats, read 4 at a time
var<workgroup> red: array<vec4<f32>, 768>;  // [k-lane − 1][m][64 column quads]
var<workgroup> red_s: array<vec4<f32>, 256>;  // the streaming forms' k-lane tree (out_lanes)

// The 8 codes of a packed word, each as a float 1 + q/16: the nibble shifted to the top mantissa bits (19..22)
// under the exponent of 1.0 (one shift and one and/or per code, no integer-to-float conversion)
// x of slab row m at (sorted) input k: through `perm` for act-order
fn xin(m: u32, k: u32) -> f32 {
  let i = (p.m0 + m) * p.K + select(k, perm[k], p.has_perm != 0u);
  return x[i / 4u][i % 4u];
}

fn f16q(v: vec4<u32>) -> vec4<f32> { return bitcast<vec4<f32>>((v & vec4<u32>(0x00780000u)) | vec4<u32>(0x3F800000u)); }
// the 8 codes of a packed word (per column of the vec4), input j at f[j]
fn codes8(w: vec4<u32>) -> array<vec4<f32>, 8> {
  return array<vec4<f32>, 8>(f16q(w << vec4<u32>(19u)), f16q(w << vec4<u32>(15u)), f16q(w << vec4<u32>(11u)), f16q(w << vec4<u32>(7u)),
                             f16q(w << vec4<u32>(3u)), f16q(w >> vec4<u32>(1u)), f16q(w >> vec4<u32>(5u)), f16q(w >> vec4<u32>(9u)));
}

// acc[m] += this thread's 4 columns over packed row r (8 inputs): scale·(Σ x·q − zero·Σ x)
fn add_row(acc: ptr<function, array<vec4<f32>, 4>>, w: vec4<u32>, r: u32, r0: u32, kl: u32, n4: u32, N4: u32) {
  let g = (r * 8u) / p.gs;
  let s = scales[g * N4 + n4];
  let z = zeros[g * N4 + n4];
  let base = (r - r0) * 2u;  // in vec4s
  // the 8 codes of each column as floats 1 + q/16 (see f16q): Σ x·q = 16·(Σ x·f − Σ x)
  let f = codes8(w);
  for (var m = 0u; m < p.M; m++) {
    let xa = xs[m * (kl / 4u) + base];
    let xb = xs[m * (kl / 4u) + base + 1u];
    let df = xa.x * f[0] + xa.y * f[1] + xa.z * f[2] + xa.w * f[3] + xb.x * f[4] + xb.y * f[5] + xb.z * f[6] + xb.w * f[7];
    let sx = (xa.x + xa.y) + (xa.z + xa.w) + (xb.x + xb.y) + (xb.z + xb.w);
    (*acc)[m] += s * (16.0 * df - (16.0 + z) * sx);
  }
}

// the sums of row m's column quad n4: y (+ bias) when the k range is not split, else this split's partial sums
fn put4(v: vec4<f32>, m: u32, n4: u32, ks: u32) {
  let n = n4 * 4u;
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

// the k-lanes' sums added in workgroup memory; y (one split) or this split's partial sums
fn store(acc: array<vec4<f32>, 4>, l: vec3u, n4: u32, N4: u32, ks: u32) {
  if (l.y > 0u) {
    for (var m = 0u; m < 4u; m++) { red[((l.y - 1u) * 4u + m) * 64u + l.x] = acc[m]; }
  }
  workgroupBarrier();
  if (l.y == 0u && n4 < N4) {
    for (var m = 0u; m < 4u; m++) {
      if (m >= p.M) { break; }
      put4(acc[m] + red[m * 64u + l.x] + red[(4u + m) * 64u + l.x] + red[(8u + m) * 64u + l.x], m, n4, ks);
    }
  }
}

@compute @workgroup_size(64, 4)
fn q4_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let N4 = p.N / 4u;
  let n4 = wg.x * 64u + l.x;
  let ks = p.ks0 + wg.y;
  let r0 = ks * p.rows_per_split;
  let r1 = min(r0 + p.rows_per_split, p.K / 8u);
  let kl = (r1 - r0) * 8u;
  for (var i = l.y * 64u + l.x; i < p.M * kl; i += 256u) {
    let m = i / kl;
    let k = r0 * 8u + i % kl;
    xs[i / 4u][i % 4u] = xin(m, k);
  }
  workgroupBarrier();
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  if (n4 < N4) {
    // two packed rows per iteration, both loads issued before either is used
    for (var r = r0 + l.y; r < r1; r += 8u) {
      let rb = r + 4u;
      let wa = qweight[r * N4 + n4 - p.qbase];
      let wb = qweight[min(rb, r1 - 1u) * N4 + n4 - p.qbase];
      add_row(&acc, wa, r, r0, kl, n4, N4);
      if (rb < r1) { add_row(&acc, wb, rb, r0, kl, n4, N4); }
    }
  }
  store(acc, l, n4, N4, ks);
}

@compute @workgroup_size(256)
fn q4_reduce(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  if (idx >= p.M * p.N) { return; }
  let m = idx / p.N;
  let n = idx % p.N;
  var s = select(0.0, bias[n], p.has_bias != 0u);
  for (var ks = 0u; ks < p.ksplit; ks++) { s += part[(ks * p.M + m) * p.N + n]; }
  y[p.m0 * p.N + idx] = s;
}


// ---- q4_gemv_s: the streaming form (M <= 4; act-order x gathered by q4_gather first) ----
// Workgroup of 256 = cq column quads (p.cq: 8 or 4, i.e. 32 or 16 columns) x 256/cq k-lanes; each k-lane takes a
// contiguous stretch of the split's packed rows (the whole K when ksplit = 1: no partial sums, no second
// dispatch), reads 8 rows' 16-byte words before it uses any (128 bytes in flight per thread), and x straight
// from memory (a float4 pair per row, the same for the column quads of a k-lane: cache hits, no staging, no
// barrier before the loop). The k-lanes are summed by a tree in workgroup memory at the end.
// Measured on an H200 through Vulkan (four 7B shapes, M = 1, GPU time): 86.5-87.8 us against 129.8 for
// q4_gemv; the same loads without the arithmetic take 44.6 us, so the arithmetic bounds it (NVIDIA's Vulkan
// driver gives Dawn no 16-bit float feature). Dropped: half the shifts (two codes per shift, the even one at mantissa bits 15..18) with one
// flush per group instead of per row (102.2 us), that plus the next 8 rows loaded before the current are used
// (116.7), 8 or 2 column quads per workgroup for every shape (115.3, 108.8).
// MR: rows of x the pipeline is made for (p.M <= MR; 1 for decoding: no loop over rows left in the code; the
// same kernel built for MR = 4 took 115.3 us at M = 1)
override MR: u32 = 4u;
fn row_s(acc: ptr<function, array<vec4<f32>, 4>>, w: vec4<u32>, r: u32, c1: vec4<f32>, c2: vec4<f32>) {
  // the 8 codes of each column as floats 1 + q/16: Σ x·q·s − z·s·Σ x = c1·Σ x·f + c2·Σ x with c1 = 16 s,
  // c2 = −(16 + z) s
  let f = codes8(w);
  let K4 = p.K / 4u;
  for (var m = 0u; m < MR; m++) {
    if (m < p.M) {
      let xa = x[(p.xm0 + m) * K4 + 2u * r];
      let xb = x[(p.xm0 + m) * K4 + 2u * r + 1u];
      let df = xa.x * f[0] + xa.y * f[1] + xa.z * f[2] + xa.w * f[3] + xb.x * f[4] + xb.y * f[5] + xb.z * f[6] + xb.w * f[7];
      let sx = (xa.x + xa.y) + (xa.z + xa.w) + (xb.x + xb.y) + (xb.z + xb.w);
      (*acc)[m] += c1 * df + c2 * sx;
    }
  }
}

// a streaming GEMV thread's place (workgroup of 256 = p.cq column quads x 256/p.cq k-lanes): its column quad n4
// (nc: clamped to a valid one), the split ks and its packed rows [s0, s1), and the k-lane's contiguous stretch
// of them [ra, rb)
struct Lane4 { N4: u32, n4: u32, nc: u32, ks: u32, s0: u32, s1: u32, ra: u32, rb: u32 }
fn lane_of(wg: vec3u, li: u32) -> Lane4 {
  let N4 = p.N / 4u;
  let KL = 256u / p.cq;
  let n4 = wg.x * p.cq + li % p.cq;
  let ks = p.ks0 + wg.y;
  let s0 = ks * p.rows_per_split;
  let s1 = min(s0 + p.rows_per_split, p.K / 8u);
  let R = (s1 - s0 + KL - 1u) / KL;
  let ra = min(s0 + (li / p.cq) * R, s1);
  return Lane4(N4, n4, min(n4, N4 - 1u), ks, s0, s1, ra, min(ra + R, s1));
}

// packed rows r .. r + 7 of a column quad (q: the first's index): all eight loads issued before any is used
fn load8(q: u32, N4: u32) -> array<vec4<u32>, 8> {
  return array<vec4<u32>, 8>(qweight[q], qweight[q + N4], qweight[q + 2u * N4], qweight[q + 3u * N4], qweight[q + 4u * N4],
                             qweight[q + 5u * N4], qweight[q + 6u * N4], qweight[q + 7u * N4]);
}

// the streaming GEMVs' end: the k-lanes' sums (workgroup of 256 = p.cq column quads x 256/p.cq k-lanes) added
// by a tree in workgroup memory, one row m at a time, then y or this split's partial sums (put4)
fn out_lanes(acc: array<vec4<f32>, 4>, li: u32, n4: u32, N4: u32, ks: u32) {
  let CQ = p.cq;
  let cq = li % CQ;
  let kl = li / CQ;
  for (var m = 0u; m < MR; m++) {
    if (m >= p.M) { break; }
    red_s[li] = acc[m];
    workgroupBarrier();
    for (var st = 128u / CQ; st > 0u; st >>= 1u) {
      if (kl < st) { red_s[li] = red_s[li] + red_s[li + st * CQ]; }
      workgroupBarrier();
    }
    if (kl == 0u && n4 < N4) { put4(red_s[cq], m, n4, ks); }
    workgroupBarrier();
  }
}

// a k-lane's group tracking: the next group's index and first packed row, the current group's c1, c2 (row_s)
struct GroupS { g: u32, start: u32, c1: vec4<f32>, c2: vec4<f32> }
// packed row r of this k-lane (rows come in order): a new group's parameters where one starts, then the row
fn step_s(acc: ptr<function, array<vec4<f32>, 4>>, gs: ptr<function, GroupS>, w: vec4<u32>, r: u32, nc: u32, N4: u32, gr: u32) {
  if (r == (*gs).start) {
    let sc = scales[(*gs).g * N4 + nc];
    (*gs).c1 = 16.0 * sc;
    (*gs).c2 = -(16.0 + zeros[(*gs).g * N4 + nc]) * sc;
    (*gs).g++;
    (*gs).start = (*gs).g * gr;
  }
  row_s(acc, w, r, (*gs).c1, (*gs).c2);
}

@compute @workgroup_size(256)
fn q4_gemv_s(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = lane_of(wg, li);
  let gr = p.gs / 8u;  // packed rows per group
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var gs = GroupS(t.ra / gr, t.ra, vec4<f32>(0.0), vec4<f32>(0.0));  // (its parameters are taken at row ra)
  var r = t.ra;
  loop {
    if (r + 8u > t.rb) { break; }
    let w = load8(r * t.N4 + t.nc - p.qbase, t.N4);
    step_s(&acc, &gs, w[0], r, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[1], r + 1u, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[2], r + 2u, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[3], r + 3u, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[4], r + 4u, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[5], r + 5u, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[6], r + 6u, t.nc, t.N4, gr);
    step_s(&acc, &gs, w[7], r + 7u, t.nc, t.N4, gr);
    r += 8u;
  }
  for (; r < t.rb; r++) { step_s(&acc, &gs, qweight[r * t.N4 + t.nc - p.qbase], r, t.nc, t.N4, gr); }
  out_lanes(acc, li, t.n4, t.N4, t.ks);
}


// ---- dp4_gemv: the streaming form in integer arithmetic (WGSL's packed 4x8 integer dot products) ----
// Each workgroup first turns its k range of x into 16-bit integers per packed row (8 inputs, in workgroup memory):
//   x ≈ sx·xi,  xi = round(x / sx) in [−32768, 32767],  sx = 2^(E − 14) for the row's largest |x| in [2^E, 2^(E+1))
// (a power of two: no division, and x / sx is exact before the rounding), each xi as a signed high byte and an
// unsigned low byte, xi = 256·hi + lo (hi = xi >> 8 in [−128, 127], lo = xi & 255); per packed row one
// vec4<u32> of bytes (hi at j = 0, 2, 4, 6; hi at 1, 3, 5, 7; lo at 0, 2, 4, 6; lo at 1, 3, 5, 7): the order
// of a packed word's nibbles after `w & 0x0F0F0F0F` (even j) and `(w >> 4) & 0x0F0F0F0F` (odd j). Two
// dot4I8Packed and two dot4U8Packed per word then give Σ q·hi and Σ q·lo over its 8 inputs, exact; per packed row
//   ga += sx·(256·Σ q·hi + Σ q·lo),  gx += sx·Σ xi  (integers below 2^24: exact in f32 before the scale)
// and per group  y += scale·(ga − zero·gx).  Per column and 8 inputs: three integer ops, four dot products and
// a conversion and an FMA, where the float32 form (q4_gemv_s) takes a shift, an and/or and an FMA per input.
// 15 to 16 bits per value against the largest of its 8 (relative error of the products 2.4-2.6e-5 on random data,
// 1.5e-5 with the old scale below): finer than the half-precision staging of the CUDA GEMV.
// (The scale was the row's largest |x| / 32639 until 2026-12-07, two divisions and a clamp per row: the power of
// two took the four 7B shapes at M = 1 from 67.3 to 66.7 us of GPU time on an H100, twice each, alternating.)
// Workgroup and k split as q4_gemv_s: 256 = p.cq column quads x 256/p.cq k-lanes, each k-lane over a
// contiguous stretch of the split's packed rows; splits go to `part` for q4_reduce.
// H200 through Vulkan, four 7B shapes, M = 1: 60.0 us of GPU time (53% of a copy's bandwidth); the same with x
// in integers per group (each group's largest |x| by workgroup atomics, then a second pass and barrier) 60.1
// and 60.6 us in the same run, 60.0-60.5 before; 66.8 before the pipelined loop; 83.9-86.5 for q4_gemv_s. x made
// integers by a dispatch of its own instead: 83.9 us (65.5 for this part alone).
// XR: packed rows of x a workgroup holds (>= the split's)
override XR: u32 = 512u;
// PIPE: 1 = the pipelined main loop where the k ranges allow it (see dp4_gemv), 0 = always the per-group loop (A/B)
override PIPE: u32 = 1u;
var<workgroup> xqs: array<vec4<u32>, XR * MR>;  // [m][packed row of the split] bytes as above
var<workgroup> xrf: array<vec2<f32>, XR * MR>;  // [m][packed row] (sx, sx·Σ xi)

const NIB = vec4<u32>(0x0F0F0F0Fu);

// the 8 inputs of sorted packed row r of x's row m (through perm for act-order)
fn xrow(m: u32, r: u32) -> array<f32, 8> {
  if (p.has_perm != 0u) {
    var o: array<f32, 8>;
    for (var j = 0u; j < 8u; j++) { o[j] = xin(m, 8u * r + j); }
    return o;
  }
  let b = (p.m0 + m) * p.K;
  let u = x[(b + 8u * r) / 4u];
  let v = x[(b + 8u * r) / 4u + 1u];
  return array<f32, 8>(u.x, u.y, u.z, u.w, v.x, v.y, v.z, v.w);
}

// a packed row of x (its 8 inputs v) as integers: the row's largest |x| as bits (integer order is float order for
// |x|, and NaN lies above infinity), the integers against it as bytes (above), its scale (NaN where it holds a NaN
// or an infinity) and sx·Σ xi
struct XQ { v: vec4<u32>, f: vec2<f32> }
fn xq_row(v: array<f32, 8>) -> XQ {
  let e = vec4<f32>(v[0], v[2], v[4], v[6]);  // even inputs (the order of a word's low nibbles), then odd
  let o = vec4<f32>(v[1], v[3], v[5], v[7]);
  let m2 = max(bitcast<vec4<u32>>(e) & vec4<u32>(0x7FFFFFFFu), bitcast<vec4<u32>>(o) & vec4<u32>(0x7FFFFFFFu));
  let b = max(max(m2.x, m2.y), max(m2.z, m2.w));
  let be = b >> 23u;  // biased exponent of the largest |x| (255: infinity or NaN)
  // 1 / sx = 2^(14 − E) as a biased exponent, 127 + 14 − (be − 127) (rows whose largest |x| is below 2^−112 get
  // 2^127 and a zero scale: they count as zero)
  let ie = clamp(268i - i32(be), 1i, 254i);
  let inv = bitcast<f32>(u32(ie) << 23u);
  // x·inv (exact: a power of two) rounded to the nearest integer by adding 1.5·2^23, whose ulp is 1, and taking the
  // low mantissa bits; the largest |x·inv| is below 2^15, so only 32767.5 .. 32768 rounds past 32767
  let magic = vec4<f32>(12582912.0);
  let top = vec4<i32>(32767i);
  let xe = min(bitcast<vec4<i32>>(fma(e, vec4<f32>(inv), magic)) - vec4<i32>(0x4B400000i), top);
  let xo = min(bitcast<vec4<i32>>(fma(o, vec4<f32>(inv), magic)) - vec4<i32>(0x4B400000i), top);
  let he = xe >> vec4<u32>(8u);
  let ho = xo >> vec4<u32>(8u);
  let t = xe + xo;
  let s = (t.x + t.y) + (t.z + t.w);
  // sx = 2^(E − 14): biased exponent 254 − ie; NaN for a row holding a NaN or an infinity
  let sx = select(bitcast<f32>(u32(254i - ie) << 23u), bitcast<f32>(b | 0x00400000u), be >= 255u);
  return XQ(vec4<u32>(pack4xI8(he), pack4xI8(ho), pack4xI8(xe), pack4xI8(xo)), vec2<f32>(sx, f32(s) * sx));
}

// packed row i of the split (word w, 4 columns) into the group's sums ga, gx, per row m of x
fn row_f(ga: ptr<function, array<vec4<f32>, 4>>, gx: ptr<function, vec4<f32>>, w: vec4<u32>, i: u32) {
  let e = w & NIB;
  let o = (w >> vec4<u32>(4u)) & NIB;
  for (var m = 0u; m < MR; m++) {
    if (m < p.M) {
      let v = xqs[m * XR + i];
      let f = xrf[m * XR + i];
      let h = vec4<i32>(dot4I8Packed(e.x, v.x) + dot4I8Packed(o.x, v.y), dot4I8Packed(e.y, v.x) + dot4I8Packed(o.y, v.y),
                        dot4I8Packed(e.z, v.x) + dot4I8Packed(o.z, v.y), dot4I8Packed(e.w, v.x) + dot4I8Packed(o.w, v.y));
      let l = vec4<i32>(vec4<u32>(dot4U8Packed(e.x, v.z) + dot4U8Packed(o.x, v.w), dot4U8Packed(e.y, v.z) + dot4U8Packed(o.y, v.w),
                                  dot4U8Packed(e.z, v.z) + dot4U8Packed(o.z, v.w), dot4U8Packed(e.w, v.z) + dot4U8Packed(o.w, v.w)));
      (*ga)[m] += vec4<f32>(h * 256i + l) * f.x;
      (*gx)[m] += f.y;
    }
  }
}
// packed rows i .. i + 3 (words w[h4 .. h4 + 3])
fn rows4_f(ga: ptr<function, array<vec4<f32>, 4>>, gx: ptr<function, vec4<f32>>, w: array<vec4<u32>, 8>, h4: u32, i: u32) {
  row_f(ga, gx, w[h4], i);
  row_f(ga, gx, w[h4 + 1u], i + 1u);
  row_f(ga, gx, w[h4 + 2u], i + 2u);
  row_f(ga, gx, w[h4 + 3u], i + 3u);
}
// a run of group g ends: acc += scale·(ga − zero·gx) per row m of x (NaN where a row of x held a NaN or an
// infinity: its sx is NaN), and the run's sums restart
fn group_f(acc: ptr<function, array<vec4<f32>, 4>>, ga: ptr<function, array<vec4<f32>, 4>>, gx: ptr<function, vec4<f32>>, g: u32, N4: u32, nc: u32) {
  let sc = scales[g * N4 + nc];
  let zr = zeros[g * N4 + nc];
  for (var m = 0u; m < MR; m++) {
    if (m < p.M) { (*acc)[m] += sc * ((*ga)[m] - zr * (*gx)[m]); }
  }
  *ga = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  *gx = vec4<f32>(0.0);
}

@compute @workgroup_size(256)
fn dp4_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = lane_of(wg, li);
  let N4 = t.N4;
  let n4 = t.n4;
  let nc = t.nc;
  let ks = t.ks;
  let s0 = t.s0;
  let s1 = t.s1;
  let gr = p.gs / 8u;  // packed rows per group
  let nr = s1 - s0;
  let nx = nr * p.M;
  // The pipelined loop: the k-lane's first batch of 8 packed rows is loaded before x is staged, and each next
  // batch before the current one is used. It needs the k-lane stretches in whole batches and groups of a
  // multiple of 4 packed rows (group size 32, 64, 96, 128, ...): where the split's bounds allow it, each k-lane takes
  // a multiple of 8 rows (the last lanes fewer or none). H200 through Vulkan, four 7B shapes at M = 1: 60.0-60.5
  // us of GPU time against 66.4-66.8 for the per-group loop below as it was (one batch in flight per thread, none
  // during the staging); forced everywhere with PIPE = 0 the per-group loop took 70.6-70.8 us, and why it got
  // slower beside the pipelined one is not known. Measured and dropped: a third batch in flight (80.3 us), x staged
  // one group per k-lane at a time between the batches (a barrier pair per group: 65.5), groups' largest |x| from
  // per-row maxima (63.7), the weights repacked so that a k-lane's rows are contiguous (no change), workgroups of
  // 128, 512 or 1024 invocations (71.6, 73.6, 106.7). Without the staging (timing only) it took 53.2 us, and
  // without the integer dot products (xor instead) no less: the staging is most of what is left.
  let KL = 256u / p.cq;
  let pipe = PIPE == 1u && gr % 4u == 0u && s0 % 8u == 0u && s1 % 8u == 0u;
  var ra = t.ra;
  var rb = t.rb;
  if (pipe) {
    let R8 = ((nr + KL - 1u) / KL + 7u) / 8u * 8u;
    ra = min(s0 + (li / p.cq) * R8, s1);
    rb = min(ra + R8, s1);
  }
  var wn: array<vec4<u32>, 8>;
  if (pipe && ra < rb) { wn = load8(ra * N4 + nc - p.qbase, N4); }
  // x of the split staged, a packed row per thread at a time (its first, pipelined its first two, loaded up
  // front), through xq_row. (Measured and dropped: no staging, each thread converting the rows it reads itself,
  // 128.1 us against 68.2 on an H100: the conversion repeated by the p.cq threads of a k-lane costs more than the
  // barrier it saves)
  var v0: array<f32, 8>;
  var v1: array<f32, 8>;
  if (li < nx) { v0 = xrow(li / nr, s0 + li % nr); }
  if (pipe && li + 256u < nx) { v1 = xrow((li + 256u) / nr, s0 + (li + 256u) % nr); }
  for (var i = li; i < nx; i += 256u) {
    var v = v0;
    if (pipe && i == li + 256u) { v = v1; } else if (i != li) { v = xrow(i / nr, s0 + i % nr); }
    let q = xq_row(v);
    let at = (i / nr) * XR + i % nr;
    xqs[at] = q.v;
    xrf[at] = q.f;
  }
  workgroupBarrier();
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var ga = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var gx = vec4<f32>(0.0);
  if (pipe) {
    // batches of 8 packed rows over the whole stretch; a group's sums go to acc where it ends (which for groups
    // of 4, 12, 20, ... rows can be the middle of a batch)
    var r = ra;
    loop {
      if (r >= rb) { break; }
      let w = wn;
      if (r + 8u < rb) { wn = load8((r + 8u) * N4 + nc - p.qbase, N4); }
      rows4_f(&ga, &gx, w, 0u, r - s0);
      if ((r + 4u) % gr == 0u) { group_f(&acc, &ga, &gx, (r + 3u) / gr, N4, nc); }
      rows4_f(&ga, &gx, w, 4u, r + 4u - s0);
      r += 8u;
      if (r % gr == 0u || r >= rb) { group_f(&acc, &ga, &gx, (r - 1u) / gr, N4, nc); }
    }
  } else {
    // runs [a, e) of this k-lane's rows within one group g each
    var a = ra;
    var g = ra / gr;
    loop {
      if (a >= rb) { break; }
      let e = min((g + 1u) * gr, rb);
      var r = a;
      loop {
        if (r + 8u > e) { break; }
        let w = load8(r * N4 + nc - p.qbase, N4);
        rows4_f(&ga, &gx, w, 0u, r - s0);
        rows4_f(&ga, &gx, w, 4u, r + 4u - s0);
        r += 8u;
      }
      for (; r < e; r++) { row_f(&ga, &gx, qweight[r * N4 + nc - p.qbase], r - s0); }
      group_f(&acc, &ga, &gx, g, N4, nc);
      a = e;
      g++;
    }
  }
  out_lanes(acc, li, n4, N4, ks);
}

// part [M, K] = x [m0 + m, perm(k)]: act-order input gathered once for q4_gemv_s
@compute @workgroup_size(256)
fn q4_gather(@builtin(global_invocation_id) gi: vec3u) {
  let i = gi.x + gi.y * p.nx;
  if (i >= p.M * p.K) { return; }
  part[i] = xin(i / p.K, i % p.K);
}

//#if f16
// ---- q4_gemv_h: the same work in f16 arithmetic (adapters with shader-f16) ----
// Codes become exact f16 values q − zero (a nibble under the 0x6400 exponent is 1024 + q; minus 1024 + zero),
// x is staged in f16 times a power of two that puts the largest |x| of the k range in (128, 256] (so the f16
// sums below cannot overflow, and small activations keep their precision), products of a packed row are
// summed in f16 four at a time, then in f32 per group, times the group's scale.
var<workgroup> xh: array<vec2<f16>, 512>;  // [m][packed row][j < 4]: (x[8r + j], x[8r + j + 4]) · mul[m]

@compute @workgroup_size(64, 4)
fn q4_gemv_h(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let N4 = p.N / 4u;
  let n4 = wg.x * 64u + l.x;
  let nc = min(n4, N4 - 1u);  // columns past N compute on a valid address and are dropped
  let ks = p.ks0 + wg.y;
  let r0 = ks * p.rows_per_split;
  let r1 = min(r0 + p.rows_per_split, p.K / 8u);
  let kl = (r1 - r0) * 8u;
  let li = l.y * 64u + l.x;
  // mul[m] from the largest |x| of row m over this k range
  var mx = vec4<f32>(0.0);
  for (var i = li; i < p.M * kl; i += 256u) {
    let m = i / kl;
    let k = r0 * 8u + i % kl;
    mx[m] = max(mx[m], abs(xin(m, k)));
  }
  red[li] = mx;
  workgroupBarrier();
  for (var st = 128u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] = max(red[li], red[li + st]); }
    workgroupBarrier();
  }
  let xm = red[0];
  workgroupBarrier();
  var mul = vec4<f32>(1.0);
  for (var m = 0u; m < 4u; m++) {
    if (xm[m] > 0.0 && xm[m] < 3e38) { mul[m] = exp2(f32(8 - frexp(xm[m]).exp)); }
  }
  let half = kl / 2u;  // pairs per row m
  for (var i = li; i < p.M * half; i += 256u) {
    let m = i / half;
    let pi = i % half;
    let ka = r0 * 8u + (pi / 4u) * 8u + pi % 4u;
    let kb = ka + 4u;
    let va = xin(m, ka);
    let vb = xin(m, kb);
    xh[i] = vec2<f16>(f16(va * mul[m]), f16(vb * mul[m]));
  }
  workgroupBarrier();
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var ga = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var cg = 0xffffffffu;
  var sc = vec4<f32>(0.0);
  var zh = vec4<f16>(0.0);
  let lo = vec4<u32>(0x000F000Fu);
  let magic = vec4<u32>(0x64006400u);
  for (var r = r0 + l.y; r < r1; r += 4u) {
    let w = qweight[r * N4 + nc - p.qbase];
    let g = (r * 8u) / p.gs;
    if (g != cg) {  // a group starts: the finished one times its scale
      for (var m = 0u; m < 4u; m++) { acc[m] += sc * ga[m]; ga[m] = vec4<f32>(0.0); }
      cg = g;
      sc = scales[g * N4 + nc];
      zh = vec4<f16>(zeros[g * N4 + nc] + 1024.0);
    }
    // per column c, pair j: (q − z) at inputs 8r + j and 8r + j + 4
    let w0 = (w & lo) | magic;
    let w1 = ((w >> vec4<u32>(4u)) & lo) | magic;
    let w2 = ((w >> vec4<u32>(8u)) & lo) | magic;
    let w3 = ((w >> vec4<u32>(12u)) & lo) | magic;
    let base = (r - r0) * 4u;
    for (var c = 0u; c < 4u; c++) {
      let z = vec2<f16>(zh[c]);
      let h0 = bitcast<vec2<f16>>(w0[c]) - z;
      let h1 = bitcast<vec2<f16>>(w1[c]) - z;
      let h2 = bitcast<vec2<f16>>(w2[c]) - z;
      let h3 = bitcast<vec2<f16>>(w3[c]) - z;
      for (var m = 0u; m < 4u; m++) {
        if (m < p.M) {
          let xb = m * half + base;
          let t = h0 * xh[xb] + h1 * xh[xb + 1u] + h2 * xh[xb + 2u] + h3 * xh[xb + 3u];
          ga[m][c] += f32(t.x) + f32(t.y);
        }
      }
    }
  }
  for (var m = 0u; m < 4u; m++) { acc[m] = (acc[m] + sc * ga[m]) / mul[m]; }
  store(acc, l, n4, N4, ks);
}
//#endif
