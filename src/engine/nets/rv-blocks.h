/* rv-blocks.h: the building blocks the networks share (norms, ResNet block,
 * attention block, resamplers, the pre-LN transformer layer stack), each with
 * its weight table and forward. */
#pragma once

#include "rv-net-common.h"

G_BEGIN_DECLS

/* ---- forward context ---- */

/* What a forward of image-shaped blocks carries along. */
typedef struct {
  RvCmd          *cmd;
  const char     *what;           /* "UNet", "MoVQ": for messages */
  gsize           binding_limit;  /* most bytes one dispatch may write */
  gboolean        refuse_large;   /* an activation over binding_limit is an error (else convs
                                   * and attention run in bands of rows) */
  const RvTensor *zq;             /* SpatialNorm's conditioning (B, h, w, Z), or NULL */
  RvTensor       *zq_level;       /* zq resized to the current level (owned), or NULL */
} RvNetCtx;

/* binding_limit: 0 for the device's maxStorageBufferRange, else at most that. */
void      rv_net_ctx_init (RvNetCtx *f, RvCmd *cmd, const char *what, gsize binding_limit,
                           gboolean refuse_large);
void      rv_net_ctx_clear (RvNetCtx *f);
/* A new f32 activation, or NULL with the error on cmd. */
RvTensor *rv_ctx_tensor (RvNetCtx *f, int ndim, const gint64 *shape);
#define RV_CTX_TENSOR(f, ...) \
  rv_ctx_tensor ((f), (int) (sizeof ((const gint64[]) { __VA_ARGS__ }) / sizeof (gint64)), \
                 (const gint64[]) { __VA_ARGS__ })

extern const RvConv2d rv_conv_same3;      /* 3×3, stride 1, padding 1 */
extern const RvConv2d rv_conv_pointwise;  /* 1×1 */
RvConv2d  rv_conv_same (int k);           /* k×k (odd), stride 1, "same" padding */

/* A new (B, Ho, Wo, Cout) = conv (x, w) + bias (+ res). An output larger than
 * one binding is computed in bands of rows, each reading just the input rows
 * its windows cover: the same sums as one dispatch. NULL x: NULL. */
RvTensor *rv_block_conv (RvNetCtx *f, const RvTensor *x, const RvTensor *w, const RvTensor *bias,
                         const RvConv2d *p, const RvTensor *res);
/* A new o = attention of q over k, v with `heads` heads, scaled by
 * head_dim^−½. q, k, v (B, H, W, C) of one image size may be split into bands
 * of query rows when o exceeds a binding; other shapes must fit one. */
RvTensor *rv_block_attention (RvNetCtx *f, const RvTensor *q, const RvTensor *k,
                              const RvTensor *v, int heads);

/* ---- normalization ---- */

/* GroupNorm; a SpatialNorm (MoVQ's decoder) adds 1×1 convolutions of zq that
 * give its per-pixel scale and shift. */
typedef struct {
  int       groups;
  float     eps;
  RvTensor *gamma, *beta;                     /* (C) */
  RvTensor *conv_y, *conv_y_bias;             /* (1, 1, Z, C), (C); NULL for GroupNorm */
  RvTensor *conv_b, *conv_b_bias;
} RvGroupNorm;

/* prefix.weight / .bias, or a SpatialNorm's prefix.norm_layer.*, conv_y.*,
 * conv_b.* (zq_channels > 0). */
void      rv_group_norm_walk (RvWeightWalk *w, RvGroupNorm *n, const char *prefix, gint64 c,
                              gint64 zq_channels);
/* A new act (norm (x)) of x's shape, the GroupNorm's affine replaced by
 * (1 + scale)·, + shift when scale_shift (B, 2C) is given. */
RvTensor *rv_group_norm_forward (RvNetCtx *f, const RvGroupNorm *n, const RvTensor *x, RvAct act,
                                 const RvTensor *scale_shift);

/* ---- ResNet block (ResnetBlock2D, ResnetBlockCondNorm2D) ----
 *   h = act (norm1 (x)), then x and h both resampled (resample)
 *   h = conv1 (h)
 *   h = act (norm2 (h)·(1 + scale) + shift)    [RV_TIME_SCALE_SHIFT]
 *    or act (norm2 (h + time_emb_proj (temb))) [RV_TIME_ADD]
 *    or act (norm2 (h))                        [RV_TIME_NONE]
 *   out = (shortcut (x) + conv2 (h)) / out_scale
 * The shortcut is a 1×1 conv when cin ≠ cout, else x itself. */
typedef enum {
  RV_RESNET_SAME,
  RV_RESNET_DOWN,       /* 2×2 average pool */
  RV_RESNET_UP,         /* nearest ×2 */
} RvResnetResample;

typedef enum { RV_TIME_NONE, RV_TIME_ADD, RV_TIME_SCALE_SHIFT } RvTimeCond;

typedef struct {
  int         cin, cout;
  RvAct       act;
  RvResnetResample resample;
  RvTimeCond  time;
  int         temb_dim;           /* with time conditioning: the embedding's width */
  float       out_scale;          /* 1: none */
  RvGroupNorm norm1, norm2;
  RvTensor   *conv1_w, *conv1_b, *temb_w, *temb_b, *conv2_w, *conv2_b, *short_w, *short_b;
} RvResnet;

/* The layout fields must be set; the norms' groups and eps too. */
void      rv_resnet_walk (RvWeightWalk *w, RvResnet *r, const char *prefix, gint64 zq_channels);
/* The block on x (B, H, W, Cin); temb: act (emb) (B, temb_dim) or NULL.
 * Frees x when `consume` (as soon as it is no longer needed). */
RvTensor *rv_resnet_forward (RvNetCtx *f, const RvResnet *r, RvTensor *x, gboolean consume,
                             const RvTensor *temb);
/* The same with time_emb_proj (temb) given, (B, Cout or 2·Cout), instead of
 * temb: a loop that knows its timesteps computes them all at once. */
RvTensor *rv_resnet_forward_proj (RvNetCtx *f, const RvResnet *r, RvTensor *x, gboolean consume,
                                  const RvTensor *proj);
/* Width of time_emb_proj's output: Cout, or 2·Cout (scale and shift). */
gint64    rv_resnet_time_width (const RvResnet *r);
/* Spatial size after the block. */
gint64    rv_resample_size (RvResnetResample r, gint64 size);

/* ---- attention block ----
 *   t = norm (x); q = to_q (t)
 *   k = [add_k_proj (ctx) | to_k (t)], v likewise (those present, context first)
 *   out = to_out.0 (attention (q, k, v)) + x
 * x (B, H, W, C); ctx (B, T, X) with added_kv (AttnAddedKVProcessor). */
typedef struct {
  int         channels, heads, cross_dim;
  gboolean    self_kv;            /* to_k, to_v of x */
  gboolean    added_kv;           /* add_k_proj, add_v_proj of the context */
  gboolean    pointwise;          /* projections as 1×1 convs over the image (else linears
                                   * over its pixels as tokens) */
  RvGroupNorm norm;
  RvTensor   *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;
  RvTensor   *add_k_w, *add_k_b, *add_v_w, *add_v_b, *out_w, *out_b;
} RvAttn;

/* norm_prefix: the norm's full name ("….group_norm"). */
void      rv_attn_walk (RvWeightWalk *w, RvAttn *a, const char *prefix, const char *norm_prefix,
                        gint64 zq_channels);
/* The context's keys and values, add_k_proj (ctx) and add_v_proj (ctx)
 * (B, T, C) each, new in *k and *v: what every forward of the block with that
 * context reads. FALSE with the error on f->cmd. */
gboolean  rv_attn_context_kv (RvNetCtx *f, const RvAttn *a, const RvTensor *ctx, RvTensor **k,
                              RvTensor **v);
/* Frees x when `consume`. ctx_k, ctx_v: the context's keys and values from
 * rv_attn_context_kv, for a block with added_kv (else NULL). */
RvTensor *rv_attn_forward (RvNetCtx *f, const RvAttn *a, RvTensor *x, gboolean consume,
                           const RvTensor *ctx_k, const RvTensor *ctx_v);

/* ---- resamplers with a convolution (Upsample2D, Downsample2D) ----
 * up: conv3×3 (nearest ×2 (x)); down: conv3×3 stride 2 padded right and
 * bottom by one (padding 0). prefix.conv.weight / .bias. */
typedef struct {
  gboolean  up;
  RvTensor *conv_w, *conv_b;       /* (3, 3, C, C) */
} RvSampler;

void      rv_sampler_walk (RvWeightWalk *w, RvSampler *s, const char *prefix, gint64 c);
/* Consumes x. */
RvTensor *rv_sampler_forward (RvNetCtx *f, const RvSampler *s, RvTensor *x);

/* ---- the pre-LN transformer layer stack (CLIP towers, prior) ----
 *   x += o (attention (ln1 (x)));  x += fc2 (act (fc1 (ln2 (x))))
 * with biases everywhere. CLIP calls the parts layer_norm1, self_attn.q_proj,
 * …, mlp.fc2; the prior norm1, attn1.to_q, …, ff.net.2. */
typedef struct {
  RvTensor *w, *b;
} RvAffine;                        /* a linear layer's or a LayerNorm's weight and bias */

typedef struct {
  RvAffine ln1, q, k, v, o, ln2, fc1, fc2;
} RvPreLNLayer;

/* Checkpoint names of a layer's parts, after "<prefix>.<i>.". */
typedef struct {
  const char *ln1, *q, *k, *v, *o, *ln2, *fc1, *fc2;
} RvPreLNNames;

typedef struct {
  const char         *prefix;      /* "text_model.encoder.layers" */
  const RvPreLNNames *names;
  int                 layers, hidden, heads, mlp;
  RvAct               act;
  float               eps;
} RvPreLNStack;

/* Walks layers[0 .. s->layers) (allocated by the caller). */
void      rv_pre_ln_walk (RvWeightWalk *w, const RvPreLNStack *s, RvPreLNLayer *layers);
/* x (B, L, hidden) through the stack, attention scaled by head_dim^−½ with an
 * optional additive mask and causal exclusion as rv_op_attention. Consumes
 * x; returns the result, or NULL with the error on cmd. */
RvTensor *rv_pre_ln_forward (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers,
                             RvTensor *x, const RvTensor *mask, gboolean causal);

/* A causal stack whose first P tokens stay the same from call to call (the
 * prior's text) computes them once: their keys and values, layer by layer,
 * are all the later tokens need of them.
 * rv_pre_ln_prefix runs x (B, P, hidden) through the stack, causal, with the
 * additive padding mask (B, P) or NULL, and writes each layer's keys and
 * values into rows [0, P) of keys[i] / values[i], (B, L, hidden) each.
 * rv_pre_ln_forward_suffix runs the other tokens x (B, L − P, hidden): their
 * keys and values go to rows [P, L), and their attention reads all L rows
 * under the additive mask (B, L − P, L), which must carry the causal
 * exclusion. Both consume x; the suffix forward returns its result, or NULL
 * with the error on cmd. */
gboolean  rv_pre_ln_prefix (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers,
                            RvTensor *x, const RvTensor *mask, RvTensor **keys, RvTensor **values);
RvTensor *rv_pre_ln_forward_suffix (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers,
                                    RvTensor *x, RvTensor **keys, RvTensor **values,
                                    const RvTensor *mask);

G_END_DECLS
