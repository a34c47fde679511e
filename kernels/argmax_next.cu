// argmax_next: greedy decoding on the device, the last kernel of a captured decode step.
//   logits [V] -> tok[0] = argmax, ring[pos[0] % ring_size] = argmax (host memory), then pos[0] += 1
// The argmax follows the host's rule (src/generate.ts sampleToken at temperature 0) exactly: best = 0, and
// index i wins when logits[i] > logits[best], so the first of equal maxima wins, NaN never wins, and a NaN at
// index 0 keeps 0. With tok and pos updated on the device, the next replay of the step can be queued before
// the host has seen this token; the host reads the tokens from `ring` (mapped pinned memory, gq_host_alloc).
#include "common.cuh"
#include <climits>

// (v, i) beats (w, j): larger value, or the same value at a lower index; NaN entries were never taken
__device__ __forceinline__ bool beats(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

// the best (v, idx) of the warp, into every lane
__device__ __forceinline__ void warp_argmax(float& v, int& idx) {
  for (int o = 16; o; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffff, v, o);
    const int j = __shfl_xor_sync(0xffffffff, idx, o);
    if (beats(w, j, v, idx)) v = w, idx = j;
  }
}

__global__ void argmax_next_kernel(const float* __restrict__ logits, int V, int* tok, int* pos, int* ring, int ring_size) {
  pdl_wait();  // launched with PDL (gq::launch): the logits come from the kernel before
  __shared__ float sv[32];
  __shared__ int si[32];
  float v = -INFINITY;
  int idx = INT_MAX;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float l = logits[i];
    if (!isnan(l) && beats(l, i, v, idx)) v = l, idx = i;  // (−inf at index i beats the initial (−inf, INT_MAX))
  }
  warp_argmax(v, idx);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) sv[warp] = v, si[warp] = idx;
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    v = lane < nw ? sv[lane] : -INFINITY;
    idx = lane < nw ? si[lane] : INT_MAX;
    warp_argmax(v, idx);
    if (lane == 0) {
      // all NaN but index 0 (or V = 1): idx may be INT_MAX only when every entry is NaN; index 0 NaN: 0
      const int best = (isnan(logits[0]) || idx == INT_MAX) ? 0 : idx;
      const int p = *pos;
      *tok = best;
      *pos = p + 1;
      reinterpret_cast<volatile int*>(ring)[((p % ring_size) + ring_size) % ring_size] = best;
      __threadfence_system();  // the host spins on this slot
    }
  }
}

extern "C" int gq_argmax_next(const float* logits, int V, int* tok, int* pos, int* ring, int ring_size) {
  GQ_CHECK_INIT();
  GQ_ARG(V >= 1, "argmax_next: V must be >= 1, got %d", V);
  GQ_ARG(ring_size >= 1, "argmax_next: ring_size must be >= 1, got %d", ring_size);
  GQ_ARG(logits && tok && pos && ring, "argmax_next: null pointer");
  GQ_CUDA(gq::launch(argmax_next_kernel, 1, 1024, 0, logits, V, tok, pos, ring, ring_size));
  return GQ_OK;
}
