// cholesky_inverse_upper: H [n,n] (+ damp on the diagonal) -> U upper with UᵀU = (H + damp·I)⁻¹, lower part 0,
// in float64. With P the reversal permutation: factor P(H + dI)P = L̃L̃ᵀ (cuSOLVER potrf), so H + dI = RRᵀ with
// R = PL̃P upper, and (H + dI)⁻¹ = R⁻ᵀR⁻¹: U = R⁻¹ = P·L̃⁻¹·P, with L̃⁻¹ from one triangular solve against I
// (cuBLAS trsm). Two O(n³/3) steps instead of potrf + potri + potrf, and no explicit inverse.
#include "common.cuh"

// a = P(H + damp·I)P in float64 (symmetric, so row- and column-major agree)
__global__ void reversed_damped_kernel(double* a, const float* H, int n, float damp) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n * n) return;
  int i = idx / n, j = idx % n;
  a[idx] = (double)H[(long long)(n - 1 - i) * n + (n - 1 - j)] + (i == j ? (double)damp : 0.0);
}
__global__ void identity_kernel(double* b, int n) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx < (long long)n * n) b[idx] = (idx / n == idx % n) ? 1.0 : 0.0;
}
// H (row-major) [i, j] = U[i][j] = L̃⁻¹[n-1-i][n-1-j]; L̃⁻¹ is column-major: element (r, c) at c·n + r
__global__ void unreverse_kernel(float* H, const double* linv, int n) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n * n) return;
  int i = idx / n, j = idx % n;
  H[idx] = j >= i ? (float)linv[(long long)(n - 1 - j) * n + (n - 1 - i)] : 0.f;
}

extern "C" int gq_cholesky_inverse_upper(float* H, int n, float damp, int* ok) {
  GQ_CHECK_INIT();
  *ok = 0;
  const long long nn = (long long)n * n;
  double* a = (double*)gq::scratch(nn * sizeof(double));
  double* b = (double*)gq::scratch(nn * sizeof(double));
  int* info = (int*)gq::scratch(sizeof(int));
  int lw = 0;
  if (a) gq::solver.DpotrfBuf(gq::solver.handle, 0, n, a, n, &lw);
  double* work = (double*)gq::scratch((size_t)(lw > 0 ? lw : 1) * sizeof(double));
  auto cleanup = [&]() { gq::release(work); gq::release(a); gq::release(b); gq::release(info); };
  if (!a || !b || !info || !work) { cleanup(); return gq::fail(GQ_ERR_CUDA, "cholesky: out of device memory (n=%d)", n); }
  reversed_damped_kernel<<<blocks_for(nn, 256), 256, 0, gq::stream>>>(a, H, n, damp);
  identity_kernel<<<blocks_for(nn, 256), 256, 0, gq::stream>>>(b, n);
  int st = gq::solver.Dpotrf(gq::solver.handle, 0 /* lower */, n, a, n, work, lw, info);
  if (st) { cleanup(); return gq::fail(GQ_ERR_BLAS, "cusolverDnDpotrf failed with status %d (n=%d)", st, n); }
  int h_info = 0;
  if (cudaMemcpyAsync(&h_info, info, sizeof(int), cudaMemcpyDeviceToHost, gq::stream) != cudaSuccess || cudaStreamSynchronize(gq::stream) != cudaSuccess) {
    cleanup();
    return gq::fail(GQ_ERR_CUDA, "cholesky: reading the solver status failed");
  }
  if (h_info != 0) { cleanup(); return GQ_OK; }  // not positive-definite: ok stays 0, H untouched
  const double one = 1.0;
  // L̃·X = I  ->  X = L̃⁻¹   (left side, lower, no transpose, non-unit diagonal)
  st = gq::blas.Dtrsm(gq::blas.handle, 0, 0, 0, 0, n, n, &one, a, n, b, n);
  if (st) { cleanup(); return gq::fail(GQ_ERR_BLAS, "cublasDtrsm failed with status %d (n=%d)", st, n); }
  unreverse_kernel<<<blocks_for(nn, 256), 256, 0, gq::stream>>>(H, b, n);
  cleanup();
  GQ_LAUNCHED("cholesky");
  *ok = 1;
  return GQ_OK;
}
