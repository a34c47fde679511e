// reduce: the sum or the maximum of one value per invocation over a workgroup of n invocations (n a power of two,
// n <= 256), the same result in every invocation. Prepended to the shaders that reduce (rms_norm, log_softmax,
// attention); call from uniform control flow, every invocation with its local index li < n.
//   wg_sum(v, li, n) = Σ v    wg_max(v, li, n) = max v    (through wred4; it may be reused right after)
// wg_sum4, wg_max4: the same for four values per invocation at once (vec4: e.g. four query rows), each
// component reduced on its own; the scalar forms are their first component (one implementation: the scalar
// reductions are not where the time goes).
fn wg_sum(v: f32, li: u32, n: u32) -> f32 { return wg_reduce4(vec4<f32>(v, 0.0, 0.0, 0.0), li, n, false).x; }
fn wg_max(v: f32, li: u32, n: u32) -> f32 { return wg_reduce4(vec4<f32>(v, 0.0, 0.0, 0.0), li, n, true).x; }
var<workgroup> wred4: array<vec4<f32>, 256>;
fn wg_sum4(v: vec4<f32>, li: u32, n: u32) -> vec4<f32> { return wg_reduce4(v, li, n, false); }
fn wg_max4(v: vec4<f32>, li: u32, n: u32) -> vec4<f32> { return wg_reduce4(v, li, n, true); }

//#if subgroups
// With subgroups (one barrier before the read where the tree takes log2(n)): every subgroup reduces its own values and its
// lowest invocation posts the result and the subgroup's count of invocations c in its own slot (every other
// slot holds the identity and 0). After the barrier every subgroup first reads only the slots at multiples of c
// (where the leaders sit when subgroups are consecutive runs of c invocations, as on every driver seen): if the
// counts found there add up to n, every subgroup was found; else it reads all n slots, its invocations in rank
// order. So nothing is assumed about which invocations share a subgroup, how many, or whether it is full, and
// the common case reads n/c slots instead of n. The closing barrier keeps a following call from writing slots
// still being read.
var<workgroup> wcnt: array<u32, 256>;
override SG_ALL_SLOTS: u32 = 0u;  // 1: always read all n slots (tests: useShaderFeatures({ sgAllSlots: true }))
fn wg_reduce4(v: vec4<f32>, li: u32, n: u32, is_max: bool) -> vec4<f32> {
  let ident = vec4<f32>(select(0.0, -3.4e38, is_max));
  let s = select(subgroupAdd(v), subgroupMax(v), is_max);
  let c = subgroupAdd(1u);
  let rk = subgroupExclusiveAdd(1u);
  let lead = li == subgroupMin(li);
  wred4[li] = select(ident, s, lead);
  wcnt[li] = select(0u, c, lead);
  workgroupBarrier();
  var t = ident;
  var found = 0u;
  for (var i = rk * c; i < n; i += c * c) {
    t = select(t + wred4[i], max(t, wred4[i]), is_max);
    found += wcnt[i];
  }
  if (subgroupAdd(found) != n || SG_ALL_SLOTS != 0u) {  // (the same in the whole subgroup)
    t = ident;
    for (var i = rk; i < n; i += c) { t = select(t + wred4[i], max(t, wred4[i]), is_max); }
  }
  let r = select(subgroupAdd(t), subgroupMax(t), is_max);
  workgroupBarrier();
  return r;
}
//#else
// Without: a tree in workgroup memory.
fn wg_reduce4(v: vec4<f32>, li: u32, n: u32, is_max: bool) -> vec4<f32> {
  wred4[li] = v;
  workgroupBarrier();
  for (var s = n / 2u; s > 0u; s >>= 1u) {
    if (li < s) { wred4[li] = select(wred4[li] + wred4[li + s], max(wred4[li], wred4[li + s]), is_max); }
    workgroupBarrier();
  }
  let r = wred4[0];
  workgroupBarrier();
  return r;
}
//#endif
