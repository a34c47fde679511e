// copy: dst = src as vec4<u32>, one per thread (tensors whose size is a multiple of 16 bytes; also the
// benchmarks' copy-bandwidth baseline). On NVIDIA's Vulkan driver it moves about twice what
// copyBufferToBuffer does.
struct P { n4: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x + g.y * p.nx;
  if (i < p.n4) { dst[i] = src[i]; }
}
