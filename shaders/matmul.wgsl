// matmul: strided GEMM, C[m, n] = alpha · Σ_k A(m, k) · B(k, n) + beta · C[m, n]
//   A(m, k) = A[a_off + m·sam + k·sak],  B(k, n) = B[b_off + k·sbk + n·sbn],  C[c_off + m·ldc + n]
// (+ bias[bias_off + n]). Above the binding limit, the backend binds windows of A, B, C and passes tiles.
// One op serves x @ Wᵀ (matmul), xᵀx (hessian_accumulate) and the GPTQ lazy update. 16x16 tiles.
struct P { M: u32, N: u32, K: u32, a_off: u32, sam: u32, sak: u32, b_off: u32, sbk: u32, sbn: u32, c_off: u32, ldc: u32, alpha: f32, beta: f32, has_bias: u32, bias_off: u32, sym: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
var<workgroup> ta: array<array<f32, 17>, 16>;
var<workgroup> tb: array<array<f32, 17>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let m = wg.y * 16u + l.y;
  let n = wg.x * 16u + l.x;
  var acc = 0.0;
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    // A tile: rows wg.y·16 + l.y, columns k0 + l.x;  B tile: rows k0 + l.y, columns wg.x·16 + l.x
    let ka = k0 + l.x;
    ta[l.y][l.x] = select(0.0, A[p.a_off + m * p.sam + ka * p.sak], m < p.M && ka < p.K);
    let kb = k0 + l.y;
    tb[l.y][l.x] = select(0.0, B[p.b_off + kb * p.sbk + n * p.sbn], n < p.N && kb < p.K);
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) { acc += ta[l.y][kk] * tb[kk][l.x]; }
    workgroupBarrier();
  }
  if (m < p.M && n < p.N) {
    let ci = p.c_off + m * p.ldc + n;
    C[ci] = out_at(ci, acc, n, true);
  }
}

// ---- tiled: the same product for larger M and N (the backend picks it where both are at least 32) ----
// 64 x 64 tiles of C per workgroup of 256 invocations, each invocation 4 x 4 outputs of C in registers (rows
// m0 + 4·ty .. +3, columns n0 + 4·tx .. +3). A and B go through workgroup memory 16 k at a time, each tile
// loaded along whichever of its operand's dimensions is contiguous (sak or sam = 1 for A, sbk or sbn = 1 for B)
// so that neighbouring invocations read neighbouring words, zero outside the bounds; the next 16 k are loaded
// into registers before the current ones are used. Per k and invocation: two vec4 reads of workgroup memory
// for 16 FMAs (the 16 x 16 form above: two scalar reads per FMA).
// sym = 1 (tiled only): C is symmetric and so is the product (xᵀx: A(m, k) = B(k, m), M = N, no bias): the
// tiles below the diagonal do nothing and those above also write their transpose, about half the work.
const TT = 64u;  // tile rows and columns
const TKK = 16u; // k per step
const SR = 17u;  // vec4 per k row in sa, sb (16 + 1: rows of one k do not start in the same bank)
var<workgroup> sa: array<vec4<f32>, 272>;  // [k < 16][m4 < 16 (+1)]: A(m0 + 4·m4 .. +3, k0 + k)
var<workgroup> sb: array<vec4<f32>, 272>;  // [k < 16][n4 < 16 (+1)]: B(k0 + k, n0 + 4·n4 .. +3)

// element e < 1024 of a 64 x 16 tile as (row, k): k fastest where the operand is contiguous in k, else row fastest
fn tile_rc(e: u32, k_fast: bool) -> vec2<u32> {
  return select(vec2<u32>(e % TT, e / TT), vec2<u32>(e / TKK, e % TKK), k_fast);
}
fn a_el(m: u32, k: u32) -> f32 {
  var v = 0.0;
  if (m < p.M && k < p.K) { v = A[p.a_off + m * p.sam + k * p.sak]; }
  return v;
}
fn b_el(k: u32, n: u32) -> f32 {
  var v = 0.0;
  if (n < p.N && k < p.K) { v = B[p.b_off + k * p.sbk + n * p.sbn]; }
  return v;
}
// invocation t's four elements of the A and B tiles at k0 into ra, rb (tile_rc's order)
fn fetch(t: u32, m0: u32, n0: u32, k0: u32, ak: bool, bk: bool, ra: ptr<function, array<f32, 4>>, rb: ptr<function, array<f32, 4>>) {
  for (var i = 0u; i < 4u; i++) {
    let ea = tile_rc(t + 256u * i, ak);
    (*ra)[i] = a_el(m0 + ea.x, k0 + ea.y);
    let eb = tile_rc(t + 256u * i, bk);
    (*rb)[i] = b_el(k0 + eb.y, n0 + eb.x);
  }
}
// alpha·a + beta·C[ci] (+ bias[n]): an output of either entry
fn out_at(ci: u32, a: f32, n: u32, with_bias: bool) -> f32 {
  var v = p.alpha * a;
  if (p.beta != 0.0) { v += p.beta * C[ci]; }
  if (with_bias && p.has_bias != 0u) { v += bias[p.bias_off + n]; }
  return v;
}

@compute @workgroup_size(256)
fn tiled(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  if (p.sym != 0u && wg.y > wg.x) { return; }  // (uniform per workgroup)
  let m0 = wg.y * TT;
  let n0 = wg.x * TT;
  let tx = t % 16u;
  let ty = t / 16u;
  let ak = p.sak == 1u;  // A contiguous in k (x @ Wᵀ), else in m (xᵀx, the GPTQ update)
  let bk = p.sbk == 1u && p.sbn != 1u;  // B contiguous in k (Wᵀ), else in n
  var ra: array<f32, 4>;
  var rb: array<f32, 4>;
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  fetch(t, m0, n0, 0u, ak, bk, &ra, &rb);  // the first 16 k into registers
  for (var k0 = 0u; k0 < p.K; k0 += TKK) {
    for (var i = 0u; i < 4u; i++) {
      let ea = tile_rc(t + 256u * i, ak);
      sa[ea.y * SR + ea.x / 4u][ea.x % 4u] = ra[i];
      let eb = tile_rc(t + 256u * i, bk);
      sb[eb.y * SR + eb.x / 4u][eb.x % 4u] = rb[i];
    }
    workgroupBarrier();
    if (k0 + TKK < p.K) { fetch(t, m0, n0, k0 + TKK, ak, bk, &ra, &rb); }  // the next 16 k in flight while these are used
    for (var kk = 0u; kk < TKK; kk++) {
      let a = sa[kk * SR + ty];
      let b = sb[kk * SR + tx];
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * ty + i;
    if (m >= p.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + 4u * tx + j;
      if (n < p.N) {
        let ci = p.c_off + m * p.ldc + n;
        C[ci] = out_at(ci, acc[i][j], n, true);
        if (p.sym != 0u && wg.y != wg.x) {
          let cj = p.c_off + n * p.ldc + m;
          C[cj] = out_at(cj, acc[i][j], n, false);  // (sym: no bias)
        }
      }
    }
  }
}
