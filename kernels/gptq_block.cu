// The GPTQ kernels on the transposed weight Wt [cols, rows] (a column of W is a contiguous row of Wt):
//   gptq_prepare  W [rows, cols] -> Wt, dead inputs (H[d,d] == 0 -> 1, Wt[d] = 0)
//   quant_params  group scale/zero per output row over Wt[c0, c0+n)  (quant.py find_params, optional MSE)
//   gptq_permute  act-order: Wt[perm], H[perm][:, perm]
//   gptq_block    the fused column loop of one block of <= 128 columns, one thread per output row
//   gptq_update   Wt[i2:] -= Hinv[i1:i2, i2:]ᵀ · Err   (cuBLAS)
//   gptq_finish   dequantized W [rows, cols] in the original order + codes packed as the standard qweight
#include "common.cuh"

#define GQ_BLOCK 128

// quant.py Quantizer.find_params (weight=True, per channel) for one row over n values at stride `stride`
__device__ void find_params(const float* x, long long stride, int n, int bits, int sym, int mse, float* s_out, float* z_out) {
  const int maxq = (1 << bits) - 1;
  float xmin = 0.f, xmax = 0.f;
  for (int j = 0; j < n; j++) { float v = x[j * stride]; xmin = fminf(xmin, v); xmax = fmaxf(xmax, v); }
  if (sym) { xmax = fmaxf(fabsf(xmin), xmax); if (xmin < 0.f) xmin = -xmax; }
  if (xmin == 0.f && xmax == 0.f) { xmin = -1.f; xmax = 1.f; }
  float scale = (xmax - xmin) / maxq;
  float zero = sym ? (maxq + 1) / 2.f : rintf(-xmin / scale);
  if (mse) {
    float best = INFINITY;
    for (int i = 0; i < 80; i++) {
      float p = 1.f - i / 100.f;
      float xmin1 = p * xmin, xmax1 = p * xmax;
      float s1 = (xmax1 - xmin1) / maxq;
      float z1 = sym ? zero : rintf(-xmin1 / s1);
      float err = 0.f;
      for (int j = 0; j < n; j++) {
        float v = x[j * stride];
        float q = fminf(fmaxf(rintf(v / s1) + z1, 0.f), (float)maxq);
        err += powf(fabsf(s1 * (q - z1) - v), 2.4f);
      }
      if (err < best) { best = err; scale = s1; zero = z1; }
    }
  }
  *s_out = scale;
  *z_out = zero;
}

__global__ void dead_kernel(int* dead, float* H, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  int d = 0;
  if (H) { float* hd = H + (long long)c * cols + c; if (*hd == 0.f) { *hd = 1.f; d = 1; } }
  dead[c] = d;
}
// W [rows, cols] -> Wt [cols, rows], 32x32 tiles through shared memory
__global__ void transpose_dead_kernel(float* wt, const float* w, const int* dead, int rows, int cols) {
  __shared__ float tile[32][33];
  int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = w[(long long)r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) wt[(long long)c * rows + r] = dead[c] ? 0.f : tile[threadIdx.x][i];
  }
}

__global__ void quant_params_kernel(const float* wt, int rows, int c0, int n, int g, float* scales, float* zeros, int bits, int sym, int mse) {
  int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float s, z;
  find_params(wt + (long long)c0 * rows + r, rows, n, bits, sym, mse, &s, &z);
  scales[(long long)g * rows + r] = s;
  zeros[(long long)g * rows + r] = z;
}

__global__ void permute_rows_kernel(float* dst, const float* src, const int* perm, int n_rows, int row_len) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n_rows * row_len) return;
  int i = idx / row_len, j = idx % row_len;
  dst[idx] = src[(long long)perm[i] * row_len + j];
}
__global__ void permute_sym_kernel(float* dst, const float* src, const int* perm, int n) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)n * n) return;
  int i = idx / n, j = idx % n;
  dst[idx] = src[(long long)perm[i] * n + perm[j]];
}

// one thread per output row; the block's <= 128 values of the row live in registers (unrolled, constant indices)
__global__ void __launch_bounds__(128) gptq_block_kernel(float* wt, const float* __restrict__ hinv, unsigned char* codes, float* err, float* loss,
                                                         float* scales, float* zeros, const int* goc, int rows, int cols, int i1, int i2,
                                                         int gs, int static_groups, int bits, int sym, int mse) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const int cnt = i2 - i1;
  const float maxq = (float)((1 << bits) - 1);
  float w[GQ_BLOCK];
#pragma unroll
  for (int i = 0; i < GQ_BLOCK; i++) w[i] = i < cnt ? wt[(long long)(i1 + i) * rows + r] : 0.f;
  float l = 0.f;
#pragma unroll
  for (int i = 0; i < GQ_BLOCK; i++) {
    if (i < cnt) {
      const int c = i1 + i;
      int g;
      if (!static_groups) {
        g = c / gs;
        // a group starts: params from Wt as it was at block start (global memory is written back only at the end)
        if (c % gs == 0) {
          float s, z;
          const int n = min(gs, cols - c);
          find_params(wt + (long long)c * rows + r, rows, n, bits, sym, mse, &s, &z);
          scales[(long long)g * rows + r] = s;
          zeros[(long long)g * rows + r] = z;
        }
      } else {
        g = goc[c];
      }
      const float s = scales[(long long)g * rows + r], z = zeros[(long long)g * rows + r];
      const float d = hinv[(long long)c * cols + c];
      const float x = w[i];
      const float q = fminf(fmaxf(rintf(x / s) + z, 0.f), maxq);
      const float dq = s * (q - z);
      codes[(long long)c * rows + r] = (unsigned char)q;
      const float e = (x - dq) / d;
      l += (x - dq) * (x - dq) / (d * d) / 2.f;
      err[(long long)i * rows + r] = e;
      w[i] = dq;
      const float* hrow = hinv + (long long)c * cols + i1;
#pragma unroll
      for (int j = i + 1; j < GQ_BLOCK; j++) if (j < cnt) w[j] -= e * __ldg(hrow + j);
    }
  }
#pragma unroll
  for (int i = 0; i < GQ_BLOCK; i++) if (i < cnt) wt[(long long)(i1 + i) * rows + r] = w[i];
  loss[r] += l;
}

__global__ void invert_perm_kernel(int* inv, const int* perm, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) inv[perm[i]] = i;
}
// w [rows, cols]: w[r, perm[i]] = wtq[i, r]
__global__ void finish_weight_kernel(float* w, const float* wtq, const int* inv, int rows, int cols) {
  __shared__ float tile[32][33];
  int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;  // c: original column
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = wtq[(long long)(inv ? inv[c] : c) * rows + r];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    int r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) w[(long long)r * cols + c] = tile[threadIdx.x][i];
  }
}
// qweight [words, rows]: word wd of column r holds the bit stream of codes k (original order), value k at bit k·bits
__global__ void pack_kernel(int* qweight, const unsigned char* codes, const int* inv, int rows, int cols, int words, int bits) {
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)words * rows) return;
  const int wd = idx / rows, r = idx % rows;
  const int b0 = wd * 32;
  const int k0 = b0 / bits, k1 = (b0 + 32 + bits - 1) / bits;
  unsigned int word = 0;
  for (int k = k0; k < k1; k++) {
    unsigned int v = k < cols ? codes[(long long)(inv ? inv[k] : k) * rows + r] : 0u;
    int shift = k * bits - b0;
    word |= shift >= 0 ? v << shift : v >> (-shift);
  }
  qweight[idx] = (int)word;
}

extern "C" {
int gq_gptq_prepare(float* wt, const float* w, float* H, int rows, int cols) {
  GQ_CHECK_INIT();
  int* dead = (int*)gq::scratch(sizeof(int) * (cols > 0 ? cols : 1));
  if (!dead) return gq::fail(GQ_ERR_CUDA, "gptq_prepare: out of device memory");
  dead_kernel<<<blocks_for(cols, 256), 256, 0, gq::stream>>>(dead, H, cols);
  transpose_dead_kernel<<<dim3((cols + 31) / 32, (rows + 31) / 32), dim3(32, 8), 0, gq::stream>>>(wt, w, dead, rows, cols);
  gq::release(dead);
  GQ_LAUNCHED("gptq_prepare");
  return GQ_OK;
}
int gq_quant_params(const float* wt, int rows, int c0, int n, int g, float* scales, float* zeros, int bits, int sym, int mse) {
  GQ_CHECK_INIT();
  quant_params_kernel<<<blocks_for(rows, 128), 128, 0, gq::stream>>>(wt, rows, c0, n, g, scales, zeros, bits, sym, mse);
  GQ_LAUNCHED("quant_params");
  return GQ_OK;
}
int gq_gptq_permute(float* wt2, float* h2, const float* wt, const float* h, const int* perm, int rows, int cols) {
  GQ_CHECK_INIT();
  permute_rows_kernel<<<blocks_for((long long)rows * cols, 256), 256, 0, gq::stream>>>(wt2, wt, perm, cols, rows);
  permute_sym_kernel<<<blocks_for((long long)cols * cols, 256), 256, 0, gq::stream>>>(h2, h, perm, cols);
  GQ_LAUNCHED("gptq_permute");
  return GQ_OK;
}
int gq_gptq_block(float* wt, const float* hinv, unsigned char* codes, float* err, float* loss, float* scales, float* zeros,
                  const int* goc, int rows, int cols, int i1, int i2, int gs, int static_groups, int bits, int sym, int mse) {
  GQ_CHECK_INIT();
  GQ_ARG(i2 - i1 > 0 && i2 - i1 <= GQ_BLOCK, "gptq_block: block [%d, %d) must hold 1..%d columns", i1, i2, GQ_BLOCK);
  GQ_ARG(bits >= 1 && bits <= 8, "gptq_block: bits %d outside 1..8", bits);
  gptq_block_kernel<<<blocks_for(rows, 128), 128, 0, gq::stream>>>(wt, hinv, codes, err, loss, scales, zeros, goc, rows, cols, i1, i2, gs, static_groups, bits, sym, mse);
  GQ_LAUNCHED("gptq_block");
  return GQ_OK;
}
int gq_gptq_update(float* wt, const float* hinv, const float* err, int rows, int cols, int i1, int i2) {
  GQ_CHECK_INIT();
  if (i2 >= cols) return GQ_OK;
  // Wt[i2:, :] [cols-i2, rows] -= Hinv[i1:i2, i2:]ᵀ [cols-i2, i2-i1] · err [i2-i1, rows], in full fp32 (not TF32)
  gq::blas.SetMathMode(gq::blas.handle, 0);
  int rc = gq::gemm_rm(true, false, cols - i2, rows, i2 - i1, -1.f, hinv + (long long)i1 * cols + i2, cols, err, rows, 1.f, wt + (long long)i2 * rows, rows);
  gq::blas.SetMathMode(gq::blas.handle, gq::blas.defaultMath);
  return rc;
}
int gq_gptq_finish(float* w, int* qweight, const float* wtq, const unsigned char* codes, const int* perm, int rows, int cols, int bits) {
  GQ_CHECK_INIT();
  int* inv = nullptr;
  if (perm) {
    inv = (int*)gq::scratch(sizeof(int) * cols);
    if (!inv) return gq::fail(GQ_ERR_CUDA, "gptq_finish: out of device memory");
    invert_perm_kernel<<<blocks_for(cols, 256), 256, 0, gq::stream>>>(inv, perm, cols);
  }
  finish_weight_kernel<<<dim3((cols + 31) / 32, (rows + 31) / 32), dim3(32, 8), 0, gq::stream>>>(w, wtq, inv, rows, cols);
  const int words = (cols + 31) / 32 * bits;
  pack_kernel<<<blocks_for((long long)words * rows, 256), 256, 0, gq::stream>>>(qweight, codes, inv, rows, cols, words, bits);
  gq::release(inv);
  GQ_LAUNCHED("gptq_finish");
  return GQ_OK;
}
}
