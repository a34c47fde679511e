// silu_mul: out = silu(g)·u;  add: out = a + b;  scale: x *= s   (flat arrays of n)
// write_rows: dst [rows, C] rows r0 .. r0+T = src [T, C] with r0 = row0 (+ *row_dev, read when the kernel runs);
// rows past the end are not written (the caller checks bounds; a replayed graph cannot report them)
#include "common.cuh"

__global__ void silu_mul_kernel(float* out, const float* g, const float* u, long long n) {
  pdl_launch_dependents();  // a packed GEMV usually comes next
  pdl_wait();               // launched with PDL (gq::launch), as the other kernels here
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) { float v = g[i]; out[i] = v / (1.f + expf(-v)) * u[i]; }
}
__global__ void add_kernel(float* out, const float* a, const float* b, long long n) {
  pdl_launch_dependents();
  pdl_wait();
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}
__global__ void scale_kernel(float* x, float s, long long n) {
  pdl_launch_dependents();
  pdl_wait();
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void write_rows_kernel(float* dst, const float* src, int row0, const int* row_dev, int rows, int T, int C) {
  pdl_launch_dependents();
  pdl_wait();
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= (long long)T * C) return;
  const int r = row0 + (row_dev ? *row_dev : 0) + (int)(i / C);
  if (r >= 0 && r < rows) dst[(long long)r * C + i % C] = src[i];
}

extern "C" {
int gq_write_rows(float* dst, const float* src, int row0, const int* row_dev, int rows, int T, int C) {
  GQ_CHECK_INIT();
  GQ_ARG(row_dev || (row0 >= 0 && row0 + T <= rows), "write_rows: rows %d..%d outside [0, %d)", row0, row0 + T, rows);
  if ((long long)T * C == 0) return GQ_OK;
  GQ_CUDA(gq::launch(write_rows_kernel, blocks_for((long long)T * C, 256), 256, 0, dst, src, row0, row_dev, rows, T, C));
  return GQ_OK;
}
int gq_silu_mul(float* out, const float* g, const float* u, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  GQ_CUDA(gq::launch(silu_mul_kernel, blocks_for(n, 256), 256, 0, out, g, u, n));
  return GQ_OK;
}
int gq_add(float* out, const float* a, const float* b, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  GQ_CUDA(gq::launch(add_kernel, blocks_for(n, 256), 256, 0, out, a, b, n));
  return GQ_OK;
}
int gq_scale(float* x, float s, long long n) {
  GQ_CHECK_INIT();
  if (n == 0) return GQ_OK;
  GQ_CUDA(gq::launch(scale_kernel, blocks_for(n, 256), 256, 0, x, s, n));
  return GQ_OK;
}
}
