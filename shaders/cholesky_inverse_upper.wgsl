// cholesky_inverse_upper: H [n, n] (+ damp on the diagonal) -> U upper with UᵀU = (H + damp·I)⁻¹, lower part 0.
// With P the reversal permutation: A = P(H + dI)P = L̃L̃ᵀ (factor, in place, one workgroup), X = L̃⁻¹ (tri_inverse,
// one workgroup), then U = P·X·P (unreverse). float32 throughout; a non-positive pivot sets status = 1.
struct P { n: u32, damp: f32, nx: u32 }
@group(0) @binding(0) var<storage, read_write> a: array<f32>;      // n x n work matrix (row-major)
@group(0) @binding(1) var<storage, read_write> xinv: array<f32>;   // n x n, L̃⁻¹
@group(0) @binding(2) var<storage, read_write> H: array<f32>;      // input H, output U
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<uniform> p: P;
var<workgroup> wfail: u32;
var<workgroup> wpiv: f32;

@compute @workgroup_size(256)
fn reverse_damp(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  let n = p.n;
  if (idx >= n * n) { return; }
  let i = idx / n;
  let j = idx % n;
  a[idx] = H[(n - 1u - i) * n + (n - 1u - j)] + select(0.0, p.damp, i == j);
  xinv[idx] = 0.0;
  if (idx == 0u) { status[0] = 0u; }
}

@compute @workgroup_size(256)
fn factor(@builtin(local_invocation_id) l: vec3u) {
  let n = p.n;
  for (var j = 0u; j < n; j++) {
    if (l.x == 0u) {
      let d = a[j * n + j];
      if (!(d > 0.0)) { wfail = 1u; } else { wfail = 0u; wpiv = sqrt(d); a[j * n + j] = wpiv; }
    }
    let fail = workgroupUniformLoad(&wfail);
    if (fail != 0u) {
      if (l.x == 0u) { status[0] = 1u; }
      return;
    }
    let d = wpiv;
    for (var i = j + 1u + l.x; i < n; i += 256u) { a[i * n + j] /= d; }
    storageBarrier();
    workgroupBarrier();
    // trailing update of the lower triangle: a[i][k] -= a[i][j]·a[k][j], j < k <= i
    for (var i = j + 1u + l.x; i < n; i += 256u) {
      let aij = a[i * n + j];
      for (var k = j + 1u; k <= i; k++) { a[i * n + k] -= aij * a[k * n + j]; }
    }
    storageBarrier();
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn tri_inverse(@builtin(local_invocation_id) l: vec3u) {
  if (l.x == 0u) { wfail = status[0]; }
  if (workgroupUniformLoad(&wfail) != 0u) { return; }
  let n = p.n;
  // row i of X = L⁻¹: X[i][c] = (δ(i,c) − Σ_{k=c}^{i−1} L[i][k]·X[k][c]) / L[i][i]
  for (var i = 0u; i < n; i++) {
    let lii = a[i * n + i];
    for (var c = l.x; c <= i; c += 256u) {
      var s = select(0.0, 1.0, c == i);
      for (var k = c; k < i; k++) { s -= a[i * n + k] * xinv[k * n + c]; }
      xinv[i * n + c] = s / lii;
    }
    storageBarrier();
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn unreverse(@builtin(global_invocation_id) g: vec3u) {
  if (status[0] != 0u) { return; }
  let idx = g.x + g.y * p.nx;
  let n = p.n;
  if (idx >= n * n) { return; }
  let i = idx / n;
  let j = idx % n;
  H[idx] = select(0.0, xinv[(n - 1u - i) * n + (n - 1u - j)], j >= i);
}
