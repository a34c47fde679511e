/*
 * The C ABI of libgptq_cuda: pointers, integers and floats only; every function returns a status
 * (0 = ok) and never exits. gq_last_error() says what went wrong. Device pointers are plain void*.
 * All work is queued on one stream; gq_sync() waits for it.
 */
#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

#define GQ_ABI_VERSION 9
enum { GQ_OK = 0, GQ_ERR_CUDA = 1, GQ_ERR_ARG = 2, GQ_ERR_NOLIB = 3, GQ_ERR_BLAS = 4, GQ_ERR_UNSUPPORTED = 5, GQ_ERR_NOT_INIT = 6 };
enum { GQ_F32 = 0, GQ_F16 = 1, GQ_BF16 = 2 };

int gq_abi_version(void);
const char* gq_last_error(void);

/* runtime */
int gq_device_count(int* n);
int gq_device_info(int device, char* name, int name_len, int* cc_major, int* cc_minor, long long* total_mem, int* sm_count);
int gq_init(int device, const char* cublas_path, const char* cusolver_path, int tf32);
int gq_malloc(void** p, long long bytes);
int gq_free(void* p);
int gq_memset(void* p, int value, long long bytes);
int gq_upload(void* dst, const void* host, long long bytes);
int gq_download(void* host, const void* src, long long bytes);
int gq_copy(void* dst, const void* src, long long bytes);
int gq_sync(void);
int gq_mem_info(long long* free_bytes, long long* total_bytes);
/* pinned host memory that kernels write through *dev and the host reads directly */
int gq_host_alloc(void** host, void** dev, long long bytes);
int gq_host_free(void* host);
/* *busy = 1 while queued work remains, else 0; returns the error queued work met, without waiting */
int gq_query(int* busy);
int gq_timer_start(void);
int gq_timer_stop(float* ms);
/* CUDA graphs: capture what is queued between begin and end, replay it with one launch. zero / zero_bytes
   (optional): device memory set to zero at the start of every replay, before any captured work (one memset
   node the graph's first nodes depend on) */
int gq_graph_begin(void);
int gq_graph_end(void** exec, void* zero, long long zero_bytes);
int gq_graph_launch(void* exec);
int gq_graph_free(void* exec);

/* decoder primitives: row-major, activations f32 */
int gq_convert(float* dst, const void* src, long long n, int dtype);
int gq_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
int gq_add_bias(float* y, const float* bias, int M, int N);
/* fp16 twin of an f32 weight (exact when the values came from halves), and y [M,N] = x [M,K] @ w [N,K]ᵀ with
   that fp16 w for M = 1..4 (fp32 sums; the LM head when decoding) */
int gq_to_half(void* dst, const float* src, long long n);
int gq_half_gemv(float* y, const float* x, const void* w, int M, int N, int K);
int gq_embedding(float* out, const float* table, const int* ids, int T, int H, int V);
int gq_rms_norm(float* out, const float* x, const float* w, int T, int H, float eps);
/* sum = x + r, out = rms_norm(sum, w) (the residual add fused into the next norm) */
int gq_add_rms_norm(float* sum, float* out, const float* x, const float* r, const float* w, int T, int H, float eps);
/* pos_dev / row_dev: optional device ints added to pos0 / row0 when the kernel runs (graph replay) */
/* rope on q [T, heads·hd] and k [T, kvh·hd] in place, then k and v written to rows pos0 (+ *pos_dev) + t of the
   caches kc / vc [rows, kvh·hd]: the decode step's rope and cache writes in one launch */
int gq_rope_kv(float* q, float* k, const float* v, float* kc, float* vc, const float* inv_freq, int T, int heads, int kvh, int hd,
               int pos0, const int* pos_dev, int rows, float scale);
int gq_rope(float* x, const float* inv_freq, int T, int heads, int hd, int pos0, const int* pos_dev, int seq_len, float scale);
int gq_attention(float* out, const float* q, const float* k, const float* v, int T, int pos0, const int* pos_dev, int max_len, int seq_len, int heads, int kv_heads, int hd);
/* gq_rope_kv then gq_attention over the caches (max_len = rows), as one launch for a single query row (decoding);
   q and k are then left as they were, otherwise rotated in place */
int gq_rope_attention(float* out, float* q, float* k, const float* v, float* kc, float* vc, const float* inv_freq, int T, int heads, int kvh, int hd,
                      int pos0, const int* pos_dev, int rows, float rope_scale);
int gq_write_rows(float* dst, const float* src, int row0, const int* row_dev, int rows, int T, int C);
int gq_silu_mul(float* out, const float* g, const float* u, long long n);
int gq_add(float* out, const float* a, const float* b, long long n);
int gq_scale(float* x, float s, long long n);
int gq_log_softmax(float* out, const float* x, int T, int V);
int gq_nll(double* out, const float* logits, const int* targets, int T, int V);
/* greedy decoding on the device: tok[0] = argmax logits[0..V) (first of equal maxima; NaN never wins; NaN at 0
   gives 0), ring[pos[0] % ring_size] = the same (ring: gq_host_alloc's dev pointer), then pos[0] += 1 */
int gq_argmax_next(const float* logits, int V, int* tok, int* pos, int* ring, int ring_size);

/* GPTQ */
int gq_hessian_accumulate(float* H, const float* x, int T, int K);
int gq_diagonal(float* out, const float* H, int n);
int gq_cholesky_inverse_upper(float* H, int n, float damp, int* ok);
int gq_gptq_prepare(float* wt, const float* w, float* H, int rows, int cols);
int gq_quant_params(const float* wt, int rows, int c0, int n, int g, float* scales, float* zeros, int bits, int sym, int mse);
int gq_gptq_permute(float* wt2, float* h2, const float* wt, const float* h, const int* perm, int rows, int cols);
int gq_gptq_block(float* wt, const float* hinv, unsigned char* codes, float* err, float* loss, float* scales, float* zeros,
                  const int* group_of_col, int rows, int cols, int i1, int i2, int group_size, int static_groups, int bits, int sym, int mse);
int gq_gptq_update(float* wt, const float* hinv, const float* err, int rows, int cols, int i1, int i2);
int gq_gptq_finish(float* w, int* qweight, const float* wtq, const unsigned char* codes, const int* perm, int rows, int cols, int bits);

/* packed int matmul. Layouts are the standard GPTQ ones; qm_repack4 builds the fast 4-bit layout. */
int gq_qm_unpack_zeros(float* zeros, const int* qzeros, int groups, int N, int bits, int zero_offset);
int gq_qm_repack4(unsigned int* packed, unsigned int* sz, const int* qweight, const float* scales, const float* zeros,
                  const int* perm, int K, int N, int groups, int group_size);
int gq_qm_matmul4(float* y, const float* x, const unsigned int* packed, const unsigned int* sz, const int* perm,
                  const float* bias, int M, int K, int N, int group_size);
/* one GEMV launch (M <= 4) for 1..3 weights sharing x, K, group size and act-order perm (q/k/v, gate/up):
   ys/packed/sz/bias/Ns are host arrays of count entries (bias may be NULL, or hold NULLs); M > 4: one call each */
int gq_qm_matmul4_many(int count, float* const* ys, const unsigned int* const* packed, const unsigned int* const* sz,
                       const float* const* bias, const int* Ns, const float* x, const int* perm, int M, int K, int group_size);
/* y = (silu(g) · u) @ dequant(W)ᵀ (+ bias) for M <= 4 (the MLP's down projection with its gate fused in) */
int gq_qm_matmul4_gated(float* y, const float* g, const float* u, const unsigned int* packed, const unsigned int* sz, const int* perm,
                        const float* bias, int M, int K, int N, int group_size);
/* decoding (M <= 4) with the residual add and the next RMSNorm fused into the GEMVs around them:
   matmul4_add: y = res + x' @ dequant(W)ᵀ (+ bias), x' = x, or silu(x) · u when u is not NULL; y may be res
   (accumulated in place: a k split across blocks is then added with float atomics, so the last bits of y may
   differ between runs; GPTQ_QV_ATOMIC=0 keeps the deterministic sum). matmul4_many_normed: matmul4_many of
   rmsnorm(x) · nw (eps), the norm's Σ x² taken by the same launch. */
int gq_qm_matmul4_add(float* y, const float* x, const float* u, const float* res, const unsigned int* packed,
                      const unsigned int* sz, const int* perm, const float* bias, int M, int K, int N, int group_size);
int gq_qm_matmul4_many_normed(int count, float* const* ys, const unsigned int* const* packed, const unsigned int* const* sz,
                              const float* const* bias, const int* Ns, const float* x, const int* perm, int M, int K,
                              int group_size, const float* nw, float eps);
/* zero / bytes: device memory that is zero when the work queued from now on runs (a graph's range zeroed at each
   replay, see gq_graph_end; NULL, 0: none). A GEMV (M <= 4) whose outputs all lie in it adds the sums of a k
   split across blocks into them with float atomics (no partial sums, arrival counter or cluster; the last
   bits of y may then differ between runs); GPTQ_QV_ZEROED=0: not. The range's first GQ_QM_SCRATCH bytes are the
   library's scratch (zero at each replay like the rest; the caller puts nothing there). */
#define GQ_QM_SCRATCH 16384
int gq_qm_zeroed(void* zero, long long bytes);
int gq_qm_matmul_generic(float* y, const float* x, const int* qweight, const float* scales, const float* zeros,
                         const int* g_idx, const float* bias, int M, int K, int N, int bits);
int gq_qm_dequant(float* w, const int* qweight, const float* scales, const float* zeros, const int* g_idx, int K, int N, int bits);

/* benchmark baseline: C[M,N] = A[M,K] · B[N,K]ᵀ in fp16 through cuBLAS (fp32 accumulate) */
int gq_hgemm_nt(const void* A, const void* B, void* C, int M, int N, int K);

#ifdef __cplusplus
}
#endif
