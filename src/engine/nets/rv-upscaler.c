/* rv-upscaler.c: SRVGGNetCompact and RRDBNet (docs/model-spec.md §13), the
 * super-resolution networks of Real-ESRGAN, as their PyTorch classes compute
 * them, channel-last. */
#include "rv-upscaler.h"

#include <string.h>

#define LRELU_SLOPE_SRVGG 0.1f
#define LRELU_SLOPE_RRDB 0.2f
#define RRDB_RESIDUAL 0.2f

/* ---- config ---- */

static gboolean
config_int (JsonObject *o, const char *origin, const char *key, int def, int min, int *out,
            GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    {
      if (def < 0)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: the key “%s” is missing", origin, key);
          return FALSE;
        }
      *out = def;
      return TRUE;
    }
  if (json_node_get_value_type (n) != G_TYPE_INT64 || json_node_get_int (n) < min ||
      json_node_get_int (n) > 4096)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: “%s” must be an integer from %d to 4096", origin, key, min);
      return FALSE;
    }
  *out = (int) json_node_get_int (n);
  return TRUE;
}

static const char *
config_string (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  return n != NULL && json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n)
                                                                     : NULL;
}

gboolean
rv_upscaler_config_parse (JsonObject *o, const char *origin, RvUpscalerConfig *c, GError **error)
{
  memset (c, 0, sizeof *c);
  const char *arch = config_string (o, "architecture");
  if (arch == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: no “architecture” (SRVGGNetCompact or RRDBNet)", origin);
      return FALSE;
    }
  /* defaults are the classes' own */
  if (strcmp (arch, "SRVGGNetCompact") == 0)
    {
      c->arch = RV_UPSCALER_SRVGG;
      const char *act = json_object_has_member (o, "act_type") ? config_string (o, "act_type")
                                                                : "prelu";
      if (act != NULL && strcmp (act, "prelu") == 0)
        c->act_type = RV_UPSCALER_ACT_PRELU;
      else if (act != NULL && strcmp (act, "leakyrelu") == 0)
        c->act_type = RV_UPSCALER_ACT_LEAKY;
      else if (act != NULL && strcmp (act, "relu") == 0)
        c->act_type = RV_UPSCALER_ACT_RELU;
      else
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: “act_type” must be \"prelu\", \"leakyrelu\" or \"relu\"", origin);
          return FALSE;
        }
      if (!config_int (o, origin, "num_in_ch", 3, 1, &c->num_in_ch, error) ||
          !config_int (o, origin, "num_out_ch", 3, 1, &c->num_out_ch, error) ||
          !config_int (o, origin, "num_feat", 64, 1, &c->num_feat, error) ||
          !config_int (o, origin, "num_conv", 16, 0, &c->num_conv, error) ||
          !config_int (o, origin, "upscale", 4, 1, &c->upscale, error))
        return FALSE;
      if (c->upscale > 16)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: “upscale” %d is over 16", origin,
                       c->upscale);
          return FALSE;
        }
      if (c->num_in_ch != c->num_out_ch)
        {
          /* the class adds the upsampled input to its output */
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: SRVGGNetCompact needs num_in_ch = num_out_ch (%d, %d)", origin,
                       c->num_in_ch, c->num_out_ch);
          return FALSE;
        }
    }
  else if (strcmp (arch, "RRDBNet") == 0)
    {
      c->arch = RV_UPSCALER_RRDB;
      if (!config_int (o, origin, "num_in_ch", 3, 1, &c->num_in_ch, error) ||
          !config_int (o, origin, "num_out_ch", 3, 1, &c->num_out_ch, error) ||
          !config_int (o, origin, "scale", 4, 1, &c->scale, error) ||
          !config_int (o, origin, "num_feat", 64, 1, &c->num_feat, error) ||
          !config_int (o, origin, "num_block", 23, 0, &c->num_block, error) ||
          !config_int (o, origin, "num_grow_ch", 32, 1, &c->num_grow_ch, error))
        return FALSE;
    }
  else
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: unknown architecture “%s” (Reverie runs SRVGGNetCompact and RRDBNet)",
                   origin, arch);
      return FALSE;
    }
  if (c->num_in_ch > 64 || c->num_out_ch > 64)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: more than 64 image channels", origin);
      return FALSE;
    }
  return TRUE;
}

gboolean
rv_upscaler_config_load (const char *dir, RvUpscalerConfig *c, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "config.json", NULL);
  g_autoptr (JsonNode) root = rv_json_load_object (path, error);
  if (root == NULL)
    return FALSE;
  return rv_upscaler_config_parse (json_node_get_object (root), path, c, error);
}

int
rv_upscaler_config_scale (const RvUpscalerConfig *c)
{
  return c->arch == RV_UPSCALER_SRVGG ? c->upscale : c->scale == 1 || c->scale == 2 ? c->scale : 4;
}

/* RRDBNet at scale 2 and 1 unshuffles the input by 2 and 4 */
static int
unshuffle_factor (const RvUpscalerConfig *c)
{
  if (c->arch != RV_UPSCALER_RRDB)
    return 1;
  return c->scale == 2 ? 2 : c->scale == 1 ? 4 : 1;
}

int
rv_upscaler_config_size_multiple (const RvUpscalerConfig *c)
{
  return unshuffle_factor (c);
}

int
rv_upscaler_config_reach (const RvUpscalerConfig *c)
{
  /* each 3×3 conv sees one more pixel on every side, at its own resolution */
  if (c->arch == RV_UPSCALER_SRVGG)
    return c->num_conv + 2;
  int s = unshuffle_factor (c);
  /* conv_first, 5 per dense block, 3 blocks per RRDB, conv_body; then the
   * upsampling convs at 2× and 4× the trunk's resolution (half and quarter
   * a trunk pixel each) */
  int trunk = 2 + 15 * c->num_block + 1;
  return s * trunk + (s * 3 + 3) / 4 + 1;
}

guint64
rv_upscaler_estimate_memory (const RvUpscalerConfig *c, int batch, int h, int w)
{
  guint64 hw = (guint64) batch * h * w, f = c->num_feat;
  guint64 s = rv_upscaler_config_scale (c);
  guint64 floats;
  if (c->arch == RV_UPSCALER_SRVGG)
    {
      guint64 r2 = (guint64) c->upscale * c->upscale;
      /* two feature maps around a conv; then the last conv's output, the
       * shuffled picture, the upsampled input and the sum */
      guint64 body = 2 * f * hw;
      guint64 tail = c->num_out_ch * r2 * hw * 3 + f * hw;
      floats = MAX (body, tail);
    }
  else
    {
      guint64 u = unshuffle_factor (c);
      guint64 t = hw / (u * u);                 /* trunk pixels */
      guint64 g = c->num_grow_ch;
      /* trunk: conv_first's output, the block input, the dense block input,
       * its growing concatenation (twice while one is copied) and one output */
      guint64 trunk = t * (3 * f + 2 * (f + 4 * g) + MAX (f, g)) + hw * c->num_in_ch;
      /* upsampling: the 2× and 4× maps around each conv */
      guint64 up = t * f + 4 * t * f * 2;
      guint64 up2 = 4 * t * f + 16 * t * f * 2;
      floats = MAX (trunk, MAX (up, up2));
    }
  guint64 out = hw * s * s * c->num_out_ch;
  /* the convolutions' scratch (rv_op_conv2d_scratch_bytes): the trunk's,
   * and the RRDB's upsampling convs at 2× and 4× */
  const RvConv2d k3 = { 3, 3, 1, 1, 1, 1, 1 };
  guint64 scratch;
  if (c->arch == RV_UPSCALER_SRVGG)
    scratch = MAX (rv_op_conv2d_scratch_bytes (batch, h, w, c->num_feat, c->num_feat, &k3),
                   rv_op_conv2d_scratch_bytes (batch, h, w, c->num_feat,
                                               (gint64) c->num_out_ch * c->upscale * c->upscale,
                                               &k3));
  else
    {
      gint64 u = unshuffle_factor (c), th = h / u, tw = w / u;
      scratch = MAX (rv_op_conv2d_scratch_bytes (batch, th, tw, c->num_feat, c->num_feat, &k3),
                     rv_op_conv2d_scratch_bytes (batch, th, tw, c->num_feat + 4 * c->num_grow_ch,
                                                 c->num_feat, &k3));
      scratch = MAX (scratch, rv_op_conv2d_scratch_bytes (batch, 4 * th, 4 * tw, c->num_feat,
                                                          c->num_feat, &k3));
    }
  return (floats + out) * 4 + scratch + ((guint64) 1 << 20);
}

/* ---- weights ---- */

typedef struct {
  RvTensor *w, *b;
} Conv;

typedef struct {
  RvTensor *a;
} Slopes;

/* sizes: [1] input channels, [2] output channels */
static const RvWeightSpec conv_weights[] = {
  RV_WEIGHT (Conv, w, "weight", RV_WEIGHT_CONV, 0, -2, -1, 3, 3),
  RV_WEIGHT (Conv, b, "bias", RV_WEIGHT_PLAIN, 0, -2),
};

/* sizes: [1] channels */
static const RvWeightSpec prelu_weights[] = {
  RV_WEIGHT (Slopes, a, "weight", RV_WEIGHT_PLAIN, 0, -1),
};

/* A conv's name in the checkpoint and its channels. */
typedef struct {
  char name[48];
  int  cin, cout;
} ConvSpec;

struct _RvUpscaler {
  RvUpscalerConfig cfg;
  /* in forward order: SRVGGNetCompact body.0, body.2, … body.<2·num_conv + 2>;
   * RRDBNet conv_first, num_block × 3 × 5 dense convs, conv_body, conv_up1,
   * conv_up2, conv_hr, conv_last */
  ConvSpec        *specs;
  Conv            *convs;
  int              n_convs;
  Slopes          *slopes;     /* SRVGG with PReLU: per activation (F) */
  RvTensor        *lrelu;      /* (1): the fixed slope of the other activations */
  guint64          bytes;
};

static ConvSpec *
conv_specs (const RvUpscalerConfig *c, int *n)
{
  GArray *a = g_array_new (FALSE, TRUE, sizeof (ConvSpec));
  ConvSpec s;
#define ADD(cin_, cout_, ...) \
  (g_snprintf (s.name, sizeof s.name, __VA_ARGS__), s.cin = (cin_), s.cout = (cout_), \
   g_array_append_val (a, s))
  int f = c->num_feat;
  if (c->arch == RV_UPSCALER_SRVGG)
    {
      ADD (c->num_in_ch, f, "body.0");
      for (int i = 0; i < c->num_conv; i++)
        ADD (f, f, "body.%d", 2 * (i + 1));
      ADD (f, c->num_out_ch * c->upscale * c->upscale, "body.%d", 2 * (c->num_conv + 1));
    }
  else
    {
      int u = unshuffle_factor (c), g = c->num_grow_ch;
      ADD (c->num_in_ch * u * u, f, "conv_first");
      for (int k = 0; k < c->num_block; k++)
        for (int r = 1; r <= 3; r++)
          for (int j = 1; j <= 5; j++)
            ADD (f + (j - 1) * g, j == 5 ? f : g, "body.%d.rdb%d.conv%d", k, r, j);
      ADD (f, f, "conv_body");
      ADD (f, f, "conv_up1");
      ADD (f, f, "conv_up2");
      ADD (f, f, "conv_hr");
      ADD (f, c->num_out_ch, "conv_last");
    }
#undef ADD
  *n = (int) a->len;
  return (ConvSpec *) g_array_free (a, FALSE);
}

static void
walk (RvWeightWalk *w, gpointer net)
{
  RvUpscaler *u = net;
  for (int i = 0; i < u->n_convs; i++)
    {
      gint64 sizes[RV_WEIGHT_SIZES] = { 0, u->specs[i].cin, u->specs[i].cout };
      RV_WEIGHTS_WALK (w, &u->convs[i], u->specs[i].name, conv_weights, 0, sizes);
    }
  if (u->slopes != NULL)
    for (int i = 0; i <= u->cfg.num_conv; i++)
      {
        gint64 sizes[RV_WEIGHT_SIZES] = { 0, u->cfg.num_feat };
        g_autofree char *prefix = g_strdup_printf ("body.%d", 2 * i + 1);
        RV_WEIGHTS_WALK (w, &u->slopes[i], prefix, prelu_weights, 0, sizes);
      }
}

void
rv_upscaler_free (RvUpscaler *u)
{
  if (u == NULL)
    return;
  rv_weights_clear_walk (walk, u);
  g_free (u->specs);
  g_free (u->convs);
  g_free (u->slopes);
  g_clear_pointer (&u->lrelu, rv_tensor_free);
  g_free (u);
}

RvUpscaler *
rv_upscaler_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error)
{
  RvUpscalerConfig cfg;
  if (!rv_upscaler_config_load (dir, &cfg, error))
    return NULL;
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;

  g_autoptr (RvUpscaler) u = g_new0 (RvUpscaler, 1);
  u->cfg = cfg;
  u->specs = conv_specs (&cfg, &u->n_convs);
  u->convs = g_new0 (Conv, u->n_convs);
  gboolean prelu = cfg.arch == RV_UPSCALER_SRVGG && cfg.act_type == RV_UPSCALER_ACT_PRELU;
  if (prelu)
    u->slopes = g_new0 (Slopes, cfg.num_conv + 1);
  if (!rv_weights_load_walk (cmd, weights, policy, walk, u, &u->bytes, error))
    return NULL;
  if (!prelu)
    {
      /* leaky ReLU is a PReLU with one slope for every channel */
      float slope = cfg.arch == RV_UPSCALER_RRDB ? LRELU_SLOPE_RRDB
                    : cfg.act_type == RV_UPSCALER_ACT_LEAKY ? LRELU_SLOPE_SRVGG
                                                           : 0.0f;
      gint64 one = 1;
      u->lrelu = rv_weight_plain (cmd, &slope, 1, &one, RV_DTYPE_F32, error);
      if (u->lrelu == NULL)
        return NULL;
    }
  return g_steal_pointer (&u);
}

const RvUpscalerConfig *
rv_upscaler_config (RvUpscaler *u)
{
  return &u->cfg;
}

guint64
rv_upscaler_weight_bytes (RvUpscaler *u)
{
  return u->bytes;
}

/* ---- forward ---- */

static const RvConv2d SAME3 = { 3, 3, 1, 1, 1, 1, 1 };

/* y (B, H, W, cout) = conv_i (x) [+ residual] */
static RvTensor *
conv (RvCmd *cmd, const Conv *c, const RvTensor *x, const RvTensor *residual)
{
  if (x == NULL)
    return NULL;
  RvTensor *y = RV_NET_TENSOR (cmd, x->shape[0], x->shape[1], x->shape[2], c->w->shape[3]);
  if (y != NULL)
    rv_op_conv2d (cmd, y, x, c->w, c->b, &SAME3, residual);
  return y;
}

/* x ← PReLU / leaky ReLU / ReLU of x, in place */
static void
activate (RvCmd *cmd, RvTensor *x, const RvTensor *slopes)
{
  if (x != NULL)
    rv_op_binary (cmd, x, x, slopes, RV_BIN_PRELU);
}

static RvTensor *
srvgg_forward (RvUpscaler *u, RvCmd *cmd, const RvTensor *x)
{
  const RvUpscalerConfig *c = &u->cfg;
  gint64 b = x->shape[0], h = x->shape[1], w = x->shape[2], r = c->upscale;

  g_autoptr (RvTensor) feat = NULL;                                     /* (B, H, W, F) */
  for (int i = 0; i <= c->num_conv; i++)
    {
      RvTensor *next = conv (cmd, &u->convs[i], i == 0 ? x : feat, NULL);
      g_clear_pointer (&feat, rv_tensor_free);
      feat = next;
      activate (cmd, feat, u->slopes != NULL ? u->slopes[i].a : u->lrelu);
    }
  g_autoptr (RvTensor) last = feat != NULL                              /* (B, H, W, out·r²) */
    ? conv (cmd, &u->convs[c->num_conv + 1], feat, NULL) : NULL;
  g_clear_pointer (&feat, rv_tensor_free);
  g_autoptr (RvTensor) base = RV_NET_TENSOR (cmd, b, h * r, w * r, c->num_out_ch);
  RvTensor *y = RV_NET_TENSOR (cmd, b, h * r, w * r, c->num_out_ch);   /* (B, H·r, W·r, out) */
  if (last == NULL || base == NULL || y == NULL)
    {
      g_clear_pointer (&y, rv_tensor_free);
      return NULL;
    }
  rv_op_pixel_shuffle (cmd, y, last, (int) r);
  /* the network learns a residual over the nearest-upsampled input */
  rv_op_resize_nearest (cmd, base, x);
  rv_op_binary (cmd, y, y, base, RV_BIN_ADD);
  return y;
}

/* One residual dense block: x5 = conv5 (cat (x, x1 … x4)) with
 * x_k = lrelu (conv_k (cat (x, x1 … x_{k−1}))); returns 0.2·x5 + x. */
static RvTensor *
dense_block (RvUpscaler *u, RvCmd *cmd, const Conv *convs, const RvTensor *x)
{
  g_autoptr (RvTensor) cat = NULL;             /* (B, H, W, F + k·G) */
  for (int k = 0; k < 4; k++)
    {
      const RvTensor *in = k == 0 ? x : cat;
      g_autoptr (RvTensor) xk = conv (cmd, &convs[k], in, NULL);       /* (B, H, W, G) */
      activate (cmd, xk, u->lrelu);
      RvTensor *grown = xk == NULL ? NULL
        : RV_NET_TENSOR (cmd, in->shape[0], in->shape[1], in->shape[2], in->shape[3] + xk->shape[3]);
      if (grown == NULL)
        return NULL;
      rv_op_concat (cmd, grown, in, xk, 3);
      g_clear_pointer (&cat, rv_tensor_free);
      cat = grown;
    }
  g_autoptr (RvTensor) x5 = conv (cmd, &convs[4], cat, NULL);           /* (B, H, W, F) */
  RvTensor *y = x5 == NULL ? NULL : RV_NET_TENSOR (cmd, x->shape[0], x->shape[1], x->shape[2],
                                                   x->shape[3]);
  if (y != NULL)
    rv_op_axpy (cmd, y, x5, RRDB_RESIDUAL, x);
  return y;
}

static RvTensor *
upsample2x (RvCmd *cmd, const RvTensor *x)
{
  RvTensor *y = RV_NET_TENSOR (cmd, x->shape[0], 2 * x->shape[1], 2 * x->shape[2], x->shape[3]);
  if (y != NULL)
    rv_op_upsample_nearest2x (cmd, y, x);
  return y;
}

static RvTensor *
rrdb_forward (RvUpscaler *u, RvCmd *cmd, const RvTensor *x)
{
  const RvUpscalerConfig *c = &u->cfg;
  int s = unshuffle_factor (c);
  const Conv *cv = u->convs;

  g_autoptr (RvTensor) shuffled = NULL;                                 /* (B, H/s, W/s, C·s²) */
  if (s > 1)
    {
      shuffled = RV_NET_TENSOR (cmd, x->shape[0], x->shape[1] / s, x->shape[2] / s,
                                x->shape[3] * s * s);
      if (shuffled == NULL)
        return NULL;
      rv_op_pixel_unshuffle (cmd, shuffled, x, s);
    }
  g_autoptr (RvTensor) first = conv (cmd, &cv[0], s > 1 ? shuffled : x, NULL); /* (B, h, w, F) */
  g_clear_pointer (&shuffled, rv_tensor_free);
  if (first == NULL)
    return NULL;

  /* the trunk of residual-in-residual dense blocks */
  g_autoptr (RvTensor) trunk = NULL;
  for (int k = 0; k < c->num_block; k++)
    {
      const Conv *block = cv + 1 + 15 * k;
      const RvTensor *in = k == 0 ? first : trunk;
      g_autoptr (RvTensor) h1 = dense_block (u, cmd, block, in);
      g_autoptr (RvTensor) h2 = h1 ? dense_block (u, cmd, block + 5, h1) : NULL;
      g_clear_pointer (&h1, rv_tensor_free);
      g_autoptr (RvTensor) h3 = h2 ? dense_block (u, cmd, block + 10, h2) : NULL;
      g_clear_pointer (&h2, rv_tensor_free);
      RvTensor *out = h3 ? RV_NET_TENSOR (cmd, in->shape[0], in->shape[1], in->shape[2],
                                          in->shape[3]) : NULL;
      if (out == NULL)
        return NULL;
      rv_op_axpy (cmd, out, h3, RRDB_RESIDUAL, in);                     /* 0.2·h3 + in */
      g_clear_pointer (&trunk, rv_tensor_free);
      trunk = out;
    }
  const Conv *tail = cv + 1 + 15 * c->num_block;
  /* the long skip: conv_body (trunk) + conv_first's output */
  g_autoptr (RvTensor) feat = conv (cmd, &tail[0], c->num_block > 0 ? trunk : first, first);
  g_clear_pointer (&trunk, rv_tensor_free);
  g_clear_pointer (&first, rv_tensor_free);
  if (feat == NULL)
    return NULL;

  /* two nearest ×2 steps, each followed by a conv and a leaky ReLU */
  for (int i = 1; i <= 2; i++)
    {
      g_autoptr (RvTensor) up = upsample2x (cmd, feat);
      g_clear_pointer (&feat, rv_tensor_free);
      if (up == NULL)
        return NULL;
      feat = conv (cmd, &tail[i], up, NULL);
      activate (cmd, feat, u->lrelu);
    }
  g_autoptr (RvTensor) hr = feat ? conv (cmd, &tail[3], feat, NULL) : NULL; /* (B, 4h, 4w, F) */
  g_clear_pointer (&feat, rv_tensor_free);
  activate (cmd, hr, u->lrelu);
  return hr ? conv (cmd, &tail[4], hr, NULL) : NULL;                   /* (B, 4h, 4w, out) */
}

RvTensor *
rv_upscaler_forward (RvUpscaler *u, RvCmd *cmd, const RvTensor *x)
{
  const RvUpscalerConfig *c = &u->cfg;
  int m = rv_upscaler_config_size_multiple (c);
  if (x->ndim != 4 || x->shape[3] != c->num_in_ch || x->shape[1] % m != 0 || x->shape[2] % m != 0)
    {
      g_autofree char *xs = rv_tensor_describe (x);
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "upscaler: the input %s is not (B, H, W, %d) with H and W multiples of %d",
                    xs, c->num_in_ch, m);
      return NULL;
    }
  if (rv_cmd_failed (cmd))
    return NULL;
  return c->arch == RV_UPSCALER_SRVGG ? srvgg_forward (u, cmd, x) : rrdb_forward (u, cmd, x);
}
