// act.glsl: the activations of RvAct (same numbering), for #include by kernels
// that fuse an activation. vec4 in, vec4 out.

#define ACT_NONE 0
#define ACT_SILU 1
#define ACT_GELU 2
#define ACT_QUICK_GELU 3

// erf with at most ~7e-8 absolute error in f32 (GLSL has none). For |x| < 0.921875,
// erf(x) = x + x·P(x²); above, erf(x) = 1 − exp(Q(x) − x²) with Q ≈ log(erfcx(x)),
// clamped at 3.921875 where erfc(x) < 5e-8. Both polynomials are minimax fits
// (degree 6 in x², degree 6 in x) with f32 coefficients.
vec4
rv_erf (vec4 x)
{
  vec4 s = x * x;
  vec4 p = vec4(8.3981104e-05);
  p = fma(p, s, vec4(-8.1498927e-04));
  p = fma(p, s, vec4(5.2017253e-03));
  p = fma(p, s, vec4(-2.6859706e-02));
  p = fma(p, s, vec4(1.1283702e-01));
  p = fma(p, s, vec4(-3.7612635e-01));
  p = fma(p, s, vec4(1.2837917e-01));
  vec4 small = fma(p, x, x);

  vec4 t = min(abs(x), vec4(3.921875));
  vec4 q = vec4(1.947382e-04);
  q = fma(q, t, vec4(-3.0316352e-03));
  q = fma(q, t, vec4(2.218153e-02));
  q = fma(q, t, vec4(-1.0383917e-01));
  q = fma(q, t, vec4(3.6271453e-01));
  q = fma(q, t, vec4(-1.1276156e+00));
  q = fma(q, t, vec4(-2.0987727e-04));
  vec4 large = sign(x) * (1.0 - exp(fma(-t, t, q)));

  return mix(large, small, lessThan(abs(x), vec4(0.921875)));
}

vec4
rv_act (vec4 v, uint act)
{
  if (act == ACT_SILU)
    return v / (1.0 + exp(-v));
  if (act == ACT_GELU)
    return 0.5 * v * (1.0 + rv_erf(v * 0.70710678118654752));
  if (act == ACT_QUICK_GELU)
    return v / (1.0 + exp(-1.702 * v));
  return v;
}
