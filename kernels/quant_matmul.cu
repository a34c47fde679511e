// quant_matmul: y [M, N] = x [M, K] @ dequant(W)ᵀ (+ b), W[n, k] = scale[g, n]·(q[k, n] − zero[g, n]), g = g_idx[k].
//
// Fast 4-bit path (Marlin-style): at load time the standard qweight is repacked so that one 16-byte load per
// lane holds the m16n8k16 B fragments of 8 n8-tiles (64 columns) for one k16 step, with K sorted by group
// (act-order becomes a permutation of x). The kernel dequantizes nibbles to fp16 in registers
// (1024 + q via the 0x6400 exponent trick, minus 1024 + zero, times scale) and runs mma.sync with fp32
// accumulators; K is split across warps and reduced with atomics. One launch serves M = 1..16.
// Generic path: any bit width / shape, one thread per output. Large M: dequantize once, then cuBLAS.
#include "common.cuh"

__device__ __forceinline__ int read_code(const int* qw, int N, int k, int n, int bits) {
  const int bit = k * bits, w = bit >> 5, off = bit & 31, mask = (1 << bits) - 1;
  unsigned int v = ((unsigned int)qw[(long long)w * N + n] >> off) & mask;
  if (off + bits > 32) v |= ((unsigned int)qw[(long long)(w + 1) * N + n] << (32 - off)) & mask;
  return (int)v;
}

__global__ void unpack_zeros_kernel(float* zeros, const int* qz, int G, int N, int bits, int offset) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)G * N) return;
  const int g = idx / N, n = idx % N, words = N * bits / 32;
  const int bit = n * bits, w = bit >> 5, off = bit & 31, mask = (1 << bits) - 1;
  unsigned int v = ((unsigned int)qz[(long long)g * words + w] >> off) & mask;
  if (off + bits > 32) v |= ((unsigned int)qz[(long long)g * words + w + 1] << (32 - off)) & mask;
  zeros[idx] = (float)v + offset;
}

__global__ void qm_generic_kernel(float* y, const float* x, const int* qw, const float* scales, const float* zeros, const int* gidx,
                                  const float* bias, int M, int K, int N, int bits) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y;
  if (n >= N) return;
  float acc = 0.f;
  for (int k = 0; k < K; k++) {
    const int g = gidx[k];
    const float w = scales[(long long)g * N + n] * ((float)read_code(qw, N, k, n, bits) - zeros[(long long)g * N + n]);
    acc += x[(long long)m * K + k] * w;
  }
  y[(long long)m * N + n] = acc + (bias ? bias[n] : 0.f);
}

// W [N, K] f32
__global__ void qm_dequant_kernel(float* w, const int* qw, const float* scales, const float* zeros, const int* gidx, int K, int N, int bits) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)K * N) return;
  const int k = idx / N, n = idx % N, g = gidx[k];
  w[(long long)n * K + k] = scales[(long long)g * N + n] * ((float)read_code(qw, N, k, n, bits) - zeros[(long long)g * N + n]);
}

// ---- fast 4-bit path ----
// packed[((c·K16 + s)·32 + lane)·4 + j]: lane = 4·gid + t; word j holds tiles 2j and 2j+1 of column chunk c,
// nibbles (low to high): a0 a2 b0 b2 a1 a3 b1 b3 with a_i / b_i the tile's B values at k = 2t, 2t+1, 2t+8, 2t+9.
__global__ void repack4_kernel(unsigned int* packed, const int* qw, const int* perm, int K, int N) {
  const int K16 = K / 16, N64 = N / 64;
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // over N64·K16·32
  if (idx >= (long long)N64 * K16 * 32) return;
  const int lane = idx % 32, s = (idx / 32) % K16, c = idx / 32 / K16;
  const int gid = lane / 4, t = lane % 4, k0 = s * 16;
  int ks[4] = {k0 + 2 * t, k0 + 2 * t + 1, k0 + 2 * t + 8, k0 + 2 * t + 9};
  if (perm) for (int i = 0; i < 4; i++) ks[i] = perm[ks[i]];
  for (int j = 0; j < 4; j++) {
    const int na = c * 64 + (2 * j) * 8 + gid, nb = na + 8;
    unsigned int a[4], b[4];
    for (int i = 0; i < 4; i++) { a[i] = read_code(qw, N, ks[i], na, 4); b[i] = read_code(qw, N, ks[i], nb, 4); }
    packed[idx * 4 + j] = a[0] | a[2] << 4 | b[0] << 8 | b[2] << 12 | a[1] << 16 | a[3] << 20 | b[1] << 24 | b[3] << 28;
  }
}
// sz[((grp·N64 + c)·8 + gid)·8 + nt] = half2(scale, 1024 + zero) of column c·64 + nt·8 + gid
__global__ void repack4_sz_kernel(unsigned int* sz, const float* scales, const float* zeros, int G, int N) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;  // over G·N
  if (idx >= (long long)G * N) return;
  const int grp = idx / N, n = idx % N;
  const int c = n / 64, nt = (n % 64) / 8, gid = n % 8;
  __half2 v = __halves2half2(__float2half_rn(scales[idx]), __float2half_rn(1024.f + zeros[idx]));
  sz[(((long long)grp * (N / 64) + c) * 8 + gid) * 8 + nt] = *reinterpret_cast<unsigned int*>(&v);
}

__global__ void gather_cols_kernel(float* xp, const float* x, const int* perm, int M, int K) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)M * K) return;
  const int m = idx / K, k = idx % K;
  xp[idx] = x[(long long)m * K + perm[k]];
}

__device__ __forceinline__ unsigned int dq2(unsigned int q, unsigned int zz, unsigned int ss) {
  unsigned int h = (q & 0x000f000fu) | 0x64006400u;  // half2(1024 + lo nibble, 1024 + hi nibble)
  __half2 r = __hmul2(__hsub2(*reinterpret_cast<__half2*>(&h), *reinterpret_cast<__half2*>(&zz)), *reinterpret_cast<__half2*>(&ss));
  return *reinterpret_cast<unsigned int*>(&r);
}
__device__ __forceinline__ unsigned int pack_x(const float* p, bool ok) {
  if (!ok) return 0u;
  float2 v = *reinterpret_cast<const float2*>(p);
  __half2 h = __floats2half2_rn(v.x, v.y);
  return *reinterpret_cast<unsigned int*>(&h);
}
__device__ __forceinline__ void mma16816(float* c, unsigned int a0, unsigned int a1, unsigned int a2, unsigned int a3, unsigned int b0, unsigned int b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// one warp: column chunk c (64 columns), k16 steps [s0, s1); M <= 16 rows of x (row-major, K sorted by group)
__global__ void __launch_bounds__(128) qm4_kernel(float* y, const float* __restrict__ x, const uint4* __restrict__ packed, const unsigned int* __restrict__ sz,
                                                  const float* bias, int M, int K, int N, int gs, int kpw, int ksplit) {
  const int lane = threadIdx.x & 31;
  const int w = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int N64 = N / 64, K16 = K / 16;
  const int c = w % N64, ks = w / N64;
  if (ks >= ksplit) return;
  const int s0 = ks * kpw, s1 = min(s0 + kpw, K16);
  const int gid = lane >> 2, t = lane & 3;
  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  unsigned int S[8], Z[8];
  int cur = -1;
  const uint4* src = packed + ((long long)c * K16) * 32 + lane;
  const bool r0 = gid < M, r1 = gid + 8 < M;
  const float* x0 = x + (long long)gid * K + 2 * t;
  const float* x1 = x + (long long)(gid + 8) * K + 2 * t;
  uint4 nxt = s0 < s1 ? src[(long long)s0 * 32] : make_uint4(0, 0, 0, 0);
  for (int s = s0; s < s1; s++) {
    const uint4 q = nxt;
    if (s + 1 < s1) nxt = src[(long long)(s + 1) * 32];
    const int k0 = s * 16;
    const int grp = k0 / gs;
    if (grp != cur) {
      cur = grp;
      const uint4* p = reinterpret_cast<const uint4*>(sz + (((long long)grp * N64 + c) * 8 + gid) * 8);
      uint4 u0 = p[0], u1 = p[1];
      unsigned int v[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
#pragma unroll
      for (int i = 0; i < 8; i++) {
        __half2 h = *reinterpret_cast<__half2*>(&v[i]);
        __half2 sc = __low2half2(h), zz = __high2half2(h);
        S[i] = *reinterpret_cast<unsigned int*>(&sc);
        Z[i] = *reinterpret_cast<unsigned int*>(&zz);
      }
    }
    const unsigned int a0 = pack_x(x0 + k0, r0), a1 = pack_x(x1 + k0, r1), a2 = pack_x(x0 + k0 + 8, r0), a3 = pack_x(x1 + k0 + 8, r1);
    const unsigned int qs[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int ta = 2 * j, tb = 2 * j + 1;
      mma16816(acc[ta], a0, a1, a2, a3, dq2(qs[j], Z[ta], S[ta]), dq2(qs[j] >> 4, Z[ta], S[ta]));
      mma16816(acc[tb], a0, a1, a2, a3, dq2(qs[j] >> 8, Z[tb], S[tb]), dq2(qs[j] >> 12, Z[tb], S[tb]));
    }
  }
#pragma unroll
  for (int nt = 0; nt < 8; nt++) {
    const int col = c * 64 + nt * 8 + 2 * t;
    const float b0 = bias && ks == 0 ? bias[col] : 0.f, b1 = bias && ks == 0 ? bias[col + 1] : 0.f;
    if (r0) { atomicAdd(y + (long long)gid * N + col, acc[nt][0] + b0); atomicAdd(y + (long long)gid * N + col + 1, acc[nt][1] + b1); }
    if (r1) { atomicAdd(y + (long long)(gid + 8) * N + col, acc[nt][2] + b0); atomicAdd(y + (long long)(gid + 8) * N + col + 1, acc[nt][3] + b1); }
  }
}

static int sm_count() {
  static int n = 0;
  if (!n) { int dev = 0; cudaGetDevice(&dev); cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev); if (!n) n = 80; }
  return n;
}

extern "C" {
int gq_qm_unpack_zeros(float* zeros, const int* qzeros, int G, int N, int bits, int offset) {
  GQ_CHECK_INIT();
  GQ_ARG((N * bits) % 32 == 0, "qzeros: %d columns of %d bits do not fill whole words", N, bits);
  unpack_zeros_kernel<<<blocks_for((long long)G * N, 256), 256, 0, gq::stream>>>(zeros, qzeros, G, N, bits, offset);
  GQ_LAUNCHED("unpack_zeros");
  return GQ_OK;
}
int gq_qm_repack4(unsigned int* packed, unsigned int* sz, const int* qweight, const float* scales, const float* zeros, const int* perm, int K, int N, int G, int gs) {
  GQ_CHECK_INIT();
  GQ_ARG(K % 16 == 0 && N % 64 == 0 && gs % 16 == 0, "repack4: needs K %% 16, N %% 64, group size %% 16 (K=%d N=%d gs=%d)", K, N, gs);
  repack4_kernel<<<blocks_for((long long)(N / 64) * (K / 16) * 32, 128), 128, 0, gq::stream>>>(packed, qweight, perm, K, N);
  repack4_sz_kernel<<<blocks_for((long long)G * N, 256), 256, 0, gq::stream>>>(sz, scales, zeros, G, N);
  GQ_LAUNCHED("repack4");
  return GQ_OK;
}
int gq_qm_matmul4(float* y, const float* x, const unsigned int* packed, const unsigned int* sz, const int* perm, const float* bias, int M, int K, int N, int gs, float* scratch) {
  GQ_CHECK_INIT();
  GQ_ARG(K % 16 == 0 && N % 64 == 0 && gs % 16 == 0, "matmul4: needs K %% 16, N %% 64, group size %% 16");
  GQ_CUDA(cudaMemsetAsync(y, 0, sizeof(float) * (size_t)M * N, gq::stream));
  if (perm) {
    gather_cols_kernel<<<blocks_for((long long)M * K, 256), 256, 0, gq::stream>>>(scratch, x, perm, M, K);
    x = scratch;
  }
  const int N64 = N / 64, K16 = K / 16;
  // enough warps to keep every multiprocessor's memory pipe full, each over a contiguous k range
  int ksplit = (sm_count() * 24 + N64 - 1) / N64;
  ksplit = ksplit < 1 ? 1 : ksplit > K16 ? K16 : ksplit;
  const int kpw = (K16 + ksplit - 1) / ksplit;
  ksplit = (K16 + kpw - 1) / kpw;
  const long long warps = (long long)N64 * ksplit;
  for (int m0 = 0; m0 < M; m0 += 16) {
    const int mm = M - m0 < 16 ? M - m0 : 16;
    qm4_kernel<<<blocks_for(warps, 4), 128, 0, gq::stream>>>(y + (long long)m0 * N, x + (long long)m0 * K, reinterpret_cast<const uint4*>(packed), sz, bias, mm, K, N, gs, kpw, ksplit);
  }
  GQ_LAUNCHED("matmul4");
  return GQ_OK;
}
int gq_qm_matmul_generic(float* y, const float* x, const int* qweight, const float* scales, const float* zeros, const int* g_idx, const float* bias, int M, int K, int N, int bits) {
  GQ_CHECK_INIT();
  if (M == 0) return GQ_OK;
  qm_generic_kernel<<<dim3(blocks_for(N, 128), M), 128, 0, gq::stream>>>(y, x, qweight, scales, zeros, g_idx, bias, M, K, N, bits);
  GQ_LAUNCHED("matmul_generic");
  return GQ_OK;
}
int gq_qm_dequant(float* w, const int* qweight, const float* scales, const float* zeros, const int* g_idx, int K, int N, int bits) {
  GQ_CHECK_INIT();
  qm_dequant_kernel<<<blocks_for((long long)K * N, 256), 256, 0, gq::stream>>>(w, qweight, scales, zeros, g_idx, K, N, bits);
  GQ_LAUNCHED("dequant");
  return GQ_OK;
}
}
