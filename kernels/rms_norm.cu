// rms_norm: x [T,H], w [H] -> out = x · rsqrt(mean(x²) + eps) · w; one block per row
#include "common.cuh"

__global__ void rms_norm_kernel(float* out, const float* x, const float* w, int H, float eps) {
  const float* row = x + (long long)blockIdx.x * H;
  float ss = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) ss += row[i] * row[i];
  __shared__ float red[32];
  for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffff, ss, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    ss = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffff, ss, o);
    if (threadIdx.x == 0) red[0] = ss;
  }
  __syncthreads();
  float r = rsqrtf(red[0] / H + eps);
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[(long long)blockIdx.x * H + i] = (row[i] * r) * w[i];
}

extern "C" int gq_rms_norm(float* out, const float* x, const float* w, int T, int H, float eps) {
  GQ_CHECK_INIT();
  if (T == 0) return GQ_OK;
  rms_norm_kernel<<<T, 256, 0, gq::stream>>>(out, x, w, H, eps);
  GQ_LAUNCHED("rms_norm");
  return GQ_OK;
}
