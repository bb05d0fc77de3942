#version 450
// winograd.comp: the transforms of a 3×3, stride-1 convolution computed as
// Winograd's F(m×m, 3×3) with m = WG_M, 4 or 2 (docs/devices.md §6): each
// m×m block of outputs comes from a T×T input tile (T = m + 2) through T²
// independent products over the input channels (36 for F(4×4), 16 for
// F(2×2)),
//     Y = Aᵀ · [ (G·g·Gᵀ) ⊙ (Bᵀ·d·B) ] · A,
// which rv-ops-winograd.c records as one batched GEMM (T² matrices) between
// these kernels. One source, one module per mode and m (-D):
//   WG_WEIGHT  U (T², Cin, Cout) = G·g·Gᵀ from the (3, 3, Cin, Cout) weights
//              (f32 or f16), for the output channels [co0, co0 + Coutc)
//   WG_INPUT   V (T², tiles, Cin) = Bᵀ·d·B for a run of tiles, zero outside
//              the image
//   WG_OUTPUT  y = Aᵀ·M·A + bias + residual from M (T², tiles, Coutc)
// Channels are handled 4 at a time (Cin and Cout multiples of 4): each
// invocation transforms one tile (or one weight) for 4 channels as vec4s.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;

#ifndef WG_M
#define WG_M 4
#endif
const uint TM_ = WG_M;        // outputs per tile side
const uint T = WG_M + 2;      // input tile side

// G·(a, b, d)ᵀ: a kernel column or row of 3 -> T
void g3(vec4 a, vec4 b, vec4 d, out vec4 o[T])
{
#if WG_M == 4
  o[0] = a * 0.25;
  o[1] = (a + b + d) * (-1.0 / 6.0);
  o[2] = (a - b + d) * (-1.0 / 6.0);
  o[3] = a * (1.0 / 24.0) + b * (1.0 / 12.0) + d * (1.0 / 6.0);
  o[4] = a * (1.0 / 24.0) - b * (1.0 / 12.0) + d * (1.0 / 6.0);
  o[5] = d;
#else
  o[0] = a;
  o[1] = (a + b + d) * 0.5;
  o[2] = (a - b + d) * 0.5;
  o[3] = d;
#endif
}

layout(push_constant) uniform P {
  uint count;        // invocations: items × channel quads
  uint groups_x;     // workgroups per grid row
  uint src_off;      // texel offset of the input (weights, x or M)
  uint bias_off, res_off;
  uint flags;        // WG_OUTPUT: 1 bias, 2 residual
  uint quads;        // channel quads per item (Cin/4; WG_WEIGHT, WG_OUTPUT: Coutc/4)
  uint cin;          // WG_WEIGHT: Cin
  uint co4_total;    // Cout/4 of the weights or of y
  uint co4_0;        // first output quad of this slice of U / M
  uint h, w;         // WG_INPUT: x's size; WG_OUTPUT: y's (Ho, Wo)
  uint tiles_w, tiles_hw;   // tiles per row and per image
  uint tile0, ntiles;       // this run of tiles
  int pad_t, pad_l;  // WG_INPUT
};

uint invocation()
{
  return (gl_WorkGroupID.y * groups_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x +
         gl_LocalInvocationID.x;
}

#if defined(WG_WEIGHT)
layout(binding = 0) uniform samplerBuffer W;   // RGBA32F or RGBA16F view
layout(std430, binding = 1) writeonly buffer U { vec4 u[]; };

void main()
{
  uint id = invocation();
  if (id >= count)
    return;
  uint ci = id / quads, q = id - ci * quads;
  vec4 g[3][3];
  [[unroll]] for (uint ky = 0; ky < 3; ky++)
    [[unroll]] for (uint kx = 0; kx < 3; kx++)
      g[ky][kx] = texelFetch(W, int(src_off + ((ky * 3 + kx) * cin + ci) * co4_total + co4_0 + q));
  // t = G·g (T×3), then t·Gᵀ (T×T)
  vec4 t[T][3];
  [[unroll]] for (uint c = 0; c < 3; c++) {
    vec4 col[T];
    g3(g[0][c], g[1][c], g[2][c], col);
    [[unroll]] for (uint r = 0; r < T; r++)
      t[r][c] = col[r];
  }
  uint stride = cin * quads;
  [[unroll]] for (uint r = 0; r < T; r++) {
    vec4 o[T];
    g3(t[r][0], t[r][1], t[r][2], o);
    [[unroll]] for (uint c = 0; c < T; c++)
      u[(r * T + c) * stride + id] = o[c];
  }
}

#elif defined(WG_INPUT)
layout(binding = 0) uniform samplerBuffer X;
layout(std430, binding = 1) writeonly buffer V { vec4 v[]; };

// Bᵀ·d over T values
void bt(inout vec4 d[T])
{
#if WG_M == 4
  vec4 r0 = 4.0 * d[0] - 5.0 * d[2] + d[4];
  vec4 r1 = -4.0 * (d[1] + d[2]) + d[3] + d[4];
  vec4 r2 = 4.0 * (d[1] - d[2]) - d[3] + d[4];
  vec4 r3 = 2.0 * (d[3] - d[1]) - d[2] + d[4];
  vec4 r4 = 2.0 * (d[1] - d[3]) - d[2] + d[4];
  vec4 r5 = 4.0 * d[1] - 5.0 * d[3] + d[5];
  d[0] = r0;
  d[1] = r1;
  d[2] = r2;
  d[3] = r3;
  d[4] = r4;
  d[5] = r5;
#else
  vec4 r0 = d[0] - d[2];
  vec4 r1 = d[1] + d[2];
  vec4 r2 = d[2] - d[1];
  vec4 r3 = d[1] - d[3];
  d[0] = r0;
  d[1] = r1;
  d[2] = r2;
  d[3] = r3;
#endif
}

void main()
{
  uint id = invocation();
  if (id >= count)
    return;
  uint pl = id / quads, q = id - pl * quads;
  uint p = tile0 + pl, b = p / tiles_hw, r = p - b * tiles_hw;
  uint ty = r / tiles_w, tx = r - ty * tiles_w;
  int iy0 = int(ty * TM_) - pad_t, ix0 = int(tx * TM_) - pad_l;
  uint img = b * h * w;
  // rows of d, each transformed along x; then the columns along y
  vec4 d[T][T];
  [[unroll]] for (uint i = 0; i < T; i++) {
    int iy = iy0 + int(i);
    vec4 row[T];
    [[unroll]] for (uint j = 0; j < T; j++) {
      int ix = ix0 + int(j);
      bool inside = uint(iy) < h && uint(ix) < w;
      row[j] = inside ? texelFetch(X, int(src_off + (img + uint(iy) * w + uint(ix)) * quads + q))
                      : vec4(0.0);
    }
    bt(row);
    [[unroll]] for (uint j = 0; j < T; j++)
      d[i][j] = row[j];
  }
  uint stride = ntiles * quads;
  [[unroll]] for (uint j = 0; j < T; j++) {
    vec4 col[T];
    [[unroll]] for (uint i = 0; i < T; i++)
      col[i] = d[i][j];
    bt(col);
    [[unroll]] for (uint i = 0; i < T; i++)
      v[(i * T + j) * stride + id] = col[i];
  }
}

#elif defined(WG_OUTPUT)
layout(binding = 0) uniform samplerBuffer M;
layout(binding = 1) uniform samplerBuffer BIAS;
layout(binding = 2) uniform samplerBuffer RES;
layout(std430, binding = 3) writeonly buffer Y { vec4 y[]; };

// Aᵀ·m: T values -> m
void at(vec4 m[T], out vec4 o[TM_])
{
#if WG_M == 4
  vec4 s12 = m[1] + m[2], d12 = m[1] - m[2];
  vec4 s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + 2.0 * d34;
  o[2] = s12 + 4.0 * s34;
  o[3] = d12 + 8.0 * d34 + m[5];
#else
  o[0] = m[0] + m[1] + m[2];
  o[1] = m[1] - m[2] - m[3];
#endif
}

void main()
{
  uint id = invocation();
  if (id >= count)
    return;
  uint pl = id / quads, q = id - pl * quads;
  uint p = tile0 + pl, b = p / tiles_hw, r = p - b * tiles_hw;
  uint ty = r / tiles_w, tx = r - ty * tiles_w;
  uint stride = ntiles * quads;
  // the columns of M along y first (T -> m rows), then each row along x
  vec4 t[TM_][T];
  [[unroll]] for (uint j = 0; j < T; j++) {
    vec4 col[T], o[TM_];
    [[unroll]] for (uint i = 0; i < T; i++)
      col[i] = texelFetch(M, int(src_off + (i * T + j) * stride + id));
    at(col, o);
    [[unroll]] for (uint i = 0; i < TM_; i++)
      t[i][j] = o[i];
  }
  uint co = co4_0 + q;
  vec4 bias = (flags & 1u) != 0u ? texelFetch(BIAS, int(bias_off + co)) : vec4(0.0);
  [[unroll]] for (uint i = 0; i < TM_; i++) {
    uint oy = ty * TM_ + i;
    vec4 o[TM_];
    at(t[i], o);
    [[unroll]] for (uint j = 0; j < TM_; j++) {
      uint ox = tx * TM_ + j;
      if (oy < h && ox < w) {
        uint e = ((b * h + oy) * w + ox) * co4_total + co;
        vec4 val = o[j] + bias;
        if ((flags & 2u) != 0u)
          val += texelFetch(RES, int(res_off + e));
        y[e] = val;
      }
    }
  }
}
#endif
