// cholesky_inverse_upper: H [n, n] (+ damp on the diagonal) -> U upper with UᵀU = (H + damp·I)⁻¹, lower part 0.
// float32 with care: the matrix is first equilibrated, Ĥ = S(H + dI)S with S = diag(1/√(H_ii + d)) (unit
// diagonal: activation scales differ by orders of magnitude across channels, and that is what float32 loses
// digits to), then with P the reversal permutation: A = PĤP = L̃L̃ᵀ and X = L̃⁻¹ (both blocked, below), and
// U = P·X·P·S (unreverse), since (H + dI)⁻¹ = S Ĥ⁻¹ S. A non-positive pivot sets status = 1.
// Matrices above the binding limit are bound as windows of rows: a_base, x_base, h_base are the element
// indices where the windows of a, xinv and H start (0: whole). equil, reverse_damp and unreverse cover the
// rows [r0, r1) (reverse_damp reads H's rows n − r1 .. n − r0, unreverse xinv's); j0 is a block's start.
struct P { n: u32, damp: f32, nx: u32, j0: u32, r0: u32, r1: u32, a_base: u32, x_base: u32, h_base: u32 }
@group(0) @binding(0) var<storage, read_write> a: array<f32>;      // n x n work matrix (row-major)
@group(0) @binding(1) var<storage, read_write> xinv: array<f32>;   // n x n, L̃⁻¹
@group(0) @binding(2) var<storage, read_write> H: array<f32>;      // input H, output U
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> sc: array<f32>;    // S, the equilibration
@group(0) @binding(5) var<storage, read_write> pan: array<f32>;   // [n − j0 − b, BLK] panel copy
@group(0) @binding(6) var<storage, read_write> xd: array<f32>;    // [BLK, BLK] inverse of a diagonal block
@group(0) @binding(7) var<uniform> p: P;
var<workgroup> wfail: u32;
var<workgroup> wpiv: f32;

@compute @workgroup_size(256)
fn equil(@builtin(global_invocation_id) g: vec3u) {
  // S = diag(1/√(H_ii + d)) over rows [r0, r1); the first span also clears the status
  let i = p.r0 + g.x;
  if (i < p.r1) { sc[i] = 1.0 / sqrt(H[i * p.n + i - p.h_base] + p.damp); }
  if (p.r0 == 0u && g.x == 0u) { status[0] = 0u; }
}

@compute @workgroup_size(256)
fn reverse_damp(@builtin(global_invocation_id) g: vec3u) {
  let idx = g.x + g.y * p.nx;
  let n = p.n;
  if (idx >= (p.r1 - p.r0) * n) { return; }
  let i = p.r0 + idx / n;
  let j = idx % n;
  let ri = n - 1u - i;
  let rj = n - 1u - j;
  a[i * n + j - p.a_base] = (H[ri * n + rj - p.h_base] + select(0.0, p.damp, i == j)) * sc[ri] * sc[rj];
  xinv[i * n + j - p.x_base] = 0.0;
}

@compute @workgroup_size(256)
fn unreverse(@builtin(global_invocation_id) g: vec3u) {
  if (status[0] != 0u) { return; }
  let idx = g.x + g.y * p.nx;
  let n = p.n;
  if (idx >= (p.r1 - p.r0) * n) { return; }
  let i = p.r0 + idx / n;
  let j = idx % n;
  H[i * n + j - p.h_base] = select(0.0, xinv[(n - 1u - i) * n + (n - 1u - j) - p.x_base] * sc[j], j >= i);
}

// ---- blocked, BLK columns at a time (p.j0: the block start) ----
// factor:  blk_factor (the diagonal block, one workgroup; L11 also copied to xd), blk_panel (rows [r0, r1)
//          below it: L21 = A21·L11⁻ᵀ with L11 from xd, also copied to pan [rows, BLK]), then the host's GEMM
//          A22 −= L21·L21ᵀ (the whole square; only the lower triangle is ever read)
// inverse: blk_inverse (X_ii = L_ii⁻¹, also copied to xd [BLK, BLK]), then the host's GEMMs
//          T = L[i, :i]·X[:i, :i] and X[i, :i] = −X_ii·T
const BLK = 64u;

@compute @workgroup_size(256)
fn blk_factor(@builtin(local_invocation_id) l: vec3u) {
  let n = p.n;
  let j0 = p.j0;
  let e = min(j0 + BLK, n);
  let ab = p.a_base;
  if (l.x == 0u) { wfail = status[0]; }
  if (workgroupUniformLoad(&wfail) != 0u) { return; }
  for (var j = j0; j < e; j++) {
    if (l.x == 0u) {
      let d = a[j * n + j - ab];
      if (!(d > 0.0)) { wfail = 1u; status[0] = 1u; } else { wfail = 0u; wpiv = sqrt(d); a[j * n + j - ab] = wpiv; }
    }
    if (workgroupUniformLoad(&wfail) != 0u) { return; }
    let d = wpiv;
    for (var i = j + 1u + l.x; i < e; i += 256u) { a[i * n + j - ab] /= d; }
    storageBarrier();
    workgroupBarrier();
    for (var i = j + 1u + l.x; i < e; i += 256u) {
      let aij = a[i * n + j - ab];
      for (var k = j + 1u; k <= i; k++) { a[i * n + k - ab] -= aij * a[k * n + j - ab]; }
    }
    storageBarrier();
    workgroupBarrier();
  }
  // L11 (lower, zeros above) into xd for blk_panel, whose rows may be bound without it
  for (var t = l.x; t < BLK * BLK; t += 256u) {
    let i = j0 + t / BLK;
    let k = j0 + t % BLK;
    xd[t] = select(0.0, a[i * n + k - ab], i < e && k <= i);
  }
}

@compute @workgroup_size(64)
fn blk_panel(@builtin(global_invocation_id) g: vec3u) {
  // row i below the block: x·L11ᵀ = a[i, j0:e] by forward substitution, in place and into pan
  let n = p.n;
  let j0 = p.j0;
  let e = min(j0 + BLK, n);
  let i = p.r0 + g.x;
  if (i >= p.r1 || status[0] != 0u) { return; }
  let ab = p.a_base;
  for (var c = j0; c < e; c++) {
    var s = a[i * n + c - ab];
    for (var k = j0; k < c; k++) { s -= a[i * n + k - ab] * xd[(c - j0) * BLK + (k - j0)]; }
    let v = s / xd[(c - j0) * BLK + (c - j0)];
    a[i * n + c - ab] = v;
    pan[(i - e) * BLK + (c - j0)] = v;
  }
}

@compute @workgroup_size(256)
fn blk_inverse(@builtin(local_invocation_id) l: vec3u) {
  // X_ii = L_ii⁻¹ for the diagonal block at j0, row by row as tri_inverse, into xinv and xd
  if (l.x == 0u) { wfail = status[0]; }
  if (workgroupUniformLoad(&wfail) != 0u) { return; }
  let n = p.n;
  let i0 = p.j0;
  let e = min(i0 + BLK, n);
  let ab = p.a_base;
  let xb = p.x_base;
  for (var t = l.x; t < BLK * BLK; t += 256u) { xd[t] = 0.0; }  // its upper part stays 0
  storageBarrier();
  workgroupBarrier();
  for (var i = i0; i < e; i++) {
    let lii = a[i * n + i - ab];
    for (var c = i0 + l.x; c <= i; c += 256u) {
      var s = select(0.0, 1.0, c == i);
      for (var k = c; k < i; k++) { s -= a[i * n + k - ab] * xinv[k * n + c - xb]; }
      let v = s / lii;
      xinv[i * n + c - xb] = v;
      xd[(i - i0) * BLK + (c - i0)] = v;
    }
    storageBarrier();
    workgroupBarrier();
  }
}
