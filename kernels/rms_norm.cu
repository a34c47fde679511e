// rms_norm: x [T,H], w [H] -> out = x · rsqrt(mean(x²) + eps) · w; one block per row, up to 1024 threads,
// float4 loads when H % 4 == 0 and the pointers are 16-byte aligned (one row of 4096 is one load per thread)
#include "common.cuh"
#include <cstdint>

template <int V>
__global__ void rms_norm_kernel(float* out, const float* x, const float* w, int H, float eps) {
  pdl_launch_dependents();  // a packed GEMV usually comes next
  typedef typename std::conditional<V == 4, float4, float>::type vec;
  const vec* row = reinterpret_cast<const vec*>(x + (long long)blockIdx.x * H);
  const vec* wv = reinterpret_cast<const vec*>(w);
  vec* o = reinterpret_cast<vec*>(out + (long long)blockIdx.x * H);
  const int n = H / V;
  auto sq = [](const vec& v) {
    if constexpr (V == 4) return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    else return v * v;
  };
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += sq(row[i]);
  __shared__ float red[32];
  for (int d = 16; d; d >>= 1) ss += __shfl_xor_sync(0xffffffff, ss, d);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    ss = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    for (int d = 16; d; d >>= 1) ss += __shfl_xor_sync(0xffffffff, ss, d);
    if (threadIdx.x == 0) red[0] = ss;
  }
  __syncthreads();
  const float r = rsqrtf(red[0] / H + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const vec v = row[i], g = wv[i];
    if constexpr (V == 4) o[i] = make_float4(v.x * r * g.x, v.y * r * g.y, v.z * r * g.z, v.w * r * g.w);
    else o[i] = v * r * g;
  }
}

extern "C" int gq_rms_norm(float* out, const float* x, const float* w, int T, int H, float eps) {
  GQ_CHECK_INIT();
  if (T == 0) return GQ_OK;
  const bool v4 = H % 4 == 0 && (((uintptr_t)out | (uintptr_t)x | (uintptr_t)w) & 15) == 0;
  const int n = v4 ? H / 4 : H;
  int threads = (n + 31) / 32 * 32;
  threads = threads > 1024 ? 1024 : threads;
  if (v4) rms_norm_kernel<4><<<T, threads, 0, gq::stream>>>(out, x, w, H, eps);
  else rms_norm_kernel<1><<<T, threads, 0, gq::stream>>>(out, x, w, H, eps);
  GQ_LAUNCHED("rms_norm");
  return GQ_OK;
}
