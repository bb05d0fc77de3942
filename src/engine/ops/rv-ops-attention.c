/* rv-ops-attention.c: attention (flash style, never storing the score matrix)
 * and softmax. Attention has two kernels chosen per device: one built for CPU
 * drivers (texel buffers and subgroup broadcasts, no shared memory) and one
 * with shared-memory tiles for GPUs. */
#include "rv-ops-private.h"

#define LOG2E 1.4426950408889634

static RvAttentionVariant forced_variant = RV_ATTENTION_AUTO;

/* One checked attention call. */
typedef struct {
  RvTensor       *o;                   /* (B, Lq, H·D) */
  const RvTensor *q, *k, *v;           /* (B, Lq, H·D), (B, Lk, H·D) ×2 */
  const RvTensor *mask;                /* NULL, (B, Lk) or (B, Lq, Lk) */
  guint32         mask_mode;           /* 0, 1, 2 as listed */
  gboolean        causal;
  gint64          batch, lq, lk, head_dim;
  int             heads;
  float           scale;
} Attention;

void
_rv_attention_force_variant (RvAttentionVariant variant)
{
  forced_variant = variant;
}

/* (B, L, C) from a 3-d tensor or a 4-d image (B, H, W, C). */
static gboolean
token_dims (const RvTensor *t, gint64 *batch, gint64 *len, gint64 *channels)
{
  if (t->dtype != RV_DTYPE_F32 || t->ndim < 3)
    return FALSE;
  *batch = t->shape[0];
  *len = _rv_dims (t, 1, t->ndim - 1);
  *channels = t->shape[t->ndim - 1];
  return TRUE;
}

/* Whether a tensor can be read as vec4 texels of its block's texel view: it
 * starts on a texel (views into a tensor may not) and lies inside the view. */
static gboolean
texel_reachable (RvDevice *dev, const RvTensor *t)
{
  guint64 end = (guint64) rv_tensor_texel_offset (t) + rv_tensor_numel (t) / 4 + 1;
  return t->offset % 16 == 0 && end <= rv_device_caps (dev)->max_texel_elements;
}

static gboolean
subgroup_usable (RvDevice *dev, const Attention *a)
{
  const RvDeviceCaps *caps = rv_device_caps (dev);
  return caps->subgroup_size == 8 && caps->subgroup_arith && a->head_dim % 4 == 0 &&
         texel_reachable (dev, a->q) && texel_reachable (dev, a->k) &&
         texel_reachable (dev, a->v) && (a->mask == NULL || texel_reachable (dev, a->mask));
}

/* Tile shape of the CPU kernel: TM query rows and 8·TN keys per block, one
 * subgroup per workgroup, and the whole head in one chunk of output dims up to
 * D 512: spilling the accumulators costs less than recomputing the scores for
 * a second chunk. Measured best on lavapipe: TM 4 (8 spills too much), TN 8
 * up to D 128 and 4 above; and TN 4 where blocks of 64 keys would leave the
 * last one half empty or more (1.4–1.6× on the text encoder's and the
 * prior's 77–81 keys, 1.04× on the UNet's 288). */
#define SUB_TM 4
#define SUB_SUBGROUPS 1
#define SUB_DC_MAX 512

static void
record_subgroup (RvCmd *cmd, const Attention *a)
{
  guint32 tn = a->head_dim <= 128 && (a->lk % 64 == 0 || a->lk % 64 > 32) ? 8 : 4;
  guint32 dc = MIN ((a->head_dim + 31) / 32 * 32, SUB_DC_MAX);
  guint32 spec[5] = { a->head_dim, dc, SUB_TM, tn, SUB_SUBGROUPS };
  RvKernel *kernel = _rv_op_kernel (cmd, "attention-subgroup", "TTTTS", spec, 5);
  struct {
    guint32 lq, lk, heads, hd4, q_off, k_off, v_off, m_off, mask_mode, causal;
    float qscale;
  } pc = {
    a->lq, a->lk, a->heads, a->heads * a->head_dim / 4,
    rv_tensor_texel_offset (a->q), rv_tensor_texel_offset (a->k), rv_tensor_texel_offset (a->v),
    rv_tensor_texel_offset (a->mask ? a->mask : a->q), a->mask_mode, a->causal, a->scale * LOG2E,
  };
  guint64 gy = (guint64) a->batch * a->heads * rv_div_up (a->head_dim, dc);
  RvBinding b[5] = {
    { a->q, RV_READ }, { a->k, RV_READ }, { a->v, RV_READ },
    { a->mask ? a->mask : a->q, RV_READ }, { a->o, RV_WRITE },
  };
  rv_cmd_dispatch (cmd, kernel, b, 5, &pc, sizeof pc, rv_div_up (a->lq, SUB_TM * SUB_SUBGROUPS),
                   MIN (gy, G_MAXUINT32), 1);
}

static void
record_tiled (RvCmd *cmd, const Attention *a)
{
  /* Shared memory: (16·(DK+1) + 32·max(DK+1, DC) + 16·33) floats, 22.6 KiB
   * with DC 128; devices at Vulkan's 16 KiB minimum get DC 64. */
  guint32 dc_max = rv_device_caps (rv_cmd_device (cmd))->max_shared_memory >= 24576 ? 128 : 64;
  guint32 dk = MIN ((a->head_dim + 3) / 4 * 4, 64);
  guint32 dc = MIN ((a->head_dim + 3) / 4 * 4, dc_max);
  guint32 spec[3] = { a->head_dim, dk, dc };
  RvKernel *kernel = _rv_op_kernel (cmd, "attention-tiled", "SSSSS", spec, 3);
  struct {
    guint32 lq, lk, heads, hd, mask_mode, causal;
    float qscale;
  } pc = {
    a->lq, a->lk, a->heads, a->heads * a->head_dim, a->mask_mode, a->causal, a->scale * LOG2E,
  };
  guint64 gy = (guint64) a->batch * a->heads * rv_div_up (a->head_dim, dc);
  RvBinding b[5] = {
    { a->q, RV_READ }, { a->k, RV_READ }, { a->v, RV_READ },
    { a->mask ? a->mask : a->q, RV_READ }, { a->o, RV_WRITE },
  };
  rv_cmd_dispatch (cmd, kernel, b, 5, &pc, sizeof pc, rv_div_up (a->lq, 16),
                   MIN (gy, G_MAXUINT32), 1);
}

void
rv_op_attention (RvCmd *cmd, RvTensor *o, const RvTensor *q, const RvTensor *k,
                 const RvTensor *v, int heads, float scale, const RvTensor *mask,
                 gboolean causal)
{
  if (!_rv_op_begin (cmd))
    return;
  gint64 batch, lq, c, kb, lk, kc, vb, lv, vc, ob, lo, oc;
  if (!token_dims (q, &batch, &lq, &c) || !token_dims (k, &kb, &lk, &kc) ||
      !token_dims (v, &vb, &lv, &vc) || !token_dims (o, &ob, &lo, &oc))
    {
      _rv_op_invalid (cmd, "attention", "q, k, v and o must be f32 (B, L, C) tensors");
      return;
    }
  if (kb != batch || vb != batch || ob != batch || lv != lk || lo != lq || kc != c ||
      vc != c || oc != c)
    {
      g_autofree char *sq = rv_tensor_describe (q), *sk = rv_tensor_describe (k);
      g_autofree char *sv = rv_tensor_describe (v), *so = rv_tensor_describe (o);
      _rv_op_invalid (cmd, "attention", "shapes do not match: q %s, k %s, v %s, o %s",
                      sq, sk, sv, so);
      return;
    }
  if (heads < 1 || c % heads != 0)
    {
      _rv_op_invalid (cmd, "attention", "%" G_GINT64_FORMAT " channels do not split into %d heads",
                      c, heads);
      return;
    }
  guint32 mask_mode = 0;
  if (mask != NULL)
    {
      if (mask->dtype == RV_DTYPE_F32 && mask->ndim == 2 && mask->shape[0] == batch &&
          mask->shape[1] == lk)
        mask_mode = 1;
      else if (mask->dtype == RV_DTYPE_F32 && mask->ndim == 3 && mask->shape[0] == batch &&
               mask->shape[1] == lq && mask->shape[2] == lk)
        mask_mode = 2;
      else
        {
          g_autofree char *sm = rv_tensor_describe (mask);
          _rv_op_invalid (cmd, "attention",
                          "the mask must be f32 (B, Lk) or (B, Lq, Lk) = (%" G_GINT64_FORMAT
                          ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "), not %s",
                          batch, lq, lk, sm);
          return;
        }
    }
  if (rv_tensor_numel (q) >= G_MAXINT32 || rv_tensor_numel (k) >= G_MAXINT32 ||
      (mask != NULL && rv_tensor_numel (mask) >= G_MAXINT32))
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "attention: the inputs are too large for 32-bit indexing; try a smaller "
                    "image size or fewer images at once.");
      return;
    }

  RvDevice *dev = rv_cmd_device (cmd);
  Attention a = {
    .o = o, .q = q, .k = k, .v = v, .mask = mask, .mask_mode = mask_mode,
    .causal = causal != FALSE, .batch = batch, .lq = lq, .lk = lk, .head_dim = c / heads,
    .heads = heads, .scale = scale,
  };
  RvAttentionVariant variant = forced_variant;
  if (variant == RV_ATTENTION_AUTO)
    variant = rv_device_caps (dev)->type == VK_PHYSICAL_DEVICE_TYPE_CPU ? RV_ATTENTION_SUBGROUP
                                                                        : RV_ATTENTION_TILED;
  if (variant == RV_ATTENTION_SUBGROUP && !subgroup_usable (dev, &a))
    variant = RV_ATTENTION_TILED;

  if (variant == RV_ATTENTION_SUBGROUP)
    record_subgroup (cmd, &a);
  else
    record_tiled (cmd, &a);
}

void
rv_op_softmax (RvCmd *cmd, RvTensor *y, const RvTensor *x)
{
  if (!_rv_op_begin (cmd))
    return;
  if (x->dtype != RV_DTYPE_F32 || y->dtype != RV_DTYPE_F32 || !rv_tensor_same_shape (x, y))
    {
      _rv_op_invalid (cmd, "softmax", "x and y must be f32 with the same shape");
      return;
    }
  const RvDeviceCaps *caps = rv_device_caps (rv_cmd_device (cmd));
  if (!caps->subgroup_arith)
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "softmax: the device “%s” lacks subgroup arithmetic in compute shaders.",
                    caps->name);
      return;
    }
  gint64 n = x->shape[x->ndim - 1];
  gint64 rows = rv_tensor_numel (x) / n;
  if (rv_tensor_numel (x) >= G_MAXINT32)
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "softmax: the input is too large for 32-bit indexing.");
      return;
    }
  RvKernel *kernel = _rv_op_kernel (cmd, "softmax", "SS", NULL, 0);
  /* One row per subgroup; the kernel loops over rows, so the grid only sets
   * how many subgroups run. */
  guint32 gx, gy;
  _rv_grid_1d (cmd, rows, MAX (64 / MAX (caps->subgroup_size, 1), 1), &gx, &gy);
  struct { guint32 rows, n; } pc = { rows, n };
  RvBinding b[2] = { { x, RV_READ }, { y, RV_WRITE } };
  rv_cmd_dispatch (cmd, kernel, b, 2, &pc, sizeof pc, gx, gy, 1);
}
