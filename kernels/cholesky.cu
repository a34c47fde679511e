// cholesky_inverse_upper: H [n,n] (+ damp on the diagonal) -> U upper with UᵀU = (H + damp·I)⁻¹, lower part 0.
// In float64 through cuSOLVER: potrf, potri, mirror, potrf. A row-major symmetric matrix is its own
// column-major view; cuSOLVER's column-major lower factor L (A = LLᵀ) reads row-major as U = Lᵀ.
#include "common.cuh"

__global__ void to_double_damped_kernel(double* a, const float* H, int n, float damp) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n * n) return;
  int i = idx / n, j = idx % n;
  a[idx] = (double)H[idx] + (i == j ? (double)damp : 0.0);
}
// column-major lower triangle (row-major upper) -> both triangles
__global__ void mirror_kernel(double* a, int n) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n * n) return;
  int i = idx / n, j = idx % n;
  if (i > j) a[idx] = a[(long long)j * n + i];
}
__global__ void to_float_upper_kernel(float* H, const double* a, int n) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n * n) return;
  int i = idx / n, j = idx % n;
  H[idx] = j >= i ? (float)a[idx] : 0.f;
}

extern "C" int gq_cholesky_inverse_upper(float* H, int n, float damp, int* ok) {
  GQ_CHECK_INIT();
  *ok = 0;
  const long long nn = (long long)n * n;
  double* a = (double*)gq::scratch(nn * sizeof(double));
  int* info = (int*)gq::scratch(sizeof(int));
  if (!a || !info) return gq::fail(GQ_ERR_CUDA, "cholesky: out of device memory (n=%d)", n);
  to_double_damped_kernel<<<blocks_for(nn, 256), 256, 0, gq::stream>>>(a, H, n, damp);
  int lw1 = 0, lw2 = 0;
  gq::solver.DpotrfBuf(gq::solver.handle, 0, n, a, n, &lw1);
  gq::solver.DpotriBuf(gq::solver.handle, 0, n, a, n, &lw2);
  int lw = lw1 > lw2 ? lw1 : lw2;
  double* work = (double*)gq::scratch((size_t)(lw > 0 ? lw : 1) * sizeof(double));
  int h_info = 0, st = 0;
  auto cleanup = [&]() { gq::release(work); gq::release(a); gq::release(info); };
  auto step = [&](int which) -> int {
    st = which == 0 ? gq::solver.Dpotrf(gq::solver.handle, 0, n, a, n, work, lw, info) : gq::solver.Dpotri(gq::solver.handle, 0, n, a, n, work, lw, info);
    if (st) return gq::fail(GQ_ERR_BLAS, "cusolverDn %s failed with status %d (n=%d)", which ? "Dpotri" : "Dpotrf", st, n);
    if (cudaMemcpyAsync(&h_info, info, sizeof(int), cudaMemcpyDeviceToHost, gq::stream) != cudaSuccess || cudaStreamSynchronize(gq::stream) != cudaSuccess)
      return gq::fail(GQ_ERR_CUDA, "cholesky: reading the solver status failed");
    return GQ_OK;
  };
  int rc;
  if ((rc = step(0)) || h_info != 0) { cleanup(); return rc; }  // not positive-definite: ok stays 0
  if ((rc = step(1)) || h_info != 0) { cleanup(); return rc; }
  mirror_kernel<<<blocks_for(nn, 256), 256, 0, gq::stream>>>(a, n);
  if ((rc = step(0)) || h_info != 0) { cleanup(); return rc; }
  to_float_upper_kernel<<<blocks_for(nn, 256), 256, 0, gq::stream>>>(H, a, n);
  cleanup();
  GQ_LAUNCHED("cholesky");
  *ok = 1;
  return GQ_OK;
}
