// bench_copy: dst = src as vec4<u32>, one per thread (the benchmarks' copy-bandwidth baseline: a shader copy
// reaches more of the card's bandwidth than copyBufferToBuffer does through some Vulkan drivers)
struct P { n4: u32, nx: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x + g.y * p.nx;
  if (i < p.n4) { dst[i] = src[i]; }
}
