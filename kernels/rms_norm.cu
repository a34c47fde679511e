// rms_norm: x [T,H], w [H] -> out = x · rsqrt(mean(x²) + eps) · w; one block per row, up to 1024 threads,
// float4 loads when H % 4 == 0 and the pointers are 16-byte aligned (one row of 4096 is one load per thread).
// add_rms_norm (the residual add fused in): sum = x + r [T,H], out = rms_norm(sum)
#include "common.cuh"
#include <cstdint>

#define RN_REG 4  // vectors per thread kept in registers (rows up to RN_REG·1024 vectors)
template <int V>
__global__ void rms_norm_kernel(float* out, const float* x, const float* w, int H, float eps, const float* r, float* sum) {
  pdl_launch_dependents();  // a packed GEMV usually comes next
  pdl_wait();  // launched with PDL (gq::launch): nothing of the kernel ahead is touched before this
  typedef typename std::conditional<V == 4, float4, float>::type vec;
  const vec* row = reinterpret_cast<const vec*>(x + (long long)blockIdx.x * H);
  const vec* wv = reinterpret_cast<const vec*>(w);
  vec* o = reinterpret_cast<vec*>(out + (long long)blockIdx.x * H);
  const int n = H / V;
  auto sq = [](const vec& v) {
    if constexpr (V == 4) return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    else return v * v;
  };
  __shared__ float red[32];
  if (n <= RN_REG * (int)blockDim.x) {
    // the row fits RN_REG vectors per thread: x, r and w loaded together, the sum kept in registers (one round
    // trip to memory before the reduction instead of three passes)
    vec a[RN_REG], g[RN_REG];
#pragma unroll
    for (int u = 0; u < RN_REG; u++) {
      const int i = threadIdx.x + u * blockDim.x;
      if (i < n) {
        a[u] = row[i];
        g[u] = wv[i];
        if (r) {
          const vec b = reinterpret_cast<const vec*>(r + (long long)blockIdx.x * H)[i];
          if constexpr (V == 4) a[u] = make_float4(a[u].x + b.x, a[u].y + b.y, a[u].z + b.z, a[u].w + b.w);
          else a[u] = a[u] + b;
        }
      }
    }
    float ss = 0.f;
#pragma unroll
    for (int u = 0; u < RN_REG; u++) {
      const int i = threadIdx.x + u * blockDim.x;
      if (i < n) {
        if (r) reinterpret_cast<vec*>(sum + (long long)blockIdx.x * H)[i] = a[u];
        ss += sq(a[u]);
      }
    }
    const float inv = rsqrtf(block_reduce<false, float>(ss, red) / H + eps);
#pragma unroll
    for (int u = 0; u < RN_REG; u++) {
      const int i = threadIdx.x + u * blockDim.x;
      if (i < n) {
        if constexpr (V == 4) o[i] = make_float4(a[u].x * inv * g[u].x, a[u].y * inv * g[u].y, a[u].z * inv * g[u].z, a[u].w * inv * g[u].w);
        else o[i] = a[u] * inv * g[u];
      }
    }
    return;
  }
  if (r) {  // sum = x + r, then the norm of sum (each thread reads back only what it wrote)
    const vec* rr = reinterpret_cast<const vec*>(r + (long long)blockIdx.x * H);
    vec* sr = reinterpret_cast<vec*>(sum + (long long)blockIdx.x * H);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const vec a = row[i], b = rr[i];
      if constexpr (V == 4) sr[i] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
      else sr[i] = a + b;
    }
    row = sr;
  }
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += sq(row[i]);
  const float inv = rsqrtf(block_reduce<false, float>(ss, red) / H + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const vec v = row[i], g = wv[i];
    if constexpr (V == 4) o[i] = make_float4(v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w);
    else o[i] = v * inv * g;
  }
}

static int rms_norm(float* out, const float* x, const float* w, int T, int H, float eps, const float* r, float* sum) {
  GQ_CHECK_INIT();
  if (T == 0) return GQ_OK;
  const bool v4 = H % 4 == 0 && (((uintptr_t)out | (uintptr_t)x | (uintptr_t)w | (uintptr_t)r | (uintptr_t)sum) & 15) == 0;
  const int n = v4 ? H / 4 : H;
  int threads = (n + 31) / 32 * 32;
  threads = threads > 1024 ? 1024 : threads;
  GQ_CUDA(gq::launch(v4 ? rms_norm_kernel<4> : rms_norm_kernel<1>, T, threads, 0, out, x, w, H, eps, r, sum));
  return GQ_OK;
}
extern "C" int gq_rms_norm(float* out, const float* x, const float* w, int T, int H, float eps) {
  GQ_DBG_SKIP_OP("norm");
  return rms_norm(out, x, w, T, H, eps, nullptr, nullptr);
}
extern "C" int gq_add_rms_norm(float* sum, float* out, const float* x, const float* r, const float* w, int T, int H, float eps) {
  GQ_ARG(sum && r, "add_rms_norm: sum and r must be given");
  return rms_norm(out, x, w, T, H, eps, r, sum);
}
