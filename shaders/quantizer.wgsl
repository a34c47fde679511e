// shared by gptq_block and quant_params (prepended to them): quant.py Quantizer.find_params for one output
// row over n values of Wt at stride `stride`, and the round-half-even quantizer.

// a / b correctly rounded (Markstein: the quotient corrected by its exact residual through an FMA). Vulkan lets
// a driver's division be 2.5 ulp off (NVIDIA's is): weights stored in 16-bit floats land exactly on .5 between two
// codes often enough (0.13% of the codes of a real checkpoint) that an inexact quotient moves them to the other
// code, and the codes would depend on the GPU.
fn div_rn(a: f32, b: f32) -> f32 {
  let q = a / b;
  return fma(fma(-q, b, a), 1.0 / b, q);
}
fn find_params(base: u32, stride: u32, n: u32, bits: u32, sym: u32, mse: u32) -> vec2f {
  let maxq = f32((1u << bits) - 1u);
  var xmin = 0.0;
  var xmax = 0.0;
  for (var j = 0u; j < n; j++) { let v = wt[base + j * stride]; xmin = min(xmin, v); xmax = max(xmax, v); }
  if (sym != 0u) { xmax = max(abs(xmin), xmax); if (xmin < 0.0) { xmin = -xmax; } }
  if (xmin == 0.0 && xmax == 0.0) { xmin = -1.0; xmax = 1.0; }
  var scale = div_rn(xmax - xmin, maxq);
  var zero = select(round(div_rn(-xmin, scale)), (maxq + 1.0) / 2.0, sym != 0u);
  if (mse != 0u) {
    var best = 3.0e38;
    for (var i = 0u; i < 80u; i++) {
      let pp = 1.0 - div_rn(f32(i), 100.0);
      let xmin1 = pp * xmin;
      let xmax1 = pp * xmax;
      let s1 = div_rn(xmax1 - xmin1, maxq);
      let z1 = select(round(div_rn(-xmin1, s1)), zero, sym != 0u);
      var err = 0.0;
      for (var j = 0u; j < n; j++) {
        let v = wt[base + j * stride];
        let q = clamp(round(div_rn(v, s1)) + z1, 0.0, maxq);
        err += pow(abs(s1 * (q - z1) - v), 2.4);
      }
      if (err < best) { best = err; scale = s1; zero = z1; }
    }
  }
  return vec2f(scale, zero);
}
