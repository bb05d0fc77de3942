#version 450
// gemm.comp: the gemm op family — linear, batched matmul and conv2d as an
// implicit GEMM — with a fused epilogue y = act (alpha·A·B + bias) + residual.
// One source, three kernels chosen per device by rv-ops-gemm.c:
//   (default)   CPU drivers (lavapipe, subgroup size 8): register tiles, A
//               shared across the subgroup with subgroupBroadcast, A and B read
//               through texel buffers; no shared memory and no barriers, which
//               are the slow paths there (see LAVAPIPE.md).
//   TILED       any GPU: shared-memory tiles, independent of the subgroup size.
//   COOPMAT_NV  NVIDIA tensor cores: fp16 16×16×16 cooperative matrices with
//               f32 accumulation, staged through shared memory.
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#ifdef COOPMAT_NV
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#elif !defined(TILED)
#extension GL_KHR_shader_subgroup_ballot : require
#endif

// How A is addressed. A (M, K) of batch z: element (m, k) is at
// z·a_batch + m·sam + k·sak, or for a convolution row m = (b, oy, ox) and
// column k = (ky, kx, ci) of the NHWC input (zero outside the image).
#define A_VEC4 0       // sak = 1, K and sam multiples of 4: one texel per 4 k
#define A_STRIDED 1
#define A_CONV_VEC4 2  // Cin a multiple of 4
#define A_CONV 3
// How B (K, N) is addressed: element (k, n) at z·b_batch + k·sbk + n·sbn.
#define B_VEC4_N 0     // sbn = 1, N and sbk multiples of 4 (row-major weights)
#define B_VEC4_K 1     // sbk = 1, K and sbn multiples of 4 (transposed B)
#define B_STRIDED 2

layout(constant_id = 0) const uint A_MODE = A_STRIDED;
layout(constant_id = 1) const uint B_MODE = B_STRIDED;

#include "act.glsl"

layout(binding = 0) uniform samplerBuffer A;      // f32 activations
layout(binding = 1) uniform samplerBuffer B;      // RGBA32F or RGBA16F view
layout(binding = 2) uniform samplerBuffer BIAS;
layout(binding = 3) uniform samplerBuffer RES;
layout(std430, binding = 4) writeonly buffer Y { float y[]; };
layout(std430, binding = 4) writeonly buffer Y4 { vec4 y4[]; };

layout(push_constant) uniform P {
  uint M, N, K;
  uint batch;                   // matmul batch (conv and linear: 1)
  uint row_blocks;              // row tiles per batch entry
  uint a_off, b_off, bias_off, res_off;   // texel offsets of the tensors in their views
  uint a_batch, b_batch;        // elements between batch entries (0: broadcast)
  uint sam, sak, sbk, sbn;
  uint flags;                   // 1: bias, 2: residual, act << 2
  float alpha;
  uint H, W, Cin, Wo, HWo, KW, stride;
  int pad_t, pad_l;
};

void store_out(uint z, uint m, uint n, float v)
{
  v *= alpha;
  if ((flags & 1u) != 0u)
    v += texelFetch(BIAS, int(bias_off + n / 4u))[n % 4u];
  v = rv_act(vec4(v), flags >> 2).x;
  uint e = (z * M + m) * N + n;
  if ((flags & 2u) != 0u)
    v += texelFetch(RES, int(res_off + e / 4u))[e % 4u];
  y[e] = v;
}

// Columns n..n+3 of row m (n a multiple of 4): one texel and one vec4 store
// each where N is a multiple of 4, else element by element.
void store_quad(uint z, uint m, uint n, vec4 v)
{
  if (N % 4u != 0u) {
    [[dont_unroll]] for (uint c = 0; c < 4; c++)
      if (n + c < N)
        store_out(z, m, n + c, v[c]);
    return;
  }
  if (n >= N)
    return;
  v *= alpha;
  if ((flags & 1u) != 0u)
    v += texelFetch(BIAS, int(bias_off + n / 4u));
  v = rv_act(v, flags >> 2);
  uint e = ((z * M + m) * N + n) / 4u;
  if ((flags & 2u) != 0u)
    v += texelFetch(RES, int(res_off + e));
  y4[e] = v;
}

// Which batch entry and row tile this workgroup has: the tiles of all batch
// entries are spread over the y and z grid dims (each limited to 65535).
bool tile_of(out uint z, out uint rb)
{
  uint idx = gl_WorkGroupID.z * gl_NumWorkGroups.y + gl_WorkGroupID.y;
  z = idx / row_blocks;
  rb = idx - z * row_blocks;
  return z < batch;
}

// A row: the element offset of row m (strided) or of its image (conv), and
// for a conv the top-left input pixel of its receptive field.
struct Row {
  uint base;
  int iy0, ix0;
};

Row row_of(uint z, uint m)
{
  Row r;
  if (A_MODE >= A_CONV_VEC4) {
    uint b = m / HWo, p = m - b * HWo;
    uint oy = p / Wo, ox = p - oy * Wo;
    r.base = b * H * W * Cin;
    r.iy0 = int(oy * stride) - pad_t;
    r.ix0 = int(ox * stride) - pad_l;
  } else {
    r.base = z * a_batch + m * sam;
    r.iy0 = 0;
    r.ix0 = 0;
  }
  return r;
}

float a_elem(Row r, uint k)
{
  if (k >= K)
    return 0.0;
  uint e;
  if (A_MODE >= A_CONV_VEC4) {
    uint cell = k / Cin, ky = cell / KW;
    int iy = r.iy0 + int(ky), ix = r.ix0 + int(cell - ky * KW);
    if (uint(iy) >= H || uint(ix) >= W)
      return 0.0;
    e = r.base + (uint(iy) * W + uint(ix)) * Cin + (k - cell * Cin);
  } else {
    e = r.base + k * sak;
  }
  return texelFetch(A, int(a_off + e / 4u))[e % 4u];
}

// A (m, k..k+3) for k a multiple of 4.
vec4 a_quad(Row r, uint k)
{
  if (A_MODE == A_VEC4) {
    return k < K ? texelFetch(A, int(a_off + (r.base + k) / 4u)) : vec4(0.0);
  } else if (A_MODE == A_CONV_VEC4) {
    uint cell = k / Cin, ky = cell / KW;
    int iy = r.iy0 + int(ky), ix = r.ix0 + int(cell - ky * KW);
    if (k >= K || uint(iy) >= H || uint(ix) >= W)
      return vec4(0.0);
    uint e = r.base + (uint(iy) * W + uint(ix)) * Cin + (k - cell * Cin);
    return texelFetch(A, int(a_off + e / 4u));
  }
  return vec4(a_elem(r, k), a_elem(r, k + 1u), a_elem(r, k + 2u), a_elem(r, k + 3u));
}

// B (k, n); callers clamp k and n into range, so the value is always finite.
float b_elem(uint z, uint k, uint n)
{
  uint e = z * b_batch + k * sbk + n * sbn;
  return texelFetch(B, int(b_off + e / 4u))[e % 4u];
}

#if defined(TILED)
// ---- GPUs: 64×64 output tiles in 16×16 threads, 4×4 outputs each, K in
// steps of 16 through shared memory.
#define BM 64
#define BN 64
#define BK 16
layout(local_size_x = 16, local_size_y = 16) in;

shared float As[BK][BM + 1];   // padded: the tile loads write along k
shared float Bs[BK][BN];

void main()
{
  uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  uint z, rb;
  if (!tile_of(z, rb))
    return;
  uint m0 = rb * BM, n0 = gl_WorkGroupID.x * BN;
  // thread (tx, ty) loads A rows ty + 16·i at k = tx, and B rows ty/4 + 4·i
  // at n = (ty % 4)·16 + tx
  Row rows[4];
  [[unroll]] for (uint i = 0; i < 4; i++)
    rows[i] = row_of(z, min(m0 + ty + 16 * i, M - 1));
  uint bn = min(n0 + (ty % 4) * 16 + tx, N - 1);

  float acc[4][4];
  [[unroll]] for (uint i = 0; i < 4; i++)
    [[unroll]] for (uint j = 0; j < 4; j++)
      acc[i][j] = 0.0;

  for (uint k0 = 0; k0 < K; k0 += BK) {
    [[unroll]] for (uint i = 0; i < 4; i++) {
      As[tx][ty + 16 * i] = a_elem(rows[i], k0 + tx);
      uint kb = ty / 4 + 4 * i;
      Bs[kb][(ty % 4) * 16 + tx] = b_elem(z, min(k0 + kb, K - 1), bn);
    }
    barrier();
    [[unroll]] for (uint kk = 0; kk < BK; kk++) {
      float a[4], b[4];
      [[unroll]] for (uint i = 0; i < 4; i++) {
        a[i] = As[kk][ty + 16 * i];
        b[i] = Bs[kk][tx + 16 * i];
      }
      [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint j = 0; j < 4; j++)
          acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
    barrier();
  }

  [[unroll]] for (uint i = 0; i < 4; i++) {
    uint m = m0 + ty + 16 * i;
    [[unroll]] for (uint j = 0; j < 4; j++) {
      uint n = n0 + tx + 16 * j;
      if (m < M && n < N)
        store_out(z, m, n, acc[i][j]);
    }
  }
}

#elif defined(COOPMAT_NV)
// ---- NVIDIA tensor cores: 64×64 output tiles in 4 subgroups of 32, each
// subgroup 2×2 accumulators of 16×16; A (rounded to fp16) and B staged
// through shared memory 32 k at a time. The self-check in rv-ops-gemm.c
// compares this kernel with TILED the first time a device uses it.
#define BM 64
#define BN 64
#define BK 32
layout(local_size_x = 128) in;

shared float16_t As[BM * BK];   // (m, k), row stride BK
shared float16_t Bs[BK * BN];   // (k, n), row stride BN
shared float Cs[BM * BN];

void main()
{
  uint tid = gl_LocalInvocationID.x;
  uint z, rb;
  if (!tile_of(z, rb))
    return;
  uint m0 = rb * BM, n0 = gl_WorkGroupID.x * BN;
  uint wm = (gl_SubgroupID / 2) * 32, wn = (gl_SubgroupID % 2) * 32;
  // thread tid loads A row tid % 64 at k = (tid / 64)·16 + 0..15, and B
  // (k, n) = (e / 64, e % 64) for e = tid + 128·i
  Row row = row_of(z, min(m0 + tid % BM, M - 1));
  uint ka = (tid / BM) * 16;

  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[2][2];
  [[unroll]] for (uint i = 0; i < 2; i++)
    [[unroll]] for (uint j = 0; j < 2; j++)
      acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);

  for (uint k0 = 0; k0 < K; k0 += BK) {
    [[unroll]] for (uint i = 0; i < 16; i++) {
      As[(tid % BM) * BK + ka + i] = float16_t(a_elem(row, k0 + ka + i));
      uint e = tid + 128 * i, kb = e / BN, n = e % BN;
      Bs[e] = float16_t(b_elem(z, min(k0 + kb, K - 1), min(n0 + n, N - 1)));
    }
    barrier();
    [[unroll]] for (uint kk = 0; kk < BK; kk += 16) {
      fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a[2], b[2];
      [[unroll]] for (uint i = 0; i < 2; i++) {
        coopMatLoadNV(a[i], As, (wm + 16 * i) * BK + kk, BK, false);
        coopMatLoadNV(b[i], Bs, kk * BN + wn + 16 * i, BN, false);
      }
      [[unroll]] for (uint i = 0; i < 2; i++)
        [[unroll]] for (uint j = 0; j < 2; j++)
          acc[i][j] = coopMatMulAddNV(a[i], b[j], acc[i][j]);
    }
    barrier();
  }

  [[unroll]] for (uint i = 0; i < 2; i++)
    [[unroll]] for (uint j = 0; j < 2; j++)
      coopMatStoreNV(acc[i][j], Cs, (wm + 16 * i) * BN + wn + 16 * j, BN, false);
  barrier();
  for (uint e = tid; e < BM * BN; e += 128) {
    uint m = m0 + e / BN, n = n0 + e % BN;
    if (m < M && n < N)
      store_out(z, m, n, Cs[e]);
  }
}

#elif defined(LANE_ROWS)
// ---- CPU drivers, narrow outputs: each lane computes TM rows × all TN
// columns of the tile; the lanes of a subgroup read the same B texels.
#define SG 8
layout(local_size_x = SG) in;

void main()
{
  uint lane = gl_LocalInvocationID.x;
  uint z, rb;
  if (!tile_of(z, rb))
    return;
  uint m0 = (rb * SG + lane) * TM;
  uint n0 = gl_WorkGroupID.x * TN;

  Row rows[TM];
  [[unroll]] for (uint i = 0; i < TM; i++)
    rows[i] = row_of(z, min(m0 + i, M - 1));
  uint cols[TN];
  [[unroll]] for (uint j = 0; j < TN; j++)
    cols[j] = min(n0 + j, N - 1);

  float acc[TM][TN];
  [[unroll]] for (uint i = 0; i < TM; i++)
    [[unroll]] for (uint j = 0; j < TN; j++)
      acc[i][j] = 0.0;

  for (uint k0 = 0; k0 < K; k0 += 4) {
    vec4 al[TM];
    [[unroll]] for (uint i = 0; i < TM; i++)
      al[i] = a_quad(rows[i], k0);
    [[unroll]] for (uint c = 0; c < 4; c++) {
      uint k = min(k0 + c, K - 1);
      float b[TN];
#ifdef BBCAST
      uint row = b_off + (z * b_batch + k * sbk) / 4;
      [[unroll]] for (uint jj = 0; jj < TN / 4; jj += SG) {
        vec4 v = texelFetch(B, int(row + min(n0 / 4 + jj + lane, N / 4 - 1)));
        [[unroll]] for (uint l = 0; l < SG; l++)
          [[unroll]] for (uint c2 = 0; c2 < 4; c2++)
            b[(jj + l) * 4 + c2] = subgroupBroadcast(v[c2], l);
      }
#else
      if (B_MODE == B_VEC4_N) {
        uint row = b_off + (z * b_batch + k * sbk) / 4;
        [[unroll]] for (uint j = 0; j < TN; j += 4) {
          vec4 v = texelFetch(B, int(row + cols[j] / 4));
          b[j] = v.x;
          b[j + 1] = v.y;
          b[j + 2] = v.z;
          b[j + 3] = v.w;
        }
      } else {
        [[unroll]] for (uint j = 0; j < TN; j++)
          b[j] = b_elem(z, k, cols[j]);
      }
#endif
      [[unroll]] for (uint i = 0; i < TM; i++)
        [[unroll]] for (uint j = 0; j < TN; j++)
          acc[i][j] = fma(al[i][c], b[j], acc[i][j]);
    }
  }

  vec4 quads[TM * TN / 4];
  [[unroll]] for (uint i = 0; i < TM; i++)
    [[unroll]] for (uint j = 0; j < TN; j += 4)
      quads[i * (TN / 4) + j / 4] = vec4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
  [[dont_unroll]] for (uint t = 0; t < TM * TN / 4; t++) {
    uint i = t / (TN / 4), jq = t % (TN / 4);
    if (m0 + i < M)
      store_quad(z, m0 + i, n0 + jq * 4, quads[t]);
  }
}

#else
// ---- CPU drivers: one subgroup of SG lanes per workgroup computes TM rows ×
// SG·TN columns. Lane l owns the column quads (4 columns) j·SG + l, so the
// lanes' B fetches are contiguous. K advances 4·SG at a time: lane l loads
// A (rows, k0 + 4l .. 4l+3) and the subgroup broadcasts it, one k at a time.
#define SG 8
// TM and TN are defines, not specialization constants: glslc then unrolls
// the loops and lavapipe keeps the tile in registers (spec constants measured
// 30% slower).
#ifndef TY
#define TY 1
#endif
layout(local_size_x = SG, local_size_y = TY) in;

void main()
{
  uint lane = gl_SubgroupInvocationID;
  uint z, rb;
  if (!tile_of(z, rb))
    return;
  uint m0 = (rb * TY + gl_LocalInvocationID.y) * TM;
  uint q0 = gl_WorkGroupID.x * (SG * TN / 4) + lane;   // first column quad of the lane

  Row rows[TM];
  [[unroll]] for (uint i = 0; i < TM; i++)
    rows[i] = row_of(z, min(m0 + i, M - 1));
  // out-of-range columns read the last column: finite, and never stored
  uint cols[TN];
  [[unroll]] for (uint j = 0; j < TN; j++)
    cols[j] = min((q0 + (j / 4) * SG) * 4 + j % 4, N - 1);

  float acc[TM][TN];
  [[unroll]] for (uint i = 0; i < TM; i++)
    [[unroll]] for (uint j = 0; j < TN; j++)
      acc[i][j] = 0.0;

  for (uint k0 = 0; k0 < K; k0 += 4 * SG) {
    vec4 al[TM];
    [[unroll]] for (uint i = 0; i < TM; i++)
      al[i] = a_quad(rows[i], k0 + 4 * lane);
    [[unroll]] for (uint q = 0; q < SG; q++) {
      // past K, A is zero and B repeats its last row
      uint kq = k0 + 4 * q;
      vec4 bk[TN];
      if (B_MODE == B_VEC4_K) {
        [[unroll]] for (uint j = 0; j < TN; j++)
          bk[j] = texelFetch(B, int(b_off + (z * b_batch + cols[j] * sbn + min(kq, K - 4)) / 4));
      }
      [[unroll]] for (uint c = 0; c < 4; c++) {
        uint k = min(kq + c, K - 1);
        float b[TN];
        if (B_MODE == B_VEC4_N) {
          uint row = b_off + (z * b_batch + k * sbk) / 4;
          [[unroll]] for (uint j = 0; j < TN; j += 4) {
            vec4 v = texelFetch(B, int(row + cols[j] / 4));
            b[j] = v.x;
            b[j + 1] = v.y;
            b[j + 2] = v.z;
            b[j + 3] = v.w;
          }
        } else if (B_MODE == B_VEC4_K) {
          [[unroll]] for (uint j = 0; j < TN; j++)
            b[j] = bk[j][c];
        } else {
          [[unroll]] for (uint j = 0; j < TN; j++)
            b[j] = b_elem(z, k, cols[j]);
        }
        [[unroll]] for (uint i = 0; i < TM; i++) {
          float a = subgroupBroadcast(al[i][c], q);
          [[unroll]] for (uint j = 0; j < TN; j++)
            acc[i][j] = fma(a, b[j], acc[i][j]);
        }
      }
    }
  }

  // The epilogue is a loop, not unrolled: one copy of the activation code
  // instead of TM·TN/4 keeps the JIT time of the kernel down.
  vec4 quads[TM * TN / 4];
  [[unroll]] for (uint i = 0; i < TM; i++)
    [[unroll]] for (uint j = 0; j < TN; j += 4)
      quads[i * (TN / 4) + j / 4] = vec4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
  [[dont_unroll]] for (uint t = 0; t < TM * TN / 4; t++) {
    uint i = t / (TN / 4), jq = t % (TN / 4);
    if (m0 + i < M)
      store_quad(z, m0 + i, (q0 + jq * SG) * 4, quads[t]);
  }
}
#endif
