#version 450
// Flash-style attention for GPUs: a workgroup of 64 threads owns BR query rows
// of one (batch, head) and one chunk of DC output dims, and walks the keys in
// tiles of BC through shared memory. Four threads share a query row: each
// scores BC/4 keys of a tile and accumulates DC/4 of the row's output dims.
// Scores live in registers and one BR×BC tile of shared memory, never in
// device memory. Any head dim works (no alignment needed); heads larger than
// DC take several chunks, each recomputing the scores.
#extension GL_EXT_control_flow_attributes : require

layout(constant_id = 0) const uint D = 64;    // head dim
layout(constant_id = 1) const uint DK = 64;   // head dims staged per step of the score product
layout(constant_id = 2) const uint DC = 64;   // output dims per workgroup, a multiple of 4
layout(local_size_x = 64) in;

#define BR 16          // query rows per workgroup
#define BC 32          // keys per tile
#define TPR 4          // threads per query row
const uint NCHUNK = (D + DC - 1) / DC;
const uint KSTRIDE = DK + 1;   // padded so the four threads of a row hit different banks
const uint KV_FLOATS = BC * (KSTRIDE > DC ? KSTRIDE : DC);
const float LOG2E = 1.4426950408889634;

layout(std430, binding = 0) readonly buffer QBuf { float q[]; };
layout(std430, binding = 1) readonly buffer KBuf { float k[]; };
layout(std430, binding = 2) readonly buffer VBuf { float v[]; };
layout(std430, binding = 3) readonly buffer MaskBuf { float mask[]; };
layout(std430, binding = 4) writeonly buffer OutBuf { float o[]; };

layout(push_constant) uniform P {
  uint lq, lk, heads;
  uint hd;                   // H·D: row stride
  uint mask_mode;            // 0 none, 1 (B, Lk), 2 (B, Lq, Lk)
  uint causal;
  float qscale;              // scale · log2 e
};

shared float qs[BR * KSTRIDE];
shared float kvs[KV_FLOATS];   // a K tile (BC, DK) for scores, then a V tile (BC, DC)
shared float ps[BR * (BC + 1)];

void
main ()
{
  const uint tid = gl_LocalInvocationID.x;
  const uint r = tid / TPR, cq = tid % TPR;
  const uint chunk = gl_WorkGroupID.y % NCHUNK;
  const uint bh = gl_WorkGroupID.y / NCHUNK;
  const uint b = bh / heads, h = bh % heads;
  const uint i0 = gl_WorkGroupID.x * BR;
  const uint i = i0 + r;
  const uint d0 = chunk * DC;

  float acc[DC / TPR];
  [[unroll]] for (uint w = 0; w < DC / TPR; w++)
    acc[w] = 0.0;
  float mrow = -1e30, lsum = 0.0;   // finite max: a fully masked tile gives alpha 1, not NaN

  const uint kend = causal != 0 ? min (lk, i0 + BR) : lk;
  for (uint j0 = 0; j0 < kend; j0 += BC)
    {
      float sc[BC / TPR];
      [[unroll]] for (uint u = 0; u < BC / TPR; u++)
        sc[u] = 0.0;
      for (uint dk0 = 0; dk0 < D; dk0 += DK)
        {
          barrier ();   // the previous tile's readers are done
          for (uint e = tid; e < BR * DK; e += 64)
            {
              const uint rr = e / DK, d = dk0 + e % DK, ii = i0 + rr;
              qs[rr * KSTRIDE + e % DK] =
                ii < lq && d < D ? q[(b * lq + ii) * hd + h * D + d] * qscale : 0.0;
            }
          for (uint e = tid; e < BC * DK; e += 64)
            {
              const uint cc = e / DK, d = dk0 + e % DK, jj = j0 + cc;
              kvs[cc * KSTRIDE + e % DK] =
                jj < lk && d < D ? k[(b * lk + jj) * hd + h * D + d] : 0.0;
            }
          barrier ();
          for (uint dd = 0; dd < DK; dd++)
            {
              const float a = qs[r * KSTRIDE + dd];
              [[unroll]] for (uint u = 0; u < BC / TPR; u++)
                sc[u] = fma (a, kvs[(cq + TPR * u) * KSTRIDE + dd], sc[u]);
            }
        }

      // mask, causal and range; the row max goes through shared memory
      [[unroll]] for (uint u = 0; u < BC / TPR; u++)
        {
          const uint j = j0 + cq + TPR * u;
          float x = sc[u];
          if (mask_mode == 1)
            x += mask[b * lk + min (j, lk - 1)] * LOG2E;
          else if (mask_mode == 2)
            x += mask[(b * lq + min (i, lq - 1)) * lk + min (j, lk - 1)] * LOG2E;
          if (j >= lk || (causal != 0 && j > i))
            x = -2e30;   // below the initial row max: exp2 gives 0
          sc[u] = x;
          ps[r * (BC + 1) + cq + TPR * u] = x;
        }
      barrier ();
      float bm = -1e30;
      for (uint c = 0; c < BC; c++)
        bm = max (bm, ps[r * (BC + 1) + c]);
      const float mnew = max (mrow, bm);
      const float alpha = exp2 (mrow - mnew);
      mrow = mnew;
      lsum *= alpha;
      [[unroll]] for (uint w = 0; w < DC / TPR; w++)
        acc[w] *= alpha;
      barrier ();   // every row max is read before the tile turns into probabilities
      [[unroll]] for (uint u = 0; u < BC / TPR; u++)
        {
          const float p = exp2 (sc[u] - mnew);
          lsum += p;
          ps[r * (BC + 1) + cq + TPR * u] = p;
        }
      for (uint e = tid; e < BC * DC; e += 64)
        {
          const uint cc = e / DC, d = d0 + e % DC, jj = j0 + cc;
          kvs[e] = jj < lk && d < D ? v[(b * lk + jj) * hd + h * D + d] : 0.0;
        }
      barrier ();
      for (uint c = 0; c < BC; c++)
        {
          const float p = ps[r * (BC + 1) + c];
          [[unroll]] for (uint w = 0; w < DC / TPR; w++)
            acc[w] = fma (p, kvs[c * DC + cq + TPR * w], acc[w]);
        }
    }

  // the row sum is spread over the row's four threads
  barrier ();
  ps[r * (BC + 1) + cq] = lsum;
  barrier ();
  float ltot = 0.0;
  [[unroll]] for (uint c = 0; c < TPR; c++)
    ltot += ps[r * (BC + 1) + c];
  const float inv = 1.0 / ltot;
  if (i < lq)
    [[unroll]] for (uint w = 0; w < DC / TPR; w++)
      {
        const uint d = d0 + cq + TPR * w;
        if (d < D)
          o[(b * lq + i) * hd + h * D + d] = acc[w] * inv;
      }
}
