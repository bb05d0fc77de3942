#version 450
// norm.comp: normalization statistics. One source, one module per mode (-D):
//   GN_STATS  group norm, pass 1: x (B, S, C) channel-last; each invocation runs
//             Welford over a strided set of rows of one column (4 channels, or 1
//             when C % 4 != 0) and writes its partial (n, mean, M2) per channel.
//   GN_FINAL  group norm, pass 2: one subgroup per (batch, group) combines the
//             partials and writes per (b, c) the scale
//             a = rstd·γ·(1 + s) and the shift (β·(1 + s) + shift) − mean·a.
//   GN_APPLY  group norm, pass 3: y = act ((x·a + shift)·mul + add).
//   GN_FUSED  group norm of small shapes, the three passes in one dispatch.
//   LAYER     layer norm: one subgroup per row, two passes over the row for a
//             sound variance, a third to write.
// Inputs are uniform texel buffers (f32 or f16 views), reductions use subgroup
// operations of whatever subgroup size the device runs.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require

layout(local_size_x_id = 0) in;

float
elem (samplerBuffer b, uint off, uint i)
{
  return texelFetch(b, int(off + (i >> 2)))[i & 3u];
}

#if defined(GN_STATS)
layout(constant_id = 1) const bool VEC = true;   // C % 4 == 0: a column is 4 channels
layout(constant_id = 2) const uint TC = 32;      // invocations along the columns
layout(std430, binding = 0) writeonly buffer Part4 { vec4 part4[]; };
layout(std430, binding = 0) writeonly buffer Part1 { float part1[]; };
layout(binding = 1) uniform samplerBuffer X;
layout(push_constant) uniform Push {
  uint xo;
  uint s;          // rows per batch
  uint c;          // channels
  uint units;      // columns: C / 4 or C
  uint chunk_rows; // rows per workgroup
  uint chunks;     // workgroups per batch along the rows
};

void
main()
{
  uint tr_count = gl_WorkGroupSize.x / TC;
  uint tc = gl_LocalInvocationID.x % TC, tr = gl_LocalInvocationID.x / TC;
  if (tr >= tr_count)
    return;
  uint col = gl_WorkGroupID.x * TC + tc;
  uint chunk = gl_WorkGroupID.y, b = gl_WorkGroupID.z;
  if (col >= units)
    return;
  uint end = min(s, (chunk + 1u) * chunk_rows);
  vec4 mean = vec4(0.0), m2 = vec4(0.0);
  float n = 0.0;
  // Welford: exact enough in f32 whatever the data's offset, and one read.
  for (uint r = chunk * chunk_rows + tr; r < end; r += tr_count)
    {
      uint i = (b * s + r) * units + col;
      vec4 v = VEC ? texelFetch(X, int(xo + i)) : vec4(elem(X, xo, i));
      n += 1.0;
      vec4 d = v - mean;
      mean += d * (1.0 / n);
      m2 += d * (v - mean);
    }
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
layout(constant_id = 1) const uint FLAGS = 0;
const uint HAS_GAMMA = 1u, HAS_BETA = 2u, HAS_SS = 4u;
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
  uint po, go, bo, so; // texel offsets
  float eps;
};

const uint PAIRS_PER_GROUP = 8u;

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
          float a = rstd, q = 0.0;
          if ((FLAGS & HAS_GAMMA) != 0u)
            a *= elem(Gamma, go, ch);
          if ((FLAGS & HAS_BETA) != 0u)
            q = elem(Beta, bo, ch);
          if ((FLAGS & HAS_SS) != 0u)
            {
              float scale = 1.0 + elem(SS, so, b * 2u * c + ch);
              a *= scale;
              q = q * scale + elem(SS, so, b * 2u * c + c + ch);
            }
          // y = x·a + (q − mean·a): as accurate as (x − mean)·a + q, since
          // mean itself carries an f32 rounding of the same size.
          stats[b * c + ch] = a;
          stats[plane + b * c + ch] = q - mean * a;
        }
    }
}

#elif defined(GN_APPLY)
#include "act.glsl"
layout(constant_id = 1) const bool VEC = true;   // C % 4 == 0
layout(constant_id = 2) const uint TC = 32;      // invocations along the columns
layout(constant_id = 3) const uint FLAGS = 0;
layout(constant_id = 4) const uint ACT = ACT_NONE;
const uint HAS_MUL = 1u, HAS_ADD = 2u;
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 0) writeonly buffer Y1 { float y1[]; };
layout(binding = 1) uniform samplerBuffer X;
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

// Same layout of invocations as GN_STATS: a column's scale and shift are
// fetched once and applied down its rows.
void
main()
{
  uint tr_count = gl_WorkGroupSize.x / TC;
  uint tc = gl_LocalInvocationID.x % TC, tr = gl_LocalInvocationID.x / TC;
  uint col = gl_WorkGroupID.x * TC + tc;
  if (tr >= tr_count || col >= units)
    return;
  uint chunk = chunk0 + gl_WorkGroupID.y, b = batch0 + gl_WorkGroupID.z;
  uint end = min(s, (chunk + 1u) * chunk_rows);
  vec4 a, q;
  if (VEC)
    {
      a = texelFetch(Stats, int(so + (b * c) / 4u + col));
      q = texelFetch(Stats, int(so + (plane + b * c) / 4u + col));
    }
  else
    {
      a = vec4(elem(Stats, so, b * c + col));
      q = vec4(elem(Stats, so, plane + b * c + col));
    }
  for (uint r = chunk * chunk_rows + tr; r < end; r += tr_count)
    {
      uint i = (b * s + r) * units + col;
      vec4 v = VEC ? texelFetch(X, int(xo + i)) : vec4(elem(X, xo, i));
      v = fma(v, a, q);
      if ((FLAGS & HAS_MUL) != 0u)
        v *= VEC ? texelFetch(Mul, int(mo + i)) : vec4(elem(Mul, mo, i));
      if ((FLAGS & HAS_ADD) != 0u)
        v += VEC ? texelFetch(Add, int(ao + i)) : vec4(elem(Add, ao, i));
      v = rv_act(v, ACT);
      if (VEC)
        y4[i - y0] = v;
      else
        y1[i - y0] = v.x;
    }
}

#elif defined(GN_FUSED)
// Small shapes in one dispatch: a workgroup owns one batch and a block of
// columns holding whole groups; it runs the three passes above with the
// merges through shared memory.
#include "act.glsl"
layout(constant_id = 1) const bool VEC = true;   // C % 4 == 0
layout(constant_id = 2) const uint TC = 32;      // columns per block (≤ 256 / (VEC ? 4 : 1))
layout(constant_id = 3) const uint FLAGS = 0;
layout(constant_id = 4) const uint ACT = ACT_NONE;
const uint HAS_GAMMA = 1u, HAS_BETA = 2u, HAS_SS = 4u, HAS_MUL = 8u, HAS_ADD = 16u;
const uint MAX_LOCAL = 256u, MAX_CH = 256u;
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 0) writeonly buffer Y1 { float y1[]; };
layout(binding = 1) uniform samplerBuffer X;
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

float
param (samplerBuffer p, uint off, uint ch, bool has, float none)
{
  return has ? elem(p, off, ch) : none;
}

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
      {
        uint i = (b * s + r) * units + col;
        vec4 v = VEC ? texelFetch(X, int(xo + i)) : vec4(elem(X, xo, i));
        n += 1.0;
        vec4 d = v - mean;
        mean += d * (1.0 / n);
        m2 += d * (v - mean);
      }
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
      uint local = tc * lanes + k, ch = col * lanes + k, g = local / cg;
      float sc = 1.0, sh = 0.0;
      if ((FLAGS & HAS_SS) != 0u)
        {
          sc += elem(SS, so, b * 2u * c + ch);
          sh = elem(SS, so, b * 2u * c + c + ch);
        }
      a[k] = g_rstd[g] * param(Gamma, go, ch, (FLAGS & HAS_GAMMA) != 0u, 1.0) * sc;
      q[k] = param(Beta, bo, ch, (FLAGS & HAS_BETA) != 0u, 0.0) * sc + sh - g_mean[g] * a[k];
    }
  for (uint r = tr; r < s; r += tr_count)
    {
      uint i = (b * s + r) * units + col;
      vec4 v = VEC ? texelFetch(X, int(xo + i)) : vec4(elem(X, xo, i));
      v = fma(v, a, q);
      if ((FLAGS & HAS_MUL) != 0u)
        v *= VEC ? texelFetch(Mul, int(mo + i)) : vec4(elem(Mul, mo, i));
      if ((FLAGS & HAS_ADD) != 0u)
        v += VEC ? texelFetch(Add, int(ao + i)) : vec4(elem(Add, ao, i));
      v = rv_act(v, ACT);
      if (VEC)
        y4[i] = v;
      else
        y1[i] = v.x;
    }
}

#elif defined(LAYER)
layout(constant_id = 1) const bool VEC = true;   // C % 4 == 0
layout(constant_id = 2) const uint FLAGS = 0;
const uint HAS_GAMMA = 1u, HAS_BETA = 2u;
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
