// log_softmax: x [T,V] -> x − logsumexp(x) per row;  nll: out[t] = logsumexp(x_t) − x_t[target_t] (double)
#include "common.cuh"

// block-wide max and sum of exp, one row per block
__device__ void row_stats(const float* row, int V, float* mx_out, double* sum_out) {
  __shared__ float smax[32];
  __shared__ double ssum[32];
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = block_reduce<true, float>(mx, smax);
  double s = 0;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += exp((double)(row[j] - mx));
  *mx_out = mx;
  *sum_out = block_reduce<false, double>(s, ssum);
}

__global__ void log_softmax_kernel(float* out, const float* x, int V) {
  const float* row = x + (long long)blockIdx.x * V;
  float mx;
  double s;
  row_stats(row, V, &mx, &s);
  float lse = mx + (float)log(s);
  for (int j = threadIdx.x; j < V; j += blockDim.x) out[(long long)blockIdx.x * V + j] = row[j] - lse;
}

__global__ void nll_kernel(double* out, const float* x, const int* targets, int V) {
  const float* row = x + (long long)blockIdx.x * V;
  float mx;
  double s;
  row_stats(row, V, &mx, &s);
  if (threadIdx.x == 0) out[blockIdx.x] = (double)mx + log(s) - (double)row[targets[blockIdx.x]];
}

extern "C" {
int gq_log_softmax(float* out, const float* x, int T, int V) {
  GQ_CHECK_INIT();
  if (T == 0) return GQ_OK;
  log_softmax_kernel<<<T, 256, 0, gq::stream>>>(out, x, V);
  GQ_LAUNCHED("log_softmax");
  return GQ_OK;
}
int gq_nll(double* out, const float* logits, const int* targets, int T, int V) {
  GQ_CHECK_INIT();
  if (T == 0) return GQ_OK;
  nll_kernel<<<T, 256, 0, gq::stream>>>(out, logits, targets, V);
  GQ_LAUNCHED("nll");
  return GQ_OK;
}
}
