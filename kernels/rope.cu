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

// rope_kv (decoding through a KV cache, one launch): rope on q [T, heads·hd] and k [T, kvh·hd] in place, the
// roped k and v [T, kvh·hd] written to rows p0 + t of the caches kc/vc [rows, kvh·hd] (p0 = pos0 + *pos_dev);
// rows past the end are not written (the caller checks bounds; a replayed graph cannot report them)
__global__ void rope_kv_kernel(float* q, float* k, const float* v, float* kc, float* vc, const float* inv_freq, int T, int heads, int kvh, int hd,
                               int pos0, const int* pos_dev, int rows, float scale) {
  const int half = hd / 2, nh = heads + kvh, KC = kvh * hd;
  const long long nr = (long long)T * nh * half, nv = (long long)T * KC;
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // rope pairs, then v elements
  const int p0 = pos0 + (pos_dev ? *pos_dev : 0);
  if (idx < nr) {
    const int i = idx % half;
    const long long th = idx / half;
    const int t = th / nh, hh = th % nh;
    const float a = (float)(p0 + t) * inv_freq[i];
    float s, c;
    sincosf(a, &s, &c);
    c *= scale;
    s *= scale;
    float* b = hh < heads ? q + (long long)t * heads * hd + (long long)hh * hd : k + (long long)t * KC + (long long)(hh - heads) * hd;
    const float x1 = b[i], x2 = b[i + half];
    const float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
    b[i] = y1;
    b[i + half] = y2;
    if (hh >= heads && p0 + t >= 0 && p0 + t < rows) {
      float* d = kc + (long long)(p0 + t) * KC + (long long)(hh - heads) * hd;
      d[i] = y1;
      d[i + half] = y2;
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
  rope_kv_kernel<<<blocks_for(n, 256), 256, 0, gq::stream>>>(q, k, v, kc, vc, inv_freq, T, heads, kvh, hd, pos0, pos_dev, rows, scale);
  GQ_LAUNCHED("rope_kv");
  return GQ_OK;
}
