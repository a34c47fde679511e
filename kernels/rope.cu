// rope: x [T, heads·hd] in place, Hugging Face half-split layout; position of row t = pos0 (+ *pos_dev) + t % seq_len.
// pos_dev (device int, may be null) is read when the kernel runs, so a captured graph can be replayed at new positions.
#include "common.cuh"

__global__ void rope_kernel(float* x, const float* inv_freq, int T, int heads, int hd, int pos0, const int* pos_dev, int seq_len, float scale) {
  int half = hd / 2;
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // over T·heads·half
  if (idx >= (long long)T * heads * half) return;
  int i = idx % half;
  long long th = idx / half;
  int t = th / heads, h = th % heads;
  float p = (float)(pos0 + (pos_dev ? *pos_dev : 0) + t % seq_len);
  float a = p * inv_freq[i];
  float s, c;
  sincosf(a, &s, &c);
  c *= scale;
  s *= scale;
  float* b = x + (long long)t * heads * hd + (long long)h * hd;
  float x1 = b[i], x2 = b[i + half];
  b[i] = x1 * c - x2 * s;
  b[i + half] = x2 * c + x1 * s;
}

extern "C" int gq_rope(float* x, const float* inv_freq, int T, int heads, int hd, int pos0, const int* pos_dev, int seq_len, float scale) {
  GQ_CHECK_INIT();
  long long n = (long long)T * heads * (hd / 2);
  if (n == 0) return GQ_OK;
  rope_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(x, inv_freq, T, heads, hd, pos0, pos_dev, seq_len > 0 ? seq_len : T, scale);
  GQ_LAUNCHED("rope");
  return GQ_OK;
}
