// Shared by every kernel file: status handling, the stream, and the run-time-loaded cuBLAS/cuSOLVER.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdarg>
#include <utility>
#include "gptq_cuda.h"

namespace gq {
int fail(int code, const char* fmt, ...);
extern cudaStream_t stream;
extern bool initialized;

// cuBLAS / cuSOLVER entry points, dlopen'ed at gq_init (no headers needed)
typedef void* Handle;
struct Blas {
  Handle handle = nullptr;
  int (*Sgemm)(Handle, int, int, int, int, int, const float*, const float*, int, const float*, int, const float*, float*, int) = nullptr;
  int (*SgemmStridedBatched)(Handle, int, int, int, int, int, const float*, const float*, int, long long, const float*, int, long long, const float*, float*, int, long long, int) = nullptr;
  int (*Ssyrk)(Handle, int, int, int, int, const float*, const float*, int, const float*, float*, int) = nullptr;
  int (*GemmEx)(Handle, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int, const void*, void*, int, int, int, int) = nullptr;
  int (*SetMathMode)(Handle, int) = nullptr;
  int (*Dtrsm)(Handle, int, int, int, int, int, int, const double*, const double*, int, double*, int) = nullptr;
  int defaultMath = 0;
};
struct Solver {
  Handle handle = nullptr;
  int (*DpotrfBuf)(Handle, int, int, double*, int, int*) = nullptr;
  int (*Dpotrf)(Handle, int, int, double*, int, double*, int, int*) = nullptr;
};
extern Blas blas;
extern Solver solver;

// stream-ordered scratch from the pool
void* scratch(size_t bytes);
void release(void* p);

// row-major C[M,N] = alpha·op(A)[M,K]·op(B)[K,N] + beta·C (same meaning as cblas RowMajor)
int gemm_rm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
}

// Timing diagnostic (never a release build: builds with -DGQ_DBG_SKIP only): GPTQ_DBG_SKIP=a,b,... makes the
// named decode-step ops return without launching anything (wrong results), so that a decode benchmark shows
// each op's exposed cost in a replayed step: qkv, gateup (the normed GEMVs), o, down (the residual-add GEMVs),
// attn (rope + attention), head (the fp16 LM head), norm (RMSNorm)
#ifdef GQ_DBG_SKIP
#include <cstdlib>
#include <cstring>
namespace gq {
inline bool dbg_skip(const char* op) {
  const char* e = getenv("GPTQ_DBG_SKIP");
  if (!e) return false;
  const size_t n = strlen(op);
  for (const char* p = e; (p = strstr(p, op)) != nullptr; p += n)
    if ((p == e || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
  return false;
}
}
#define GQ_DBG_SKIP_OP(op) do { if (gq::dbg_skip(op)) return GQ_OK; } while (0)
#else
#define GQ_DBG_SKIP_OP(op) do { } while (0)
#endif
#define GQ_CHECK_INIT() do { if (!gq::initialized) return gq::fail(GQ_ERR_NOT_INIT, "gq_init has not been called"); } while (0)
// a failed call's error is also taken off CUDA's per-thread "last error", so the next launch check does not report it again
#define GQ_CUDA(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { cudaGetLastError(); return gq::fail(GQ_ERR_CUDA, "%s: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, __LINE__); } } while (0)
#define GQ_LAUNCHED(name) do { cudaError_t e_ = cudaGetLastError(); if (e_ != cudaSuccess) return gq::fail(GQ_ERR_CUDA, "%s launch: %s", name, cudaGetErrorString(e_)); } while (0)
#define GQ_TRY(call) do { int r_ = (call); if (r_ != GQ_OK) return r_; } while (0)
#define GQ_ARG(cond, ...) do { if (!(cond)) return gq::fail(GQ_ERR_ARG, __VA_ARGS__); } while (0)

// Programmatic dependent launch (sm_90+). A kernel launched with programmatic stream serialization (the packed
// GEMV) may start before the kernel ahead of it ends, once that one has called pdl_launch_dependents: it does
// its independent work (streaming weights) and calls pdl_wait before reading anything the earlier kernel
// writes. Kernels that precede a GEMV in a decode step signal early; elsewhere both are no-ops.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// max (MAX) or sum of v over the warp (all 32 lanes take part); every lane gets the result.
// (fmaxf/fmax: a NaN loses to a number.)
__device__ __forceinline__ float reduce_op_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double reduce_op_max(double a, double b) { return fmax(a, b); }
template <bool MAX, typename T>
__device__ __forceinline__ T warp_reduce(T v) {
  for (int o = 16; o; o >>= 1) { const T u = __shfl_xor_sync(0xffffffff, v, o); v = MAX ? reduce_op_max(v, u) : v + u; }
  return v;
}
// max (MAX) or sum of v over the block (blockDim a multiple of 32, at most 1024); every thread gets the result.
// red: 32 T of shared memory, free for reuse when it returns.
template <bool MAX, typename T>
__device__ __forceinline__ T block_reduce(T v, T* red) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  v = warp_reduce<MAX>(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = warp_reduce<MAX>(lane < nw ? red[lane] : MAX ? red[0] : T(0));
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  v = red[0];
  __syncthreads();  // red may be reused
  return v;
}

// y [n] = fp16(x [n]), round to nearest (hessian.cu; launched from other files through its host stub)
__global__ void to_half_kernel(__half* y, const float* x, long long n);

static inline unsigned blocks_for(long long n, int threads) { return (unsigned)((n + threads - 1) / threads); }

namespace gq {
// the current device's compute capability major (asked once)
inline int cc_major() {
  static int v = 0;
  if (!v) { int dev = 0; cudaGetDevice(&dev); cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev); }
  return v;
}
// programmatic dependent launch in use: sm_90+ and GPTQ_PDL not "0" (probed once, at gq_init)
extern bool pdl;
// the configuration of gq::launch (below) for cudaLaunchKernelEx, with thread block clusters of `cluster`
// blocks (sm_90; none when it is 1 1 1); attr: room for 2 attributes, alive until the launch.
static inline cudaLaunchConfig_t launch_config(dim3 grid, dim3 block, size_t smem, cudaLaunchAttribute* attr, dim3 cluster = dim3(1, 1, 1)) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  if (pdl) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[cfg.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attr[cfg.numAttrs].val.clusterDim.x = cluster.x;
    attr[cfg.numAttrs].val.clusterDim.y = cluster.y;
    attr[cfg.numAttrs++].val.clusterDim.z = cluster.z;
  }
  return cfg;
}
// kernel<<<grid, block, smem, gq::stream>>>(args...), with programmatic stream serialization when gq::pdl:
// the kernel may then start before the one ahead of it ends, so it calls pdl_wait() before it reads or writes
// anything that kernel touches (decode kernels: first thing). Returns the launch's error.
template <typename... P, typename... A>
static inline cudaError_t launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  cudaLaunchAttribute attr[2];
  const cudaLaunchConfig_t cfg = launch_config(grid, block, smem, attr);
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}
}  // namespace gq
