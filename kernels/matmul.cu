// matmul: y [M,N] = x [M,K] @ w [N,K]ᵀ (+ b) through cuBLAS; weights are widened to f32 at upload (gq_convert).
#include "common.cuh"
#include <cuda_bf16.h>

__global__ void convert_kernel(float* dst, const void* src, long long n, int dtype) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (dtype == GQ_F16) dst[i] = __half2float(((const __half*)src)[i]);
  else if (dtype == GQ_BF16) dst[i] = __bfloat162float(((const __nv_bfloat16*)src)[i]);
  else dst[i] = ((const float*)src)[i];
}

// y [M,N] += bias [N]
__global__ void add_bias_kernel(float* y, const float* bias, int M, int N) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < (long long)M * N) y[i] += bias[i % N];
}

extern "C" {
int gq_convert(float* dst, const void* src, long long n, int dtype) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  convert_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(dst, src, n, dtype);
  GQ_LAUNCHED("convert");
  return GQ_OK;
}
int gq_gemm(int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  GQ_CHECK_INIT();
  return gq::gemm_rm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
int gq_add_bias(float* y, const float* bias, int M, int N) {
  GQ_CHECK_INIT();
  if ((long long)M * N == 0) return GQ_OK;
  add_bias_kernel<<<blocks_for((long long)M * N, 256), 256, 0, gq::stream>>>(y, bias, M, N);
  GQ_LAUNCHED("add_bias");
  return GQ_OK;
}
}
