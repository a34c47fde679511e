// quant_matmul: y [M, N] = x [M, K] @ dequant(W)ᵀ (+ b), W[n, k] = scale[g, n]·(q[k, n] − zero[g, n]), g = g_idx[k].
//
// Fast 4-bit path (Marlin-style): at load time the standard qweight is repacked so that one 16-byte load per
// lane holds the m16n8k16 B fragments of 8 n8-tiles (64 columns) for one k16 step, with K sorted by group
// (act-order becomes a permutation of x). The kernel dequantizes nibbles to fp16 in registers
// (1024 + q via the 0x6400 exponent trick, minus 1024 + zero, times scale). M = 1..4 (decoding): a GEMV kernel
// (qm4v_kernel: no tensor cores, loads pipelined in registers). More rows, 16 at a time: qm4m_kernel (mma.sync
// with fp32 accumulators, x converted once into A-fragment order by xfrag_kernel, K split across blocks whose
// sums are added into y with atomics). Generic path: any bit width / shape, one thread per output. Large M
// (the backend's choice): dequantize once, then cuBLAS.
#include "common.cuh"
#include <cstdlib>
#include <cstdint>
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

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

// (q & mask) | 0x64006400: two nibbles become half2(1024 + nibble (· 16 for the 0x00f000f0 mask)) in one LOP3
// (for `(q & m) | c` with two constants nvcc emits an AND and an OR: 16 instructions more per k16 step)
__device__ __forceinline__ unsigned int nib2h(unsigned int q, unsigned int mask) {
  unsigned int d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(q), "r"(mask), "r"(0x64006400u));  // (a & b) | c
  return d;
}
// mma.sync m16n8k16 needs sm_80; sm_75 builds get an empty stand-in (qm4m_kernel is never launched there)
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ void mma16816(float* c, unsigned int a0, unsigned int a1, unsigned int a2, unsigned int a3, unsigned int b0, unsigned int b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#else
__device__ __forceinline__ void mma16816(float*, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int) {}
#endif

// pow2_scale: the power of two that puts mx in (128, 256] (1 for 0 or non-finite mx): x times it in fp16 keeps
// its precision whether activations are tiny or large, and cannot overflow a sum of a few products
__device__ __forceinline__ float pow2_scale(float mx) {
  int e = 0;
  frexpf(mx, &e);  // mx = f·2^e, f in [0.5, 1)
  return mx > 0.f && mx < 3e38f ? ldexpf(1.f, 8 - e) : 1.f;
}
// ---- GEMV path (M <= 4: decoding) on the same repacked layout ----
// One lane streams one uint4 per k16 step (8 columns × 4 k values, see repack4_kernel), software-pipelined in
// registers: the next QV_UNROLL steps' loads are in flight while the current ones are computed. Nibbles become
// q − zero exactly in fp16 (as in the mma path); products with x are summed in fp16 (HFMA2) for up to 4 steps
// (8 products per half) and then go to fp32 times the group's scale, so the inner loop costs about 13
// instructions per 8 weights (nibbles to half2 in one LOP3 each). SASS of qm4v_kernel<1, 4> (ptxas -O3, sm_90):
// 79 instructions per k16 step and warp in the main loop, 113 before the LOP3 fusion, the division-free group
// tracking (a running pointer to the next parameters) and the check-free loop over whole 2·QV_UNROLL-step
// stretches. x is staged in fp16 times a power of two that puts the largest |x| of the warp's k range in
// (128, 256], so those sums cannot overflow and small activations keep their precision; each warp stages its
// own range (no block barrier before the main loop).
// Tensor cores do not pay at M = 1 (15 of 16 rows of every mma would be padding: measured slower on an H200).
// (5-16 rows: qm4m_kernel below, the same weight stream with mma.sync; an earlier m16 form that staged 16 rows
// of x per warp, per 64-column chunk, was 2x slower than the cp.async tensor-core kernel it was meant to replace.)
// Block: QV_WARPS warps on one 64-column chunk, contiguous k ranges per warp, summed in shared memory; k
// ranges across blocks are summed by the last block to arrive, or on sm_90 through a cluster (see launch_gemv).
// Several weights sharing x (QvArgs) and a gated input (silu(x)·u) go through the same kernel.
// Programmatic dependent launch (sm_90): the weight stream starts before griddepcontrol.wait, so it overlaps
// the end of the kernel before (which signals launch_dependents early); x is read only after the wait.
// (overridable at build time, GPTQ_NVCC_FLAGS="-DQV_WARPS=8", for the tuning sweep in bench/device.sh)
// Timing diagnostics (GPTQ_NVCC_FLAGS for a sweep build; WRONG RESULTS, never a release build): QV_DBG_NOMAIN
// (each warp: its first 2·QV_UNROLL steps only), QV_DBG_NOSTAGE (x not staged), QV_DBG_NOEPI (no sums across
// warps or blocks), QV_DBG_EPIRED (the block's sums added into y with atomics: no k-split chain, no y zeroing),
// QV_DBG_NOSQ (no Σ x² for the deferred norm).
// Measured on an H100, per shape at M = 1 (qkv, o, gate/up, down; us): 13.9 7.5 19.9 13.3 as built; NOEPI
// 12.3 5.7 19.6 11.4; EPIRED 12.5 5.8 19.7 11.7; NOSTAGE 12.8 6.1 18.9 12.4; all three 3.6 4.2 3.5 4.0
#ifdef QV_DBG_NOMAIN
#define QV_DBG_SPAN(spw) min(spw, 2 * QV_UNROLL)
#else
#define QV_DBG_SPAN(spw) (spw)
#endif
// 4 warps a block, 4 blocks per multiprocessor. 2 warps and 8 blocks (-DQV_WARPS=2; same H100, 2026-12-07,
// the norm's Σ x² shared): captured as a decode step is, the four 7B shapes at M = 1 take 47.1 µs against 47.9
// (gate/up split in 3, more warps streaming), but launched without the zeroed outputs 59.1 against 56.5 (the
// k splits' partial sums), and decoding is slower: pipelined 509.2 against 511.0, eager 463.3 against 475.8.
#ifndef QV_WARPS
#define QV_WARPS 4
#endif
// the most outputs a thread of the GEMV's epilogue puts (4 rows of a 64-column chunk over the block's threads)
#define QV_OUTS ((4 * 64 + QV_WARPS * 32 - 1) / (QV_WARPS * 32))
#ifndef QV_UNROLL
#define QV_UNROLL 4  // 4 or 8 (a multiple of the sub-batch G)
#endif
#ifndef QV_MINB
#define QV_MINB (16 / QV_WARPS)  // __launch_bounds__ minimum blocks per multiprocessor for M <= 2 (at most 128 registers)
#endif
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
// One warp stages its own k range (no block barrier): xs [MR][stride] at columns [off, off + kl) =
// fp16(x [m, perm(k0 + kk)] · mul_m) for kk < kl, mul_m a power of two (see above) from the range's largest |x|:
// one pass finds the maximum, a second (cache hits) converts. With u (gated: the MLP's down projection) the
// input is silu(x)·u, computed here; with nw (an RMSNorm's weight: the norm deferred into this GEMV) x·nw.
// QV_XREG: float4 of x per lane kept in registers by the one-pass staging (ranges up to QV_XREG·128 elements;
// 0: always the two-pass form)
#ifndef QV_XREG
#define QV_XREG 8
#endif
__device__ __forceinline__ float silu_gate(float g, float u) { return g / (1.f + expf(-g)) * u; }
template <int MR>
__device__ __forceinline__ void stage_x_warp(__half* xs, int stride, int off, float* mul, float (&sq)[MR], bool dosq, const float* __restrict__ x, const float* __restrict__ u, const float* __restrict__ nw, const int* __restrict__ perm, int M, int K, int k0, int kl) {
  const int lane = threadIdx.x & 31;
  const bool v4 = !perm && ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(u) | reinterpret_cast<uintptr_t>(nw)) & 15) == 0 && K % 4 == 0;  // k0, kl: multiples of 16
  // elements 4i .. 4i+3 of the range: the input (silu(x)·u when gated) times nw; with dosq, this lane's Σ of the
  // input's squares (before nw: the deferred norm's) gets them added
  auto get4 = [&](const float* xr, const float* ur, int i, float& s) {
    float4 v;
    if (v4) {
      v = reinterpret_cast<const float4*>(xr + k0)[i];
      if (ur) {
        const float4 w = reinterpret_cast<const float4*>(ur + k0)[i];
        v = make_float4(silu_gate(v.x, w.x), silu_gate(v.y, w.y), silu_gate(v.z, w.z), silu_gate(v.w, w.w));
      }
      if (dosq) s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      if (nw) {
        const float4 w = reinterpret_cast<const float4*>(nw + k0)[i];
        v = make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
      }
    } else {
      float e[4];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int k = perm ? perm[k0 + 4 * i + j] : k0 + 4 * i + j;
        e[j] = ur ? silu_gate(xr[k], ur[k]) : xr[k];
        if (dosq) s += e[j] * e[j];
        if (nw) e[j] *= nw[k];
      }
      v = make_float4(e[0], e[1], e[2], e[3]);
    }
    return v;
  };
  float s = 0.f, unused = 0.f;
  if (QV_XREG > 0 && kl <= QV_XREG * 128) {
    // the range fits QV_XREG float4 per lane: one pass of loads into registers, the maximum by shuffles, the
    // conversion from registers (one L2 round trip instead of two)
#pragma unroll
    for (int m = 0; m < MR; m++) {
      if (m >= M) { mul[m] = 1.f; continue; }
      const float* xr = x + (long long)m * K;
      const float* ur = u ? u + (long long)m * K : nullptr;
      float4 v[QV_XREG > 0 ? QV_XREG : 1];
      float mx = 0.f;
      s = 0.f;
#pragma unroll
      for (int r = 0; r < QV_XREG; r++) {
        const int i = lane + 32 * r;
        v[r] = i < kl / 4 ? get4(xr, ur, i, s) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
      sq[m] = s;
#pragma unroll
      for (int r = 0; r < QV_XREG; r++) mx = fmaxf(mx, fmaxf(fmaxf(fabsf(v[r].x), fabsf(v[r].y)), fmaxf(fabsf(v[r].z), fabsf(v[r].w))));
      mx = warp_reduce<true>(mx);
      mul[m] = pow2_scale(mx);
      __half2* xm = reinterpret_cast<__half2*>(xs + m * stride + off);
#pragma unroll
      for (int r = 0; r < QV_XREG; r++) {
        const int i = lane + 32 * r;
        if (i < kl / 4) {
          xm[2 * i] = __floats2half2_rn(v[r].x * mul[m], v[r].y * mul[m]);
          xm[2 * i + 1] = __floats2half2_rn(v[r].z * mul[m], v[r].w * mul[m]);
        }
      }
    }
    __syncwarp();
    return;
  }
#pragma unroll
  for (int m = 0; m < MR; m++) {
    float mx = 0.f;
    s = 0.f;
    if (m < M) {
      const float* xr = x + (long long)m * K;
      const float* ur = u ? u + (long long)m * K : nullptr;
      for (int i = lane; i < kl / 4; i += 32) {
        const float4 v = get4(xr, ur, i, s);
        mx = fmaxf(mx, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
      }
    }
    sq[m] = s;
    mx = warp_reduce<true>(mx);
    mul[m] = pow2_scale(mx);
  }
#pragma unroll
  for (int m = 0; m < MR; m++) {
    if (m >= M) continue;
    const float* xr = x + (long long)m * K;
    const float* ur = u ? u + (long long)m * K : nullptr;
    __half2* xm = reinterpret_cast<__half2*>(xs + m * stride + off);
    for (int i = lane; i < kl / 4; i += 32) {
      const float4 v = get4(xr, ur, i, unused);  // (the second pass: no sums)
      xm[2 * i] = __floats2half2_rn(v.x * mul[m], v.y * mul[m]);
      xm[2 * i + 1] = __floats2half2_rn(v.z * mul[m], v.w * mul[m]);
    }
  }
  __syncwarp();
}
__device__ __forceinline__ unsigned int h2u(__half2 h) { return *reinterpret_cast<unsigned int*>(&h); }
__device__ __forceinline__ __half2 u2h(unsigned int u) { return *reinterpret_cast<__half2*>(&u); }
// G: k16 steps per sub-batch (4, 2 or 1; divides the group's steps and spw)
// Several weights that share x (q/k/v, gate/up) go in one launch: their 64-column chunks are numbered one after
// the other (segment i starts at chunk c0), and each block works on one chunk of one segment.
#define QV_MAXOUT 3
enum { QV_SUM_CHAIN = 0, QV_SUM_CLUSTER = 1, QV_SUM_ATOMIC = 2 };  // how a k split across blocks is summed
struct QvSeg {
  float* y;
  const uint4* packed;
  const unsigned int* sz;
  const float* bias;
  int N, c0;
};
struct QvArgs {
  QvSeg s[QV_MAXOUT];
  int count, ntot;  // segments, all their columns
  const float* u;   // non-null: the input is silu(x)·u (gated MLP), see stage_x_warp
  // residual add + deferred RMSNorm (decoding). res [M, N] (one segment): y = res + x·Wᵀ (+ b); y may be res
  // itself (accumulated in place: then a k split across blocks adds its sums into y with atomics, see
  // launch_gemv). nw [K]: the input is rmsnorm(x)·nw, i.e. x·nw staged and the sums times rsqrt(Σ x² / K + eps)
  // (the norm's scalar is linear), Σ x² over the whole row taken by this kernel as it stages x
  const float* res;
  const float* nw;
  float eps;
  // with nw and a k split outside a cluster: zeroed scratch through which the blocks share the norm's Σ x²
  // ([4] sums, then an int arrival count; see qm4v_kernel), or null: each block reads the rest of x's row
  float* sqs;
  // with sqs: how many times a block polls for every k range's sum before it reads x's whole row itself
  // (-1: always reads it; GPTQ_QV_SPIN, for testing that path)
  int spin;
};
__device__ __forceinline__ int ld_acquire_gpu(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ float ld_relaxed_gpu(const float* p) {
  float v;
  asm volatile("ld.relaxed.gpu.global.f32 %0, [%1];\n" : "=f"(v) : "l"(p) : "memory");
  return v;
}
// each warp's share of Σ x² over rows m < M of x [M, K], into xsq[warp·MR + m] (out of line: the GEMV's rare
// path when the blocks' shared sum is late, kept from the main loop's registers)
template <int MR>
__device__ __noinline__ void row_sq_warps(float* xsq, const float* x, int M, int K) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int m = 0; m < MR; m++) {
    float a = 0.f;
    if (m < M)
      for (int k = threadIdx.x; k < K; k += QV_WARPS * 32) { const float v = x[(long long)m * K + k]; a += v * v; }
    a = warp_reduce<false>(a);
    if (lane == 0) xsq[warp * MR + m] = a;
  }
}
template <int MR, int G>
__global__ void __launch_bounds__(QV_WARPS * 32, MR > 2 ? 1 : QV_MINB) qm4v_kernel(const QvArgs args, const float* __restrict__ x, const int* __restrict__ perm,
                                                            float* __restrict__ partial, int* __restrict__ counters, int M, int K, int gs, int spw, int ksplit, int mode, int prefetch) {
  extern __shared__ __align__(16) unsigned char smem[];
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, t = lane & 3;
  const int cg = blockIdx.x, ks = blockIdx.y;  // chunk over all segments, k range
  const int si = (args.count > 1 && cg >= args.s[1].c0) + (args.count > 2 && cg >= args.s[2].c0);
  // (fields picked by selects: indexing args.s[si] would copy the parameters to local memory)
#define QV_PICK(f) (si == 0 ? args.s[0].f : si == 1 ? args.s[1].f : args.s[2].f)
  float* __restrict__ y = QV_PICK(y);
  const uint4* __restrict__ packed = QV_PICK(packed);
  const unsigned int* __restrict__ sz = QV_PICK(sz);
  const float* __restrict__ bias = QV_PICK(bias);
  const int N = QV_PICK(N), ntot = args.ntot;
  const int N64 = N / 64, K16 = K / 16, gs16 = gs / 16;
  const int c = cg - QV_PICK(c0);
#undef QV_PICK
  const int kb0 = ks * QV_WARPS * spw, kb1 = min(kb0 + QV_WARPS * spw, K16);  // this block's k16 steps
  const int w0 = min(kb0 + warp * spw, kb1), w1 = min(w0 + QV_DBG_SPAN(spw), kb1);         // this warp's
  const int stride = QV_WARPS * spw * 16;
  __half* xs = reinterpret_cast<__half*>(smem);                                  // [MR][stride]
  float* red = reinterpret_cast<float*>(smem + (size_t)MR * stride * sizeof(__half));  // [QV_WARPS][MR][64] the warps' sums, then [MR][64] the block's (cluster)
  float* nws = red + (QV_WARPS + 1) * MR * 64;  // [stride] the norm weight over the block's k range (args.nw without perm)
  const uint4* src = packed + (long long)c * K16 * 32 + lane;
  const uint4* szc = reinterpret_cast<const uint4*>(sz + ((long long)c * 8 + gid) * 8);  // + group·N64·16 uint4
  const long long gstride = (long long)N64 * 16;
  uint4 qa[QV_UNROLL], qb[QV_UNROLL];
  auto load = [&](uint4* q, const int s) {
#pragma unroll
    for (int u = 0; u < QV_UNROLL; u++) if (s + u < w1) q[u] = ld_stream(src + (long long)(s + u) * 32);
  };
  // weights and the first group's (scale, zero) do not depend on the kernel before: start them first
  load(qa, w0);
  load(qb, w0 + QV_UNROLL);
  uint4 nxt0 = make_uint4(0, 0, 0, 0), nxt1 = nxt0;
  int grp = w0 / gs16;  // the group whose (scale, zero) are in nxt0/1, then (after enter) in S, Z
  int gnext = w0;       // the step where the next group's parameters are taken (enter)
  const uint4* szn = szc + grp * gstride;  // the (scale, zero) of group grp, then of the next group
  if (w0 < w1) { nxt0 = __ldg(szn); nxt1 = __ldg(szn + 1); }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // and up to `prefetch` further k16 steps of this warp's weights into L2 (one bulk prefetch, sm_90): with PDL
  // they stream in while the kernel ahead finishes, instead of after it
  if (prefetch > 0 && lane == 0 && w0 + 2 * QV_UNROLL < w1) {
    const int n = min(prefetch, w1 - w0 - 2 * QV_UNROLL);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(packed + ((long long)c * K16 + w0 + 2 * QV_UNROLL) * 32), "r"(n * 512) : "memory");
  }
#endif
  // the k split's sums across blocks (ksplit > 1): QV_SUM_CHAIN partial sums that the last block to arrive adds
  // up, QV_SUM_CLUSTER one thread block cluster (distributed shared memory), QV_SUM_ATOMIC added into y = res
  const bool cluster = mode == QV_SUM_CLUSTER, atomic = mode == QV_SUM_ATOMIC;
  __shared__ float xsq[QV_WARPS * MR];  // the warps' Σ x² per row of their k ranges (deferred norm)
#ifdef QV_DBG_NOSQ  // (timing diagnostics only: the deferred norm's scalar taken as 1, wrong results)
  const bool normsq = false;
#else
  const bool normsq = args.nw != nullptr;
#endif
  // the norm weight is a constant: each warp copies its k range into shared memory before the wait, so that
  // staging x after it is one round trip, as without the norm
  const float* nwx = args.nw;
  if (args.nw && !perm && w0 < w1) {
    const float4* src4 = reinterpret_cast<const float4*>(args.nw + w0 * 16);
    float4* dst4 = reinterpret_cast<float4*>(nws + (w0 - kb0) * 16);
    for (int i = lane; i < (w1 - w0) * 4; i += 32) dst4[i] = __ldg(src4 + i);
    __syncwarp();
    nwx = nws - kb0 * 16;  // indexed by k like the global one (only this warp's range is read)
  }
  pdl_wait();
  float mul[MR], rs[MR], sq[MR];  // x's staging scale; the deferred norm's scalar per row (1 without); Σ x²
#pragma unroll
  for (int m = 0; m < MR; m++) mul[m] = rs[m] = 1.f, sq[m] = 0.f;
  // this thread's residual values, loaded now and used after the main loop (no round trip at the end; a thread
  // puts at most QV_OUTS outputs); none when the sums are added into y = res
  float rpre[QV_OUTS];
#pragma unroll
  for (int j = 0; j < QV_OUTS; j++) rpre[j] = 0.f;
  if (args.res && !atomic) {
#pragma unroll
    for (int j = 0; j < QV_OUTS; j++) {
      const int i = threadIdx.x + j * QV_WARPS * 32;
      if (i < M * 64) rpre[j] = args.res[(long long)(i / 64) * N + (long long)c * 64 + i % 64];
    }
  }
#ifndef QV_DBG_NOSTAGE  // (timing diagnostics only: wrong results)
  if (w0 < w1) stage_x_warp<MR>(xs, stride, (w0 - kb0) * 16, mul, sq, normsq, x, args.u, nwx, perm, M, K, w0 * 16, (w1 - w0) * 16);
  // the deferred norm needs Σ x² over the whole row: with the k range split across blocks that are not one
  // cluster, each block also reads the rest of the row (L2 hits; every block of the grid reads x; a normed
  // input is never gated)
  if (normsq && ksplit > 1 && !cluster && !args.sqs) {
#pragma unroll
    for (int m = 0; m < MR; m++) {
      if (m >= M) break;
      const float* xr = x + (long long)m * K;
      float s = 0.f;
      auto x2 = [&](int k) { const float v = xr[perm ? perm[k] : k]; return v * v; };  // (the staged range is perm's)
      for (int k = threadIdx.x; k < kb0 * 16; k += QV_WARPS * 32) s += x2(k);
      for (int k = kb1 * 16 + threadIdx.x; k < K; k += QV_WARPS * 32) s += x2(k);
      sq[m] += s;
    }
  }
  if (normsq) {  // the warp's sums into shared memory now (no registers held through the main loop)
#pragma unroll
    for (int m = 0; m < MR; m++) {
      const float v = warp_reduce<false>(sq[m]);
      if (lane == 0) xsq[warp * MR + m] = v;
    }
  }
  // the norm's Σ x² shared through args.sqs: the first chunk's blocks (one per k range) post their ranges' sums
  // now, and every block reads the total after its main loop (see the epilogue)
  if (normsq && args.sqs && cg == 0) {
    __syncthreads();
    if (threadIdx.x == 0) {
#pragma unroll
      for (int m = 0; m < MR; m++) {
        if (m >= M) break;
        float t = 0.f;
#pragma unroll
        for (int w = 0; w < QV_WARPS; w++) t += xsq[w * MR + m];
        atomicAdd(args.sqs + m, t);
      }
      __threadfence();
      atomicAdd(reinterpret_cast<int*>(args.sqs + 4), 1);
    }
  }
#endif
  float acc[MR][8];
  __half2 acch[MR][8];
#pragma unroll
  for (int m = 0; m < MR; m++)
#pragma unroll
    for (int i = 0; i < 8; i++) { acc[m][i] = 0.f; acch[m][i] = __float2half2_rn(0.f); }
  const __half2 inv16 = __float2half2_rn(1.f / 16.f);
  unsigned int Z[8], Z16[8];
  float S[8];
  auto flush = [&]() {  // fp16 sums -> fp32, times the group's scale
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
      for (int i = 0; i < 8; i++) {
        const float2 f = __half22float2(acch[m][i]);
        acc[m][i] = fmaf(S[i], f.x + f.y, acc[m][i]);
        acch[m][i] = __float2half2_rn(0.f);
      }
  };
  // a group starts (or this warp's range does, at w0): take its prefetched (scale, zero), prefetch the next
  // group's (no division per sub-batch: group boundaries are tracked)
  auto enter = [&]() {
    const unsigned int v[8] = {nxt0.x, nxt0.y, nxt0.z, nxt0.w, nxt1.x, nxt1.y, nxt1.z, nxt1.w};
#pragma unroll
    for (int i = 0; i < 8; i++) {
      const __half2 h = u2h(v[i]);
      S[i] = __low2float(h);
      const __half2 zz = __high2half2(h);                                  // 1024 + z
      Z[i] = h2u(zz);
      Z16[i] = h2u(__hneg2(__hsub2(zz, __float2half2_rn(960.f))));        // −(64 + z)
    }
    szn += gstride;
    gnext = (grp + 1) * gs16;
    if (gnext < w1) { nxt0 = __ldg(szn); nxt1 = __ldg(szn + 1); }
    grp++;
  };
  // one k16 step st of this warp with its 16 bytes of weights qv: fp16 sums into acch
  auto step = [&](const uint4 qv, const int st) {
    const int kk = (st - kb0) * 16 + 2 * t;
    const unsigned int qs[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const unsigned int hi = qs[j] >> 8;
      const unsigned int h0 = nib2h(qs[j], 0x000f000fu), h1 = nib2h(qs[j], 0x00f000f0u);
      const unsigned int h2 = nib2h(hi, 0x000f000fu), h3 = nib2h(hi, 0x00f000f0u);
      // column a (tile 2j) at k = 2t, 2t+1 | 2t+8, 2t+9; column b (tile 2j+1) likewise
      const __half2 a0 = __hsub2(u2h(h0), u2h(Z[2 * j])), a1 = __hfma2(u2h(h1), inv16, u2h(Z16[2 * j]));
      const __half2 c0 = __hsub2(u2h(h2), u2h(Z[2 * j + 1])), c1 = __hfma2(u2h(h3), inv16, u2h(Z16[2 * j + 1]));
#pragma unroll
      for (int m = 0; m < MR; m++) {
        if (m < M) {
          const __half2 xlo = *reinterpret_cast<const __half2*>(xs + m * stride + kk);
          const __half2 xhi = *reinterpret_cast<const __half2*>(xs + m * stride + kk + 8);
          acch[m][2 * j] = __hfma2(a1, xhi, __hfma2(a0, xlo, acch[m][2 * j]));
          acch[m][2 * j + 1] = __hfma2(c1, xhi, __hfma2(c0, xlo, acch[m][2 * j + 1]));
        }
      }
    }
  };
  // QV_UNROLL loaded steps from s0, in sub-batches of G: a group can start only at a sub-batch (G divides
  // the group's steps and spw), and each sub-batch ends with a flush (G <= 4: at most 8 products per half).
  // `full`: all QV_UNROLL steps are in range (no per-step checks: they cost branches around every step)
  auto batch = [&](const uint4* q, const int s0, const bool full) {
#pragma unroll
    for (int b = 0; b < QV_UNROLL; b += G) {
      const int sb = s0 + b;
      if (full || sb < w1) {
        if (sb == gnext) enter();
#pragma unroll
        for (int u = 0; u < G; u++) if (full || sb + u < w1) step(q[b + u], sb + u);
        flush();
      }
    }
  };
  int st = w0;
  for (; st + 2 * QV_UNROLL <= w1; st += 2 * QV_UNROLL) {
    batch(qa, st, true);
    load(qa, st + 2 * QV_UNROLL);
    batch(qb, st + QV_UNROLL, true);
    load(qb, st + 3 * QV_UNROLL);
  }
  if (st < w1) {  // the last, partial, stretch (its steps were loaded by the loop or before it)
    batch(qa, st, false);
    batch(qb, st + QV_UNROLL, false);
  }
#pragma unroll
  for (int m = 0; m < MR; m++) {
#pragma unroll
    for (int i = 0; i < 8; i++) {
      float v = acc[m][i] / mul[m];
      v += __shfl_xor_sync(0xffffffff, v, 1);
      v += __shfl_xor_sync(0xffffffff, v, 2);
      if (t == 0) red[(warp * MR + m) * 64 + i * 8 + gid] = v;
#ifdef QV_DBG_NOEPI
      if (t == 0) y[(long long)m * N + c * 64 + i * 8 + gid] = v;
#endif
    }
  }
#ifdef QV_DBG_NOEPI
  return;
#endif
  __syncthreads();
  // the deferred norm's scalar rsqrt(mean(x²) + eps) per row from the warps' Σ x² (with a cluster, of every
  // block: rank 0, the one that puts, adds the others' after the cluster barrier)
  auto add_sq = [&](const float* q) {  // one block's warps' sums, into sq
#pragma unroll
    for (int m = 0; m < MR; m++)
#pragma unroll
      for (int w = 0; w < QV_WARPS; w++) sq[m] += q[w * MR + m];
  };
  auto set_rs = [&]() {
#pragma unroll
    for (int m = 0; m < MR; m++) rs[m] = m < M ? rsqrtf(sq[m] / (float)K + args.eps) : 1.f;
  };
  if (normsq && !cluster) {
#pragma unroll
    for (int m = 0; m < MR; m++) sq[m] = 0.f;
    if (args.sqs) {
      // every k range posted (the whole grid is resident: the launch checks), then the total; should the grid
      // not be resident at once after all (a GPU shared with other work), a bounded wait, then this block reads
      // x's whole row itself: never a hang, the same sum up to rounding
      __shared__ float sqt[4];
      __shared__ int sqok;
      if (threadIdx.x == 0) {
        const int* arrived = reinterpret_cast<const int*>(args.sqs + 4);
        bool ok = args.spin >= 0 && ld_acquire_gpu(arrived) >= ksplit;
        for (int i = 0; !ok && i < args.spin; i++) {
          __nanosleep(64);
          ok = ld_acquire_gpu(arrived) >= ksplit;
        }
#pragma unroll
        for (int m = 0; m < 4; m++) sqt[m] = ok ? ld_relaxed_gpu(args.sqs + m) : 0.f;
        sqok = ok;
      }
      __syncthreads();
      if (sqok) {
#pragma unroll
        for (int m = 0; m < MR; m++) sq[m] = sqt[m];
      } else {  // Σ x² over the whole row (the order of k does not matter: no perm)
        row_sq_warps<MR>(xsq, x, M, K);
        __syncthreads();
        add_sq(xsq);
      }
    } else {
      add_sq(xsq);
    }
    set_rs();
  }
  float* bsum = red + QV_WARPS * MR * 64;
  // the block that writes chunk c: y = v·rs + b (+ res); j: the thread's j-th output (i = threadIdx.x +
  // j·blockDim.x), whose residual value is rpre[j]
  auto rs_of = [&](int m) {
    float r = rs[0];
#pragma unroll
    for (int mm = 1; mm < MR; mm++) if (mm == m) r = rs[mm];  // (constant indices: rs stays in registers)
    return r;
  };
  auto put = [&](int m, long long n, float v, int j) {
    float r = rpre[0];
#pragma unroll
    for (int jj = 1; jj < QV_OUTS; jj++) if (jj == j) r = rpre[jj];  // (constant indices: rpre stays in registers)
    v = v * rs_of(m) + (bias ? bias[n] : 0.f) + r;
    y[(long long)m * N + n] = v;
  };
  for (int i = threadIdx.x, j = 0; i < M * 64; i += blockDim.x, j++) {
    const int m = i / 64, col = i % 64;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < QV_WARPS; w++) v += red[(w * MR + m) * 64 + col];
    const long long n = (long long)c * 64 + col;
#ifdef QV_DBG_EPIRED
    atomicAdd(y + (long long)m * N + n, v); continue;
#endif
    if (cluster) bsum[i] = v;
    else if (ksplit == 1) put(m, n, v, j);
    else if (atomic) atomicAdd(y + (long long)m * N + n, v * rs_of(m) + (bias && ks == 0 ? bias[n] : 0.f));  // y = res already: this block's share, the bias from the first k range
    else __stcg(partial + ((long long)ks * M + m) * ntot + (long long)cg * 64 + col, v);
  }
#ifdef QV_DBG_EPIRED
  return;
#endif
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
  if (cluster) {  // the chunk's k ranges are one cluster: rank 0 adds the blocks' sums up
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    if (cl.block_rank() == 0) {
      // every rank's sums and (deferred norm) Σ x² read in one pass: one round trip to the others' memory
      const int nb = (int)cl.num_blocks();
      // this thread's outputs i = out(j) for j < QV_OUTS, their sums v[j]
      const auto out = [](int j) { return (int)threadIdx.x + j * QV_WARPS * 32; };
      float v[QV_OUTS];
#pragma unroll
      for (int j = 0; j < QV_OUTS; j++) v[j] = 0.f;
#pragma unroll
      for (int m = 0; m < MR; m++) sq[m] = 0.f;
      for (int r = 0; r < nb; r++) {
        const float* b = cl.map_shared_rank(bsum, r);
#pragma unroll
        for (int j = 0; j < QV_OUTS; j++) if (out(j) < M * 64) v[j] += b[out(j)];
        if (normsq) add_sq(cl.map_shared_rank(xsq, r));
      }
      if (normsq) set_rs();
#pragma unroll
      for (int j = 0; j < QV_OUTS; j++)
        if (out(j) < M * 64) put(out(j) / 64, (long long)c * 64 + out(j) % 64, v[j], j);
    }
    cl.sync();  // the other blocks' shared memory stays until rank 0 has read it
    return;
  }
#endif
  if (ksplit == 1 || atomic) return;
  // the arrival is one acq_rel atomic of thread 0 after the block barrier (its release covers the block's
  // partial-sum stores, its acquire the other blocks'; the barrier passes both on), not two __threadfence()
  __syncthreads();
  __shared__ int last;
  if (threadIdx.x == 0) {
    int old;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(old) : "l"(counters + cg) : "memory");
    last = old == ksplit - 1;
  }
  __syncthreads();
  if (!last) return;
  for (int i = threadIdx.x, j = 0; i < M * 64; i += blockDim.x, j++) {
    const int m = i / 64, col = i % 64;
    float v = 0.f;
    for (int k2 = 0; k2 < ksplit; k2++) v += __ldcg(partial + ((long long)k2 * M + m) * ntot + (long long)cg * 64 + col);
    put(m, (long long)c * 64 + col, v, j);
  }
  if (threadIdx.x == 0) counters[cg] = 0;
}

// ---- M = 5..16 (prefill chunks, small batches): qm4m_kernel ----
// x is converted once per call (xfrag_kernel) into the m16n8k16 A-fragment order, so a warp's A operand for one
// k16 step is one coalesced 16-byte load per lane (L1/L2 hits: every column chunk reads the same x), not a
// staging pass per block; the weights stream through registers as in the GEMV (two batches of QV_UNROLL k16
// steps in flight per warp); the group's scale is folded into the dequantized fragment, (q − zero)·scale in
// fp16 (as Marlin and ExLlama do), so the mma accumulates straight into fp32 with no per-group flush. More rows
// run 16 at a time. Measured on an H200, four 7B shapes at M = 16: 64.8-65.1 us (1.76-1.78x cuBLAS fp16), against
// 144.7 us for the kernel it replaced (x staged per block of 4 chunks from fp32, weights through a cp.async
// ring, fp32 group sums: 287 instructions per k16 step and warp, half the issue slots idle; this one: 89).
// Dropped: x fragments copied into shared memory per block with 8 steps per batch (80.7 us, against 71.2 then),
// x fragments through a per-warp cp.async ring (128 registers, 4 blocks per multiprocessor: 69.5 against 64.8).
// xf [K16][32][4] (u32 half2): lane (gid, t), register r of step s holds rows gid (r = 0, 2) / gid + 8 (r = 1, 3)
// at k = 16s + 2t, +1 (r = 0, 1) or 16s + 2t + 8, +9 (r = 2, 3), of x [m, perm(k)] · rmul[m], rmul[m] the power of
// two that puts row m's largest |x| in (128, 256] (rows >= M are zero). The same kernel zeroes y [M, N], into
// which the split-K sums are added. Grid (16 rows, XF_SPLIT): every block of a row finds the row's largest |x|
// (without perm and with K <= XF_THREADS·4·XF_REG the row is read once, into registers) and converts its
// 1/XF_SPLIT of the row; the zeroing of y is spread over all blocks. Measured at M = 16 over the four 7B shapes:
// on an H200 61.5-61.6 us against 65.8-66.1 with one block per row (as before, XF_SPLIT=1); on an H100 63.7
// (8 per row), 62.9 (4), 65.3 (16), 72.4 (32). Without this kernel at all (QM_DBG_XFRAG_ONCE, timing only)
// 50.4-50.7 us on the H200: its launch and the matmul's wait for it are the next thing to remove (each warp
// staging its own x fragments, as the GEMV does, and the k split summed without atomics into a zeroed y).
// Measured and dropped (H100, 2026-12-08, branch qm-fused-xfrag): this kernel's work done by the matmul's first
// 128 blocks after its wait, the others waiting on a counter: 78.0-78.4 us against 64.3-64.4.
#define XF_THREADS 512
#define XF_REG 6
#ifndef XF_SPLIT
#define XF_SPLIT 8
#endif
__global__ void __launch_bounds__(XF_THREADS) xfrag_kernel(unsigned int* __restrict__ xf, float* __restrict__ rmul, float* __restrict__ y, const float* __restrict__ x,
                                                          const int* __restrict__ perm, int M, int K, int N) {
  pdl_launch_dependents();  // the matmul after it streams weights meanwhile (it waits before reading xf)
  pdl_wait();
  const int m = blockIdx.x, part = blockIdx.y, parts = gridDim.y, tid = threadIdx.x;
  const long long MN = (long long)M * N;
  for (long long i = ((long long)part * 16 + m) * XF_THREADS + tid; i < MN; i += 16LL * parts * XF_THREADS) y[i] = 0.f;
  const float* xr = x + (long long)m * K;
  const bool live = m < M;
  const bool inreg = !perm && K <= XF_THREADS * 4 * XF_REG && K % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
  float4 v[XF_REG];
  float mx = 0.f;
  if (inreg) {
#pragma unroll
    for (int r = 0; r < XF_REG; r++) {
      const int i = tid + r * XF_THREADS;
      v[r] = live && i < K / 4 ? reinterpret_cast<const float4*>(xr)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
      mx = fmaxf(mx, fmaxf(fmaxf(fabsf(v[r].x), fabsf(v[r].y)), fmaxf(fabsf(v[r].z), fabsf(v[r].w))));
    }
  } else if (live) {
    for (int k = tid; k < K; k += XF_THREADS) mx = fmaxf(mx, fabsf(xr[perm ? perm[k] : k]));
  }
  __shared__ float red[32];
  mx = block_reduce<true, float>(mx, red);
  const float mul = pow2_scale(mx);
  if (tid == 0 && part == 0) rmul[m] = mul;
  const int gid = m & 7, rhi = m >> 3;
  auto put = [&](int k, float v0, float v1) {  // the pair k, k + 1 (k even)
    const int s = k >> 4, kk = k & 15;
    xf[((long long)s * 32 + gid * 4 + ((kk & 7) >> 1)) * 4 + rhi + 2 * (kk >> 3)] = h2u(__floats2half2_rn(v0 * mul, v1 * mul));
  };
  // this block's pairs [p0, p1) of the row's K / 2
  const int per = (K / 2 + parts - 1) / parts, p0 = part * per, p1 = min(K / 2, p0 + per);
  if (inreg) {
#pragma unroll
    for (int r = 0; r < XF_REG; r++) {
      const int i = tid + r * XF_THREADS;  // float4 i holds the pairs 2i, 2i + 1
      if (i < K / 4) {
        if (2 * i >= p0 && 2 * i < p1) put(4 * i, v[r].x, v[r].y);
        if (2 * i + 1 >= p0 && 2 * i + 1 < p1) put(4 * i + 2, v[r].z, v[r].w);
      }
    }
  } else {
    for (int p = p0 + tid; p < p1; p += XF_THREADS) {
      const int k = 2 * p;
      put(k, live ? xr[perm ? perm[k] : k] : 0.f, live ? xr[perm ? perm[k + 1] : k + 1] : 0.f);
    }
  }
}
#ifndef QM_MINB
#define QM_MINB 3  // blocks of 4 warps per multiprocessor the registers must allow
#endif
// Block: 4 warps = cpb column chunks (64 columns each) × kw k sub-ranges of spw k16 steps; the block's k range
// is blockIdx.y. Warps of one sub-range read the same x (L1 hits); sub-ranges are summed in shared memory, k
// ranges (ksplit = gridDim.y > 1) added into y with atomics (xfrag_kernel zeroed it; bias from range 0).
template <int G>
__global__ void __launch_bounds__(128, QM_MINB) qm4m_kernel(float* __restrict__ y, const uint4* __restrict__ xf, const float* __restrict__ rmul, const uint4* __restrict__ packed,
                                                            const unsigned int* __restrict__ sz, const float* __restrict__ bias, int M, int K, int N, int gs, int spw, int kw) {
  extern __shared__ float4 qm_red[];  // sub-ranges 1..kw-1: [sub − 1][chunk][tile][lane], the warps' sums
#ifdef QM_PDL_EARLY
  pdl_launch_dependents();
#endif
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, t = lane & 3;
  const int cpb = 4 / kw, cw = warp % cpb, sub = warp / cpb;
  const int N64 = N / 64, K16 = K / 16, gs16 = gs / 16;
  const int c = blockIdx.x * cpb + cw;
  const bool live = c < N64;
  const int kb0 = blockIdx.y * kw * spw;
  const int w0 = live ? min(kb0 + sub * spw, K16) : K16, w1 = live ? min(w0 + spw, K16) : K16;  // this warp's k16 steps
  const uint4* src = packed + (long long)c * K16 * 32 + lane;
  const uint4* xsrc = xf + lane;
  const uint4* szc = reinterpret_cast<const uint4*>(sz + ((long long)c * 8 + gid) * 8);  // + group·N64·16 uint4
  const long long gstride = (long long)N64 * 16;
  uint4 qa[QV_UNROLL], qb[QV_UNROLL], xa[QV_UNROLL], xb[QV_UNROLL];
  auto load = [&](uint4* q, uint4* xv, const int s, const bool withx) {
#pragma unroll
    for (int u = 0; u < QV_UNROLL; u++)
      if (s + u < w1) {
        q[u] = ld_stream(src + (long long)(s + u) * 32);
        if (withx) xv[u] = __ldg(xsrc + (long long)(s + u) * 32);
      }
  };
  // weights and the first group's (scale, zero) do not depend on the kernel before (xfrag_kernel): first
  load(qa, xa, w0, false);
  load(qb, xb, w0 + QV_UNROLL, false);
  uint4 nxt0 = make_uint4(0, 0, 0, 0), nxt1 = nxt0;
  int grp = w0 / gs16, gnext = w0;
  const uint4* szn = szc + grp * gstride;
  if (w0 < w1) { nxt0 = __ldg(szn); nxt1 = __ldg(szn + 1); }
  pdl_wait();
#pragma unroll
  for (int u = 0; u < QV_UNROLL; u++) {
    if (w0 + u < w1) xa[u] = __ldg(xsrc + (long long)(w0 + u) * 32);
    if (w0 + QV_UNROLL + u < w1) xb[u] = __ldg(xsrc + (long long)(w0 + QV_UNROLL + u) * 32);
  }
  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;
  const __half2 inv16 = __float2half2_rn(1.f / 16.f);
  // per tile pair j (tiles 2j, 2j + 1, column gid of each): half2 of their 1024 + zero, −(64 + zero) and scale;
  // an operand's low or high half is picked by the instruction (HADD2/HMUL2 operand selects), so packing the
  // pair costs no instructions and halves those 24 registers (the kernel: 168 -> 162; measured on an H200, four
  // 7B shapes at M = 16: 71.1 -> 64.8-65.1 us)
  unsigned int Zp[4], Z16p[4], Sp[4];
  auto enter = [&]() {  // a group starts: its (scale, zero) of column gid of each tile, prefetch the next group's
    const unsigned int v[8] = {nxt0.x, nxt0.y, nxt0.z, nxt0.w, nxt1.x, nxt1.y, nxt1.z, nxt1.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const __half2 a = u2h(v[2 * j]), b = u2h(v[2 * j + 1]);  // (scale, 1024 + z) of tiles 2j, 2j + 1
      Sp[j] = h2u(__lows2half2(a, b));
      const __half2 zz = __highs2half2(a, b);
      Zp[j] = h2u(zz);
      Z16p[j] = h2u(__hneg2(__hsub2(zz, __float2half2_rn(960.f))));  // −(64 + z)
    }
    szn += gstride;
    gnext = (grp + 1) * gs16;
    if (gnext < w1) { nxt0 = __ldg(szn); nxt1 = __ldg(szn + 1); }
    grp++;
  };
  // one k16 step: B fragments (q − z)·scale of the 8 tiles, A from xf
  auto step = [&](const uint4 qv, const uint4 a) {
    const unsigned int qs[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const unsigned int hi = qs[j] >> 8;
      const unsigned int h0 = nib2h(qs[j], 0x000f000fu), h1 = nib2h(qs[j], 0x00f000f0u);
      const unsigned int h2 = nib2h(hi, 0x000f000fu), h3 = nib2h(hi, 0x00f000f0u);
      const __half2 za = __low2half2(u2h(Zp[j])), zb = __high2half2(u2h(Zp[j]));
      const __half2 z16a = __low2half2(u2h(Z16p[j])), z16b = __high2half2(u2h(Z16p[j]));
      const __half2 sa = __low2half2(u2h(Sp[j])), sb = __high2half2(u2h(Sp[j]));
      const unsigned int b0 = h2u(__hmul2(__hsub2(u2h(h0), za), sa));
      const unsigned int b1 = h2u(__hmul2(__hfma2(u2h(h1), inv16, z16a), sa));
      const unsigned int b2 = h2u(__hmul2(__hsub2(u2h(h2), zb), sb));
      const unsigned int b3 = h2u(__hmul2(__hfma2(u2h(h3), inv16, z16b), sb));
      mma16816(acc[2 * j], a.x, a.y, a.z, a.w, b0, b1);
      mma16816(acc[2 * j + 1], a.x, a.y, a.z, a.w, b2, b3);
    }
  };
  auto batch = [&](const uint4* q, const uint4* xv, const int s0, const bool full) {
#pragma unroll
    for (int b = 0; b < QV_UNROLL; b += G) {
      const int sb = s0 + b;
      if (full || sb < w1) {
        if (sb == gnext) enter();
#pragma unroll
        for (int u = 0; u < G; u++) if (full || sb + u < w1) step(q[b + u], xv[b + u]);
      }
    }
  };
  int st = w0;
  for (; st + 2 * QV_UNROLL <= w1; st += 2 * QV_UNROLL) {
    batch(qa, xa, st, true);
    load(qa, xa, st + 2 * QV_UNROLL, true);
    batch(qb, xb, st + QV_UNROLL, true);
    load(qb, xb, st + 3 * QV_UNROLL, true);
  }
  if (st < w1) {
    batch(qa, xa, st, false);
    batch(qb, xb, st + QV_UNROLL, false);
  }
  // the next kernel (usually the next call's xfrag_kernel, which has nothing to do before its wait) is let in
  // only now: launched at the start, its blocks would sit on the multiprocessors through this kernel's stream
#ifndef QM_PDL_EARLY
  pdl_launch_dependents();
#endif
  // sub-ranges 1.. hand their sums to sub-range 0's warp of the same chunk
  if (kw > 1) {
    if (sub > 0)
#pragma unroll
      for (int i = 0; i < 8; i++) qm_red[(((sub - 1) * cpb + cw) * 8 + i) * 32 + lane] = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    __syncthreads();
    if (sub > 0) return;
    for (int r = 1; r < kw; r++)
#pragma unroll
      for (int i = 0; i < 8; i++) {
        const float4 v = qm_red[(((r - 1) * cpb + cw) * 8 + i) * 32 + lane];
        acc[i][0] += v.x; acc[i][1] += v.y; acc[i][2] += v.z; acc[i][3] += v.w;
      }
  }
  if (!live) return;
  const bool split = gridDim.y > 1, first = blockIdx.y == 0;
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int r = gid + 8 * h;
    if (r >= M) continue;
    const float inv = 1.f / rmul[r];
#pragma unroll
    for (int i = 0; i < 8; i++) {
      const int col = c * 64 + i * 8 + 2 * t;
      float v0 = acc[i][2 * h] * inv, v1 = acc[i][2 * h + 1] * inv;
      if (bias && first) { v0 += bias[col]; v1 += bias[col + 1]; }
      float* yp = y + (long long)r * N + col;
      if (!split) *reinterpret_cast<float2*>(yp) = make_float2(v0, v1);
      else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        atomicAdd(reinterpret_cast<float2*>(yp), make_float2(v0, v1));
#else
        atomicAdd(yp, v0);
        atomicAdd(yp + 1, v1);
#endif
      }
    }
  }
}

static int sm_count() {
  static int n = 0;
  if (!n) { int dev = 0; cudaGetDevice(&dev); cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev); if (!n) n = 80; }
  return n;
}

// A grow-only device buffer kept across calls. Growing synchronizes the stream, so it is refused inside a
// graph capture: the caller runs the shape once before capturing.
struct Grown { void* p = nullptr; size_t bytes = 0; };
static int grow(Grown& g, size_t need, const char* what) {
  if (need <= g.bytes) return GQ_OK;
  cudaStreamCaptureStatus cs;
  GQ_CUDA(cudaStreamIsCapturing(gq::stream, &cs));
  GQ_ARG(cs == cudaStreamCaptureStatusNone, "%s inside a graph capture; run it once before capturing", what);
  GQ_CUDA(cudaStreamSynchronize(gq::stream));
  if (g.p) cudaFree(g.p);
  g.p = nullptr;
  g.bytes = 0;
  GQ_CUDA(cudaMalloc(&g.p, need));
  g.bytes = need;
  return GQ_OK;
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
// the GEMV arguments for one weight (u: gated input, see QvArgs)
static QvArgs one_weight(float* y, const unsigned int* packed, const unsigned int* sz, const float* bias, int N, const float* u) {
  QvArgs a = {};
  a.s[0] = QvSeg{y, reinterpret_cast<const uint4*>(packed), sz, bias, N, 0};
  a.count = 1;
  a.ntot = N;
  a.u = u;
  return a;
}
// device memory known to be zero when the queued work runs (gq_qm_zeroed), and whether to use it
// (GPTQ_QV_ZEROED=0: not; for A/B runs)
static uintptr_t zero_lo = 0, zero_hi = 0;
// its first GQ_QM_SCRATCH bytes are the library's (see gq_qm_zeroed), handed out from sq_next, 32 bytes a launch
static uintptr_t sq_next = 0;
static bool zeroed_ok() {
  static int on = -1;
  if (on < 0) { const char* e = getenv("GPTQ_QV_ZEROED"); on = !(e && e[0] == '0'); }
  return on && zero_lo < zero_hi;
}
static bool in_zeroed(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return a >= zero_lo && a + bytes <= zero_hi;
}
// the GEMV (M <= 4) over one or more weights sharing x (see QvArgs)
static int launch_gemv(const QvArgs& a, const float* x, const int* perm, int M, int K, int gs) {
  const int N64 = a.ntot / 64, K16 = K / 16;
  const int MR = M == 1 ? 1 : M == 2 ? 2 : 4;
  // (a cp.async ring in shared memory instead of the register pipeline measured 15% slower on an H200)
  // sub-batch G: the largest of 4, 2, 1 dividing the group's k16 steps (spw is made a multiple of it)
  const int gs16 = gs / 16, G = gs16 % 4 == 0 ? 4 : gs16 % 2 == 0 ? 2 : 1;
  const int vi = (MR == 1 ? 0 : MR == 2 ? 1 : 2) * 3 + (G == 4 ? 0 : G == 2 ? 1 : 2);
  typedef void (*QvKernel)(const QvArgs, const float*, const int*, float*, int*, int, int, int, int, int, int, int);
  static const QvKernel kernels[9] = {qm4v_kernel<1, 4>, qm4v_kernel<1, 2>, qm4v_kernel<1, 1>, qm4v_kernel<2, 4>, qm4v_kernel<2, 2>,
                                      qm4v_kernel<2, 1>, qm4v_kernel<4, 4>, qm4v_kernel<4, 2>, qm4v_kernel<4, 1>};
  const QvKernel kern = kernels[vi];
  // one wave: as many blocks as fit the multiprocessors at once, each warp with >= 8 k16 steps; x of a
  // block's k range in shared memory as fp16 (<= 8 KiB per row), then the warps' sums
  // (QV_WARPS >= 8 builds, for sweeps: blocks of 8 or 16 warps, 2 or 1 per multiprocessor, may stage 32 KiB)
  const int maxspw = (QV_WARPS >= 8 ? 32 : 8) * 1024 / (2 * MR) / (QV_WARPS * 16);
  // (+ the norm weight over the block's k range in fp32 with a deferred norm; the occupancy is taken with it)
  auto smem_for = [&](int spw, bool nw) {
    return (size_t)MR * QV_WARPS * spw * 16 * sizeof(__half) + (size_t)(QV_WARPS + 1) * MR * 64 * sizeof(float) + (nw ? (size_t)QV_WARPS * spw * 16 * sizeof(float) : 0);
  };
  static int fit[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  if (!fit[vi]) {
    GQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit[vi], kern, QV_WARPS * 32, smem_for(maxspw, true)));
    if (fit[vi] < 1) fit[vi] = 1;
  }
  // tuning knobs (bench sweeps): GPTQ_QV_WAVES blocks per resident slot (default 1: one wave),
  // GPTQ_QV_MINSPW the fewest k16 steps per warp (default 8), GPTQ_QV_PREFETCH the k16 steps per warp
  // prefetched into L2 before the wait for the kernel ahead (sm_90; default 0: none. Measured on an H200, four
  // 7B shapes back to back: 49.6 us without, 50.3 with 16 steps, 52.7 with 64, though single shapes repeated
  // gained up to 1.5 us: prefetched lines are evicted by the stream before they are read)
  // GPTQ_QV_AWAVES, GPTQ_QV_AMINSPW: the same two for launches that add into y in place with atomics (o and down
  // when decoding; default: as the others)
  static double waves = 0, awaves = 0;
  static int minspw = 0, aminspw = 0, prefetch = -1;
  if (!waves) {
    const char* w = getenv("GPTQ_QV_WAVES");
    const char* m = getenv("GPTQ_QV_MINSPW");
    const char* p = getenv("GPTQ_QV_PREFETCH");
    const char* aw = getenv("GPTQ_QV_AWAVES");
    const char* am = getenv("GPTQ_QV_AMINSPW");
    waves = w && atof(w) > 0 ? atof(w) : 1.0;
    minspw = m && atoi(m) > 0 ? atoi(m) : 8;
    prefetch = p && *p ? atoi(p) : 0;
    awaves = aw && atof(aw) > 0 ? atof(aw) : waves;
    aminspw = am && atoi(am) > 0 ? atoi(am) : minspw;
  }
  // y accumulated in place (y = res): a k split across blocks adds its sums into y with atomics (one fire-and-
  // forget reduction per output instead of the partial sums' stores, an arrival atomic and the last block's
  // loads at the end of the kernel; the order of the additions, and so the last bits of y, vary from run to
  // run). GPTQ_QV_ATOMIC=0: the chain even then. Measured on an H100, decode pipelined: 499.3-499.4 tokens/s,
  // 477.7-477.9 with the chain into the residual, 485.9 for the code before (a new y, and the producer's
  // per-chunk Σ y² for the next GEMV's norm), alternating in one run.
  static int atomics = -1;
  if (atomics < 0) {
    const char* env = getenv("GPTQ_QV_ATOMIC");
    atomics = env && *env ? atoi(env) != 0 : 1;
  }
  const bool inplace = atomics && a.res && a.res == a.s[0].y && a.count == 1;
  // outputs known to be zero (gq_qm_zeroed: a graph arena's range that each replay zeroes first): a k split
  // across blocks adds into them with atomics too, with the bias from the first k range (no residual)
  bool zeroed = atomics && zeroed_ok() && !a.res;
  for (int i = 0; i < a.count && zeroed; i++) zeroed = in_zeroed(a.s[i].y, (size_t)M * a.s[i].N * sizeof(float));
  const int slots = (int)(fit[vi] * sm_count() * (inplace ? awaves : waves));
  int ksplit = slots / N64;
  ksplit = ksplit < 1 ? 1 : ksplit;
  int spw = (K16 + QV_WARPS * ksplit - 1) / (QV_WARPS * ksplit);
  const int lo = inplace ? aminspw : minspw;
  spw = spw < lo ? lo : spw > maxspw ? maxspw : spw;
  spw = (spw + G - 1) / G * G;
  ksplit = (K16 + QV_WARPS * spw - 1) / (QV_WARPS * spw);
  // sm_90: a chunk's k ranges as one thread block cluster, summed through distributed shared memory instead of
  // partial sums in global memory and an arrival counter, when there are at most GPTQ_QV_CLUSTER of them
  // (default 2; 0: off). Measured on an H200: 2 ranges (4096 x 12288) 13.2 -> 12.2 us; 8 ranges (4096 x 4096,
  // 11008 x 4096) slower, 7.4 -> 9.6 and 12.6 -> 16.7 us (clusters of 8 blocks are scheduled together).
  static int clusters = -1;
  if (clusters < 0) {
    const char* env = getenv("GPTQ_QV_CLUSTER");
    clusters = gq::cc_major() < 9 ? 0 : env && *env ? atoi(env) : 2;
    clusters = clusters > 8 ? 8 : clusters < 0 ? 0 : clusters;
  }
  const bool cluster = !zeroed && ksplit > 1 && ksplit <= clusters;
  const int mode = ksplit == 1 ? QV_SUM_CHAIN : cluster ? QV_SUM_CLUSTER : inplace || zeroed ? QV_SUM_ATOMIC : QV_SUM_CHAIN;
  const size_t smem = smem_for(spw, a.nw && !perm);
  // a normed GEMV split across blocks outside a cluster shares the norm's Σ x² through 32 bytes of the zeroed
  // scratch, if the whole grid is resident at once (its blocks wait for the first chunk's; GPTQ_QV_SHAREDSQ=0:
  // each block reads the rest of x's row instead)
  static int sharedsq = -1;
  if (sharedsq < 0) { const char* e = getenv("GPTQ_QV_SHAREDSQ"); sharedsq = !(e && e[0] == '0'); }
  QvArgs args = a;
  args.sqs = nullptr;
#ifndef QV_DBG_NOSTAGE  // (that timing build posts no sums)
  if (sharedsq && a.nw && ksplit > 1 && !cluster && zeroed_ok() && zero_hi - zero_lo >= GQ_QM_SCRATCH && N64 * ksplit <= fit[vi] * sm_count() &&
      sq_next + 32 <= zero_lo + GQ_QM_SCRATCH) {
    args.sqs = reinterpret_cast<float*>(sq_next);
    sq_next += 32;
    static int spin = -2;
    if (spin == -2) { const char* e = getenv("GPTQ_QV_SPIN"); spin = e ? atoi(e) : 65536; if (spin < -1) spin = -1; }
    args.spin = spin;
  }
#endif
  // per-chunk arrival counters (each call leaves them at zero) and partial sums: grow-only buffers, plain
  // cudaMalloc (stream-ordered allocations inside a captured decode graph would become graph memory nodes)
  static Grown counters, workspace;
  if (ksplit > 1 && mode == QV_SUM_CHAIN) {
    const bool fresh = counters.bytes < sizeof(int) * N64;
    GQ_TRY(grow(counters, sizeof(int) * N64, "matmul4: a new widest shape"));
    if (fresh) GQ_CUDA(cudaMemsetAsync(counters.p, 0, sizeof(int) * N64, gq::stream));
    GQ_TRY(grow(workspace, sizeof(float) * ksplit * M * a.ntot, "matmul4: a new largest shape"));
  }
  cudaLaunchAttribute attr[2];
  const cudaLaunchConfig_t cfg = gq::launch_config(dim3(N64, ksplit), dim3(QV_WARPS * 32), smem, attr, dim3(1, cluster ? ksplit : 1, 1));
  GQ_CUDA(cudaLaunchKernelEx(&cfg, kern, args, x, perm, static_cast<float*>(workspace.p), static_cast<int*>(counters.p), M, K, gs, spw, ksplit, mode, prefetch));
  GQ_LAUNCHED("matmul4 (gemv)");
  return GQ_OK;
}
// M = 5..16 (see qm4m_kernel): xfrag_kernel, then the matmul, both with programmatic dependent launch
static int launch_qm4m(float* y, const float* x, const uint4* packed, const unsigned int* sz, const int* perm, const float* bias, int M, int K, int N, int gs) {
  const int N64 = N / 64, K16 = K / 16, gs16 = gs / 16, G = gs16 % 4 == 0 ? 4 : gs16 % 2 == 0 ? 2 : 1;
  typedef void (*Kern)(float*, const uint4*, const float*, const uint4*, const unsigned int*, const float*, int, int, int, int, int, int);
  static const Kern kernels[3] = {qm4m_kernel<4>, qm4m_kernel<2>, qm4m_kernel<1>};
  const int vi = G == 4 ? 0 : G == 2 ? 1 : 2;
  // tuning knobs (bench sweeps): GPTQ_QM_KW k sub-ranges per block (1, 2 or 4; the block's 4 warps cover
  // 4 / kw column chunks; default 4: measured on an H200, four 7B shapes at M = 16, 70.3 us against 71.6 with 2
  // and 73.0 with 1), GPTQ_QM_WAVES blocks per resident slot (2: 82.3 us), GPTQ_QM_MINSPW fewest k16 steps per warp
  static int kw = 0, minspw = 0;
  static double waves = 0;
  if (!kw) {
    const char* k = getenv("GPTQ_QM_KW");
    const char* w = getenv("GPTQ_QM_WAVES");
    const char* m = getenv("GPTQ_QM_MINSPW");
    kw = k && (atoi(k) == 1 || atoi(k) == 2 || atoi(k) == 4) ? atoi(k) : 4;
    waves = w && atof(w) > 0 ? atof(w) : 1.0;
    minspw = m && atoi(m) > 0 ? atoi(m) : 8;
  }
  const int cpb = 4 / kw, cblocks = (N64 + cpb - 1) / cpb;
  const size_t smem = (size_t)(kw - 1) * cpb * 8 * 32 * sizeof(float4);
  static int fit[3] = {};
  if (!fit[vi]) {
    GQ_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit[vi], kernels[vi], 128, 3 * 8 * 32 * sizeof(float4)));
    if (fit[vi] < 1) fit[vi] = 1;
  }
  int ksplit = (int)(fit[vi] * sm_count() * waves) / cblocks;
  ksplit = ksplit < 1 ? 1 : ksplit;
  int spw = (K16 + kw * ksplit - 1) / (kw * ksplit);
  spw = spw < minspw ? minspw : spw;
  spw = (spw + G - 1) / G * G;
  ksplit = (K16 + kw * spw - 1) / (kw * spw);
  static Grown xfb;  // xf [K16][32] uint4, then rmul [16]
  GQ_TRY(grow(xfb, (size_t)K16 * 512 + 16 * sizeof(float), "matmul4 (5-16 rows): a new widest x"));
  unsigned int* xf = static_cast<unsigned int*>(xfb.p);
  float* rmul = reinterpret_cast<float*>(static_cast<char*>(xfb.p) + (size_t)K16 * 512);
#ifdef QM_DBG_XFRAG_ONCE  // timing diagnostic, never a release build (wrong results after the first call): x converted and y zeroed once
  static bool once = false;
  if (!once) GQ_CUDA(gq::launch(xfrag_kernel, dim3(16, XF_SPLIT), dim3(XF_THREADS), 0, xf, rmul, y, x, perm, M, K, N));
  once = true;
#else
  GQ_CUDA(gq::launch(xfrag_kernel, dim3(16, XF_SPLIT), dim3(XF_THREADS), 0, xf, rmul, y, x, perm, M, K, N));
#endif
  GQ_CUDA(gq::launch(kernels[vi], dim3(cblocks, ksplit), dim3(128), smem, y, reinterpret_cast<const uint4*>(xf), static_cast<const float*>(rmul), packed, sz, bias, M, K, N, gs, spw, kw));
  GQ_LAUNCHED("matmul4 (5-16 rows)");
  return GQ_OK;
}
int gq_qm_matmul4(float* y, const float* x, const unsigned int* packed, const unsigned int* sz, const int* perm, const float* bias, int M, int K, int N, int gs) {
  GQ_CHECK_INIT();
  GQ_ARG(K % 16 == 0 && N % 64 == 0 && gs % 16 == 0, "matmul4: needs K %% 16, N %% 64, group size %% 16");
  GQ_ARG(M >= 1, "matmul4: M = %d", M);
  if (M <= 4 && !getenv("GPTQ_QM_NO_GEMV")) return launch_gemv(one_weight(y, packed, sz, bias, N, nullptr), x, perm, M, K, gs);
  if (gq::cc_major() < 8) return gq::fail(GQ_ERR_UNSUPPORTED, "matmul4: %d rows need the tensor-core kernel (compute capability 8.0); use the generic path", M);
  // 16 rows at a time (each slice streams the weights again)
  for (int m0 = 0; m0 < M; m0 += 16)
    GQ_TRY(launch_qm4m(y + (long long)m0 * N, x + (long long)m0 * K, reinterpret_cast<const uint4*>(packed), sz, perm, bias, M - m0 < 16 ? M - m0 : 16, K, N, gs));
  return GQ_OK;
}
// the GEMV arguments for up to QV_MAXOUT weights sharing x
static int many_args(QvArgs& a, int count, float* const* ys, const unsigned int* const* packed, const unsigned int* const* sz, const float* const* bias, const int* Ns, int M, int K, int gs) {
  GQ_ARG(count >= 1 && count <= QV_MAXOUT, "matmul4_many: %d weights (1 to %d)", count, QV_MAXOUT);
  GQ_ARG(K % 16 == 0 && gs % 16 == 0 && M >= 1 && M <= 4, "matmul4_many: needs K %% 16, group size %% 16, 1 <= M <= 4 (K=%d gs=%d M=%d)", K, gs, M);
  a = QvArgs{};
  a.count = count;
  for (int i = 0; i < count; i++) {
    GQ_ARG(Ns[i] % 64 == 0 && Ns[i] > 0, "matmul4_many: weight %d has %d columns (needs a positive multiple of 64)", i, Ns[i]);
    a.s[i] = QvSeg{ys[i], reinterpret_cast<const uint4*>(packed[i]), sz[i], bias ? bias[i] : nullptr, Ns[i], a.ntot / 64};
    a.ntot += Ns[i];
  }
  return GQ_OK;
}
int gq_qm_matmul4_many(int count, float* const* ys, const unsigned int* const* packed, const unsigned int* const* sz, const float* const* bias,
                       const int* Ns, const float* x, const int* perm, int M, int K, int gs) {
  GQ_CHECK_INIT();
  GQ_ARG(count >= 1 && count <= QV_MAXOUT, "matmul4_many: %d weights (1 to %d)", count, QV_MAXOUT);
  if (M > 4 || getenv("GPTQ_QM_NO_GEMV")) {  // one call per weight (the tensor-core kernel's grid is per weight)
    for (int i = 0; i < count; i++) GQ_TRY(gq_qm_matmul4(ys[i], x, packed[i], sz[i], perm, bias ? bias[i] : nullptr, M, K, Ns[i], gs));
    return GQ_OK;
  }
  QvArgs a;
  GQ_TRY(many_args(a, count, ys, packed, sz, bias, Ns, M, K, gs));
  return launch_gemv(a, x, perm, M, K, gs);
}
int gq_qm_matmul4_many_normed(int count, float* const* ys, const unsigned int* const* packed, const unsigned int* const* sz, const float* const* bias,
                              const int* Ns, const float* x, const int* perm, int M, int K, int gs, const float* nw, float eps) {
  GQ_CHECK_INIT();
  GQ_DBG_SKIP_OP(count == 3 ? "qkv" : "gateup");
  GQ_ARG(nw, "matmul4_many_normed: needs the norm weight");
  QvArgs a;
  GQ_TRY(many_args(a, count, ys, packed, sz, bias, Ns, M, K, gs));
  a.nw = nw;
  a.eps = eps;
  return launch_gemv(a, x, perm, M, K, gs);
}
int gq_qm_matmul4_add(float* y, const float* x, const float* u, const float* res, const unsigned int* packed, const unsigned int* sz, const int* perm, const float* bias,
                      int M, int K, int N, int gs) {
  GQ_CHECK_INIT();
  GQ_DBG_SKIP_OP(u ? "down" : "o");
  GQ_ARG(K % 16 == 0 && N % 64 == 0 && gs % 16 == 0, "matmul4_add: needs K %% 16, N %% 64, group size %% 16 (K=%d N=%d gs=%d)", K, N, gs);
  GQ_ARG(M >= 1 && M <= 4 && res, "matmul4_add: M = %d (1 to 4), the residual is required", M);
  QvArgs a = one_weight(y, packed, sz, bias, N, u);
  a.res = res;
  return launch_gemv(a, x, perm, M, K, gs);
}
int gq_qm_matmul4_gated(float* y, const float* g, const float* u, const unsigned int* packed, const unsigned int* sz, const int* perm, const float* bias, int M, int K, int N, int gs) {
  GQ_CHECK_INIT();
  GQ_ARG(K % 16 == 0 && N % 64 == 0 && gs % 16 == 0, "matmul4_gated: needs K %% 16, N %% 64, group size %% 16");
  GQ_ARG(M >= 1 && M <= 4, "matmul4_gated: M = %d (the GEMV takes 1 to 4 rows)", M);
  return launch_gemv(one_weight(y, packed, sz, bias, N, u), g, perm, M, K, gs);
}
int gq_qm_zeroed(void* zero, long long bytes) {
  GQ_ARG(bytes >= 0 && (zero || bytes == 0), "qm_zeroed: %lld bytes at %p", bytes, zero);
  zero_lo = reinterpret_cast<uintptr_t>(zero);
  zero_hi = zero_lo + (uintptr_t)bytes;
  sq_next = zero_lo;
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
