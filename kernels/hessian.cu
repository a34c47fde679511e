// hessian_accumulate: H [K,K] += xᵀx for x [T,K] (cuBLAS SYRK on the upper triangle, then mirrored);
// diagonal: out [n] = diag(H)
#include "common.cuh"

// row-major H: copy the upper triangle (i < j) onto the lower one
__global__ void mirror_upper_kernel(float* H, int K) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)K * K) return;
  int i = idx / K, j = idx % K;
  if (i > j) H[idx] = H[(long long)j * K + i];
}
__global__ void to_half_kernel(__half* y, const float* x, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2half_rn(x[i]);
}
__global__ void diagonal_kernel(float* out, const float* H, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = H[(long long)i * n + i];
}

extern "C" {
int gq_hessian_accumulate(float* H, const float* x, int T, int K) {
  GQ_CHECK_INIT();
  if (T == 0 || K == 0) return GQ_OK;
  const float one = 1.f;
  // row-major x [T,K] is column-major xᵀ [K,T]; column-major C = xᵀ·x (trans N, k = T) fills the
  // column-major lower triangle = the row-major upper triangle of H
  // full fp32, as the reference (TF32 would perturb H enough to change GPTQ's rounding decisions)
  gq::blas.SetMathMode(gq::blas.handle, 0);
  int st = gq::blas.Ssyrk(gq::blas.handle, 0 /* lower */, 0 /* N */, K, T, &one, x, K, &one, H, K);
  gq::blas.SetMathMode(gq::blas.handle, gq::blas.defaultMath);
  if (st) return gq::fail(GQ_ERR_BLAS, "cublasSsyrk failed with status %d (T=%d K=%d)", st, T, K);
  mirror_upper_kernel<<<blocks_for((long long)K * K, 256), 256, 0, gq::stream>>>(H, K);
  GQ_LAUNCHED("hessian mirror");
  return GQ_OK;
}
int gq_diagonal(float* out, const float* H, int n) {
  GQ_CHECK_INIT();
  diagonal_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(out, H, n);
  GQ_LAUNCHED("diagonal");
  return GQ_OK;
}
}
