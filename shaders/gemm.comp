#version 450
// gemm.comp: the gemm op family — linear, batched matmul and conv2d as an
// implicit GEMM — with a fused epilogue y = act (alpha·A·B + bias) + residual.
// One source, three kernels chosen per device by rv-ops-gemm.c:
//   (default)   CPU drivers (lavapipe): register tiles read through texel
//               buffers; no shared memory, no barriers (see docs/devices.md).
//               TM (rows) and TN (columns) per invocation are defines.
//   TILED       any GPU: shared-memory tiles, independent of the subgroup size.
//   COOPMAT_NV  NVIDIA tensor cores: fp16 16×16×16 cooperative matrices with
//               f32 accumulation, staged through shared memory.
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require
#ifdef COOPMAT_NV
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif

#include "act.glsl"

// How A (M, K) is addressed: element (m, k) of batch z is at
// z·a_batch + m·sam + k·sak, or for a convolution row m = (b, oy, ox) and
// column k = (ky, kx, ci) of the NHWC input, zero outside the image. The
// VEC4 modes are what the CPU kernel reads a texel at a time; the GPU
// kernels treat them as their scalar forms.
#define A_VEC4_K 0     // sak = 1; K, sam, a_batch multiples of 4
#define A_VEC4_M 1     // sam = 1; M, sak, a_batch multiples of 4 (transposed A)
#define A_STRIDED 2
#define A_CONV_VEC4 3  // Cin a multiple of 4
#define A_CONV 4
#define A_CONV_CELL 5  // Cin a multiple of 4: K walked by kernel cell (CPU kernel)
#define A_CONV_ROWS 6  // no padding; KW·Cin, W·Cin, stride·Cin multiples of 4: K walked by
                       // kernel row, each a contiguous run of KW·Cin (CPU kernel)
// How B (K, N) is addressed: element (k, n) at z·b_batch + k·sbk + n·sbn.
#define B_VEC4_N 0     // sbn = 1; N, sbk, b_batch multiples of 4 (weights)
#define B_VEC4_K 1     // sbk = 1; K, sbn, b_batch multiples of 4 (transposed B)
#define B_STRIDED 2

layout(constant_id = 0) const uint A_MODE = A_STRIDED;
layout(constant_id = 1) const uint B_MODE = B_STRIDED;
// The CPU kernel's activation is a specialization constant: lavapipe runs
// both sides of every branch under a lane mask, so an unused activation costs
// as if it ran (a quarter of the epilogue's time, measured). ACT_DYNAMIC:
// read it from the push constants.
#define ACT_DYNAMIC 255
layout(constant_id = 3) const uint ACT = ACT_DYNAMIC;
// For the same reason the scalar store path is compiled out where N is known
// to be a multiple of 4.
const bool N_VEC4 = B_MODE == B_VEC4_N;

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
  uint H, W, Cin, Ho, Wo, KW, stride;
  int pad_t, pad_l;
  // GROUPS: batch entries 1 and 2 read B and the bias at these texel
  // offsets (a linear layer's input through up to 3 weights: q, k, v)
  uint b_off1, b_off2, bias_off1, bias_off2;
};

// A specialization constant, so that every other product compiles as if the
// offsets above did not exist (a run-time flag measured 15% slower on the
// CPU kernel's transposed-B matmul).
layout(constant_id = 4) const bool GROUPS = false;

// B's and the bias's texel offsets for batch entry z.
uint b_off_of(uint z)
{
  if (!GROUPS || z == 0u)
    return b_off;
  return z == 1u ? b_off1 : b_off2;
}

uint bias_off_of(uint z)
{
  if (!GROUPS || z == 0u)
    return bias_off;
  return z == 1u ? bias_off1 : bias_off2;
}

const bool CONV = A_MODE == A_CONV_VEC4 || A_MODE == A_CONV || A_MODE == A_CONV_CELL ||
                  A_MODE == A_CONV_ROWS;

uint act()
{
  return ACT == ACT_DYNAMIC ? flags >> 2 : ACT;
}

void store_out(uint z, uint m, uint n, float v)
{
  v *= alpha;
  if ((flags & 1u) != 0u)
    v += texelFetch(BIAS, int(bias_off_of(z) + n / 4u))[n % 4u];
  v = rv_act(vec4(v), act()).x;
  uint e = (z * M + m) * N + n;
  if ((flags & 2u) != 0u)
    v += texelFetch(RES, int(res_off + e / 4u))[e % 4u];
  y[e] = v;
}

// Columns n..n+3 of row m (n a multiple of 4): a texel and a vec4 store each
// where N is a multiple of 4, else element by element.
void store_quad(uint z, uint m, uint n, vec4 v)
{
  if (!N_VEC4 && N % 4u != 0u) {
    [[dont_unroll]] for (uint c = 0; c < 4; c++)
      if (n + c < N)
        store_out(z, m, n + c, v[c]);
    return;
  }
  if (n >= N)
    return;
  v *= alpha;
  if ((flags & 1u) != 0u)
    v += texelFetch(BIAS, int(bias_off_of(z) + n / 4u));
  v = rv_act(v, act());
  uint e = ((z * M + m) * N + n) / 4u;
  if ((flags & 2u) != 0u)
    v += texelFetch(RES, int(res_off + e));
  y4[e] = v;
}

// The batch entry and row tile of this workgroup: the tiles of all batch
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
  if (CONV) {
    uint hw = Ho * Wo, b = m / hw, oy = (m - b * hw) / Wo, ox = m - b * hw - oy * Wo;
    return Row(b * H * W * Cin, int(oy * stride) - pad_t, int(ox * stride) - pad_l);
  }
  return Row(z * a_batch + m * sam, 0, 0);
}

// Element offset of conv input (row r, column k), or -1 in the zero padding.
int conv_offset(Row r, uint k)
{
  uint cell = k / Cin, ky = cell / KW;
  int iy = r.iy0 + int(ky), ix = r.ix0 + int(cell - ky * KW);
  if (uint(iy) >= H || uint(ix) >= W)
    return -1;
  return int(r.base + (uint(iy) * W + uint(ix)) * Cin + (k - cell * Cin));
}

float a_elem(Row r, uint k)
{
  if (k >= K)
    return 0.0;
  int e = CONV ? conv_offset(r, k) : int(r.base + k * sak);
  return e < 0 ? 0.0 : texelFetch(A, int(a_off) + e / 4)[e % 4];
}

// B (k, n); callers clamp k and n into range, so the value is always finite.
float b_elem(uint z, uint k, uint n)
{
  uint e = z * b_batch + k * sbk + n * sbn;
  return texelFetch(B, int(b_off_of(z) + e / 4u))[e % 4u];
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
  // at n = (ty % 4)·16 + tx; rows and columns past the end repeat the last
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
// through shared memory 32 k at a time. rv-ops-gemm.c compares this kernel
// with TILED the first time a device uses it.
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

#else
// ---- CPU drivers: each invocation (a SIMD lane on lavapipe) computes TM
// consecutive rows × TN columns in registers, 4 k per step with A read a
// texel (4 k, or 4 rows when A is transposed) at a time. The invocations of a
// workgroup take consecutive row blocks and the same columns, so their B
// fetches read the same texels. On lavapipe this measured faster than sharing
// A across the subgroup with subgroupBroadcast (the texel-buffer kernel that
// docs/devices.md describes, each with its best tile): 1.2× at 1024³, 2–3×
// with 32 output columns. The tile (TM × TN) is a define: rv-ops-gemm.c picks
// one of the built tiles per shape.
//
// A_CONV_CELL (a convolution with many channels, a multiple of 4) walks K as
// (kernel cell, channel): the receptive-field pixel of each row, and whether
// it lies in the padding, is worked out once per cell, and the channel loop
// reads consecutive texels with no division and no branch. Every other mode
// keeps the single loop over K (the extra loop level measured slower there).
layout(local_size_x_id = 2) in;   // the SIMD width: the subgroup size

// K is a multiple of 4 wherever A or B is read 4 k at a time, so no k needs
// clamping there.
const bool K_VEC4 = A_MODE == A_VEC4_K || A_MODE == A_CONV_VEC4 || A_MODE == A_CONV_CELL ||
                    A_MODE == A_CONV_ROWS || B_MODE == B_VEC4_K;

// acc += A (rows, k0..k0+3) · B (k0..k0+3, columns), with A in a[]: the
// body shared by the two walks over K below (a macro: each walk's loop stays
// as plain as it would be alone, which is what lavapipe's compiler does best
// with).
#define MAC4(k0)                                                              \
  {                                                                           \
    vec4 bk[TN];   /* B_VEC4_K: B (k0..k0+3, column j) */                     \
    if (B_MODE == B_VEC4_K) {                                                 \
      [[unroll]] for (uint j = 0; j < TN; j++)                                \
        bk[j] = texelFetch(B, int((b_base + cols[j] * sbn + (k0)) / 4));      \
    }                                                                         \
    [[unroll]] for (uint c = 0; c < 4; c++) {                                 \
      uint k = K_VEC4 ? (k0) + c : min((k0) + c, K - 1);                      \
      float b[TN];                                                            \
      if (B_MODE == B_VEC4_N) {                                               \
        uint row = (b_base + k * sbk) / 4;                                    \
        [[unroll]] for (uint j = 0; j < TN; j += 4) {                         \
          vec4 v = texelFetch(B, int(row + cols[j] / 4));                     \
          b[j] = v.x;                                                         \
          b[j + 1] = v.y;                                                     \
          b[j + 2] = v.z;                                                     \
          b[j + 3] = v.w;                                                     \
        }                                                                     \
      } else if (B_MODE == B_VEC4_K) {                                        \
        [[unroll]] for (uint j = 0; j < TN; j++)                              \
          b[j] = bk[j][c];                                                    \
      } else {                                                                \
        [[unroll]] for (uint j = 0; j < TN; j++)                              \
          b[j] = b_elem(z, k, cols[j]);                                       \
      }                                                                       \
      [[unroll]] for (uint i = 0; i < TM; i++)                                \
        [[unroll]] for (uint j = 0; j < TN; j++)                              \
          acc[i][j] = fma(a[i][c], b[j], acc[i][j]);                          \
    }                                                                         \
  }

void main()
{
  uint z, rb;
  if (!tile_of(z, rb))
    return;
#ifdef LANES_N
  // few rows (a batch of timestep or image embeddings, the prior's last
  // tokens): the lanes take consecutive column blocks of the same rows
  uint m0 = rb * TM;
  uint n0 = (gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x) * TN;
#else
  uint m0 = (rb * gl_WorkGroupSize.x + gl_LocalInvocationID.x) * TM;
  uint n0 = gl_WorkGroupID.x * TN;
#endif

  // rows and columns past the end repeat the last one: finite, never stored
  Row rows[TM];
  [[unroll]] for (uint i = 0; i < TM; i++)
    rows[i] = row_of(z, min(m0 + i, M - 1));
  uint cols[TN];
  [[unroll]] for (uint j = 0; j < TN; j++)
    cols[j] = min(n0 + j, N - 1);
  uint a_base = a_off * 4 + z * a_batch;   // A_VEC4_M: element (0, 0) of this batch entry
  uint b_base = b_off_of(z) * 4 + z * b_batch;

  float acc[TM][TN];
  [[unroll]] for (uint i = 0; i < TM; i++)
    [[unroll]] for (uint j = 0; j < TN; j++)
      acc[i][j] = 0.0;

  if (A_MODE != A_CONV_CELL && A_MODE != A_CONV_ROWS) {
    // one loop over K, 4 k at a time
    for (uint k0 = 0; k0 < K; k0 += 4) {
      // A (rows, k0..k0+3); zero past K, where B repeats its last row
      vec4 a[TM];
      if (A_MODE == A_VEC4_K) {
        [[unroll]] for (uint i = 0; i < TM; i++)
          a[i] = texelFetch(A, int(a_off + (rows[i].base + k0) / 4));
      } else if (A_MODE == A_CONV_VEC4) {
        // the 4 columns are 4 channels of one pixel
        [[unroll]] for (uint i = 0; i < TM; i++) {
          int e = conv_offset(rows[i], k0);
          a[i] = e < 0 ? vec4(0.0) : texelFetch(A, int(a_off) + e / 4);
        }
      } else if (A_MODE == A_VEC4_M) {
        [[unroll]] for (uint c = 0; c < 4; c++) {
          uint k = min(k0 + c, K - 1);
          [[unroll]] for (uint i = 0; i < TM; i += 4) {
            vec4 v = k0 + c < K ? texelFetch(A, int((a_base + k * sak + min(m0 + i, M - 4)) / 4))
                                : vec4(0.0);
            a[i][c] = v.x;
            a[i + 1][c] = v.y;
            a[i + 2][c] = v.z;
            a[i + 3][c] = v.w;
          }
        }
      } else {
        [[unroll]] for (uint i = 0; i < TM; i++)
          a[i] = vec4(a_elem(rows[i], k0), a_elem(rows[i], k0 + 1),
                      a_elem(rows[i], k0 + 2), a_elem(rows[i], k0 + 3));
      }
      MAC4(k0)
    }
  } else {
    // K as (kernel cell, channel), or (A_CONV_ROWS) as (kernel row, the
    // row's KW pixels × Cin channels, which lie next to each other)
    const bool ROWS = A_MODE == A_CONV_ROWS;
    uint run = ROWS ? KW * Cin : Cin;
    for (uint cell = 0; cell < K / run; cell++) {
      // the texel of (row i, the cell's first element), and 0 where the
      // row's pixel is in the padding (its texel index is then a readable one)
      int at[TM];
      float av[TM];
      uint ky = ROWS ? cell : cell / KW;
      uint kx = ROWS ? 0u : cell - ky * KW;
      [[unroll]] for (uint i = 0; i < TM; i++) {
        int iy = rows[i].iy0 + int(ky), ix = rows[i].ix0 + int(kx);
        bool inside = uint(iy) < H && uint(ix) < W;
        av[i] = inside ? 1.0 : 0.0;
        at[i] = int(a_off) + (inside ? int((rows[i].base + (uint(iy) * W + uint(ix)) * Cin) / 4u) : 0);
      }
      for (uint kc = 0; kc < run; kc += 4) {
        vec4 a[TM];
        [[unroll]] for (uint i = 0; i < TM; i++)
          a[i] = texelFetch(A, at[i] + int(kc / 4)) * av[i];
        MAC4(cell * run + kc)
      }
    }
  }

  // The epilogue is a loop, not unrolled: one copy of the activation code
  // instead of TM·TN/4 keeps the kernel's JIT time down.
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
#endif
