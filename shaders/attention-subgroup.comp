#version 450
// Flash-style attention for CPU drivers (lavapipe): q, k and v are read as
// RGBA32F texel buffers, scores and probabilities move between lanes by
// subgroupBroadcast, and nothing touches shared memory or barriers, which
// llvmpipe runs slowly. Needs a subgroup of exactly 8 lanes and D % 4 == 0.
//
// A subgroup owns TM query rows of one (batch, head) and one chunk of DC output
// dims. Per block of 8·TN keys:
//   S (TM, 8·TN) = Q·Kᵀ: lane l owns keys j0 + t·8 + l; q values are broadcast.
//   online softmax in base 2 (q is pre-scaled by scale·log2 e); the row max
//   is shared by the subgroup, the row sum stays per lane until the end.
//   O (TM, DC) += P·V: lane l owns vec4 groups n·8 + l of the chunk; p values
//   are broadcast from the lane that owns the key.
// The (Lq, Lk) score matrix only ever exists as TM·TN registers per lane.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_ballot : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require

layout(constant_id = 0) const uint D = 64;    // head dim, a multiple of 4
layout(constant_id = 1) const uint DC = 64;   // output dims per subgroup, a multiple of 32
layout(constant_id = 2) const uint TM = 4;    // query rows per subgroup
layout(constant_id = 3) const uint TN = 4;    // keys per lane per block
layout(local_size_x = 8, local_size_y_id = 4) in;   // y: subgroups per workgroup

const uint D4 = D / 4;           // vec4 groups in a head row
const uint NG = DC / 32;         // vec4 groups per lane in the output chunk
const uint NCHUNK = (D + DC - 1) / DC;
const float LOG2E = 1.4426950408889634;

layout(binding = 0) uniform samplerBuffer Q4;
layout(binding = 1) uniform samplerBuffer K4;
layout(binding = 2) uniform samplerBuffer V4;
layout(binding = 3) uniform samplerBuffer M4;
layout(std430, binding = 4) writeonly buffer OutBuf { vec4 o4[]; };

layout(push_constant) uniform P {
  uint lq, lk, heads;
  uint hd4;                  // H·D / 4: row stride in vec4s
  uint q_off, k_off, v_off, m_off;   // texel offsets of the tensors in their views
  uint mask_mode;            // 0 none, 1 (B, Lk), 2 (B, Lq, Lk)
  uint causal;
  float qscale;              // scale · log2 e
};

float s[TM][TN];
vec4 acc[TM][NG];
vec4 qv[TM];

// Adds the products over vec4 group g of the head dims (owned by lane m) to s.
void
score_group (uint g, uint m, uint krow[TN])
{
  vec4 kv[TN];
  [[unroll]] for (uint t = 0; t < TN; t++)
    kv[t] = texelFetch (K4, int (krow[t] + g));
  [[unroll]] for (uint c = 0; c < 4; c++)
    [[unroll]] for (uint r = 0; r < TM; r++)
      {
        float a = subgroupBroadcast (qv[r][c], m);
        [[unroll]] for (uint t = 0; t < TN; t++)
          s[r][t] = fma (a, kv[t][c], s[r][t]);
      }
}

// Scores for the 32 head dims from vec4 group g0 (all 8 lanes load q).
void
score_chunk (uint g0, uint qrow[TM], uint krow[TN])
{
  [[unroll]] for (uint r = 0; r < TM; r++)
    qv[r] = texelFetch (Q4, int (qrow[r] + g0 + gl_SubgroupInvocationID)) * qscale;
  [[unroll]] for (uint m = 0; m < 8; m++)
    score_group (g0 + m, m, krow);
}

// One mask value (f32 element e) from the RGBA view.
float
mask_at (uint e)
{
  return texelFetch (M4, int (m_off + e / 4))[e % 4] * LOG2E;
}

void
main ()
{
  const uint lane = gl_SubgroupInvocationID;
  const uint chunk = gl_WorkGroupID.y % NCHUNK;
  const uint bh = gl_WorkGroupID.y / NCHUNK;
  const uint b = bh / heads, h = bh % heads;
  const uint i0 = (gl_WorkGroupID.x * gl_WorkGroupSize.y + gl_LocalInvocationID.y) * TM;
  if (i0 >= lq)
    return;   // uniform in the subgroup

  // texel index of dim 0 of this head in query row r; rows past the end repeat the last
  uint qrow[TM];
  [[unroll]] for (uint r = 0; r < TM; r++)
    qrow[r] = q_off + (b * lq + min (i0 + r, lq - 1)) * hd4 + h * D4;
  const uint kbase = k_off + b * lk * hd4 + h * D4;
  const uint vbase = v_off + b * lk * hd4 + h * D4;

  // the vec4 groups of the output chunk this lane owns, and where to fetch
  // them (groups past the head repeat its last one; they are never stored)
  uint og[NG], vg[NG];
  [[unroll]] for (uint n = 0; n < NG; n++)
    {
      og[n] = chunk * (DC / 4) + n * 8 + lane;
      vg[n] = vbase + min (og[n], D4 - 1);
    }

  float rmax[TM], lsum[TM];
  [[unroll]] for (uint r = 0; r < TM; r++)
    {
      rmax[r] = -1e30;   // finite, so a block with every key masked gives alpha 1, not NaN
      lsum[r] = 0.0;
      [[unroll]] for (uint n = 0; n < NG; n++)
        acc[r][n] = vec4 (0.0);
    }

  const uint kend = causal != 0 ? min (lk, i0 + TM) : lk;
  for (uint j0 = 0; j0 < kend; j0 += 8 * TN)
    {
      // keys past the end repeat the last one; their probability is 0
      uint krow[TN];
      [[unroll]] for (uint t = 0; t < TN; t++)
        krow[t] = kbase + min (j0 + t * 8 + lane, lk - 1) * hd4;
      [[unroll]] for (uint r = 0; r < TM; r++)
        [[unroll]] for (uint t = 0; t < TN; t++)
          s[r][t] = 0.0;

      // S = Q·Kᵀ, 32 dims at a time (unrolled for the common head sizes), then
      // the remaining D4 % 8 vec4 groups
      if (D4 <= 16)
        {
          [[unroll]] for (uint g0 = 0; g0 + 8 <= D4; g0 += 8)
            score_chunk (g0, qrow, krow);
        }
      else
        {
          [[dont_unroll]] for (uint g0 = 0; g0 + 8 <= D4; g0 += 8)
            score_chunk (g0, qrow, krow);
        }
      if (D4 % 8 != 0)
        {
          const uint g0 = D4 / 8 * 8;
          [[unroll]] for (uint r = 0; r < TM; r++)
            qv[r] = lane < D4 % 8 ? texelFetch (Q4, int (qrow[r] + g0 + lane)) * qscale
                                  : vec4 (0.0);
          [[unroll]] for (uint m = 0; m < D4 % 8; m++)
            score_group (g0 + m, m, krow);
        }

      // mask, causal and range, then the online softmax update
      if (mask_mode != 0)
        [[unroll]] for (uint r = 0; r < TM; r++)
          [[unroll]] for (uint t = 0; t < TN; t++)
            {
              const uint mr = mask_mode == 1 ? b : b * lq + min (i0 + r, lq - 1);
              s[r][t] += mask_at (mr * lk + min (j0 + t * 8 + lane, lk - 1));
            }
      [[unroll]] for (uint r = 0; r < TM; r++)
        {
          const uint i = i0 + r;
          float bm = -1e30;
          [[unroll]] for (uint t = 0; t < TN; t++)
            {
              const uint j = j0 + t * 8 + lane;
              float x = s[r][t];
              if (j >= lk || (causal != 0 && j > i))
                x = -2e30;   // below the initial row max: exp2 gives 0
              s[r][t] = x;
              bm = max (bm, x);
            }
          const float mnew = max (rmax[r], subgroupMax (bm));
          const float alpha = exp2 (rmax[r] - mnew);
          rmax[r] = mnew;
          lsum[r] *= alpha;
          [[unroll]] for (uint n = 0; n < NG; n++)
            acc[r][n] *= alpha;
          [[unroll]] for (uint t = 0; t < TN; t++)
            {
              const float p = exp2 (s[r][t] - mnew);
              s[r][t] = p;
              lsum[r] += p;
            }
        }

      // O += P·V, one key at a time in key order; every key of the block,
      // as a per-key range check costs more than the zero-probability keys
      [[unroll]] for (uint t = 0; t < TN; t++)
        [[unroll]] for (uint l = 0; l < 8; l++)
          {
            const uint vrow = min (j0 + t * 8 + l, lk - 1) * hd4;
            vec4 vv[NG];
            [[unroll]] for (uint n = 0; n < NG; n++)
              vv[n] = texelFetch (V4, int (vg[n] + vrow));
            [[unroll]] for (uint r = 0; r < TM; r++)
              {
                const float p = subgroupBroadcast (s[r][t], l);
                [[unroll]] for (uint n = 0; n < NG; n++)
                  acc[r][n] = fma (vec4 (p), vv[n], acc[r][n]);
              }
          }
    }

  [[unroll]] for (uint r = 0; r < TM; r++)
    {
      const uint i = i0 + r;
      const float inv = 1.0 / subgroupAdd (lsum[r]);
      if (i < lq)
        [[unroll]] for (uint n = 0; n < NG; n++)
          if (og[n] < D4)
            o4[(b * lq + i) * hd4 + h * D4 + og[n]] = acc[r][n] * inv;
    }
}
