// half_gemv: y [M, N] = x [M, K] @ w [N, K]ᵀ for M <= 4 with w in fp16 and fp32 sums: the LM head when decoding.
// Dense weights live on the device in f32 (widened at upload); for a weight that came as f16 the backend may
// keep an fp16 twin (gq_to_half: exact, the f32 values were widened from those halves), and this kernel reads
// half the bytes of an f32 GEMM. One warp per row n of w; with K % 8 == 0 and 16-byte aligned rows each lane
// streams 16-byte chunks, 4 at a time with the next 4 in flight, the first ones issued before the wait for
// the kernel ahead (weights do not depend on it: programmatic dependent launch); other shapes: one half per
// lane and step.
#include "common.cuh"
#include <cstdint>

#define HG_WARPS 8

// 8 halves of w times x [m, k..k+8) (x 16-byte aligned there)
template <int MR>
__device__ __forceinline__ void fma8(float (&acc)[MR], const uint4 v, const float* x, int K, int M, int k) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
  float2 f[4];
#pragma unroll
  for (int j = 0; j < 4; j++) f[j] = __half22float2(h[j]);
#pragma unroll
  for (int m = 0; m < MR; m++) {
    if (m >= M) break;
    const float4 a = *reinterpret_cast<const float4*>(x + (long long)m * K + k);
    const float4 b = *reinterpret_cast<const float4*>(x + (long long)m * K + k + 4);
    acc[m] += f[0].x * a.x + f[0].y * a.y + f[1].x * a.z + f[1].y * a.w + f[2].x * b.x + f[2].y * b.y + f[3].x * b.z + f[3].y * b.w;
  }
}

template <int MR>
__global__ void __launch_bounds__(HG_WARPS * 32) half_gemv_kernel(float* y, const float* __restrict__ x, const __half* __restrict__ w, int M, int N, int K, int vec) {
  pdl_launch_dependents();
  const int n = blockIdx.x * HG_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  float acc[MR];
#pragma unroll
  for (int m = 0; m < MR; m++) acc[m] = 0.f;
  if (n >= N) {
    pdl_wait();
    return;
  }
  const __half* wr = w + (long long)n * K;
  if (vec) {
    const uint4* w8 = reinterpret_cast<const uint4*>(wr);
    const int K8 = K / 8;
    uint4 v[4], nv[4];
    const uint4 z = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; u++) v[u] = lane + 32 * u < K8 ? __ldcs(w8 + lane + 32 * u) : z;
    pdl_wait();  // x comes from the kernel ahead
    for (int c0 = lane; c0 < K8; c0 += 128) {
#pragma unroll
      for (int u = 0; u < 4; u++) nv[u] = c0 + 128 + 32 * u < K8 ? __ldcs(w8 + c0 + 128 + 32 * u) : z;
#pragma unroll
      for (int u = 0; u < 4; u++)
        if (c0 + 32 * u < K8) fma8<MR>(acc, v[u], x, K, M, (c0 + 32 * u) * 8);
#pragma unroll
      for (int u = 0; u < 4; u++) v[u] = nv[u];
    }
  } else {
    pdl_wait();
    for (int k = lane; k < K; k += 32) {
      const float wv = __half2float(wr[k]);
#pragma unroll
      for (int m = 0; m < MR; m++)
        if (m < M) acc[m] += wv * x[(long long)m * K + k];
    }
  }
#pragma unroll
  for (int m = 0; m < MR; m++) {
    const float s = warp_reduce<false>(acc[m]);
    if (lane == 0 && m < M) y[(long long)m * N + n] = s;
  }
}

extern "C" {
int gq_to_half(void* dst, const float* src, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  to_half_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(static_cast<__half*>(dst), src, n);
  GQ_LAUNCHED("to_half");
  return GQ_OK;
}
int gq_half_gemv(float* y, const float* x, const void* w, int M, int N, int K) {
  GQ_CHECK_INIT();
  GQ_DBG_SKIP_OP("head");
  GQ_ARG(M >= 1 && M <= 4, "half_gemv: M must be 1..4, got %d", M);
  GQ_ARG(N >= 0 && K >= 0, "half_gemv: N and K must be >= 0 (N=%d K=%d)", N, K);
  if (N == 0) return GQ_OK;
  if (K == 0) {
    GQ_CUDA(cudaMemsetAsync(y, 0, sizeof(float) * M * N, gq::stream));
    return GQ_OK;
  }
  const int vec = K % 8 == 0 && ((reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(x)) & 15) == 0;
  const __half* wh = static_cast<const __half*>(w);
  const dim3 grid((N + HG_WARPS - 1) / HG_WARPS);
  if (M == 1) GQ_CUDA(gq::launch(half_gemv_kernel<1>, grid, HG_WARPS * 32, 0, y, x, wh, M, N, K, vec));
  else if (M == 2) GQ_CUDA(gq::launch(half_gemv_kernel<2>, grid, HG_WARPS * 32, 0, y, x, wh, M, N, K, vec));
  else GQ_CUDA(gq::launch(half_gemv_kernel<4>, grid, HG_WARPS * 32, 0, y, x, wh, M, N, K, vec));
  return GQ_OK;
}
}
