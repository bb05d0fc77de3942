// basic.glsl: helpers shared by the basic family's kernels (eltwise.comp,
// norm.comp), for #include.

// Element i of a tensor bound as a uniform texel buffer (RGBA32F or RGBA16F
// view of its memory block) at texel offset off.
float
elem (samplerBuffer b, uint off, uint i)
{
  return texelFetch(b, int(off + (i >> 2)))[i & 3u];
}

// n / d for n < 2^31 with (m, s) from the host (Granlund–Montgomery): no
// integer division, which lavapipe runs lane by lane.
uint
fastdiv (uint n, uint m, uint s)
{
  uint hi, lo;
  umulExtended(n, m, hi, lo);
  return (hi + n) >> s;
}
