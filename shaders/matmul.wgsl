// matmul: strided GEMM, C[m, n] = alpha · Σ_k A(m, k) · B(k, n) + beta · C[m, n]
//   A(m, k) = A[a_off + m·sam + k·sak],  B(k, n) = B[b_off + k·sbk + n·sbn],  C[c_off + m·ldc + n]
// (+ bias[bias_off + n]). Above the binding limit, the backend binds windows of A, B, C and passes tiles.
// One op serves x @ Wᵀ (matmul), xᵀx (hessian_accumulate) and the GPTQ lazy update. 16x16 tiles.
struct P { M: u32, N: u32, K: u32, a_off: u32, sam: u32, sak: u32, b_off: u32, sbk: u32, sbn: u32, c_off: u32, ldc: u32, alpha: f32, beta: f32, has_bias: u32, bias_off: u32 }
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
    var v = p.alpha * acc;
    if (p.beta != 0.0) { v += p.beta * C[ci]; }
    if (p.has_bias != 0u) { v += bias[p.bias_off + n]; }
    C[ci] = v;
  }
}
