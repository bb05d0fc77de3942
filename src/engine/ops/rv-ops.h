/* rv-ops.h: the op library. Each op checks shapes and dtypes, picks the kernel
 * variant for the device and records one (or a few) dispatches on a command
 * stream. Shape errors are recorded on the stream (see rv_cmd_failf) and make
 * the op a no-op, so a network's forward reports them at submit time.
 *
 * Layout conventions
 *   - activations are f32, row-major; images are channel-last (B, H, W, C);
 *     token sequences are (B, L, C).
 *   - linear weights are stored on the device as (K, N) = (in, out), i.e.
 *     transposed from PyTorch's (out, in); conv weights as (kh, kw, Cin, Cout).
 *     rv_weight_* upload host data from PyTorch layouts. Weights may be f32 or
 *     f16; biases and norm parameters likewise.
 *   - a tensor's dims may be viewed flattened: "(M, K)" accepts any tensor
 *     whose last dim is K, with M the product of the others. */
#pragma once

#include "rv-device.h"

G_BEGIN_DECLS

typedef enum {
  RV_ACT_NONE,
  RV_ACT_SILU,        /* x·σ(x) */
  RV_ACT_GELU,        /* exact: 0.5·x·(1 + erf(x/√2)) */
  RV_ACT_QUICK_GELU,  /* x·σ(1.702·x) */
} RvAct;

/* ---- matrix products (rv-ops-gemm.c) ---- */

/* y (M, N) = act (x (M, K) · w (K, N) + bias (N)) + residual (M, N).
 * bias and residual may be NULL; residual may not alias y. */
void rv_op_linear (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
                   const RvTensor *bias, RvAct act, const RvTensor *residual);

/* One input through n ≤ 3 linear layers of the same shape and dtype (an
 * attention's q, k and v projections): y (n, M, N), part i = x (M, K) ·
 * w[i] (K, N) + bias[i] (N). bias is NULL or has n entries. One dispatch
 * where the weights, and the biases, each lie in one memory block. */
void rv_op_linear_group (RvCmd *cmd, RvTensor *y, const RvTensor *x, int n,
                         const RvTensor *const *w, const RvTensor *const *bias);

/* Batched matrix product, all f32: y (B, M, N) = alpha · A · B where
 * A = a (B, M, K) or, with trans_a, a (B, K, M) transposed; likewise B from
 * b (B, K, N) or (B, N, K). a or b may have batch 1 (broadcast). 2-d tensors
 * are batch 1. */
void rv_op_matmul (RvCmd *cmd, RvTensor *y, const RvTensor *a, gboolean trans_a,
                   const RvTensor *b, gboolean trans_b, float alpha);

typedef struct {
  int kh, kw;
  int stride;                                  /* 1, 2, or = kh for patch convs */
  int pad_top, pad_left, pad_bottom, pad_right;
} RvConv2d;

/* y (B, Ho, Wo, Cout) = conv (x (B, H, W, Cin), w (kh, kw, Cin, Cout)) + bias + residual.
 * Ho = (H + pad_top + pad_bottom − kh) / stride + 1; zero padding. */
void rv_op_conv2d (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
                   const RvTensor *bias, const RvConv2d *p, const RvTensor *residual);

/* Device memory rv_op_conv2d takes beside y while it records (the scratch of
 * a 3×3 convolution run as Winograd, rv-ops-winograd.c; else 0), counted as on
 * a CPU driver, where it is used most: an upper bound elsewhere. */
guint64 rv_op_conv2d_scratch_bytes (gint64 batch, gint64 h, gint64 w, gint64 cin, gint64 cout,
                                    const RvConv2d *p);

/* ---- attention (rv-ops-attention.c) ---- */

/* o (B, Lq, H·D) = softmax (q·kᵀ·scale + mask) · v per head, where q is
 * (B, Lq, H·D), k and v (B, Lk, H·D). mask: NULL, (B, Lk) or (B, Lq, Lk)
 * additive f32; causal: key j > query i excluded. Never materializes the
 * (Lq, Lk) score matrix in device memory. */
void rv_op_attention (RvCmd *cmd, RvTensor *o, const RvTensor *q, const RvTensor *k,
                      const RvTensor *v, int heads, float scale, const RvTensor *mask,
                      gboolean causal);

/* y = softmax over the last dim of x (y may be x). */
void rv_op_softmax (RvCmd *cmd, RvTensor *y, const RvTensor *x);

/* ---- normalization, elementwise, resampling (rv-ops-basic.c) ---- */

typedef struct {
  const RvTensor *gamma, *beta;   /* (C) affine or NULL */
  const RvTensor *scale_shift;    /* (B, 2C): ·(1 + first half) + second half, or NULL */
  const RvTensor *mul, *add;      /* shape of x: ·mul + add (SpatialNorm), or NULL */
  RvAct           act;            /* applied last */
} RvNorm;

/* x, y (B, S…, C) channel-last; statistics per (batch, group) over S and the
 * group's C/groups channels, in f32 with a two-pass (or Welford) variance. */
void rv_op_group_norm (RvCmd *cmd, RvTensor *y, const RvTensor *x, int groups, float eps,
                       const RvNorm *n);

/* Over the last dim; gamma/beta (C) or NULL. */
void rv_op_layer_norm (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *gamma,
                       const RvTensor *beta, float eps);

void rv_op_unary (RvCmd *cmd, RvTensor *y, const RvTensor *x, RvAct act);

typedef enum {
  RV_BIN_ADD,
  RV_BIN_MUL,
  RV_BIN_PRELU,       /* a ≥ 0 ? a : a·b: PReLU with slopes b, e.g. (C) per channel */
} RvBinOp;

/* y = a ∘ b with b broadcast to a by numpy rules (y may be a). */
void rv_op_binary (RvCmd *cmd, RvTensor *y, const RvTensor *a, const RvTensor *b, RvBinOp op);
/* y = x·(1 + s) + b, s and b broadcast to x. */
void rv_op_scale_shift (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *s,
                        const RvTensor *b);
/* y = alpha·x + beta (elementwise, f32). */
void rv_op_affine (RvCmd *cmd, RvTensor *y, const RvTensor *x, float alpha, float beta);
/* y = alpha·x + r, r with x's element count (a scaled residual; y may be r). */
void rv_op_axpy (RvCmd *cmd, RvTensor *y, const RvTensor *x, float alpha, const RvTensor *r);
/* Concatenate a and b along dim (all other dims equal). */
void rv_op_concat (RvCmd *cmd, RvTensor *y, const RvTensor *a, const RvTensor *b, int dim);

/* (B, H, W, C) resampling */
void rv_op_upsample_nearest2x (RvCmd *cmd, RvTensor *y, const RvTensor *x);
void rv_op_avgpool2x2 (RvCmd *cmd, RvTensor *y, const RvTensor *x);
/* to y's size; source index floor(dst·in/out) */
void rv_op_resize_nearest (RvCmd *cmd, RvTensor *y, const RvTensor *x);
/* Pixel shuffle by r: x (B, H, W, C·r²) -> y (B, H·r, W·r, C) with
 * y[b, h·r + i, w·r + j, c] = x[b, h, w, c·r² + i·r + j] (torch's order in
 * NCHW, here channel-last); unshuffle is its inverse (H, W multiples of r). */
void rv_op_pixel_shuffle (RvCmd *cmd, RvTensor *y, const RvTensor *x, int r);
void rv_op_pixel_unshuffle (RvCmd *cmd, RvTensor *y, const RvTensor *x, int r);

/* y (B, dim) = sinusoidal embedding of the timesteps, computed on the host in
 * the reference's float32 arithmetic (sin/cos exactly rounded) and uploaded.
 * flip_sin_to_cos puts cos first; freq_shift as in diffusers. */
void rv_op_timestep_embedding (RvCmd *cmd, RvTensor *y, const float *timesteps, int batch,
                               gboolean flip_sin_to_cos, float freq_shift);

/* y (N, C) = table (V, C)[ids]; ids (N) i32 on the device. */
void rv_op_embedding (RvCmd *cmd, RvTensor *y, const RvTensor *table, const RvTensor *ids);

/* ---- weights (rv-weights.c) ---- */

/* Upload host f32 data in PyTorch layout to a new device tensor of dtype
 * RV_DTYPE_F32 or RV_DTYPE_F16, converting layout:
 *   linear: data (N, K) -> tensor (K, N)
 *   conv:   data (Cout, Cin, kh, kw) -> tensor (kh, kw, Cin, Cout)
 *   plain:  data as is, with the given shape */
RvTensor *rv_weight_linear (RvCmd *cmd, const float *data, gint64 n, gint64 k, RvDType dtype,
                            GError **error);
RvTensor *rv_weight_conv (RvCmd *cmd, const float *data, gint64 cout, gint64 cin, gint64 kh,
                          gint64 kw, RvDType dtype, GError **error);
RvTensor *rv_weight_plain (RvCmd *cmd, const float *data, int ndim, const gint64 *shape,
                           RvDType dtype, GError **error);
/* Host f32 -> device tensor of y's dtype (f32 or f16), recorded on cmd. */
void      rv_tensor_upload_f32 (RvCmd *cmd, RvTensor *y, const float *data, gint64 n);

/* IEEE half <-> float on the host (round to nearest even). */
guint16   rv_f32_to_f16 (float f);
float     rv_f16_to_f32 (guint16 h);

G_END_DECLS
