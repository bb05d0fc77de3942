#version 450
// norm.comp: group norm and layer norm. One source, one module per mode (-D):
//   GN_STATS  group norm, pass 1: x (B, S, C) channel-last; each invocation runs
//             Welford over a strided set of rows of one column and writes its
//             partial (n, mean, M2) per channel.
//   GN_FINAL  group norm, pass 2: one subgroup per (batch, group) combines the
//             partials and writes per (b, c) the scale a = rstd·γ·(1 + s) and
//             the shift q = (β·(1 + s) + shift) − mean·a.
//   GN_APPLY  group norm, pass 3: y = act ((x·a + q)·mul + add).
//   GN_FUSED  group norm of small shapes: the three passes in one dispatch, a
//             workgroup per (batch, block of columns holding whole groups),
//             the merges through shared memory.
//   LAYER     layer norm: one subgroup per row, two passes over the row for a
//             sound variance, a third to write.
// In the group norm modes the invocations are TC columns × (local size / TC)
// rows; a column is 4 channels (one vec4) when C % 4 == 0, else 1. Inputs are
// uniform texel buffers (f32 or f16 views); reductions use subgroup operations
// of whatever subgroup size the device runs.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

#include "act.glsl"
#include "basic.glsl"

layout(local_size_x_id = 0) in;

const uint HAS_GAMMA = 1u, HAS_BETA = 2u, HAS_SS = 4u, HAS_MUL = 8u, HAS_ADD = 16u;

/* ---- declarations per mode ---- */

#if defined(GN_STATS) || defined(GN_APPLY) || defined(GN_FUSED)
layout(constant_id = 1) const bool VEC = true;
layout(constant_id = 2) const uint TC = 32;
layout(constant_id = 3) const uint FLAGS = 0;
layout(constant_id = 4) const uint ACT = ACT_NONE;
layout(binding = 1) uniform samplerBuffer X;
#endif

#if defined(GN_STATS)
layout(std430, binding = 0) writeonly buffer Part4 { vec4 part4[]; };
layout(std430, binding = 0) writeonly buffer Part1 { float part1[]; };
layout(push_constant) uniform Push {
  uint xo;
  uint s;          // rows per batch
  uint c;          // channels
  uint units;      // columns: C / 4 or C
  uint chunk_rows; // rows per workgroup
  uint chunks;     // workgroups per batch along the rows
};

#elif defined(GN_FINAL)
layout(constant_id = 1) const uint FLAGS = 0;
layout(std430, binding = 0) writeonly buffer Stats { float stats[]; };
layout(binding = 1) uniform samplerBuffer Part;
layout(binding = 2) uniform samplerBuffer Gamma;
layout(binding = 3) uniform samplerBuffer Beta;
layout(binding = 4) uniform samplerBuffer SS;
layout(push_constant) uniform Push {
  uint c, groups;
  uint cg;         // channels per group
  uint np;         // partials per (batch, channel)
  uint plane;      // elements per plane of stats
  uint pairs;      // batch · groups
  uint po, go, bo, so;   // texel offsets
  float eps;
};
const uint PAIRS_PER_GROUP = 8u;

#elif defined(GN_APPLY)
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 0) writeonly buffer Y1 { float y1[]; };
layout(binding = 2) uniform samplerBuffer Stats;
layout(binding = 3) uniform samplerBuffer Mul;
layout(binding = 4) uniform samplerBuffer Add;
layout(push_constant) uniform Push {
  uint xo, so, mo, ao;
  uint s, c, units;
  uint chunk_rows;
  uint plane;      // elements per plane of stats (a multiple of 4)
  uint batch0;     // first batch of this dispatch
  uint chunk0;     // first chunk of this dispatch
  uint y0;         // first unit of y's binding
};

#elif defined(GN_FUSED)
const uint MAX_LOCAL = 256u, MAX_CH = 256u;   // TC·(VEC ? 4 : 1) ≤ MAX_CH
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 0) writeonly buffer Y1 { float y1[]; };
layout(binding = 2) uniform samplerBuffer Gamma;
layout(binding = 3) uniform samplerBuffer Beta;
layout(binding = 4) uniform samplerBuffer SS;
layout(binding = 5) uniform samplerBuffer Mul;
layout(binding = 6) uniform samplerBuffer Add;
layout(push_constant) uniform Push {
  uint xo, go, bo, so, mo, ao;
  uint s, c, units;
  uint cg;         // channels per group
  float eps;
};
shared float sh_n[MAX_LOCAL];
shared vec4 sh_mean[MAX_LOCAL], sh_m2[MAX_LOCAL];
shared float ch_n[MAX_CH], ch_mean[MAX_CH], ch_m2[MAX_CH];   // per channel of the block
shared float g_mean[MAX_CH], g_rstd[MAX_CH];                 // per group of the block

#elif defined(LAYER)
layout(constant_id = 1) const bool VEC = true;   // C % 4 == 0
layout(constant_id = 2) const uint FLAGS = 0;
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 0) writeonly buffer Y1 { float y1[]; };
layout(binding = 1) uniform samplerBuffer X;
layout(binding = 2) uniform samplerBuffer Gamma;
layout(binding = 3) uniform samplerBuffer Beta;
layout(push_constant) uniform Push {
  uint xo, go, bo;
  uint rows, c;
  uint units;      // C / 4 or C
  uint group_rows; // rows per workgroup
  uint groups_x;   // workgroups per grid row
  float eps;
};
#endif

/* ---- helpers ---- */

#if defined(GN_STATS) || defined(GN_APPLY) || defined(GN_FUSED)
vec4
load (samplerBuffer t, uint off, uint i)
{
  return VEC ? texelFetch(t, int(off + i)) : vec4(elem(t, off, i));
}

// One Welford step: sound in f32 whatever the data's offset, and one read.
void
welford (inout float n, inout vec4 mean, inout vec4 m2, vec4 v)
{
  n += 1.0;
  vec4 d = v - mean;
  mean += d * (1.0 / n);
  m2 += d * (v - mean);
}
#endif

#if defined(GN_APPLY) || defined(GN_FUSED)
// y = act ((x·a + q)·mul + add) for unit i of x, stored at unit yi of y.
void
apply (uint i, uint yi, vec4 a, vec4 q)
{
  vec4 v = fma(load(X, xo, i), a, q);
  if ((FLAGS & HAS_MUL) != 0u)
    v *= load(Mul, mo, i);
  if ((FLAGS & HAS_ADD) != 0u)
    v += load(Add, ao, i);
  v = rv_act(v, ACT);
  if (VEC)
    y4[yi] = v;
  else
    y1[yi] = v.x;
}
#endif

#if defined(GN_FINAL) || defined(GN_FUSED)
// The scale and shift of channel ch of batch b, from its group's statistics.
void
scale_shift (uint b, uint ch, float mean, float rstd, out float a, out float q)
{
  float scale = 1.0;
  a = rstd;
  q = 0.0;
  if ((FLAGS & HAS_GAMMA) != 0u)
    a *= elem(Gamma, go, ch);
  if ((FLAGS & HAS_BETA) != 0u)
    q = elem(Beta, bo, ch);
  if ((FLAGS & HAS_SS) != 0u)
    {
      scale += elem(SS, so, b * 2u * c + ch);
      a *= scale;
      q = q * scale + elem(SS, so, b * 2u * c + c + ch);
    }
  // y = x·a + (q − mean·a) is as accurate as (x − mean)·a + q: mean itself
  // carries an f32 rounding of the same size.
  q -= mean * a;
}
#endif

#if defined(GN_FUSED)
// Chan et al.'s merge of (n, mean, M2) with (nb, meanb, m2b).
void
merge (inout float n, inout float mean, inout float m2, float nb, float meanb, float m2b)
{
  float t = n + nb;
  float f = t > 0.0 ? nb / t : 0.0;
  float d = meanb - mean;
  mean += d * f;
  m2 += m2b + d * d * n * f;
  n = t;
}
#endif

/* ---- kernels ---- */

#if defined(GN_STATS)
void
main()
{
  uint tr_count = gl_WorkGroupSize.x / TC;
  uint tc = gl_LocalInvocationID.x % TC, tr = gl_LocalInvocationID.x / TC;
  uint col = gl_WorkGroupID.x * TC + tc;
  uint chunk = gl_WorkGroupID.y, b = gl_WorkGroupID.z;
  if (tr >= tr_count || col >= units)
    return;
  uint end = min(s, (chunk + 1u) * chunk_rows);
  vec4 mean = vec4(0.0), m2 = vec4(0.0);
  float n = 0.0;
  for (uint r = chunk * chunk_rows + tr; r < end; r += tr_count)
    welford(n, mean, m2, load(X, xo, (b * s + r) * units + col));
  uint p = (b * chunks + chunk) * tr_count + tr;
  if (VEC)
    {
      part4[(p * 3u) * units + col] = vec4(n);
      part4[(p * 3u + 1u) * units + col] = mean;
      part4[(p * 3u + 2u) * units + col] = m2;
    }
  else
    {
      part1[(p * 3u) * c + col] = n;
      part1[(p * 3u + 1u) * c + col] = mean.x;
      part1[(p * 3u + 2u) * c + col] = m2.x;
    }
}

#elif defined(GN_FINAL)
// One subgroup per (batch, group), no shared memory and no barriers. The
// partials are combined in two passes, as sums: the mean first (shifted by
// the first partial's mean, so the sums stay small), then M2 = Σ M2_i +
// n_i·(mean_i − mean)²; no division per partial.
void
main()
{
  uint first = gl_WorkGroupID.x * PAIRS_PER_GROUP;
  uint end = min(pairs, first + PAIRS_PER_GROUP);
  for (uint bg = first + gl_SubgroupID; bg < end; bg += gl_NumSubgroups)
    {
      uint b = bg / groups, g = bg % groups;
      uint base = (b * np * 3u) * c + g * cg;   // partial p, channel k: base + p·3c + k
      float shift = elem(Part, po, base + c);
      float n = 0.0, sum = 0.0;
      for (uint p = gl_SubgroupInvocationID; p < np; p += gl_SubgroupSize)
        for (uint k = 0; k < cg; k++)
          {
            uint i = base + p * 3u * c + k;
            float pn = elem(Part, po, i);
            n += pn;
            sum += pn * (elem(Part, po, i + c) - shift);
          }
      n = subgroupAdd(n);
      float mean = shift + subgroupAdd(sum) / n;
      float m2 = 0.0;
      for (uint p = gl_SubgroupInvocationID; p < np; p += gl_SubgroupSize)
        for (uint k = 0; k < cg; k++)
          {
            uint i = base + p * 3u * c + k;
            float d = elem(Part, po, i + c) - mean;
            m2 += elem(Part, po, i + 2u * c) + elem(Part, po, i) * d * d;
          }
      float rstd = 1.0 / sqrt(subgroupAdd(m2) / n + eps);   // biased variance, as torch
      for (uint k = gl_SubgroupInvocationID; k < cg; k += gl_SubgroupSize)
        {
          uint ch = g * cg + k;
          float a, q;
          scale_shift(b, ch, mean, rstd, a, q);
          stats[b * c + ch] = a;
          stats[plane + b * c + ch] = q;
        }
    }
}

#elif defined(GN_APPLY)
// A column's scale and shift are fetched once and applied down its rows.
void
main()
{
  uint tr_count = gl_WorkGroupSize.x / TC;
  uint tc = gl_LocalInvocationID.x % TC, tr = gl_LocalInvocationID.x / TC;
  uint col = gl_WorkGroupID.x * TC + tc;
  uint chunk = chunk0 + gl_WorkGroupID.y, b = batch0 + gl_WorkGroupID.z;
  if (tr >= tr_count || col >= units)
    return;
  vec4 a = load(Stats, so, b * units + col);
  vec4 q = load(Stats, so, (plane + b * c) / (VEC ? 4u : 1u) + col);
  uint end = min(s, (chunk + 1u) * chunk_rows);
  for (uint r = chunk * chunk_rows + tr; r < end; r += tr_count)
    {
      uint i = (b * s + r) * units + col;
      apply(i, i - y0, a, q);
    }
}

#elif defined(GN_FUSED)
void
main()
{
  uint tr_count = gl_WorkGroupSize.x / TC;
  uint lanes = VEC ? 4u : 1u;
  uint lid = gl_LocalInvocationID.x;
  uint tc = lid % TC, tr = lid / TC;
  uint col = gl_WorkGroupID.x * TC + tc, b = gl_WorkGroupID.y;
  bool busy = tr < tr_count;

  // 1. Welford per invocation over its rows
  vec4 mean = vec4(0.0), m2 = vec4(0.0);
  float n = 0.0;
  if (busy)
    for (uint r = tr; r < s; r += tr_count)
      welford(n, mean, m2, load(X, xo, (b * s + r) * units + col));
  sh_n[lid] = n;
  sh_mean[lid] = mean;
  sh_m2[lid] = m2;
  barrier();

  // 2. per channel of the block: merge the invocation rows of its column
  if (lid < TC * lanes)
    {
      uint t = lid / lanes, k = lid % lanes;
      float cn = 0.0, cm = 0.0, cq = 0.0;
      for (uint j = 0; j < tr_count; j++)
        merge(cn, cm, cq, sh_n[j * TC + t], sh_mean[j * TC + t][k], sh_m2[j * TC + t][k]);
      ch_n[lid] = cn;
      ch_mean[lid] = cm;
      ch_m2[lid] = cq;
    }
  barrier();

  // 3. per group of the block: merge its channels
  if (lid < TC * lanes / cg)
    {
      float gn = 0.0, gm = 0.0, gq = 0.0;
      for (uint k = 0; k < cg; k++)
        merge(gn, gm, gq, ch_n[lid * cg + k], ch_mean[lid * cg + k], ch_m2[lid * cg + k]);
      g_mean[lid] = gm;
      g_rstd[lid] = 1.0 / sqrt(gq / gn + eps);
    }
  barrier();

  // 4. apply down the rows with this column's scale and shift
  if (!busy)
    return;
  vec4 a = vec4(0.0), q = vec4(0.0);
  [[unroll]] for (uint k = 0; k < 4u; k++)
    {
      if (k >= lanes)
        break;
      uint g = (tc * lanes + k) / cg;
      scale_shift(b, col * lanes + k, g_mean[g], g_rstd[g], a[k], q[k]);
    }
  for (uint r = tr; r < s; r += tr_count)
    {
      uint i = (b * s + r) * units + col;
      apply(i, i, a, q);
    }
}

#elif defined(LAYER)
vec4
load (uint row, uint j)
{
  if (VEC)
    return texelFetch(X, int(xo + row * units + j));
  return vec4(elem(X, xo, row * c + j), 0.0, 0.0, 0.0);
}

vec4
param (samplerBuffer p, uint off, uint j, float none)
{
  if (VEC)
    return texelFetch(p, int(off + j));
  return vec4(elem(p, off, j), none, none, none);
}

void
main()
{
  uint first = (gl_WorkGroupID.y * groups_x + gl_WorkGroupID.x) * group_rows;
  uint end = min(rows, first + group_rows);
  for (uint row = first + gl_SubgroupID; row < end; row += gl_NumSubgroups)
    {
      vec4 acc = vec4(0.0);
      for (uint j = gl_SubgroupInvocationID; j < units; j += gl_SubgroupSize)
        acc += load(row, j);
      float mean = subgroupAdd(acc.x + acc.y + acc.z + acc.w) / float(c);
      acc = vec4(0.0);
      for (uint j = gl_SubgroupInvocationID; j < units; j += gl_SubgroupSize)
        {
          vec4 d = load(row, j) - mean;
          acc += VEC ? d * d : vec4(d.x * d.x, 0.0, 0.0, 0.0);
        }
      float rstd = 1.0 / sqrt(subgroupAdd(acc.x + acc.y + acc.z + acc.w) / float(c) + eps);
      for (uint j = gl_SubgroupInvocationID; j < units; j += gl_SubgroupSize)
        {
          vec4 v = (load(row, j) - mean) * rstd;
          if ((FLAGS & HAS_GAMMA) != 0u)
            v *= param(Gamma, go, j, 1.0);
          if ((FLAGS & HAS_BETA) != 0u)
            v += param(Beta, bo, j, 0.0);
          if (VEC)
            y4[row * units + j] = v;
          else
            y1[row * c + j] = v.x;
        }
    }
}
#endif
