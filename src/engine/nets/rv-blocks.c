/* rv-blocks.c: the shared building blocks of the networks (norms, ResNet
 * block, attention block, resamplers, pre-LN layers): weight tables and
 * forwards. */
#include "rv-blocks.h"

#include <math.h>

/* Alignment of a storage-buffer binding's offset that every device accepts
 * (Vulkan's largest minStorageBufferOffsetAlignment), and of a tensor read
 * through the f32 texel view (one RGBA32F texel). */
#define BIND_ALIGN 256
#define TEXEL_ALIGN 16

const RvConv2d rv_conv_same3 = { 3, 3, 1, 1, 1, 1, 1 };
const RvConv2d rv_conv_pointwise = { 1, 1, 1, 0, 0, 0, 0 };
/* Downsample2D with padding 0: pad right and bottom by one, then stride 2 */
static const RvConv2d conv_down3 = { 3, 3, 2, 0, 0, 1, 1 };

RvConv2d
rv_conv_same (int k)
{
  return (RvConv2d) { k, k, 1, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2 };
}

/* ---- forward context ---- */

void
rv_net_ctx_init (RvNetCtx *f, RvCmd *cmd, const char *what, gsize binding_limit,
                 gboolean refuse_large)
{
  gsize range = rv_device_caps (rv_cmd_device (cmd))->max_storage_range;
  *f = (RvNetCtx) { .cmd = cmd, .what = what, .refuse_large = refuse_large,
                    .binding_limit = binding_limit > 0 ? MIN (binding_limit, range) : range };
}

void
rv_net_ctx_clear (RvNetCtx *f)
{
  g_clear_pointer (&f->zq_level, rv_tensor_free);
}

/* The GEMM and attention kernels bind their output whole: where the network
 * does not split work (refuse_large), an activation must fit one binding. */
RvTensor *
rv_ctx_tensor (RvNetCtx *f, int ndim, const gint64 *shape)
{
  RvTensor *t = rv_net_tensor (f->cmd, ndim, shape);
  if (t != NULL && f->refuse_large && rv_tensor_nbytes (t) > f->binding_limit)
    {
      rv_cmd_failf (f->cmd, RV_ERROR_UNSUPPORTED,
                    "%s: an activation of %.0f MiB exceeds the %.0f MiB this device can "
                    "bind at once; use a smaller image size or fewer images at once.",
                    f->what, rv_tensor_nbytes (t) / 1048576.0, f->binding_limit / 1048576.0);
      g_clear_pointer (&t, rv_tensor_free);
    }
  return t;
}

/* Rows [r0, r0 + n) of image b of t (B, H, W, C): a (1, n, W, C) view of its memory. */
static RvTensor
rows_of (const RvTensor *t, gint64 b, gint64 r0, gint64 n)
{
  RvTensor v = *t;
  gsize row = (gsize) t->shape[2] * t->shape[3] * sizeof (float);
  v.offset += (b * t->shape[1] + r0) * row;
  v.size = n * row;
  v.shape[0] = 1;
  v.shape[1] = n;
  return v;
}

/* Rows of t to read: the view when it starts on a texel, else a copy (*copy,
 * for the caller to free). */
static const RvTensor *
band_in (RvNetCtx *f, const RvTensor *t, gint64 b, gint64 r0, gint64 n, RvTensor *view,
         RvTensor **copy)
{
  *view = rows_of (t, b, r0, n);
  *copy = NULL;
  if (view->offset % TEXEL_ALIGN == 0)
    return view;
  *copy = RV_CTX_TENSOR (f, 1, n, t->shape[2], t->shape[3]);
  if (*copy != NULL)
    rv_cmd_copy (f->cmd, *copy, 0, t, view->offset - t->offset, view->size);
  return *copy;
}

/* Rows of t to write: the view when it can be bound in place, else a scratch
 * tensor (*scratch) that band_out_done copies into place. */
static RvTensor *
band_out (RvNetCtx *f, RvTensor *t, gint64 b, gint64 r0, gint64 n, RvTensor *view,
          RvTensor **scratch)
{
  *view = rows_of (t, b, r0, n);
  *scratch = NULL;
  if (view->offset % BIND_ALIGN == 0)
    return view;
  *scratch = RV_CTX_TENSOR (f, 1, n, t->shape[2], t->shape[3]);
  return *scratch;
}

static void
band_out_done (RvNetCtx *f, RvTensor *t, const RvTensor *view, RvTensor *scratch)
{
  if (scratch == NULL)
    return;
  rv_cmd_copy (f->cmd, t, view->offset - t->offset, scratch, 0, view->size);
  rv_tensor_free (scratch);
}

/* Output rows per band so that one band of rows of `row` bytes fits a binding. */
static gint64
band_rows (RvNetCtx *f, gsize row)
{
  gint64 rows = (gint64) (f->binding_limit / row);
  if (rows < 1)
    rv_cmd_failf (f->cmd, RV_ERROR_UNSUPPORTED,
                  "%s: one row of a feature map (%.1f MiB) is larger than this device can "
                  "write at once; try a smaller image size.", f->what, row / 1048576.0);
  return rows;
}

RvTensor *
rv_block_conv (RvNetCtx *f, const RvTensor *x, const RvTensor *w, const RvTensor *bias,
               const RvConv2d *p, const RvTensor *res)
{
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  gint64 batch = x->shape[0], h = x->shape[1];
  gint64 ho = (h + p->pad_top + p->pad_bottom - p->kh) / p->stride + 1;
  gint64 wo = (x->shape[2] + p->pad_left + p->pad_right - p->kw) / p->stride + 1;
  RvTensor *y = RV_CTX_TENSOR (f, batch, ho, wo, w->shape[3]);
  if (y == NULL)
    return NULL;
  if (y->size <= f->binding_limit)
    {
      rv_op_conv2d (f->cmd, y, x, w, bias, p, res);
      return y;
    }
  gint64 band = band_rows (f, wo * w->shape[3] * sizeof (float));
  for (gint64 b = 0; b < batch && band > 0; b++)
    for (gint64 r0 = 0; r0 < ho; r0 += band)
      {
        gint64 n = MIN (band, ho - r0);
        gint64 i0 = r0 * p->stride - p->pad_top;
        gint64 i1 = (r0 + n - 1) * p->stride - p->pad_top + p->kh;
        RvConv2d bp = *p;
        bp.pad_top = (int) MAX (0, -i0);
        bp.pad_bottom = (int) MAX (0, i1 - h);
        i0 = MAX (i0, 0);
        i1 = MIN (i1, h);
        RvTensor xv, yv, rv;
        g_autoptr (RvTensor) xcopy = NULL;
        g_autoptr (RvTensor) rcopy = NULL;
        RvTensor *ys = NULL;
        const RvTensor *xb = band_in (f, x, b, i0, i1 - i0, &xv, &xcopy);
        const RvTensor *rb = res != NULL ? band_in (f, res, b, r0, n, &rv, &rcopy) : NULL;
        RvTensor *yb = band_out (f, y, b, r0, n, &yv, &ys);
        if (xb != NULL && yb != NULL && (res == NULL || rb != NULL))
          rv_op_conv2d (f->cmd, yb, xb, w, bias, &bp, rb);
        band_out_done (f, y, &yv, ys);
      }
  return y;
}

RvTensor *
rv_block_attention (RvNetCtx *f, const RvTensor *q, const RvTensor *k, const RvTensor *v,
                    int heads)
{
  if (q == NULL || k == NULL || v == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  gint64 c = q->shape[q->ndim - 1];
  float scale = 1.0f / sqrtf ((float) (c / heads));
  RvTensor *o = rv_ctx_tensor (f, q->ndim, q->shape);
  if (o == NULL)
    return NULL;
  if (o->size <= f->binding_limit)
    {
      rv_op_attention (f->cmd, o, q, k, v, heads, scale, NULL, FALSE);
      return o;
    }
  if (q->ndim != 4 || k->ndim != 4 || k->shape[1] != q->shape[1])
    {
      rv_cmd_failf (f->cmd, RV_ERROR_UNSUPPORTED, "%s: an attention output of %.0f MiB "
                    "exceeds what this device can bind at once", f->what, o->size / 1048576.0);
      g_clear_pointer (&o, rv_tensor_free);
      return NULL;
    }
  /* queries in bands of rows, each over all keys of its image */
  gint64 batch = q->shape[0], h = q->shape[1];
  gint64 band = band_rows (f, q->shape[2] * c * sizeof (float));
  for (gint64 b = 0; b < batch && band > 0; b++)
    {
      RvTensor kv, vv;
      g_autoptr (RvTensor) kcopy = NULL;
      g_autoptr (RvTensor) vcopy = NULL;
      const RvTensor *kb = band_in (f, k, b, 0, h, &kv, &kcopy);
      const RvTensor *vb = band_in (f, v, b, 0, h, &vv, &vcopy);
      for (gint64 r0 = 0; r0 < h; r0 += band)
        {
          gint64 n = MIN (band, h - r0);
          RvTensor qv, ov;
          g_autoptr (RvTensor) qcopy = NULL;
          RvTensor *os = NULL;
          const RvTensor *qb = band_in (f, q, b, r0, n, &qv, &qcopy);
          RvTensor *ob = band_out (f, o, b, r0, n, &ov, &os);
          if (qb != NULL && kb != NULL && vb != NULL && ob != NULL)
            rv_op_attention (f->cmd, ob, qb, kb, vb, heads, scale, NULL, FALSE);
          band_out_done (f, o, &ov, os);
        }
    }
  return o;
}

/* ---- normalization ---- */

enum { S_C = -1, S_Z = -2, S_CIN = -3, S_COUT = -4, S_TPROJ = -5, S_TEMB = -6, S_X = -7,
       S_F = -8 };

/* flags of the blocks' optional weights */
enum { HAS_TIME = 1 << 0, HAS_SHORTCUT = 1 << 1, HAS_SELF_KV = 1 << 2, HAS_ADDED_KV = 1 << 3 };

static const RvWeightSpec group_norm_weights[] = {
  RV_WEIGHT (RvGroupNorm, gamma, "weight", RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvGroupNorm, beta,  "bias",   RV_WEIGHT_PLAIN, 0, S_C),
};

static const RvWeightSpec spatial_norm_weights[] = {
  RV_WEIGHT (RvGroupNorm, gamma,       "norm_layer.weight", RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvGroupNorm, beta,        "norm_layer.bias",   RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvGroupNorm, conv_y,      "conv_y.weight",     RV_WEIGHT_CONV,  0, S_C, S_Z, 1, 1),
  RV_WEIGHT (RvGroupNorm, conv_y_bias, "conv_y.bias",       RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvGroupNorm, conv_b,      "conv_b.weight",     RV_WEIGHT_CONV,  0, S_C, S_Z, 1, 1),
  RV_WEIGHT (RvGroupNorm, conv_b_bias, "conv_b.bias",       RV_WEIGHT_PLAIN, 0, S_C),
};

void
rv_group_norm_walk (RvWeightWalk *w, RvGroupNorm *n, const char *prefix, gint64 c,
                    gint64 zq_channels)
{
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_C] = c;
  sizes[-S_Z] = zq_channels;
  if (zq_channels > 0)
    RV_WEIGHTS_WALK (w, n, prefix, spatial_norm_weights, 0, sizes);
  else
    RV_WEIGHTS_WALK (w, n, prefix, group_norm_weights, 0, sizes);
}

/* zq (B, h, w, Z) at a feature map's size, nearest-neighbour as
 * F.interpolate: the latents themselves at the coarsest level. */
static const RvTensor *
level_zq (RvNetCtx *f, gint64 h, gint64 w)
{
  if (f->zq->shape[1] == h && f->zq->shape[2] == w)
    return f->zq;
  if (f->zq_level != NULL && f->zq_level->shape[1] == h && f->zq_level->shape[2] == w)
    return f->zq_level;
  g_clear_pointer (&f->zq_level, rv_tensor_free);
  f->zq_level = RV_CTX_TENSOR (f, f->zq->shape[0], h, w, f->zq->shape[3]);
  if (f->zq_level != NULL)
    rv_op_resize_nearest (f->cmd, f->zq_level, f->zq);
  return f->zq_level;
}

RvTensor *
rv_group_norm_forward (RvNetCtx *f, const RvGroupNorm *n, const RvTensor *x, RvAct act,
                       const RvTensor *scale_shift)
{
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  g_autoptr (RvTensor) mul = NULL;
  g_autoptr (RvTensor) add = NULL;
  if (n->conv_y != NULL)
    {
      /* 1×1 convolutions commute with the nearest resize: they run on zq at
       * the feature map's size */
      const RvTensor *zq = level_zq (f, x->shape[1], x->shape[2]);                 /* (B, H, W, Z) */
      mul = rv_block_conv (f, zq, n->conv_y, n->conv_y_bias, &rv_conv_pointwise, NULL); /* (…, C) */
      add = rv_block_conv (f, zq, n->conv_b, n->conv_b_bias, &rv_conv_pointwise, NULL);
      if (mul == NULL || add == NULL)
        return NULL;
    }
  RvTensor *y = rv_ctx_tensor (f, x->ndim, x->shape);                            /* x's shape */
  if (y == NULL)
    return NULL;
  RvNorm p = { .gamma = n->gamma, .beta = n->beta, .mul = mul, .add = add, .act = act,
               .scale_shift = scale_shift };
  rv_op_group_norm (f->cmd, y, x, n->groups, n->eps, &p);
  return y;
}

/* ---- ResNet block ---- */

static const RvWeightSpec resnet_weights[] = {
  RV_WEIGHT (RvResnet, conv1_w, "conv1.weight",         RV_WEIGHT_CONV,   0, S_COUT, S_CIN, 3, 3),
  RV_WEIGHT (RvResnet, conv1_b, "conv1.bias",           RV_WEIGHT_PLAIN,  0, S_COUT),
  RV_WEIGHT (RvResnet, temb_w,  "time_emb_proj.weight", RV_WEIGHT_LINEAR, HAS_TIME, S_TPROJ, S_TEMB),
  RV_WEIGHT (RvResnet, temb_b,  "time_emb_proj.bias",   RV_WEIGHT_PLAIN,  HAS_TIME, S_TPROJ),
  RV_WEIGHT (RvResnet, conv2_w, "conv2.weight",         RV_WEIGHT_CONV,   0, S_COUT, S_COUT, 3, 3),
  RV_WEIGHT (RvResnet, conv2_b, "conv2.bias",           RV_WEIGHT_PLAIN,  0, S_COUT),
  RV_WEIGHT (RvResnet, short_w, "conv_shortcut.weight", RV_WEIGHT_CONV,   HAS_SHORTCUT,
             S_COUT, S_CIN, 1, 1),
  RV_WEIGHT (RvResnet, short_b, "conv_shortcut.bias",   RV_WEIGHT_PLAIN,  HAS_SHORTCUT, S_COUT),
};

gint64
rv_resnet_time_width (const RvResnet *r)
{
  return r->time == RV_TIME_SCALE_SHIFT ? 2 * r->cout : r->cout;
}

void
rv_resnet_walk (RvWeightWalk *w, RvResnet *r, const char *prefix, gint64 zq_channels)
{
  g_autofree char *n1 = g_strconcat (prefix, ".norm1", NULL);
  g_autofree char *n2 = g_strconcat (prefix, ".norm2", NULL);
  rv_group_norm_walk (w, &r->norm1, n1, r->cin, zq_channels);
  rv_group_norm_walk (w, &r->norm2, n2, r->cout, zq_channels);
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_CIN] = r->cin;
  sizes[-S_COUT] = r->cout;
  sizes[-S_TPROJ] = rv_resnet_time_width (r);
  sizes[-S_TEMB] = r->temb_dim;
  guint flags = (r->time != RV_TIME_NONE ? HAS_TIME : 0) | (r->cin != r->cout ? HAS_SHORTCUT : 0);
  RV_WEIGHTS_WALK (w, r, prefix, resnet_weights, flags, sizes);
}

gint64
rv_resample_size (RvResnetResample r, gint64 size)
{
  return r == RV_RESNET_DOWN ? size / 2 : r == RV_RESNET_UP ? 2 * size : size;
}

static RvTensor *
resample (RvNetCtx *f, RvResnetResample r, const RvTensor *x)
{
  if (x == NULL)
    return NULL;
  RvTensor *y = RV_CTX_TENSOR (f, x->shape[0], rv_resample_size (r, x->shape[1]),
                               rv_resample_size (r, x->shape[2]), x->shape[3]);
  if (y == NULL)
    return NULL;
  if (r == RV_RESNET_DOWN)
    rv_op_avgpool2x2 (f->cmd, y, x);
  else
    rv_op_upsample_nearest2x (f->cmd, y, x);
  return y;
}

static RvTensor *
resnet_forward (RvNetCtx *f, const RvResnet *r, RvTensor *x_in, gboolean consume,
                const RvTensor *temb, const RvTensor *proj)
{
  g_autoptr (RvTensor) x_owned = consume ? x_in : NULL;
  const RvTensor *x = x_in;                                               /* (B, H, W, Cin) */
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  gint64 b = x->shape[0];

  g_autoptr (RvTensor) hn = rv_group_norm_forward (f, &r->norm1, x, r->act, NULL);
  g_autoptr (RvTensor) xr = NULL;                                         /* (B, Ho, Wo, Cin) */
  if (r->resample != RV_RESNET_SAME && hn != NULL)
    {
      xr = resample (f, r->resample, x);
      RvTensor *hr = resample (f, r->resample, hn);
      g_clear_pointer (&x_owned, rv_tensor_free);
      rv_tensor_free (hn);
      hn = hr;
      x = xr;
    }

  g_autoptr (RvTensor) h1 = rv_block_conv (f, hn, r->conv1_w, r->conv1_b, &rv_conv_same3,
                                           NULL);                         /* (B, Ho, Wo, Cout) */
  g_clear_pointer (&hn, rv_tensor_free);
  g_autoptr (RvTensor) tp_own = NULL;                                     /* (B, Cout or 2·Cout) */
  const RvTensor *tp = proj;
  if (r->time != RV_TIME_NONE && h1 != NULL)
    {
      if (tp == NULL)
        {
          tp = tp_own = RV_CTX_TENSOR (f, b, rv_resnet_time_width (r));
          if (tp == NULL)
            return NULL;
          rv_op_linear (f->cmd, tp_own, temb, r->temb_w, r->temb_b, RV_ACT_NONE, NULL);
        }
      if (r->time == RV_TIME_ADD)
        {
          RvTensor tv = *tp;                                              /* (B, 1, 1, Cout) */
          rv_tensor_reshape (&tv, 4, (const gint64[]) { b, 1, 1, r->cout });
          rv_op_binary (f->cmd, h1, h1, &tv, RV_BIN_ADD);
        }
    }
  g_autoptr (RvTensor) h2 = rv_group_norm_forward (f, &r->norm2, h1, r->act,
                                                   r->time == RV_TIME_SCALE_SHIFT ? tp : NULL);
  g_clear_pointer (&h1, rv_tensor_free);
  g_clear_pointer (&tp_own, rv_tensor_free);

  g_autoptr (RvTensor) sc = NULL;                                         /* (B, Ho, Wo, Cout) */
  if (r->short_w != NULL && h2 != NULL)
    {
      sc = rv_block_conv (f, x, r->short_w, r->short_b, &rv_conv_pointwise, NULL);
      g_clear_pointer (&x_owned, rv_tensor_free);
      g_clear_pointer (&xr, rv_tensor_free);
      x = sc;
    }
  if (h2 == NULL || x == NULL)
    return NULL;
  RvTensor *out = rv_block_conv (f, h2, r->conv2_w, r->conv2_b, &rv_conv_same3, x);
  if (r->out_scale != 1.0f && out != NULL)
    {
      g_clear_pointer (&h2, rv_tensor_free);
      g_clear_pointer (&sc, rv_tensor_free);
      g_clear_pointer (&xr, rv_tensor_free);
      g_clear_pointer (&x_owned, rv_tensor_free);
      RvTensor *scaled = rv_ctx_tensor (f, out->ndim, out->shape);
      if (scaled != NULL)
        rv_op_affine (f->cmd, scaled, out, 1.0f / r->out_scale, 0.0f);
      rv_tensor_free (out);
      out = scaled;
    }
  return out;                                                             /* (B, Ho, Wo, Cout) */
}

RvTensor *
rv_resnet_forward (RvNetCtx *f, const RvResnet *r, RvTensor *x, gboolean consume,
                   const RvTensor *temb)
{
  return resnet_forward (f, r, x, consume, temb, NULL);
}

RvTensor *
rv_resnet_forward_proj (RvNetCtx *f, const RvResnet *r, RvTensor *x, gboolean consume,
                        const RvTensor *proj)
{
  return resnet_forward (f, r, x, consume, NULL, proj);
}

/* ---- attention block ---- */

static const RvWeightSpec attn_weights[] = {
  RV_WEIGHT (RvAttn, q_w,     "to_q.weight",       RV_WEIGHT_LINEAR, 0, S_C, S_C),
  RV_WEIGHT (RvAttn, q_b,     "to_q.bias",         RV_WEIGHT_PLAIN,  0, S_C),
  RV_WEIGHT (RvAttn, k_w,     "to_k.weight",       RV_WEIGHT_LINEAR, HAS_SELF_KV, S_C, S_C),
  RV_WEIGHT (RvAttn, k_b,     "to_k.bias",         RV_WEIGHT_PLAIN,  HAS_SELF_KV, S_C),
  RV_WEIGHT (RvAttn, v_w,     "to_v.weight",       RV_WEIGHT_LINEAR, HAS_SELF_KV, S_C, S_C),
  RV_WEIGHT (RvAttn, v_b,     "to_v.bias",         RV_WEIGHT_PLAIN,  HAS_SELF_KV, S_C),
  RV_WEIGHT (RvAttn, add_k_w, "add_k_proj.weight", RV_WEIGHT_LINEAR, HAS_ADDED_KV, S_C, S_X),
  RV_WEIGHT (RvAttn, add_k_b, "add_k_proj.bias",   RV_WEIGHT_PLAIN,  HAS_ADDED_KV, S_C),
  RV_WEIGHT (RvAttn, add_v_w, "add_v_proj.weight", RV_WEIGHT_LINEAR, HAS_ADDED_KV, S_C, S_X),
  RV_WEIGHT (RvAttn, add_v_b, "add_v_proj.bias",   RV_WEIGHT_PLAIN,  HAS_ADDED_KV, S_C),
  RV_WEIGHT (RvAttn, out_w,   "to_out.0.weight",   RV_WEIGHT_LINEAR, 0, S_C, S_C),
  RV_WEIGHT (RvAttn, out_b,   "to_out.0.bias",     RV_WEIGHT_PLAIN,  0, S_C),
};

/* the same projections as 1×1 convolution kernels */
static const RvWeightSpec attn_pointwise_weights[] = {
  RV_WEIGHT (RvAttn, q_w,   "to_q.weight",     RV_WEIGHT_POINTWISE, 0, S_C, S_C),
  RV_WEIGHT (RvAttn, q_b,   "to_q.bias",       RV_WEIGHT_PLAIN,     0, S_C),
  RV_WEIGHT (RvAttn, k_w,   "to_k.weight",     RV_WEIGHT_POINTWISE, HAS_SELF_KV, S_C, S_C),
  RV_WEIGHT (RvAttn, k_b,   "to_k.bias",       RV_WEIGHT_PLAIN,     HAS_SELF_KV, S_C),
  RV_WEIGHT (RvAttn, v_w,   "to_v.weight",     RV_WEIGHT_POINTWISE, HAS_SELF_KV, S_C, S_C),
  RV_WEIGHT (RvAttn, v_b,   "to_v.bias",       RV_WEIGHT_PLAIN,     HAS_SELF_KV, S_C),
  RV_WEIGHT (RvAttn, out_w, "to_out.0.weight", RV_WEIGHT_POINTWISE, 0, S_C, S_C),
  RV_WEIGHT (RvAttn, out_b, "to_out.0.bias",   RV_WEIGHT_PLAIN,     0, S_C),
};

void
rv_attn_walk (RvWeightWalk *w, RvAttn *a, const char *prefix, const char *norm_prefix,
              gint64 zq_channels)
{
  rv_group_norm_walk (w, &a->norm, norm_prefix, a->channels, zq_channels);
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_C] = a->channels;
  sizes[-S_X] = a->cross_dim;
  guint flags = (a->self_kv ? HAS_SELF_KV : 0) | (a->added_kv ? HAS_ADDED_KV : 0);
  if (a->pointwise)
    RV_WEIGHTS_WALK (w, a, prefix, attn_pointwise_weights, flags, sizes);
  else
    RV_WEIGHTS_WALK (w, a, prefix, attn_weights, flags, sizes);
}

/* A new projection of x: a 1×1 conv of the image (B, H, W, C), or a linear
 * of its pixels as tokens (B, HW, C) (of the shape `shape`). */
static RvTensor *
project (RvNetCtx *f, const RvAttn *a, const RvTensor *x, const RvTensor *w, const RvTensor *bias,
         int ndim, const gint64 *shape, const RvTensor *res)
{
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  if (a->pointwise)
    return rv_block_conv (f, x, w, bias, &rv_conv_pointwise, res);
  RvTensor *y = rv_ctx_tensor (f, ndim, shape);
  if (y != NULL)
    rv_op_linear (f->cmd, y, x, w, bias, RV_ACT_NONE, res);
  return y;
}

/* cat (a, b) along the tokens (B, Ta + Tb, C). */
static RvTensor *
cat_tokens (RvNetCtx *f, const RvTensor *a, const RvTensor *b)
{
  if (a == NULL || b == NULL)
    return NULL;
  RvTensor *y = RV_CTX_TENSOR (f, a->shape[0], a->shape[1] + b->shape[1], a->shape[2]);
  if (y != NULL)
    rv_op_concat (f->cmd, y, a, b, 1);
  return y;
}

/* Whether q, k and v of rows × C projections can come from one grouped
 * product, as views of its (3, rows, C) output: each part must start on a
 * texel, the biases be all there or all absent, and the output fit one
 * binding. */
static gboolean
qkv_groupable (const RvTensor *w[3], const RvTensor *bias[3], gint64 numel, gsize limit)
{
  gboolean biases = bias[0] != NULL && bias[1] != NULL && bias[2] != NULL;
  gboolean none = bias[0] == NULL && bias[1] == NULL && bias[2] == NULL;
  return w[0] != NULL && w[1] != NULL && w[2] != NULL && (biases || none) && numel % 4 == 0 &&
         (guint64) numel * 3 * sizeof (float) <= limit;
}

gboolean
rv_attn_context_kv (RvNetCtx *f, const RvAttn *a, const RvTensor *ctx, RvTensor **k,
                    RvTensor **v)
{
  *k = *v = NULL;
  if (rv_cmd_failed (f->cmd))
    return FALSE;
  gint64 b = ctx->shape[0], nt = ctx->shape[1];
  g_autoptr (RvTensor) kt = RV_CTX_TENSOR (f, b, nt, a->channels);        /* (B, T, C) */
  g_autoptr (RvTensor) vt = kt ? RV_CTX_TENSOR (f, b, nt, a->channels) : NULL;
  if (vt == NULL)
    return FALSE;
  rv_op_linear (f->cmd, kt, ctx, a->add_k_w, a->add_k_b, RV_ACT_NONE, NULL);
  rv_op_linear (f->cmd, vt, ctx, a->add_v_w, a->add_v_b, RV_ACT_NONE, NULL);
  *k = g_steal_pointer (&kt);
  *v = g_steal_pointer (&vt);
  return TRUE;
}

RvTensor *
rv_attn_forward (RvNetCtx *f, const RvAttn *a, RvTensor *x_in, gboolean consume,
                 const RvTensor *ctx_k, const RvTensor *ctx_v)
{
  g_autoptr (RvTensor) x_owned = consume ? x_in : NULL;
  const RvTensor *x = x_in;                                               /* (B, H, W, C) */
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  if (a->added_kv && (ctx_k == NULL || ctx_v == NULL))
    {
      rv_cmd_failf (f->cmd, RV_ERROR_INVALID, "%s: an attention block with added keys and "
                    "values was given no context", f->what);
      return NULL;
    }
  gint64 b = x->shape[0], hw = x->shape[1] * x->shape[2], ch = a->channels;
  /* the pixels as tokens, unless the projections run on the image */
  RvTensor xv = *x;
  if (!a->pointwise)
    rv_tensor_reshape (&xv, 3, (const gint64[]) { b, hw, ch });          /* (B, HW, C) */
  const gint64 *xs = xv.shape;

  g_autoptr (RvTensor) t = rv_group_norm_forward (f, &a->norm, &xv, RV_ACT_NONE, NULL);
  /* q, and x's own keys and values: one grouped product where it can be */
  const RvTensor *w3[3] = { a->q_w, a->k_w, a->v_w }, *b3[3] = { a->q_b, a->k_b, a->v_b };
  g_autoptr (RvTensor) qkv = NULL;                                        /* (3, B, HW, C) */
  g_autoptr (RvTensor) q_own = NULL;
  g_autoptr (RvTensor) ks_own = NULL;
  g_autoptr (RvTensor) vs_own = NULL;
  RvTensor parts[3];
  const RvTensor *q = NULL, *ks = NULL, *vs = NULL;
  if (t != NULL && a->self_kv && !a->pointwise &&
      qkv_groupable (w3, b3, rv_tensor_numel (&xv), f->binding_limit))
    {
      qkv = RV_CTX_TENSOR (f, 3, b, hw, ch);
      if (qkv != NULL)
        {
          rv_op_linear_group (f->cmd, qkv, t, 3, w3, b3[0] != NULL ? b3 : NULL);
          for (int i = 0; i < 3; i++)
            parts[i] = rv_tensor_part (qkv, i, xv.ndim, xs);
          q = &parts[0];
          ks = &parts[1];
          vs = &parts[2];
        }
    }
  else
    {
      q = q_own = project (f, a, t, a->q_w, a->q_b, xv.ndim, xs, NULL);
      if (a->self_kv && q != NULL)
        {
          ks = ks_own = project (f, a, t, a->k_w, a->k_b, xv.ndim, xs, NULL);
          vs = vs_own = project (f, a, t, a->v_w, a->v_b, xv.ndim, xs, NULL);
        }
    }
  g_clear_pointer (&t, rv_tensor_free);

  /* keys and values: the context's (B, T, C), then x's own (B, HW, C) */
  const RvTensor *k = a->added_kv ? ctx_k : NULL, *v = a->added_kv ? ctx_v : NULL;
  g_autoptr (RvTensor) k_cat = NULL;
  g_autoptr (RvTensor) v_cat = NULL;
  if (a->self_kv)
    {
      if (k == NULL)
        k = ks, v = vs;
      else
        {
          k = k_cat = cat_tokens (f, k, ks);
          g_clear_pointer (&ks_own, rv_tensor_free);
          v = v_cat = cat_tokens (f, v, vs);
          g_clear_pointer (&vs_own, rv_tensor_free);
        }
    }
  if (q == NULL || k == NULL || v == NULL)
    return NULL;

  g_autoptr (RvTensor) o = rv_block_attention (f, q, k, v, a->heads);     /* q's shape */
  g_clear_pointer (&qkv, rv_tensor_free);
  g_clear_pointer (&q_own, rv_tensor_free);
  g_clear_pointer (&ks_own, rv_tensor_free);
  g_clear_pointer (&vs_own, rv_tensor_free);
  g_clear_pointer (&k_cat, rv_tensor_free);
  g_clear_pointer (&v_cat, rv_tensor_free);
  return project (f, a, o, a->out_w, a->out_b, x->ndim, x->shape, x);    /* (B, H, W, C) */
}

/* ---- resamplers ---- */

static const RvWeightSpec sampler_weights[] = {
  RV_WEIGHT (RvSampler, conv_w, "conv.weight", RV_WEIGHT_CONV,  0, S_C, S_C, 3, 3),
  RV_WEIGHT (RvSampler, conv_b, "conv.bias",   RV_WEIGHT_PLAIN, 0, S_C),
};

void
rv_sampler_walk (RvWeightWalk *w, RvSampler *s, const char *prefix, gint64 c)
{
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_C] = c;
  RV_WEIGHTS_WALK (w, s, prefix, sampler_weights, 0, sizes);
}

RvTensor *
rv_sampler_forward (RvNetCtx *f, const RvSampler *s, RvTensor *x_in)
{
  g_autoptr (RvTensor) x = x_in;                                          /* (B, H, W, C) */
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  if (!s->up)
    return rv_block_conv (f, x, s->conv_w, s->conv_b, &conv_down3, NULL); /* (B, H/2, W/2, C) */
  g_autoptr (RvTensor) u = resample (f, RV_RESNET_UP, x);               /* (B, 2H, 2W, C) */
  g_clear_pointer (&x, rv_tensor_free);
  return rv_block_conv (f, u, s->conv_w, s->conv_b, &rv_conv_same3, NULL);  /* (B, 2H, 2W, C) */
}

/* ---- the pre-LN layer stack ---- */

static const RvWeightSpec layer_norm_weights[] = {
  RV_WEIGHT (RvAffine, w, "weight", RV_WEIGHT_PLAIN, 0, S_COUT),
  RV_WEIGHT (RvAffine, b, "bias",   RV_WEIGHT_PLAIN, 0, S_COUT),
};

static const RvWeightSpec linear_weights[] = {
  RV_WEIGHT (RvAffine, w, "weight", RV_WEIGHT_LINEAR, 0, S_COUT, S_CIN),
  RV_WEIGHT (RvAffine, b, "bias",   RV_WEIGHT_PLAIN,  0, S_COUT),
};

void
rv_pre_ln_walk (RvWeightWalk *w, const RvPreLNStack *s, RvPreLNLayer *layers)
{
  const RvPreLNNames *n = s->names;
  gint64 c = s->hidden, mlp = s->mlp;
  for (int i = 0; i < s->layers; i++)
    {
      RvPreLNLayer *y = &layers[i];
      const struct {
        RvAffine   *part;
        const char *name;
        gint64      out, in;                    /* in 0: a LayerNorm */
      } parts[] = {
        { &y->ln1, n->ln1, c, 0 }, { &y->q, n->q, c, c }, { &y->k, n->k, c, c },
        { &y->v, n->v, c, c }, { &y->o, n->o, c, c }, { &y->ln2, n->ln2, c, 0 },
        { &y->fc1, n->fc1, mlp, c }, { &y->fc2, n->fc2, c, mlp },
      };
      for (guint j = 0; j < G_N_ELEMENTS (parts); j++)
        {
          g_autofree char *prefix = g_strdup_printf ("%s.%d.%s", s->prefix, i, parts[j].name);
          gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
          sizes[-S_COUT] = parts[j].out;
          sizes[-S_CIN] = parts[j].in;
          if (parts[j].in == 0)
            RV_WEIGHTS_WALK (w, parts[j].part, prefix, layer_norm_weights, 0, sizes);
          else
            RV_WEIGHTS_WALK (w, parts[j].part, prefix, linear_weights, 0, sizes);
        }
    }
}

/* The work tensors of a stack over (B, L) tokens; x and y take turns as the
 * residual stream. q, k and v are views of qkv where one grouped product can
 * make them in every layer, else tensors of their own. */
typedef struct {
  RvTensor *y, *h, *qkv, *f;
  RvTensor *q, *k, *v;
  RvTensor  parts[3];
} LayerWork;

static gboolean
layer_groupable (const RvPreLNLayer *w, gint64 numel)
{
  const RvTensor *w3[3] = { w->q.w, w->k.w, w->v.w }, *b3[3] = { w->q.b, w->k.b, w->v.b };
  return qkv_groupable (w3, b3, numel, G_MAXSIZE);
}

static void
layer_work_init (LayerWork *t, RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers,
                 gint64 b, gint64 len)
{
  gint64 c = s->hidden;
  *t = (LayerWork) { NULL };
  t->y = RV_NET_TENSOR (cmd, b, len, c);                     /* (B, L, C) */
  t->h = RV_NET_TENSOR (cmd, b, len, c);                     /* (B, L, C) */
  t->f = RV_NET_TENSOR (cmd, b, len, s->mlp);                /* (B, L, F) */
  gboolean grouped = TRUE;
  for (int i = 0; i < s->layers && grouped; i++)
    grouped = layer_groupable (&layers[i], b * len * c);
  if (grouped)
    {
      t->qkv = RV_NET_TENSOR (cmd, 3, b, len, c);            /* (3, B, L, C) */
      if (t->qkv == NULL)
        return;
      const gint64 shape[3] = { b, len, c };
      for (int i = 0; i < 3; i++)
        t->parts[i] = rv_tensor_part (t->qkv, i, 3, shape);
      t->q = &t->parts[0];
      t->k = &t->parts[1];
      t->v = &t->parts[2];
      return;
    }
  t->q = RV_NET_TENSOR (cmd, b, len, c);                     /* (B, L, C) */
  t->k = RV_NET_TENSOR (cmd, b, len, c);                     /* (B, L, C) */
  t->v = RV_NET_TENSOR (cmd, b, len, c);                     /* (B, L, C) */
}

static void
layer_work_clear (LayerWork *t)
{
  RvTensor *all[] = { t->y, t->h, t->f, t->qkv };
  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    rv_tensor_free (all[i]);
  if (t->qkv == NULL)
    {
      rv_tensor_free (t->q);
      rv_tensor_free (t->k);
      rv_tensor_free (t->v);
    }
}

/* q, k, v (ln1 (x)) into t */
static void
layer_qkv (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *w, const RvTensor *x,
           LayerWork *t)
{
  rv_op_layer_norm (cmd, t->h, x, w->ln1.w, w->ln1.b, s->eps);
  if (t->qkv != NULL)
    {
      const RvTensor *w3[3] = { w->q.w, w->k.w, w->v.w }, *b3[3] = { w->q.b, w->k.b, w->v.b };
      rv_op_linear_group (cmd, t->qkv, t->h, 3, w3, b3[0] != NULL ? b3 : NULL);
      return;
    }
  rv_op_linear (cmd, t->q, t->h, w->q.w, w->q.b, RV_ACT_NONE, NULL);
  rv_op_linear (cmd, t->k, t->h, w->k.w, w->k.b, RV_ACT_NONE, NULL);
  rv_op_linear (cmd, t->v, t->h, w->v.w, w->v.b, RV_ACT_NONE, NULL);
}

/* The rest of a layer once the attention has written t->h:
 *   x += o (h); x += fc2 (act (fc1 (ln2 (x)))) */
static void
layer_finish (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *w, RvTensor **x,
              LayerWork *t)
{
  RvTensor *swap;
  rv_op_linear (cmd, t->y, t->h, w->o.w, w->o.b, RV_ACT_NONE, *x);
  swap = *x, *x = t->y, t->y = swap;
  rv_op_layer_norm (cmd, t->h, *x, w->ln2.w, w->ln2.b, s->eps);
  rv_op_linear (cmd, t->f, t->h, w->fc1.w, w->fc1.b, s->act, NULL);
  rv_op_linear (cmd, t->y, t->f, w->fc2.w, w->fc2.b, RV_ACT_NONE, *x);
  swap = *x, *x = t->y, t->y = swap;
}

/* rows [at, at + n) of every batch of dst (B, L, C) = src (B, n, C) */
static void
put_rows (RvCmd *cmd, RvTensor *dst, gint64 at, const RvTensor *src)
{
  gint64 batch = dst->shape[0], len = dst->shape[1], n = src->shape[1];
  gsize row = dst->shape[2] * sizeof (float);
  for (gint64 b = 0; b < batch; b++)
    rv_cmd_copy (cmd, dst, (b * len + at) * row, src, b * n * row, n * row);
}

/* The stack over x (B, L, hidden). With keys and values (the cached prefix
 * of rv_pre_ln_prefix), each layer's k and v also go to their rows: rows
 * [0, L) for the prefix, which stops after the last layer's keys; rows
 * [Ltot − L, Ltot) for the suffix, whose attention reads every row. Consumes
 * x; NULL with the error on cmd. */
static RvTensor *
stack_forward (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers, RvTensor *x,
               const RvTensor *mask, gboolean causal, RvTensor **keys, RvTensor **values,
               gboolean suffix)
{
  gint64 at = suffix ? keys[0]->shape[1] - x->shape[1] : 0;
  float scale = 1.0f / sqrtf ((float) (s->hidden / s->heads));
  LayerWork t;
  layer_work_init (&t, cmd, s, layers, x->shape[0], x->shape[1]);
  for (int i = 0; !rv_cmd_failed (cmd) && i < s->layers; i++)
    {
      const RvPreLNLayer *w = &layers[i];
      /* x += o (attention (ln1 (x))), then the MLP */
      layer_qkv (cmd, s, w, x, &t);
      if (keys != NULL)
        {
          put_rows (cmd, keys[i], at, t.k);
          put_rows (cmd, values[i], at, t.v);
          /* what the prefix itself becomes after the last layer is never read */
          if (!suffix && i == s->layers - 1)
            break;
        }
      rv_op_attention (cmd, t.h, t.q, suffix ? keys[i] : t.k, suffix ? values[i] : t.v, s->heads,
                       scale, mask, causal);
      layer_finish (cmd, s, w, &x, &t);
    }
  layer_work_clear (&t);
  if (rv_cmd_failed (cmd))
    g_clear_pointer (&x, rv_tensor_free);
  return x;
}

RvTensor *
rv_pre_ln_forward (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers, RvTensor *x,
                   const RvTensor *mask, gboolean causal)
{
  return stack_forward (cmd, s, layers, x, mask, causal, NULL, NULL, FALSE);
}

gboolean
rv_pre_ln_prefix (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers, RvTensor *x,
                  const RvTensor *mask, RvTensor **keys, RvTensor **values)
{
  RvTensor *rest = stack_forward (cmd, s, layers, x, mask, TRUE, keys, values, FALSE);
  rv_tensor_free (rest);
  return !rv_cmd_failed (cmd);
}

RvTensor *
rv_pre_ln_forward_suffix (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers,
                          RvTensor *x, RvTensor **keys, RvTensor **values, const RvTensor *mask)
{
  return stack_forward (cmd, s, layers, x, mask, FALSE, keys, values, TRUE);
}
