// reduce: the sum or the maximum of one value per invocation over a workgroup of n invocations (n a power of two,
// n <= 256), the same result in every invocation. Prepended to the shaders that reduce (rms_norm, log_softmax,
// attention); call from uniform control flow, every invocation with its local index li < n.
//   wg_sum(v, li, n) = Σ v    wg_max(v, li, n) = max v    (values in wred are overwritten; it may be reused after)
var<workgroup> wred: array<f32, 256>;

fn wg_sum(v: f32, li: u32, n: u32) -> f32 { return wg_reduce(v, li, n, false); }
fn wg_max(v: f32, li: u32, n: u32) -> f32 { return wg_reduce(v, li, n, true); }

//#if subgroups
// With subgroups (one barrier where the tree takes log2(n) + 1): every subgroup reduces its own values and its
// lowest invocation posts the result in its own slot of wred (every other slot holds the identity); after the
// barrier every subgroup reduces the n slots itself, its invocations in rank order over every c-th slot (c: the
// subgroup's count of invocations), so nothing is assumed about which invocations share a subgroup, how many, or
// whether it is full. The closing barrier keeps a following call from writing slots still being read.
fn wg_reduce(v: f32, li: u32, n: u32, is_max: bool) -> f32 {
  let ident = select(0.0, -3.4e38, is_max);
  let s = select(subgroupAdd(v), subgroupMax(v), is_max);
  wred[li] = select(ident, s, li == subgroupMin(li));
  workgroupBarrier();
  let c = subgroupAdd(1u);
  var t = ident;
  for (var i = subgroupExclusiveAdd(1u); i < n; i += c) { t = select(t + wred[i], max(t, wred[i]), is_max); }
  let r = select(subgroupAdd(t), subgroupMax(t), is_max);
  workgroupBarrier();
  return r;
}
//#else
// Without: a tree in workgroup memory.
fn wg_reduce(v: f32, li: u32, n: u32, is_max: bool) -> f32 {
  wred[li] = v;
  workgroupBarrier();
  for (var s = n / 2u; s > 0u; s >>= 1u) {
    if (li < s) { wred[li] = select(wred[li] + wred[li + s], max(wred[li], wred[li + s]), is_max); }
    workgroupBarrier();
  }
  let r = wred[0];
  workgroupBarrier();
  return r;
}
//#endif

// The same for four values per invocation at once (vec4: e.g. four query rows), each component reduced on its own.
var<workgroup> wred4: array<vec4<f32>, 256>;
fn wg_sum4(v: vec4<f32>, li: u32, n: u32) -> vec4<f32> { return wg_reduce4(v, li, n, false); }
fn wg_max4(v: vec4<f32>, li: u32, n: u32) -> vec4<f32> { return wg_reduce4(v, li, n, true); }
//#if subgroups
fn wg_reduce4(v: vec4<f32>, li: u32, n: u32, is_max: bool) -> vec4<f32> {
  let ident = vec4<f32>(select(0.0, -3.4e38, is_max));
  let s = select(subgroupAdd(v), subgroupMax(v), is_max);
  wred4[li] = select(ident, s, li == subgroupMin(li));
  workgroupBarrier();
  let c = subgroupAdd(1u);
  var t = ident;
  for (var i = subgroupExclusiveAdd(1u); i < n; i += c) { t = select(t + wred4[i], max(t, wred4[i]), is_max); }
  let r = select(subgroupAdd(t), subgroupMax(t), is_max);
  workgroupBarrier();
  return r;
}
//#else
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
