// Runtime: device probe, init (stream, memory pool, cuBLAS/cuSOLVER via dlopen), memory, errors, timing.
#include "common.cuh"
#include <dlfcn.h>
#include <cstring>
#include <cstdlib>
#include <string>
#include <vector>

namespace gq {
static thread_local char last_error[1024] = "";
cudaStream_t stream = nullptr;
bool pdl = false;
bool initialized = false;
Blas blas;
Solver solver;
static cudaEvent_t t0 = nullptr, t1 = nullptr;

int fail(int code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

void* scratch(size_t bytes) {
  void* p = nullptr;
  if (cudaMallocAsync(&p, bytes ? bytes : 1, stream) != cudaSuccess) return nullptr;
  return p;
}
void release(void* p) { if (p) cudaFreeAsync(p, stream); }

int gemm_rm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return GQ_OK;
  // column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap operands, keep the transposition flags
  int st = blas.Sgemm(blas.handle, tb ? 1 : 0, ta ? 1 : 0, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
  if (st != 0) return fail(GQ_ERR_BLAS, "cublasSgemm failed with status %d (M=%d N=%d K=%d)", st, M, N, K);
  return GQ_OK;
}
}  // namespace gq

using namespace gq;

template <typename F>
static bool sym(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

extern "C" {
int gq_abi_version(void) { return GQ_ABI_VERSION; }
const char* gq_last_error(void) { return last_error; }

int gq_device_count(int* n) {
  GQ_CUDA(cudaGetDeviceCount(n));
  return GQ_OK;
}

int gq_device_info(int device, char* name, int name_len, int* cc_major, int* cc_minor, long long* total_mem, int* sm_count) {
  cudaDeviceProp p;
  GQ_CUDA(cudaGetDeviceProperties(&p, device));
  snprintf(name, name_len, "%s", p.name);
  *cc_major = p.major;
  *cc_minor = p.minor;
  *total_mem = (long long)p.totalGlobalMem;
  *sm_count = p.multiProcessorCount;
  return GQ_OK;
}

int gq_init(int device, const char* cublas_path, const char* cusolver_path, int tf32) {
  if (initialized) return GQ_OK;
  GQ_CUDA(cudaSetDevice(device));
  GQ_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int major = 0;
  GQ_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  const char* pdl_env = getenv("GPTQ_PDL");
  pdl = major >= 9 && !(pdl_env && pdl_env[0] == '0');
  // memory pool: keep freed blocks for reuse instead of returning them to the driver
  cudaMemPool_t pool;
  GQ_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
  unsigned long long threshold = ~0ull;
  GQ_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  GQ_CUDA(cudaEventCreate(&t0));
  GQ_CUDA(cudaEventCreate(&t1));

  void* lb = dlopen(cublas_path, RTLD_NOW | RTLD_LOCAL);
  if (!lb) return fail(GQ_ERR_NOLIB, "cannot load cuBLAS from %s: %s", cublas_path, dlerror());
  int (*create)(Handle*) = nullptr;
  int (*setStream)(Handle, cudaStream_t) = nullptr;
  if (!sym(lb, "cublasCreate_v2", create) || !sym(lb, "cublasSetStream_v2", setStream) || !sym(lb, "cublasSetMathMode", blas.SetMathMode) ||
      !sym(lb, "cublasSgemm_v2", blas.Sgemm) || !sym(lb, "cublasSgemmStridedBatched", blas.SgemmStridedBatched) ||
      !sym(lb, "cublasSsyrk_v2", blas.Ssyrk) || !sym(lb, "cublasGemmEx", blas.GemmEx) || !sym(lb, "cublasDtrsm_v2", blas.Dtrsm))
    return fail(GQ_ERR_NOLIB, "%s lacks a cuBLAS symbol we need: %s", cublas_path, dlerror());
  if (create(&blas.handle) != 0) return fail(GQ_ERR_BLAS, "cublasCreate failed (is the GPU usable?)");
  setStream(blas.handle, stream);
  blas.defaultMath = tf32 ? 3 /* CUBLAS_TF32_TENSOR_OP_MATH */ : 0;
  blas.SetMathMode(blas.handle, blas.defaultMath);

  void* ls = dlopen(cusolver_path, RTLD_NOW | RTLD_LOCAL);
  if (!ls) return fail(GQ_ERR_NOLIB, "cannot load cuSOLVER from %s: %s", cusolver_path, dlerror());
  int (*screate)(Handle*) = nullptr;
  int (*ssetStream)(Handle, cudaStream_t) = nullptr;
  if (!sym(ls, "cusolverDnCreate", screate) || !sym(ls, "cusolverDnSetStream", ssetStream) ||
      !sym(ls, "cusolverDnDpotrf_bufferSize", solver.DpotrfBuf) || !sym(ls, "cusolverDnDpotrf", solver.Dpotrf))
    return fail(GQ_ERR_NOLIB, "%s lacks a cuSOLVER symbol we need: %s", cusolver_path, dlerror());
  if (screate(&solver.handle) != 0) return fail(GQ_ERR_BLAS, "cusolverDnCreate failed");
  ssetStream(solver.handle, stream);
  initialized = true;
  return GQ_OK;
}

int gq_malloc(void** p, long long bytes) {
  GQ_CHECK_INIT();
  GQ_CUDA(cudaMallocAsync(p, bytes > 0 ? (size_t)bytes : 1, stream));
  return GQ_OK;
}
int gq_free(void* p) {
  GQ_CHECK_INIT();
  if (p) GQ_CUDA(cudaFreeAsync(p, stream));
  return GQ_OK;
}
int gq_memset(void* p, int value, long long bytes) {
  GQ_CUDA(cudaMemsetAsync(p, value, (size_t)bytes, stream));
  return GQ_OK;
}
int gq_upload(void* dst, const void* host, long long bytes) {
  GQ_CUDA(cudaMemcpyAsync(dst, host, (size_t)bytes, cudaMemcpyHostToDevice, stream));
  // the host buffer belongs to JavaScript and may move or be collected once we return
  GQ_CUDA(cudaStreamSynchronize(stream));
  return GQ_OK;
}
int gq_download(void* host, const void* src, long long bytes) {
  GQ_CUDA(cudaMemcpyAsync(host, src, (size_t)bytes, cudaMemcpyDeviceToHost, stream));
  GQ_CUDA(cudaStreamSynchronize(stream));
  return GQ_OK;
}
int gq_copy(void* dst, const void* src, long long bytes) {
  GQ_CUDA(cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, stream));
  return GQ_OK;
}
int gq_sync(void) {
  GQ_CUDA(cudaStreamSynchronize(stream));
  GQ_CUDA(cudaGetLastError());
  return GQ_OK;
}
// pinned host memory mapped into the device's address space: kernels write it, the host reads it directly
// (the tokens of a pipelined decode, see argmax_next.cu). *dev is the pointer kernels use.
int gq_host_alloc(void** host, void** dev, long long bytes) {
  GQ_CHECK_INIT();
  *host = *dev = nullptr;
  GQ_CUDA(cudaHostAlloc(host, bytes > 0 ? (size_t)bytes : 1, cudaHostAllocMapped));
  cudaError_t e = cudaHostGetDevicePointer(dev, *host, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(*host);
    *host = nullptr;
    return fail(GQ_ERR_CUDA, "cudaHostGetDevicePointer: %s", cudaGetErrorString(e));
  }
  return GQ_OK;
}
int gq_host_free(void* host) {
  if (host) GQ_CUDA(cudaFreeHost(host));
  return GQ_OK;
}
// without waiting: *busy = 1 while queued work remains, 0 when the stream is idle; an error the work met is returned
int gq_query(int* busy) {
  GQ_CHECK_INIT();
  cudaError_t e = cudaStreamQuery(stream);
  if (e == cudaErrorNotReady) { cudaGetLastError(); *busy = 1; return GQ_OK; }
  *busy = 0;
  GQ_CUDA(e);
  return GQ_OK;
}
int gq_mem_info(long long* free_bytes, long long* total_bytes) {
  size_t f, t;
  GQ_CUDA(cudaMemGetInfo(&f, &t));
  *free_bytes = (long long)f;
  *total_bytes = (long long)t;
  return GQ_OK;
}
int gq_timer_start(void) {
  GQ_CUDA(cudaEventRecord(t0, stream));
  return GQ_OK;
}
int gq_timer_stop(float* ms) {
  GQ_CUDA(cudaEventRecord(t1, stream));
  GQ_CUDA(cudaEventSynchronize(t1));
  GQ_CUDA(cudaEventElapsedTime(ms, t0, t1));
  return GQ_OK;
}

// CUDA graphs: everything queued between begin and end is recorded (stream-ordered allocations become graph
// memory nodes), then replayed with one launch. Uploads/downloads (which synchronize) must stay outside.
int gq_graph_begin(void) {
  GQ_CHECK_INIT();
  GQ_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  return GQ_OK;
}
// zero, zero_bytes: set to zero at the start of every replay (a memset node that every first node of the
// captured work depends on: the kernels after it keep their programmatic dependencies on each other)
static cudaError_t zero_first(cudaGraph_t g, void* zero, long long zero_bytes) {
  size_t n = 0;
  cudaError_t e = cudaGraphGetRootNodes(g, nullptr, &n);
  if (e != cudaSuccess) return e;
  std::vector<cudaGraphNode_t> roots(n);
  if (n && (e = cudaGraphGetRootNodes(g, roots.data(), &n)) != cudaSuccess) return e;
  cudaMemsetParams mp = {};
  mp.dst = zero;
  mp.value = 0;
  mp.elementSize = 1;
  mp.width = (size_t)zero_bytes;
  mp.height = 1;
  mp.pitch = 0;
  cudaGraphNode_t m = nullptr;
  if ((e = cudaGraphAddMemsetNode(&m, g, nullptr, 0, &mp)) != cudaSuccess) return e;
  std::vector<cudaGraphNode_t> from(n, m);
  return n ? cudaGraphAddDependencies(g, from.data(), roots.data(), nullptr, n) : cudaSuccess;
}
int gq_graph_end(void** exec, void* zero, long long zero_bytes) {
  GQ_CHECK_INIT();
  *exec = nullptr;
  cudaGraph_t g = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream, &g);
  if (e != cudaSuccess) { cudaGetLastError(); return fail(GQ_ERR_CUDA, "graph capture failed: %s", cudaGetErrorString(e)); }
  if (zero && zero_bytes > 0 && (e = zero_first(g, zero, zero_bytes)) != cudaSuccess) {
    cudaGetLastError();
    cudaGraphDestroy(g);
    return fail(GQ_ERR_CUDA, "graph: the memset of %lld bytes before the captured work: %s", zero_bytes, cudaGetErrorString(e));
  }
  cudaGraphExec_t x = nullptr;
  e = cudaGraphInstantiate(&x, g, 0);
  cudaGraphDestroy(g);
  if (e != cudaSuccess) { cudaGetLastError(); return fail(GQ_ERR_CUDA, "graph instantiate failed: %s", cudaGetErrorString(e)); }
  *exec = x;
  return GQ_OK;
}
int gq_graph_launch(void* exec) {
  GQ_CHECK_INIT();
  GQ_CUDA(cudaGraphLaunch((cudaGraphExec_t)exec, stream));
  return GQ_OK;
}
int gq_graph_free(void* exec) {
  if (exec) GQ_CUDA(cudaGraphExecDestroy((cudaGraphExec_t)exec));
  return GQ_OK;
}

int gq_hgemm_nt(const void* A, const void* B, void* C, int M, int N, int K) {
  GQ_CHECK_INIT();
  float one = 1.f, zero = 0.f;
  // row-major C[M,N] = A[M,K]·B[N,K]ᵀ  ==  column-major Cᵀ = B·Aᵀ (fp16 in/out, fp32 compute)
  int st = blas.GemmEx(blas.handle, 1, 0, N, M, K, &one, B, 2 /*CUDA_R_16F*/, K, A, 2, K, &zero, C, 2, N, 68 /*CUBLAS_COMPUTE_32F*/, -1);
  if (st != 0) return fail(GQ_ERR_BLAS, "cublasGemmEx failed with status %d", st);
  return GQ_OK;
}
}
