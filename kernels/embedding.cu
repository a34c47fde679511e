// embedding: table [V,H], ids [T] (device) -> out [T,H]
#include "common.cuh"

__global__ void embedding_kernel(float* out, const float* table, const int* ids, int T, int H, int V) {
  pdl_launch_dependents();
  pdl_wait();  // launched with PDL (gq::launch)
  int t = blockIdx.x;
  int id = ids[t];
  if (id < 0 || id >= V) id = 0;  // validated on the host
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[(long long)t * H + i] = table[(long long)id * H + i];
}

extern "C" int gq_embedding(float* out, const float* table, const int* ids, int T, int H, int V) {
  GQ_CHECK_INIT();
  if (T == 0) return GQ_OK;
  GQ_CUDA(gq::launch(embedding_kernel, T, 128, 0, out, table, ids, T, H, V));
  return GQ_OK;
}
