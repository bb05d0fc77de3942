#version 450
// winograd.comp: the transforms of a 3×3, stride-1 convolution computed as
// Winograd's F(4×4, 3×3) (docs/devices.md §6): each 4×4 block of outputs
// comes from a 6×6 input tile through 36 independent products over the input
// channels,
//     Y = Aᵀ · [ (G·g·Gᵀ) ⊙ (Bᵀ·d·B) ] · A,
// which rv-ops-winograd.c records as one batched GEMM (36 matrices) between
// these kernels. One source, one module per mode (-D):
//   WG_WEIGHT  U (36, Cin, Cout) = G·g·Gᵀ from the (3, 3, Cin, Cout) weights
//              (f32 or f16), for the output channels [co0, co0 + Coutc)
//   WG_INPUT   V (36, tiles, Cin) = Bᵀ·d·B for a run of tiles, zero outside
//              the image
//   WG_OUTPUT  y = Aᵀ·M·A + bias + residual from M (36, tiles, Coutc)
// Channels are handled 4 at a time (Cin and Cout multiples of 4): each
// invocation transforms one tile (or one weight) for 4 channels as vec4s.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x_id = 0) in;

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
  // t = G·g (6×3), then t·Gᵀ (6×6)
  vec4 t[6][3];
  [[unroll]] for (uint c = 0; c < 3; c++) {
    vec4 a = g[0][c], b = g[1][c], d = g[2][c];
    t[0][c] = a * 0.25;
    t[1][c] = (a + b + d) * (-1.0 / 6.0);
    t[2][c] = (a - b + d) * (-1.0 / 6.0);
    t[3][c] = a * (1.0 / 24.0) + b * (1.0 / 12.0) + d * (1.0 / 6.0);
    t[4][c] = a * (1.0 / 24.0) - b * (1.0 / 12.0) + d * (1.0 / 6.0);
    t[5][c] = d;
  }
  uint stride = cin * quads;
  [[unroll]] for (uint r = 0; r < 6; r++) {
    vec4 a = t[r][0], b = t[r][1], d = t[r][2];
    vec4 o[6];
    o[0] = a * 0.25;
    o[1] = (a + b + d) * (-1.0 / 6.0);
    o[2] = (a - b + d) * (-1.0 / 6.0);
    o[3] = a * (1.0 / 24.0) + b * (1.0 / 12.0) + d * (1.0 / 6.0);
    o[4] = a * (1.0 / 24.0) - b * (1.0 / 12.0) + d * (1.0 / 6.0);
    o[5] = d;
    [[unroll]] for (uint c = 0; c < 6; c++)
      u[(r * 6 + c) * stride + id] = o[c];
  }
}

#elif defined(WG_INPUT)
layout(binding = 0) uniform samplerBuffer X;
layout(std430, binding = 1) writeonly buffer V { vec4 v[]; };

// Bᵀ·d over 6 values
void bt(inout vec4 d[6])
{
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
}

void main()
{
  uint id = invocation();
  if (id >= count)
    return;
  uint pl = id / quads, q = id - pl * quads;
  uint p = tile0 + pl, b = p / tiles_hw, r = p - b * tiles_hw;
  uint ty = r / tiles_w, tx = r - ty * tiles_w;
  int iy0 = int(ty * 4u) - pad_t, ix0 = int(tx * 4u) - pad_l;
  uint img = b * h * w;
  // rows of d, each transformed along x; then the columns along y
  vec4 d[6][6];
  [[unroll]] for (uint i = 0; i < 6; i++) {
    int iy = iy0 + int(i);
    vec4 row[6];
    [[unroll]] for (uint j = 0; j < 6; j++) {
      int ix = ix0 + int(j);
      bool inside = uint(iy) < h && uint(ix) < w;
      row[j] = inside ? texelFetch(X, int(src_off + (img + uint(iy) * w + uint(ix)) * quads + q))
                      : vec4(0.0);
    }
    bt(row);
    [[unroll]] for (uint j = 0; j < 6; j++)
      d[i][j] = row[j];
  }
  uint stride = ntiles * quads;
  [[unroll]] for (uint j = 0; j < 6; j++) {
    vec4 col[6];
    [[unroll]] for (uint i = 0; i < 6; i++)
      col[i] = d[i][j];
    bt(col);
    [[unroll]] for (uint i = 0; i < 6; i++)
      v[(i * 6 + j) * stride + id] = col[i];
  }
}

#elif defined(WG_OUTPUT)
layout(binding = 0) uniform samplerBuffer M;
layout(binding = 1) uniform samplerBuffer BIAS;
layout(binding = 2) uniform samplerBuffer RES;
layout(std430, binding = 3) writeonly buffer Y { vec4 y[]; };

// Aᵀ·m: 6 values -> 4
void at(vec4 m[6], out vec4 o[4])
{
  vec4 s12 = m[1] + m[2], d12 = m[1] - m[2];
  vec4 s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + 2.0 * d34;
  o[2] = s12 + 4.0 * s34;
  o[3] = d12 + 8.0 * d34 + m[5];
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
  // the columns of M along y first (6 -> 4 rows), then each row along x
  vec4 t[4][6];
  [[unroll]] for (uint j = 0; j < 6; j++) {
    vec4 col[6], o[4];
    [[unroll]] for (uint i = 0; i < 6; i++)
      col[i] = texelFetch(M, int(src_off + (i * 6 + j) * stride + id));
    at(col, o);
    [[unroll]] for (uint i = 0; i < 4; i++)
      t[i][j] = o[i];
  }
  uint co = co4_0 + q;
  vec4 bias = (flags & 1u) != 0u ? texelFetch(BIAS, int(bias_off + co)) : vec4(0.0);
  [[unroll]] for (uint i = 0; i < 4; i++) {
    uint oy = ty * 4u + i;
    vec4 o[4];
    at(t[i], o);
    [[unroll]] for (uint j = 0; j < 4; j++) {
      uint ox = tx * 4u + j;
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
