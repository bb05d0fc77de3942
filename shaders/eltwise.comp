#version 450
// eltwise.comp: ops that compute each vec4 of y on its own. One source, one
// module per mode (-D):
//   ARITH     y = act (((x·alpha + beta)·p + q)·m + n): affine, activations,
//             add/mul with broadcasting, scale-shift (p entering as 1 + p);
//             with P_PRELU the p step is a PReLU instead (x < 0: x·p).
//             x, m, n have y's element count; p, q are broadcast to y through
//             strides over y's dims collapsed to 4.
//   RESAMPLE  (B, H, W, C) -> (B, Ho, Wo, C): nearest (torch's source index) or
//             2×2 average pooling; and the pixel shuffle (B, H, W, C·r²) ->
//             (B, H·r, W·r, C) and its inverse, channel-last.
//   CONCAT    y (outer, ya + yb) from a (outer, ya) and b (outer, yb).
//   EMBED     y (N, C) = table[ids].
// Inputs are uniform texel buffers (RGBA32F or RGBA16F views of the whole
// memory block, so f16 operands need no variant and reads are vec4 fetches);
// y is written as vec4s, PER of them per invocation, and may be bound in
// slices (base = the slice's first vec4).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

#include "act.glsl"
#include "basic.glsl"

layout(local_size_x_id = 0) in;
// The innermost dim (in elements) is a multiple of 4, so the 4 elements of a
// vec4 of y share their outer coordinates; otherwise each is indexed alone.
layout(constant_id = 1) const bool VEC = true;

const uint PER = 8u;

#define PUSH_HEADER \
  uint n4;        /* vec4s of y in this slice */ \
  uint base;      /* first vec4 of the slice */ \
  uint numel;     /* elements of y */ \
  uint groups_x;  /* workgroups per grid row */

layout(std430, binding = 0) writeonly buffer Y { vec4 y[]; };

#if defined(ARITH)
layout(constant_id = 2) const uint FLAGS = 0;
layout(constant_id = 3) const uint ACT = ACT_NONE;
layout(constant_id = 4) const uint NDIMS = 4;   // collapsed dims in use
const uint HAS_P = 1u, P_PLUS_ONE = 2u, HAS_Q = 4u, HAS_M = 8u, HAS_N = 16u;
const uint P_ROW = 32u, Q_ROW = 64u;   // constant along y's innermost dim
const uint P_PRELU = 128u;
layout(binding = 1) uniform samplerBuffer X;
layout(binding = 2) uniform samplerBuffer P;
layout(binding = 3) uniform samplerBuffer Q;
layout(binding = 4) uniform samplerBuffer M;
layout(binding = 5) uniform samplerBuffer N;
layout(push_constant) uniform Push {
  PUSH_HEADER
  float alpha, beta;
  uint xo, mo, no, po, qo;   // texel offsets
  uint pad0;
  uvec4 dims;     // collapsed y dims, outermost first
  uvec4 magic;    // fast division by dims.w, .z, .y; .w = the three shifts, 8 bits each
  uvec4 ps, qs;   // element strides of p and q per collapsed dim
};
#elif defined(RESAMPLE)
const uint MODE_NEAREST = 0u, MODE_POOL = 1u, MODE_SHUFFLE = 2u, MODE_UNSHUFFLE = 3u;
layout(constant_id = 2) const uint MODE = MODE_NEAREST;
const bool POOL = MODE == MODE_POOL;
const uint NDIMS = 4;
layout(binding = 1) uniform samplerBuffer X;
layout(push_constant) uniform Push {
  PUSH_HEADER
  uint xo;
  uint h, w;          // input size
  float sy, sx;       // nearest: (float) in / out, as torch computes it
  uint r;             // shuffles: the factor
  uint cin;           // shuffles: input channels
  uint pad0;
  uvec4 dims;         // (B, Ho, Wo, C) in units of one item (vec4 or element)
  uvec4 magic;
};
#elif defined(CONCAT)
layout(binding = 1) uniform samplerBuffer A;
layout(binding = 2) uniform samplerBuffer B;
layout(push_constant) uniform Push {
  PUSH_HEADER
  uint ao, bo;
  uint ya, yb;        // elements per outer index from a and from b
  uint ymagic, yshift;
};
#elif defined(EMBED)
layout(binding = 1) uniform samplerBuffer T;
layout(std430, binding = 2) readonly buffer Ids { int ids[]; };
layout(push_constant) uniform Push {
  PUSH_HEADER
  uint to;
  uint rows;          // V
  uint cols;          // C
  uint cmagic, cshift;
};
#endif

#if defined(ARITH) || defined(RESAMPLE)
// Index e over dims -> coordinates, outermost first; only the innermost
// NDIMS dims are split (the others are 1).
uvec4
coords (uint e)
{
  uvec4 c = uvec4(0u, 0u, 0u, e);
  if (NDIMS < 2u)
    return c;
  uint q = fastdiv(e, magic.x, magic.w & 31u);
  c.w = e - q * dims.w;
  c.z = q;
  if (NDIMS < 3u)
    return c;
  uint q2 = fastdiv(q, magic.y, (magic.w >> 8) & 31u);
  c.z = q - q2 * dims.z;
  c.y = q2;
  if (NDIMS < 4u)
    return c;
  c.x = fastdiv(q2, magic.z, (magic.w >> 16) & 31u);
  c.y = q2 - c.x * dims.y;
  return c;
}
#endif

#if defined(ARITH)
// p and q for the 4 elements of y's vec4 number i, from their coordinates
// computed once.
void
operands (uint i, out vec4 p, out vec4 q)
{
  const bool BP = (FLAGS & HAS_P) != 0u, BQ = (FLAGS & HAS_Q) != 0u;
  p = vec4(0.0);
  q = vec4(0.0);
  if (!BP && !BQ)
    return;
  if (VEC)
    {
      uvec4 c = coords(i * 4u);
      uint jp = c.x * ps.x + c.y * ps.y + c.z * ps.z + c.w * ps.w;
      uint jq = c.x * qs.x + c.y * qs.y + c.z * qs.z + c.w * qs.w;
      if (BP)
        p = (FLAGS & P_ROW) != 0u ? vec4(elem(P, po, jp)) : texelFetch(P, int(po + (jp >> 2)));
      if (BQ)
        q = (FLAGS & Q_ROW) != 0u ? vec4(elem(Q, qo, jq)) : texelFetch(Q, int(qo + (jq >> 2)));
      return;
    }
  [[unroll]] for (uint k = 0; k < 4u; k++)
    {
      uvec4 c = coords(min(i * 4u + k, numel - 1u));
      if (BP)
        p[k] = elem(P, po, c.x * ps.x + c.y * ps.y + c.z * ps.z + c.w * ps.w);
      if (BQ)
        q[k] = elem(Q, qo, c.x * qs.x + c.y * qs.y + c.z * qs.z + c.w * qs.w);
    }
}

vec4
item (uint i)
{
  vec4 v = texelFetch(X, int(xo + i)) * alpha + beta;
  vec4 p, q;
  operands(i, p, q);
  if ((FLAGS & P_PRELU) != 0u)
    v = mix(v * p, v, greaterThanEqual(v, vec4(0.0)));
  else if ((FLAGS & HAS_P) != 0u)
    v = (FLAGS & P_PLUS_ONE) != 0u ? fma(v, p, v) : v * p;
  if ((FLAGS & HAS_Q) != 0u)
    v += q;
  if ((FLAGS & HAS_M) != 0u)
    v *= texelFetch(M, int(mo + i));
  if ((FLAGS & HAS_N) != 0u)
    v += texelFetch(N, int(no + i));
  return rv_act(v, ACT);
}

#elif defined(RESAMPLE)
// Source item of output coordinates c (+ dy, dx for pooling), in units.
uint
source (uvec4 c, uint dy, uint dx)
{
  uint iy, ix;
  if (MODE == MODE_SHUFFLE)
    {
      // y (b, Y, X, c) <- x (b, Y / r, X / r, c·r² + (Y % r)·r + X % r)
      uint i = c.y % r, j = c.z % r;
      return ((c.x * h + c.y / r) * w + c.z / r) * cin + (c.w * r + i) * r + j;
    }
  if (MODE == MODE_UNSHUFFLE)
    {
      // y (b, h, w, c·r² + i·r + j) <- x (b, h·r + i, w·r + j, c)
      uint rr = r * r, ch = c.w / rr, k = c.w - ch * rr, i = k / r, j = k - i * r;
      return ((c.x * h + c.y * r + i) * w + c.z * r + j) * cin + ch;
    }
  if (POOL)
    {
      iy = 2u * c.y + dy;
      ix = 2u * c.z + dx;
    }
  else
    {
      iy = min(uint(floor(float(c.y) * sy)), h - 1u);
      ix = min(uint(floor(float(c.z) * sx)), w - 1u);
    }
  return ((c.x * h + iy) * w + ix) * dims.w + c.w;
}

vec4
item (uint i)
{
  if (VEC)
    {
      uvec4 c = coords(i);
      if (!POOL)
        return texelFetch(X, int(xo + source(c, 0u, 0u)));
      vec4 s = texelFetch(X, int(xo + source(c, 0u, 0u))) + texelFetch(X, int(xo + source(c, 0u, 1u)))
             + texelFetch(X, int(xo + source(c, 1u, 0u))) + texelFetch(X, int(xo + source(c, 1u, 1u)));
      return s * 0.25;
    }
  vec4 v;
  [[unroll]] for (uint k = 0; k < 4u; k++)
    {
      uvec4 c = coords(min(i * 4u + k, numel - 1u));
      if (!POOL)
        v[k] = elem(X, xo, source(c, 0u, 0u));
      else
        v[k] = (elem(X, xo, source(c, 0u, 0u)) + elem(X, xo, source(c, 0u, 1u))
                + elem(X, xo, source(c, 1u, 0u)) + elem(X, xo, source(c, 1u, 1u))) * 0.25;
    }
  return v;
}

#elif defined(CONCAT)
float
concat_elem (uint e)
{
  uint o = fastdiv(e, ymagic, yshift);
  uint r = e - o * (ya + yb);
  return r < ya ? elem(A, ao, o * ya + r) : elem(B, bo, o * yb + r - ya);
}

vec4
item (uint i)
{
  if (VEC)
    {
      uint o = fastdiv(i * 4u, ymagic, yshift);
      uint r = i * 4u - o * (ya + yb);
      return r < ya ? texelFetch(A, int(ao + (o * ya + r) / 4u))
                    : texelFetch(B, int(bo + (o * yb + r - ya) / 4u));
    }
  vec4 v;
  [[unroll]] for (uint k = 0; k < 4u; k++)
    v[k] = concat_elem(min(i * 4u + k, numel - 1u));
  return v;
}

#elif defined(EMBED)
// Out-of-range ids give zero rows.
float
embed_elem (uint e)
{
  uint n = fastdiv(e, cmagic, cshift);
  uint c = e - n * cols;
  uint id = uint(ids[n]);
  return id < rows ? elem(T, to, id * cols + c) : 0.0;
}

vec4
item (uint i)
{
  if (VEC)
    {
      uint n = fastdiv(i * 4u, cmagic, cshift);
      uint c = i * 4u - n * cols;
      uint id = uint(ids[n]);
      return id < rows ? texelFetch(T, int(to + (id * cols + c) / 4u)) : vec4(0.0);
    }
  vec4 v;
  [[unroll]] for (uint k = 0; k < 4u; k++)
    v[k] = embed_elem(min(i * 4u + k, numel - 1u));
  return v;
}
#endif

void
main()
{
  uint group = gl_WorkGroupID.y * groups_x + gl_WorkGroupID.x;
  uint first = group * gl_WorkGroupSize.x * PER + gl_LocalInvocationID.x;
  [[unroll]] for (uint k = 0; k < PER; k++)
    {
      uint li = first + k * gl_WorkGroupSize.x;
      if (li >= n4)
        return;
      y[li] = item(base + li);
    }
}
