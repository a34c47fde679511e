// rope: x [T, heads·hd] in place, Hugging Face half-split layout; position of row t = pos0 (+ *pos_dev) + t % seq_len.
// pos_dev (device int, may be null) is read when the kernel runs, so a captured graph can be replayed at new positions.
#include "common.cuh"

// the pair (b[i], b[i + half]) of one head rotated by angle pos · inv_freq[i] (cos and sin times scale)
__device__ __forceinline__ float2 rope_pair(const float* b, int i, int half, float pos, const float* inv_freq, float scale) {
  float s, c;
  sincosf(pos * inv_freq[i], &s, &c);
  c *= scale;
  s *= scale;
  const float x1 = b[i], x2 = b[i + half];
  return make_float2(x1 * c - x2 * s, x2 * c + x1 * s);
}

__global__ void rope_kernel(float* x, const float* inv_freq, int T, int heads, int hd, int pos0, const int* pos_dev, int seq_len, float scale) {
  pdl_launch_dependents();
  pdl_wait();  // launched with PDL (gq::launch)
  int half = hd / 2;
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // over T·heads·half
  if (idx >= (long long)T * heads * half) return;
  int i = idx % half;
  long long th = idx / half;
  int t = th / heads, h = th % heads;
  float* b = x + (long long)t * heads * hd + (long long)h * hd;
  const float2 r = rope_pair(b, i, half, (float)(pos0 + (pos_dev ? *pos_dev : 0) + t % seq_len), inv_freq, scale);
  b[i] = r.x;
  b[i + half] = r.y;
}

extern "C" int gq_rope(float* x, const float* inv_freq, int T, int heads, int hd, int pos0, const int* pos_dev, int seq_len, float scale) {
  GQ_CHECK_INIT();
  long long n = (long long)T * heads * (hd / 2);
  if (n == 0) return GQ_OK;
  GQ_CUDA(gq::launch(rope_kernel, blocks_for(n, 256), 256, 0, x, inv_freq, T, heads, hd, pos0, pos_dev, seq_len > 0 ? seq_len : T, scale));
  return GQ_OK;
}

// rope_kv (decoding through a KV cache, one launch): rope on q [T, heads·hd] and k [T, kvh·hd] in place, the
// roped k and v [T, kvh·hd] written to rows p0 + t of the caches kc/vc [rows, kvh·hd] (p0 = pos0 + *pos_dev);
// rows past the end are not written (the caller checks bounds; a replayed graph cannot report them)
__global__ void rope_kv_kernel(float* q, float* k, const float* v, float* kc, float* vc, const float* inv_freq, int T, int heads, int kvh, int hd,
                               int pos0, const int* pos_dev, int rows, float scale) {
  pdl_launch_dependents();  // the attention kernel comes next
  pdl_wait();               // launched with PDL (gq::launch)
  const int half = hd / 2, nh = heads + kvh, KC = kvh * hd;
  const long long nr = (long long)T * nh * half, nv = (long long)T * KC;
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // rope pairs, then v elements
  const int p0 = pos0 + (pos_dev ? *pos_dev : 0);
  if (idx < nr) {
    const int i = idx % half;
    const long long th = idx / half;
    const int t = th / nh, hh = th % nh;
    float* b = hh < heads ? q + (long long)t * heads * hd + (long long)hh * hd : k + (long long)t * KC + (long long)(hh - heads) * hd;
    const float2 r = rope_pair(b, i, half, (float)(p0 + t), inv_freq, scale);
    b[i] = r.x;
    b[i + half] = r.y;
    if (hh >= heads && p0 + t >= 0 && p0 + t < rows) {
      float* d = kc + (long long)(p0 + t) * KC + (long long)(hh - heads) * hd;
      d[i] = r.x;
      d[i + half] = r.y;
    }
  } else if (idx < nr + nv) {
    const long long j = idx - nr;
    const int r = p0 + (int)(j / KC);
    if (r >= 0 && r < rows) vc[(long long)r * KC + j % KC] = v[j];
  }
}

extern "C" int gq_rope_kv(float* q, float* k, const float* v, float* kc, float* vc, const float* inv_freq, int T, int heads, int kvh, int hd,
                          int pos0, const int* pos_dev, int rows, float scale) {
  GQ_CHECK_INIT();
  GQ_ARG(hd % 2 == 0, "rope_kv: head size %d is odd", hd);
  GQ_ARG(pos_dev || (pos0 >= 0 && pos0 + T <= rows), "rope_kv: cache rows %d..%d outside [0, %d)", pos0, pos0 + T, rows);
  const long long n = (long long)T * (heads + kvh) * (hd / 2) + (long long)T * kvh * hd;
  if (n == 0) return GQ_OK;
  GQ_CUDA(gq::launch(rope_kv_kernel, blocks_for(n, 256), 256, 0, q, k, v, kc, vc, inv_freq, T, heads, kvh, hd, pos0, pos_dev, rows, scale));
  return GQ_OK;
}
