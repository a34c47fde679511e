// attention: q [T, heads·hd], caches k/v [S, kv_heads·hd] -> out [T, heads·hd]; causal, grouped-query heads.
// Query row t of a sequence sits at position pos0 + t and sees keys 0..pos0+t. With seq_len > 0 the T rows are
// T/seq_len independent sequences (pos0 = 0), each over its own rows of the caches.
// pos_dev (device int, may be null) adds to pos0 when the kernel runs (graph replay); then only the decoding
// kernel is used, with shared memory for max_len keys.
// Small T (decoding): one block per (head, query): attn_decode_kernel for head sizes 8..128 (powers of two),
// attn_small4_kernel / attn_small_kernel for the others. Larger T: QKᵀ and PV as batched fp32 GEMMs with a
// causal softmax kernel between them. gq_rope_attention (bottom) adds rope and the KV-cache writes.
#include "common.cuh"
#include <cstdlib>
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

// Decoding: one block of ATT_THREADS per (head, query row). Scores: warps over keys (4 at a time), lanes over
// dimensions; softmax over the block, then P·V with warps over keys and lanes over dimensions,
// warps' partial rows summed in shared memory. Shared: q [hd], scores [L], partials [warps][hd].
#define ATT_THREADS 256
__global__ void __launch_bounds__(ATT_THREADS) attn_small_kernel(float* out, const float* q, const float* k, const float* v, int pos0, const int* pos_dev, int heads, int kvh, int hd, float scale, int score_len) {
  extern __shared__ float sm[];
  __shared__ float red[32];
  pdl_launch_dependents();  // a packed GEMV usually comes next
  pdl_wait();               // launched with PDL (gq::launch)
  if (pos_dev) pos0 += *pos_dev;
  const int h = blockIdx.x, t = blockIdx.y, kv = h / (heads / kvh);
  const int QC = heads * hd, KC = kvh * hd, L = pos0 + t + 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  float* qs = sm;
  float* sc = sm + hd;
  float* part = sc + score_len;  // [nw][hd]
  for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = q[(long long)t * QC + h * hd + i];
  __syncthreads();
  // scores: each warp takes 4 keys at a time, lanes over dimensions (all loads of the 4 keys in flight at once)
  float mx = -INFINITY;
  for (int j0 = warp * 4; j0 < L; j0 += nw * 4) {
    float d[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
      d[u] = 0.f;
      if (j0 + u < L) {
        const float* kr = k + (long long)(j0 + u) * KC + kv * hd;
#pragma unroll 4
        for (int i = lane; i < hd; i += 32) d[u] += qs[i] * kr[i];
      }
    }
#pragma unroll
    for (int u = 0; u < 4; u++) {
      d[u] = warp_reduce<false>(d[u]);
      if (j0 + u < L) {
        if (lane == 0) sc[j0 + u] = d[u] * scale;
        mx = fmaxf(mx, d[u] * scale);
      }
    }
  }
  mx = block_reduce<true, float>(mx, red);
  float s = 0.f;
  for (int j = threadIdx.x; j < L; j += blockDim.x) { const float e = __expf(sc[j] - mx); sc[j] = e; s += e; }
  s = block_reduce<false, float>(s, red);  // its barrier also makes every sc[j] visible
  const float inv = 1.f / s;
  for (int i0 = 0; i0 < hd; i0 += 32) {
    const int i = i0 + lane;
    float o = 0.f;
    if (i < hd) {
      const float* vc = v + kv * hd + i;
#pragma unroll 4
      for (int j = warp; j < L; j += nw) o += sc[j] * vc[(long long)j * KC];
    }
    if (i < hd) part[warp * hd + i] = o;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float o = 0.f;
    for (int w = 0; w < nw; w++) o += part[w * hd + i];
    out[(long long)t * QC + h * hd + i] = o * inv;
  }
}

// Decoding with hd % 4 == 0 (every Llama-family head size): one block per (head, query row) as above, but
// each thread scores whole keys (float4 loads of its key's row: all of a key's loads in flight at once, no
// shuffles), and P·V has threads over (float4 of dimensions, key lane): hd/4 dimension groups × KL key lanes.
// Shared: q [hd], scores [L], partials [KL][hd].
__global__ void __launch_bounds__(ATT_THREADS) attn_small4_kernel(float* out, const float* q, const float* k, const float* v, int pos0, const int* pos_dev, int heads, int kvh, int hd, float scale, int score_len) {
  extern __shared__ float sm[];
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  if (pos_dev) pos0 += *pos_dev;
  const int h = blockIdx.x, t = blockIdx.y, kv = h / (heads / kvh);
  const int QC = heads * hd, KC = kvh * hd, L = pos0 + t + 1, D4 = hd / 4;
  float4* qs = reinterpret_cast<float4*>(sm);
  float* sc = sm + hd;
  float4* part = reinterpret_cast<float4*>(sc + ((score_len + 3) & ~3));  // [KL][D4]
  const float4* q4 = reinterpret_cast<const float4*>(q + (long long)t * QC + h * hd);
  for (int i = threadIdx.x; i < D4; i += blockDim.x) qs[i] = q4[i];
  __syncthreads();
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const float4* kr = reinterpret_cast<const float4*>(k + (long long)j * KC + kv * hd);
    float d0 = 0.f, d1 = 0.f;
#pragma unroll 8
    for (int i = 0; i < D4; i++) {
      const float4 a = kr[i], b = qs[i];
      d0 = fmaf(a.x, b.x, d0); d1 = fmaf(a.y, b.y, d1); d0 = fmaf(a.z, b.z, d0); d1 = fmaf(a.w, b.w, d1);
    }
    const float d = (d0 + d1) * scale;
    sc[j] = d;
    mx = fmaxf(mx, d);
  }
  mx = block_reduce<true, float>(mx, red);
  float s = 0.f;
  for (int j = threadIdx.x; j < L; j += blockDim.x) { const float e = __expf(sc[j] - mx); sc[j] = e; s += e; }
  s = block_reduce<false, float>(s, red);  // its barrier also makes every sc[j] visible
  const float inv = 1.f / s;
  const int KL = blockDim.x / D4, d = threadIdx.x % D4, kl = threadIdx.x / D4;
  if (kl < KL) {
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    const float4* vc = reinterpret_cast<const float4*>(v + kv * hd) + d;
    const int KC4 = KC / 4;
#pragma unroll 8
    for (int j = kl; j < L; j += KL) {
      const float4 x = vc[(long long)j * KC4];
      const float p = sc[j];
      o.x = fmaf(p, x.x, o.x); o.y = fmaf(p, x.y, o.y); o.z = fmaf(p, x.z, o.z); o.w = fmaf(p, x.w, o.w);
    }
    part[kl * D4 + d] = o;
  }
  __syncthreads();
  float4* o4 = reinterpret_cast<float4*>(out + (long long)t * QC + h * hd);
  for (int i = threadIdx.x; i < D4; i += blockDim.x) {
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int w = 0; w < KL; w++) { const float4 p = part[w * D4 + i]; o.x += p.x; o.y += p.y; o.z += p.z; o.w += p.w; }
    o4[i] = make_float4(o.x * inv, o.y * inv, o.z * inv, o.w * inv);
  }
}

// Decoding with hd = 4·D4, D4 a power of two <= 32 (head sizes 4 .. 128): one block of ATT_DEC_THREADS per (head,
// query row), built as few dependent memory round trips as possible (decode attention is latency, not
// bandwidth): the first ATT_DEC_UNROLL passes of key and value rows are loaded into registers at once, right
// after the position is known, and q (and rope) is worked out while they are in flight. Scores: D4 lanes per
// key, each lane one float4 of q and of the key, summed by shuffles; the block's warps take 32/D4 keys each per
// pass. P·V: threads over (float4 of dimensions, key lane), key lanes summed by a tree in shared memory.
// Shared: scores [score_len], partials [threads/D4][D4] float4. (Measured on an H200, 7B-shaped decode: 413 ->
// 446 tokens/s against the thread-per-key kernel above.)
#define ATT_DEC_THREADS 512
#define ATT_DEC_UNROLL 8
struct RopeKV {
  const float* kn;      // [kvh·hd] the new key row, before rope
  const float* vn;      // [kvh·hd] the new value row
  float* kc;            // caches [rows, kvh·hd]: row p0 written
  float* vc;
  const float* inv_freq;
  float scale;          // rope's attention scaling (cos and sin times it)
  int rows;
};
// rope's cos and sin (times scale) for the lane's float4 (dimensions 4d .. 4d+3 of a head of 4·D4) at pos;
// lanes in the second half carry −sin, so that every lane rotates as x·c + partner·s
struct Rot4 {
  float c[4], s[4];
};
template <int D4>
__device__ __forceinline__ Rot4 rope_angles(int d, float pos, const float* inv_freq, float scale) {
  const bool lo = d < D4 / 2;  // dimensions in the first half: x1·c − x2·s; second half: x2·c + x1·s
  const int i0 = 4 * d - (lo ? 0 : 2 * D4);
  Rot4 r;
#pragma unroll
  for (int e = 0; e < 4; e++) {
    float sn, cs;
    sincosf(pos * inv_freq[i0 + e], &sn, &cs);
    r.c[e] = cs * scale;
    r.s[e] = lo ? -sn * scale : sn * scale;
  }
  return r;
}
// the lane's float4 rotated by r; the partner lane (d ^ D4/2) holds the other half of each pair
template <int D4>
__device__ __forceinline__ float4 rope4(float4 x, const Rot4& r) {
  const float px = __shfl_xor_sync(0xffffffff, x.x, D4 / 2), py = __shfl_xor_sync(0xffffffff, x.y, D4 / 2);
  const float pz = __shfl_xor_sync(0xffffffff, x.z, D4 / 2), pw = __shfl_xor_sync(0xffffffff, x.w, D4 / 2);
  return make_float4(x.x * r.c[0] + px * r.s[0], x.y * r.c[1] + py * r.s[1], x.z * r.c[2] + pz * r.s[2], x.w * r.c[3] + pw * r.s[3]);
}
template <int D4, bool ROPE>
__global__ void __launch_bounds__(ATT_DEC_THREADS) attn_decode_kernel(float* out, const float* q, const float* k, const float* v, int pos0, const int* pos_dev, int heads, int kvh, int hd, float scale, int score_len, const RopeKV rk) {
  extern __shared__ float sm[];
  __shared__ float red[32];
  pdl_launch_dependents();  // a packed GEMV comes next
  pdl_wait();               // launched with PDL (gq::launch)
  if (pos_dev) pos0 += *pos_dev;
  constexpr int KPW = 32 / D4, U = ATT_DEC_UNROLL;  // keys per warp and pass
  const int h = blockIdx.x, t = blockIdx.y, kv = h / (heads / kvh);
  const int QC = heads * hd, KC4 = kvh * D4, L = pos0 + t + 1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int d = lane % D4, sub = lane / D4;
  const int KL = blockDim.x / D4, dv = threadIdx.x % D4, kl = threadIdx.x / D4;  // P·V: dimension group, key lane
  const int kstep = nw * KPW;  // keys per pass of the block (scores)
  const int jn = ROPE ? L - 1 : L;  // ROPE: the new row (position L − 1) comes from kn/vn, not from the caches
  const float4* kb = reinterpret_cast<const float4*>(k) + kv * D4 + d;
  const float4* vb = reinterpret_cast<const float4*>(v) + kv * D4 + dv;
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  float4 kk[U], vv[U];
  auto load_k = [&](int jw) {
#pragma unroll
    for (int u = 0; u < U; u++) { const int j = jw + sub + u * kstep; kk[u] = j < jn ? kb[(long long)j * KC4] : zero; }
  };
  auto load_v = [&](int j0) {
#pragma unroll
    for (int u = 0; u < U; u++) { const int j = j0 + u * KL; vv[u] = j < jn ? vb[(long long)j * KC4] : zero; }
  };
  load_k(warp * KPW);
  load_v(kl);
  float* sc = sm;
  float4* part = reinterpret_cast<float4*>(sm + ((score_len + 3) & ~3));
  float4 qv = reinterpret_cast<const float4*>(q + (long long)t * QC + h * hd)[d];
  float4 knew = zero, vnew = zero;
  if constexpr (ROPE) {
    const Rot4 rot = rope_angles<D4>(d, (float)pos0, rk.inv_freq, rk.scale);
    qv = rope4<D4>(qv, rot);
    knew = rope4<D4>(reinterpret_cast<const float4*>(rk.kn)[kv * D4 + d], rot);
    vnew = reinterpret_cast<const float4*>(rk.vn)[kv * D4 + dv];
    if (h % (heads / kvh) == 0 && threadIdx.x < D4 && pos0 >= 0 && pos0 < rk.rows) {
      reinterpret_cast<float4*>(rk.kc)[(long long)pos0 * KC4 + kv * D4 + d] = knew;
      reinterpret_cast<float4*>(rk.vc)[(long long)pos0 * KC4 + kv * D4 + d] = reinterpret_cast<const float4*>(rk.vn)[kv * D4 + d];
    }
  }
  float mx = -INFINITY;
  for (int jw = warp * KPW; jw < L; jw += kstep * U) {  // (warp-uniform: the shuffles below need every lane)
    if (jw != warp * KPW) load_k(jw);
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int j = jw + sub + u * kstep;
      const float4 x = j < jn ? kk[u] : j < L ? knew : zero;
      float dd = x.x * qv.x + x.y * qv.y + x.z * qv.z + x.w * qv.w;
#pragma unroll
      for (int o = D4 / 2; o; o >>= 1) dd += __shfl_xor_sync(0xffffffff, dd, o);
      if (j < L) {
        dd *= scale;
        if (d == 0) sc[j] = dd;
        mx = fmaxf(mx, dd);
      }
    }
  }
  mx = block_reduce<true, float>(mx, red);  // (its barrier also makes every sc[j] visible)
  float s = 0.f;
  for (int j = threadIdx.x; j < L; j += blockDim.x) { const float e = __expf(sc[j] - mx); sc[j] = e; s += e; }
  s = block_reduce<false, float>(s, red);
  const float inv = 1.f / s;
  float4 o = zero;
  for (int j0 = kl; j0 < L; j0 += KL * U) {
    if (j0 != kl) load_v(j0);
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int j = j0 + u * KL;
      if (j < L) {
        const float p = sc[j];
        const float4 x = j < jn ? vv[u] : vnew;
        o.x = fmaf(p, x.x, o.x); o.y = fmaf(p, x.y, o.y); o.z = fmaf(p, x.z, o.z); o.w = fmaf(p, x.w, o.w);
      }
    }
  }
  part[kl * D4 + dv] = o;
  __syncthreads();
  for (int half = KL / 2; half; half >>= 1) {  // KL: a power of two
    if (kl < half) {
      const float4 a = part[kl * D4 + dv], b = part[(kl + half) * D4 + dv];
      part[kl * D4 + dv] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
    __syncthreads();
  }
  if (threadIdx.x < D4) {
    const float4 r = part[threadIdx.x];
    reinterpret_cast<float4*>(out + (long long)t * QC + h * hd)[threadIdx.x] = make_float4(r.x * inv, r.y * inv, r.z * inv, r.w * inv);
  }
}

// Decoding one query row with rope (gq_rope_attention, T = 1) in one pass: a replayed decode step pays this
// kernel's latency, not its bandwidth (7 us per layer measured on an H100 with the decode kernel above). Each
// head takes S blocks (S > 1: a thread block cluster, sm_90+; default 1), and every (block, warp, key group of D4 lanes) is a
// "slot" with its own running softmax over the keys g, g + G, g + 2G, ... (G slots per head): each pass scores
// ATT_SPLIT_U keys per slot and folds them and their value rows into the slot's (max m, sum l, acc o [hd]) at
// once, so there is no score array (no context-length limit, no block-wide barrier between softmax and P·V).
// Slots merge (m, l, o) by shuffles within a warp, through shared memory within a block, and through
// distributed shared memory into the cluster's block 0, which writes out = o / l. The position and the first
// ATT_SPLIT_U passes of cache rows are read before the programmatic-launch wait; q, the new row's k and v come
// from the kernel ahead and are read after it.
#define ATT_SPLIT_U 8
#define ATT_SPLIT_MAXW 16  // warps per block at most (512 threads)
struct SoftAcc {
  float m, l;
  float4 o;
};
// (m, l, o) of two disjoint key sets -> of their union; -inf maxima (no keys) weigh nothing
__device__ __forceinline__ SoftAcc softmax_merge(SoftAcc a, SoftAcc b) {
  const float M = fmaxf(a.m, b.m);
  if (M == -INFINITY) return a;
  const float ea = a.m == -INFINITY ? 0.f : __expf(a.m - M), eb = b.m == -INFINITY ? 0.f : __expf(b.m - M);
  return SoftAcc{M, a.l * ea + b.l * eb,
                 make_float4(a.o.x * ea + b.o.x * eb, a.o.y * ea + b.o.y * eb, a.o.z * ea + b.o.z * eb, a.o.w * ea + b.o.w * eb)};
}
__device__ __forceinline__ SoftAcc shfl_xor_acc(SoftAcc a, int off) {
  return SoftAcc{__shfl_xor_sync(0xffffffff, a.m, off), __shfl_xor_sync(0xffffffff, a.l, off),
                 make_float4(__shfl_xor_sync(0xffffffff, a.o.x, off), __shfl_xor_sync(0xffffffff, a.o.y, off),
                             __shfl_xor_sync(0xffffffff, a.o.z, off), __shfl_xor_sync(0xffffffff, a.o.w, off))};
}
// grid: heads·S blocks (clusters of S along x), blockDim a multiple of 32 (<= 32·ATT_SPLIT_MAXW).
// out [heads·hd] = attention of rope(q) [heads·hd] over cache rows 0 .. p0−1 and the new row rope(kn), vn (p0 =
// pos0 + *pos_dev), which is also written to cache row p0 (rows: the caches' length).
template <int D4>
__global__ void __launch_bounds__(32 * ATT_SPLIT_MAXW) attn_split_kernel(float* out, const float* q, const float* k, const float* v, int pos0, const int* pos_dev, int heads, int kvh, int S, float scale, const RopeKV rk) {
  __shared__ float sm_m[ATT_SPLIT_MAXW], sm_l[ATT_SPLIT_MAXW];
  __shared__ float4 sm_o[ATT_SPLIT_MAXW][D4];
  __shared__ SoftAcc blk[D4];  // the block's merged accumulator, read by the cluster's block 0
  constexpr int KPW = 32 / D4, U = ATT_SPLIT_U;
  const int r = blockIdx.x % S, h = blockIdx.x / S, kv = h / (heads / kvh);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int d = lane % D4, sub = lane / D4;
  const int G = S * nw * KPW, g = (r * nw + warp) * KPW + sub;  // slots per head, this lane's slot
  const int KC4 = kvh * D4;
  const float4* kb = reinterpret_cast<const float4*>(k) + kv * D4 + d;
  const float4* vb = reinterpret_cast<const float4*>(v) + kv * D4 + d;
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  float4 kk[U], vv[U];
  auto load = [&](int j0, int lim) {  // keys j0 + u·G below lim
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int j = j0 + u * G;
      kk[u] = j < lim ? kb[(long long)j * KC4] : zero;
      vv[u] = j < lim ? vb[(long long)j * KC4] : zero;
    }
  };
  pdl_launch_dependents();  // a packed GEMV comes next
  // Before the wait: the position and the cache rows below it. Both come from earlier decode steps, and a step
  // ends with a kernel that lets nothing after it start early (argmax_next) or with a host copy, so they were
  // complete before this step's first kernel began.
  if (pos_dev) pos0 += *pos_dev;
  const int L = pos0 + 1, jn = min(pos0, rk.rows);  // keys 0 .. pos0; key pos0 is the new row
  load(g, jn);
  const Rot4 rot = rope_angles<D4>(d, (float)pos0, rk.inv_freq, rk.scale);  // (inv_freq: a constant)
  pdl_wait();  // q and the new row's k, v: from the kernel ahead
  const float4 qv = rope4<D4>(reinterpret_cast<const float4*>(q + (long long)h * D4 * 4)[d], rot);
  const float4 knew = rope4<D4>(reinterpret_cast<const float4*>(rk.kn)[kv * D4 + d], rot);
  const float4 vnew = reinterpret_cast<const float4*>(rk.vn)[kv * D4 + d];
  if (r == 0 && h % (heads / kvh) == 0 && threadIdx.x < D4 && pos0 >= 0 && pos0 < rk.rows) {
    reinterpret_cast<float4*>(rk.kc)[(long long)pos0 * KC4 + kv * D4 + d] = knew;
    reinterpret_cast<float4*>(rk.vc)[(long long)pos0 * KC4 + kv * D4 + d] = vnew;
  }
  SoftAcc acc{-INFINITY, 0.f, zero};
  for (int j0 = g - sub; j0 < L; j0 += U * G) {  // (warp-uniform bound: the shuffles need every lane)
    if (j0 != g - sub) load(j0 + sub, jn);
    float sc[U];
    float mx = acc.m;
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int j = j0 + sub + u * G;
      const float4 x = j < jn ? kk[u] : knew;
      float dd = x.x * qv.x + x.y * qv.y + x.z * qv.z + x.w * qv.w;
#pragma unroll
      for (int o = D4 / 2; o; o >>= 1) dd += __shfl_xor_sync(0xffffffff, dd, o);
      sc[u] = j < L ? dd * scale : -INFINITY;
      mx = fmaxf(mx, sc[u]);
    }
    if (mx == -INFINITY) continue;  // no keys for this slot in this pass
    const float c = acc.m == -INFINITY ? 0.f : __expf(acc.m - mx);
    acc.l *= c;
    acc.o = make_float4(acc.o.x * c, acc.o.y * c, acc.o.z * c, acc.o.w * c);
    acc.m = mx;
#pragma unroll
    for (int u = 0; u < U; u++) {
      const float p = __expf(sc[u] - mx);  // (0 for masked keys)
      const int j = j0 + sub + u * G;
      const float4 x = j < jn ? vv[u] : j < L ? vnew : zero;
      acc.l += p;
      acc.o.x = fmaf(p, x.x, acc.o.x); acc.o.y = fmaf(p, x.y, acc.o.y); acc.o.z = fmaf(p, x.z, acc.o.z); acc.o.w = fmaf(p, x.w, acc.o.w);
    }
  }
  // merge: the warp's key groups (lanes d + D4·sub) into sub 0, the block's warps, then the cluster's blocks
#pragma unroll
  for (int off = D4; off < 32; off <<= 1) acc = softmax_merge(acc, shfl_xor_acc(acc, off));
  if (sub == 0) {
    sm_o[warp][d] = acc.o;
    if (d == 0) { sm_m[warp] = acc.m; sm_l[warp] = acc.l; }
  }
  __syncthreads();
  if (threadIdx.x < D4) {
    SoftAcc b{sm_m[0], sm_l[0], sm_o[0][threadIdx.x]};
    for (int w = 1; w < nw; w++) b = softmax_merge(b, SoftAcc{sm_m[w], sm_l[w], sm_o[w][threadIdx.x]});
    blk[threadIdx.x] = b;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (S > 1) {
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();  // every block's blk written (and visible across the cluster)
    if (r == 0 && threadIdx.x < D4) {
      SoftAcc b = blk[threadIdx.x];
      for (int o = 1; o < S; o++) b = softmax_merge(b, cl.map_shared_rank(blk, o)[threadIdx.x]);
      blk[threadIdx.x] = b;
    }
    cl.sync();  // no block leaves while block 0 may still read its shared memory
  } else
#endif
    __syncthreads();
  if (r == 0 && threadIdx.x < D4) {
    const SoftAcc b = blk[threadIdx.x];
    const float inv = 1.f / b.l;
    reinterpret_cast<float4*>(out + (long long)h * D4 * 4)[threadIdx.x] = make_float4(b.o.x * inv, b.o.y * inv, b.o.z * inv, b.o.w * inv);
  }
}
typedef void (*SplitKernel)(float*, const float*, const float*, const float*, int, const int*, int, int, int, float, const RopeKV);
static SplitKernel split_kernel(int D4) {
  return D4 == 2 ? attn_split_kernel<2> : D4 == 4 ? attn_split_kernel<4> : D4 == 8 ? attn_split_kernel<8> : D4 == 16 ? attn_split_kernel<16> : attn_split_kernel<32>;
}
// blocks per head: GPTQ_ATTN_SPLIT (0: the one-block decode kernel above; 1..8, above 1 a cluster: sm_90+),
// default 1; threads per block: GPTQ_ATTN_THREADS (multiple of 32, <= 512), default 512. (H100, 7B-shaped decode,
// contexts of 17-144 keys: one block of 256 per head 487.7-488.4 tokens/s, clusters of 2 486.6, of 4 485.4-487.1,
// the decode kernel above 480.0; 6.7 us per call alone against 9.4 for clusters of 4; later, alternating in one
// run, 512 threads 490.1 and 489.6 against 488.1 and 488.0 with 256, 478.3 with 128: 16 slots of 8 keys cover
// 128 keys per pass. Clusters are for long contexts, whose rows then stream through several multiprocessors
// per head; not measured.)
static void split_config(int* S, int* threads) {
  static int s = -1, nt = 0;
  if (s < 0) {
    const char* e = getenv("GPTQ_ATTN_SPLIT");
    int v = e ? atoi(e) : 1;
    if (v < 0) v = 0;
    if (v > 8) v = 8;
    if (gq::cc_major() < 9 && v > 1) v = 1;  // clusters: sm_90+
    const char* t = getenv("GPTQ_ATTN_THREADS");
    int n = t ? atoi(t) : 512;
    if (n < 32 || n > 32 * ATT_SPLIT_MAXW || n % 32) n = 512;
    nt = n;
    s = v;
  }
  *S = s;
  *threads = nt;
}
static cudaError_t launch_split(int D4, int S, int threads, int heads, float* out, const float* q, const float* k, const float* v, int pos0, const int* pos_dev, int kvh, float scale, const RopeKV& rk) {
  cudaLaunchAttribute attr[2];
  const cudaLaunchConfig_t cfg = gq::launch_config(dim3(heads * S), dim3(threads), 0, attr, dim3(S, 1, 1));
  return cudaLaunchKernelEx(&cfg, split_kernel(D4), out, q, k, v, pos0, pos_dev, heads, kvh, S, scale, rk);
}

// rows of S [rows, L]: row r = (batch, t); keys j <= pos0 + t kept, softmax in place, the rest zeroed
__global__ void causal_softmax_kernel(float* S, int Tq, int L, int pos0) {
  float* row = S + (long long)blockIdx.x * L;
  const int t = blockIdx.x % Tq, last = pos0 + t;
  __shared__ float red[32];
  float mx = -INFINITY;
  for (int j = threadIdx.x; j <= last; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = block_reduce<true, float>(mx, red);
  float s = 0.f;
  for (int j = threadIdx.x; j <= last; j += blockDim.x) s += __expf(row[j] - mx);
  s = block_reduce<false, float>(s, red);
  const float inv = 1.f / s;
  for (int j = threadIdx.x; j < L; j += blockDim.x) row[j] = j <= last ? __expf(row[j] - mx) * inv : 0.f;
}

typedef void (*DecKernel)(float*, const float*, const float*, const float*, int, const int*, int, int, int, float, int, const RopeKV);
static DecKernel decode_kernel(int D4, bool rope) {
  static const DecKernel plain[6] = {attn_decode_kernel<1, false>, attn_decode_kernel<2, false>, attn_decode_kernel<4, false>,
                                     attn_decode_kernel<8, false>, attn_decode_kernel<16, false>, attn_decode_kernel<32, false>};
  static const DecKernel roped[6] = {nullptr, attn_decode_kernel<2, true>, attn_decode_kernel<4, true>,
                                     attn_decode_kernel<8, true>, attn_decode_kernel<16, true>, attn_decode_kernel<32, true>};
  const int li = D4 == 1 ? 0 : D4 == 2 ? 1 : D4 == 4 ? 2 : D4 == 8 ? 3 : D4 == 16 ? 4 : 5;
  return rope ? roped[li] : plain[li];
}
static size_t decode_smem(int score_len) { return (size_t)((score_len + 3) & ~3) * sizeof(float) + (size_t)ATT_DEC_THREADS * sizeof(float4); }
static bool decode_ok(int hd) {
  static const bool on = !(getenv("GPTQ_ATTN_DECODE") && getenv("GPTQ_ATTN_DECODE")[0] == '0');  // 0: the older kernels (A/B)
  const int D4 = hd / 4;
  return on && hd % 4 == 0 && D4 <= 32 && (D4 & (D4 - 1)) == 0;
}

extern "C" int gq_attention(float* out, const float* q, const float* k, const float* v, int T, int pos0, const int* pos_dev, int max_len, int seq_len, int heads, int kvh, int hd) {
  GQ_CHECK_INIT();
  GQ_ARG(heads > 0 && kvh > 0 && heads % kvh == 0, "attention: heads %d not a multiple of kv_heads %d", heads, kvh);
  if (T == 0) return GQ_OK;
  const float scale = 1.f / sqrtf((float)hd);
  const int Tq = seq_len > 0 ? seq_len : T;
  GQ_ARG(T % Tq == 0 && (Tq == T || pos0 == 0), "attention: %d rows do not split into sequences of %d (pos0 must be 0)", T, Tq);
  const int B = T / Tq, L = pos0 + Tq, QC = heads * hd, KC = kvh * hd;
  // the decoding kernel's shared memory: q, scores of score_len keys, the warps' partial rows
  const int score_len = pos_dev ? max_len : L;
  // hd % 4 == 0 (and at most 4·ATT_THREADS): attn_small4_kernel, partials of ATT_THREADS / (hd/4) key lanes
  const bool v4 = hd % 4 == 0 && hd / 4 <= ATT_THREADS;
  const size_t smem = v4 ? (size_t)(hd + ((score_len + 3) & ~3) + (ATT_THREADS / (hd / 4)) * hd) * sizeof(float)
                         : (size_t)(hd + score_len + (ATT_THREADS / 32) * hd) * sizeof(float);
  if (pos_dev) {
    GQ_ARG(B == 1 && Tq <= 8 && max_len >= L, "attention: a device position needs one sequence of <= 8 rows and max_len >= %d", L);
    GQ_ARG(smem <= 48 * 1024, "attention: a device position supports caches of <= %d rows, not %d", (int)(48 * 1024 / 4 - (smem / 4 - score_len)), max_len);
  }
  // hd = 4·D4 with D4 a power of two <= 32: attn_decode_kernel, if its shared memory fits
  const int D4 = hd / 4;
  const bool dec = decode_ok(hd);
  const size_t dsmem = decode_smem(score_len);
  if (dec && dsmem <= 48 * 1024 && (pos_dev || (B == 1 && Tq <= 8))) {
    GQ_CUDA(gq::launch(decode_kernel(D4, false), dim3(heads, Tq), ATT_DEC_THREADS, dsmem, out, q, k, v, pos0, pos_dev, heads, kvh, hd, scale, score_len, RopeKV{}));
    return GQ_OK;
  }
  if (pos_dev || (B == 1 && Tq <= 8 && smem <= 48 * 1024)) {
    GQ_CUDA(gq::launch(v4 ? attn_small4_kernel : attn_small_kernel, dim3(heads, Tq), ATT_THREADS, smem, out, q, k, v, pos0, pos_dev, heads, kvh, hd, scale, score_len));
    return GQ_OK;
  }
  // batched GEMM path in full fp32 (scores are sensitive): S [nb, Tq, L] per head
  const size_t per = (size_t)Tq * L * sizeof(float);
  int nb = (int)((256u << 20) / per);
  nb = nb < 1 ? 1 : nb > B ? B : nb;
  float* S = (float*)gq::scratch(per * nb);
  if (!S) return gq::fail(GQ_ERR_CUDA, "attention: out of device memory for %zu bytes of scores", per * nb);
  gq::blas.SetMathMode(gq::blas.handle, 0);
  const int rep = heads / kvh;
  const float one = 1.f, zero = 0.f;
  int st = 0;
  for (int b0 = 0; b0 < B && st == 0; b0 += nb) {
    const int n = B - b0 < nb ? B - b0 : nb;
    for (int h = 0; h < heads && st == 0; h++) {
      const int kv = h / rep;
      const float* Qb = q + (long long)b0 * Tq * QC + h * hd;
      const float* Kb = k + (long long)b0 * Tq * KC + kv * hd;
      const float* Vb = v + (long long)b0 * Tq * KC + kv * hd;
      float* Ob = out + (long long)b0 * Tq * QC + h * hd;
      // S_b [Tq, L] = scale · Q_b [Tq, hd] · K_b [L, hd]ᵀ   (column-major: Sᵀ = K_b · Q_bᵀ)
      st = gq::blas.SgemmStridedBatched(gq::blas.handle, 1, 0, L, Tq, hd, &scale, Kb, KC, (long long)Tq * KC, Qb, QC, (long long)Tq * QC, &zero, S, L, (long long)Tq * L, n);
      if (st) break;
      causal_softmax_kernel<<<n * Tq, 256, 0, gq::stream>>>(S, Tq, L, pos0);
      // O_b [Tq, hd] = P_b [Tq, L] · V_b [L, hd]   (column-major: Oᵀ = V_bᵀ · P_bᵀ)
      st = gq::blas.SgemmStridedBatched(gq::blas.handle, 0, 0, hd, Tq, L, &one, Vb, KC, (long long)Tq * KC, S, L, (long long)Tq * L, &zero, Ob, QC, (long long)Tq * QC, n);
    }
  }
  gq::blas.SetMathMode(gq::blas.handle, gq::blas.defaultMath);
  gq::release(S);
  if (st) return gq::fail(GQ_ERR_BLAS, "attention: cublasSgemmStridedBatched failed with status %d", st);
  GQ_LAUNCHED("attention (softmax)");
  return GQ_OK;
}

// rope on q [T, heads·hd] and k [T, kvh·hd], k and v written to rows p0 + t of the caches kc/vc [rows, kvh·hd]
// (p0 = pos0 + *pos_dev), then attention of q over the caches -> out [T, heads·hd]: gq_rope_kv then
// gq_attention, as one launch when T = 1 and the decode kernel takes the head size (q and k then stay as they
// were; otherwise they are rotated in place)
extern "C" int gq_rope_attention(float* out, float* q, float* k, const float* v, float* kc, float* vc, const float* inv_freq, int T, int heads, int kvh, int hd,
                                 int pos0, const int* pos_dev, int rows, float rope_scale) {
  GQ_CHECK_INIT();
  GQ_DBG_SKIP_OP("attn");
  GQ_ARG(heads > 0 && kvh > 0 && heads % kvh == 0, "rope_attention: heads %d not a multiple of kv_heads %d", heads, kvh);
  GQ_ARG(pos_dev || (pos0 >= 0 && pos0 + T <= rows), "rope_attention: cache rows %d..%d outside [0, %d)", pos0, pos0 + T, rows);
  static const bool fuse = !(getenv("GPTQ_ROPE_ATTN") && getenv("GPTQ_ROPE_ATTN")[0] == '0');  // 0: two launches (A/B)
  const RopeKV rk{k, v, kc, vc, inv_freq, rope_scale, rows};
  int S = 0, threads = 0;
  split_config(&S, &threads);
  const bool one = fuse && T == 1 && decode_ok(hd) && hd >= 8;  // one launch: rope, cache writes, attention
  if (one && S > 0) {
    GQ_CUDA(launch_split(hd / 4, S, threads, heads, out, q, kc, vc, pos0, pos_dev, kvh, 1.f / sqrtf((float)hd), rk));
    return GQ_OK;
  }
  const int score_len = pos_dev ? rows : pos0 + 1;  // the decode kernel's scores in shared memory
  if (one && decode_smem(score_len) <= 48 * 1024) {
    GQ_CUDA(gq::launch(decode_kernel(hd / 4, true), dim3(heads, 1), ATT_DEC_THREADS, decode_smem(score_len), out, q, kc, vc, pos0, pos_dev,
                       heads, kvh, hd, 1.f / sqrtf((float)hd), score_len, rk));
    return GQ_OK;
  }
  GQ_TRY(gq_rope_kv(q, k, v, kc, vc, inv_freq, T, heads, kvh, hd, pos0, pos_dev, rows, rope_scale));
  return gq_attention(out, q, kc, vc, T, pos0, pos_dev, rows, 0, heads, kvh, hd);
}
