// cholesky_inverse_upper: H [n, n] (+ damp on the diagonal) -> U upper with UᵀU = (H + damp·I)⁻¹, lower part 0.
// float32 with care: the matrix is first equilibrated, Ĥ = S(H + dI)S with S = diag(1/√(H_ii + d)) (unit
// diagonal: activation scales differ by orders of magnitude across channels, and that is what float32 loses
// digits to), then with P the reversal permutation: A = PĤP = L̃L̃ᵀ (factor), X = L̃⁻¹ (tri_inverse), and
// U = P·X·P·S (unreverse), since (H + dI)⁻¹ = S Ĥ⁻¹ S. A non-positive pivot sets status = 1.
struct P { n: u32, damp: f32, nx: u32 }
@group(0) @binding(0) var<storage, read_write> a: array<f32>;      // n x n work matrix (row-major)
@group(0) @binding(1) var<storage, read_write> xinv: array<f32>;   // n x n, L̃⁻¹
@group(0) @binding(2) var<storage, read_write> H: array<f32>;      // input H, output U
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> sc: array<f32>;    // S, the equilibration
@group(0) @binding(5) var<uniform> p: P;
var<workgroup> wfail: u32;
var<workgroup> wpiv: f32;

@compute @workgroup_size(256)
fn reverse_damp(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  let n = p.n;
  if (idx >= n * n) { return; }
  let i = idx / n;
  let j = idx % n;
  let ri = n - 1u - i;
  let rj = n - 1u - j;
  let si = 1.0 / sqrt(H[ri * n + ri] + p.damp);
  let sj = 1.0 / sqrt(H[rj * n + rj] + p.damp);
  a[idx] = (H[ri * n + rj] + select(0.0, p.damp, i == j)) * si * sj;
  xinv[idx] = 0.0;
  if (idx < n) { sc[idx] = 1.0 / sqrt(H[idx * n + idx] + p.damp); }
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
  H[idx] = select(0.0, xinv[(n - 1u - i) * n + (n - 1u - j)] * sc[j], j >= i);
}

// ---- large n: one dispatch per step over the whole GPU (p.nx carries the step j / row i) ----
@compute @workgroup_size(256)
fn step_pivot(@builtin(local_invocation_id) l: vec3u) {
  // column j: pivot and scale (one workgroup)
  let n = p.n;
  let j = p.nx;
  if (l.x == 0u) {
    let d = a[j * n + j];
    if (!(d > 0.0) || status[0] != 0u) { wfail = 1u; status[0] = 1u; } else { wfail = 0u; wpiv = sqrt(d); a[j * n + j] = wpiv; }
  }
  if (workgroupUniformLoad(&wfail) != 0u) { return; }
  let d = wpiv;
  for (var i = j + 1u + l.x; i < n; i += 256u) { a[i * n + j] /= d; }
}
@compute @workgroup_size(16, 16)
fn step_update(@builtin(global_invocation_id) g: vec3u) {
  // trailing lower triangle: a[i][k] -= a[i][j]·a[k][j] for j < k <= i
  let n = p.n;
  let j = p.nx;
  let i = j + 1u + g.y;
  let k = j + 1u + g.x;
  if (i >= n || k > i || status[0] != 0u) { return; }
  a[i * n + k] -= a[i * n + j] * a[k * n + j];
}
@compute @workgroup_size(256)
fn step_inverse(@builtin(global_invocation_id) g: vec3u) {
  // row i of X = L⁻¹ (columns c <= i in parallel)
  let n = p.n;
  let i = p.nx;
  let c = g.x;
  if (c > i || status[0] != 0u) { return; }
  var s = select(0.0, 1.0, c == i);
  for (var k = c; k < i; k++) { s -= a[i * n + k] * xinv[k * n + c]; }
  xinv[i * n + c] = s / a[i * n + i];
}
