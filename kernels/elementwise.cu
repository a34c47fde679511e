// silu_mul: out = silu(g)·u;  add: out = a + b;  scale: x *= s   (flat arrays of n)
#include "common.cuh"

__global__ void silu_mul_kernel(float* out, const float* g, const float* u, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) { float v = g[i]; out[i] = v / (1.f + expf(-v)) * u[i]; }
}
__global__ void add_kernel(float* out, const float* a, const float* b, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}
__global__ void scale_kernel(float* x, float s, long long n) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

extern "C" {
int gq_silu_mul(float* out, const float* g, const float* u, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  silu_mul_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(out, g, u, n);
  GQ_LAUNCHED("silu_mul");
  return GQ_OK;
}
int gq_add(float* out, const float* a, const float* b, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  add_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(out, a, b, n);
  GQ_LAUNCHED("add");
  return GQ_OK;
}
int gq_scale(float* x, float s, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  scale_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(x, s, n);
  GQ_LAUNCHED("scale");
  return GQ_OK;
}
}
