/* rv-movq.c: the MoVQ image codec (diffusers' VQModel with SpatialNorm,
 * MODEL_SPEC §8): decoder, encoder and the host codebook lookup. */
#include "rv-movq.h"

#include <math.h>
#include <string.h>

/* diffusers builds every VQModel normalization with this epsilon, and
 * SpatialNorm's GroupNorm with 32 groups whatever norm_num_groups says. */
#define NORM_EPS 1e-6f
#define SPATIAL_GROUPS 32

/* Alignment of a storage-buffer binding's offset that every device accepts
 * (Vulkan's largest minStorageBufferOffsetAlignment), and of a tensor read
 * through the f32 texel view (one RGBA32F texel). */
#define BIND_ALIGN 256
#define TEXEL_ALIGN 16

/* ---- weights ---- */

/* GroupNorm; a SpatialNorm adds the 1×1 convolutions of zq that give its
 * per-pixel scale and shift. */
typedef struct {
  int       groups;
  RvTensor *gamma, *beta;                 /* (C) */
  RvTensor *conv_y, *conv_y_bias;         /* (1, 1, Z, C), (C); NULL for GroupNorm */
  RvTensor *conv_b, *conv_b_bias;
} Norm;

/* ResnetBlock2D, or ResnetBlockCondNorm2D with SpatialNorms. */
typedef struct {
  Norm      norm1, norm2;
  RvTensor *conv1, *conv1_bias;           /* (3, 3, Cin, Cout) */
  RvTensor *conv2, *conv2_bias;           /* (3, 3, Cout, Cout) */
  RvTensor *shortcut, *shortcut_bias;     /* (1, 1, Cin, Cout), NULL when Cin = Cout */
} Resnet;

/* Single-head self-attention over the pixels, with its residual. */
typedef struct {
  Norm      norm;
  RvTensor *q, *q_bias, *k, *k_bias, *v, *v_bias;   /* (1, 1, C, C) */
  RvTensor *out, *out_bias;
} Attn;

typedef struct {
  int       n_resnets;
  Resnet   *resnets;
  Attn     *attns;                        /* one after each resnet, or NULL */
  RvTensor *sampler, *sampler_bias;       /* (3, 3, C, C) down/upsampler conv, or NULL */
} Block;

/* The encoder or the decoder. */
typedef struct {
  RvTensor *conv_in, *conv_in_bias;
  Block     blocks[RV_MAX_BLOCKS];
  Resnet    mid[2];
  Attn      mid_attn;
  gboolean  has_mid_attn;
  Norm      norm_out;
  RvTensor *conv_out, *conv_out_bias;
} Coder;

struct _RvMovq {
  RvVQConfig  cfg;
  gboolean    has_encoder;
  Coder       enc, dec;
  RvTensor   *quant_conv, *quant_conv_bias;              /* (1, 1, latent, vq) */
  RvTensor   *post_quant_conv, *post_quant_conv_bias;    /* (1, 1, vq, latent) */
  float      *codebook;                                  /* host (num_vq_embeddings, vq_embed_dim) */
  GPtrArray  *tensors;                                   /* owns every device tensor */
};

static const char *const ENCODER_BLOCKS[] = { "DownEncoderBlock2D", "AttnDownEncoderBlock2D", NULL };
static const char *const DECODER_BLOCKS[] = { "UpDecoderBlock2D", "AttnUpDecoderBlock2D", NULL };

/* Loading walks the network twice with the same code, so the two cannot
 * disagree: first listing every tensor with its PyTorch shape in a manifest
 * (checked before anything is uploaded), then uploading them. */
typedef struct {
  RvManifest *manifest;       /* listing pass, or NULL */
  RvLoader   *loader;         /* upload pass */
  GPtrArray  *tensors;
  gint64      zq_channels;
} Walk;

typedef enum { W_CONV, W_LINEAR, W_PLAIN } WeightKind;

static RvTensor *
weight (Walk *w, WeightKind kind, int ndim, const gint64 *shape, const char *prefix,
        const char *leaf)
{
  g_autofree char *name = g_strconcat (prefix, ".", leaf, NULL);
  if (w->manifest != NULL)
    {
      rv_manifest_add (w->manifest, ndim, shape, "%s", name);
      return NULL;
    }
  RvTensor *t = NULL;
  switch (kind)
    {
    case W_CONV:
      t = rv_load_conv (w->loader, "%s", name);
      break;
    case W_LINEAR:
      /* (in, out) is the layout of a 1×1 convolution: run it as one */
      t = rv_load_linear (w->loader, "%s", name);
      if (t != NULL)
        rv_tensor_reshape (t, 4, (const gint64[]) { 1, 1, t->shape[0], t->shape[1] });
      break;
    case W_PLAIN:
      t = rv_load_plain (w->loader, "%s", name);
      break;
    }
  if (t != NULL)
    g_ptr_array_add (w->tensors, t);
  return t;
}

#define CONV(w, p, leaf, ...) weight ((w), W_CONV, RV_SHAPE (__VA_ARGS__), (p), (leaf))
#define LINEAR(w, p, leaf, ...) weight ((w), W_LINEAR, RV_SHAPE (__VA_ARGS__), (p), (leaf))
#define PLAIN(w, p, leaf, ...) weight ((w), W_PLAIN, RV_SHAPE (__VA_ARGS__), (p), (leaf))

static void
walk_norm (Walk *w, Norm *n, gboolean spatial, int groups, gint64 c, const char *p)
{
  if (spatial)
    {
      g_autofree char *gn = g_strconcat (p, ".norm_layer", NULL);
      n->groups = SPATIAL_GROUPS;
      n->gamma = PLAIN (w, gn, "weight", c);
      n->beta = PLAIN (w, gn, "bias", c);
      n->conv_y = CONV (w, p, "conv_y.weight", c, w->zq_channels, 1, 1);
      n->conv_y_bias = PLAIN (w, p, "conv_y.bias", c);
      n->conv_b = CONV (w, p, "conv_b.weight", c, w->zq_channels, 1, 1);
      n->conv_b_bias = PLAIN (w, p, "conv_b.bias", c);
    }
  else
    {
      n->groups = groups;
      n->gamma = PLAIN (w, p, "weight", c);
      n->beta = PLAIN (w, p, "bias", c);
    }
}

static void
walk_resnet (Walk *w, Resnet *r, gboolean spatial, int groups, gint64 cin, gint64 cout,
             const char *p)
{
  g_autofree char *n1 = g_strconcat (p, ".norm1", NULL);
  g_autofree char *n2 = g_strconcat (p, ".norm2", NULL);
  walk_norm (w, &r->norm1, spatial, groups, cin, n1);
  r->conv1 = CONV (w, p, "conv1.weight", cout, cin, 3, 3);
  r->conv1_bias = PLAIN (w, p, "conv1.bias", cout);
  walk_norm (w, &r->norm2, spatial, groups, cout, n2);
  r->conv2 = CONV (w, p, "conv2.weight", cout, cout, 3, 3);
  r->conv2_bias = PLAIN (w, p, "conv2.bias", cout);
  if (cin != cout)
    {
      r->shortcut = CONV (w, p, "conv_shortcut.weight", cout, cin, 1, 1);
      r->shortcut_bias = PLAIN (w, p, "conv_shortcut.bias", cout);
    }
}

/* Legacy files name the projections query/key/value/proj_attn; the weights
 * layer resolves those from these names. */
static void
walk_attn (Walk *w, Attn *a, gboolean spatial, int groups, gint64 c, const char *p)
{
  g_autofree char *n = g_strconcat (p, spatial ? ".spatial_norm" : ".group_norm", NULL);
  walk_norm (w, &a->norm, spatial, groups, c, n);
  a->q = LINEAR (w, p, "to_q.weight", c, c);
  a->q_bias = PLAIN (w, p, "to_q.bias", c);
  a->k = LINEAR (w, p, "to_k.weight", c, c);
  a->k_bias = PLAIN (w, p, "to_k.bias", c);
  a->v = LINEAR (w, p, "to_v.weight", c, c);
  a->v_bias = PLAIN (w, p, "to_v.bias", c);
  a->out = LINEAR (w, p, "to_out.0.weight", c, c);
  a->out_bias = PLAIN (w, p, "to_out.0.bias", c);
}

static gboolean
block_has_attention (const char *type)
{
  return g_str_has_prefix (type, "Attn");
}

static void
walk_block (Walk *w, Block *b, int n_resnets, gboolean attention, gboolean spatial, int groups,
            gint64 cin, gint64 cout, const char *sampler, const char *p)
{
  b->n_resnets = n_resnets;
  if (b->resnets == NULL)
    b->resnets = g_new0 (Resnet, n_resnets);
  if (attention && b->attns == NULL)
    b->attns = g_new0 (Attn, n_resnets);
  for (int j = 0; j < n_resnets; j++)
    {
      g_autofree char *rp = g_strdup_printf ("%s.resnets.%d", p, j);
      walk_resnet (w, &b->resnets[j], spatial, groups, j == 0 ? cin : cout, cout, rp);
      if (attention)
        {
          g_autofree char *ap = g_strdup_printf ("%s.attentions.%d", p, j);
          walk_attn (w, &b->attns[j], spatial, groups, cout, ap);
        }
    }
  if (sampler != NULL)
    {
      g_autofree char *sp = g_strdup_printf ("%s.%s.0.conv", p, sampler);
      b->sampler = CONV (w, sp, "weight", cout, cout, 3, 3);
      b->sampler_bias = PLAIN (w, sp, "bias", cout);
    }
}

static void
walk_mid (Walk *w, Coder *c, const RvVQConfig *cfg, gboolean spatial, int groups, const char *p)
{
  gint64 top = cfg->block_out_channels[cfg->n_blocks - 1];
  for (int j = 0; j < 2; j++)
    {
      g_autofree char *rp = g_strdup_printf ("%s.mid_block.resnets.%d", p, j);
      walk_resnet (w, &c->mid[j], spatial, groups, top, top, rp);
    }
  c->has_mid_attn = cfg->mid_block_add_attention;
  if (c->has_mid_attn)
    {
      g_autofree char *ap = g_strdup_printf ("%s.mid_block.attentions.0", p);
      walk_attn (w, &c->mid_attn, spatial, groups, top, ap);
    }
}

/* diffusers' Decoder: conv_in → mid → up blocks (coarsest first) → norm_out → conv_out. */
static void
walk_decoder (Walk *w, RvMovq *m)
{
  const RvVQConfig *cfg = &m->cfg;
  Coder *d = &m->dec;
  int n = cfg->n_blocks, groups = cfg->norm_num_groups;
  gboolean spatial = cfg->norm_spatial;
  gint64 top = cfg->block_out_channels[n - 1];

  m->post_quant_conv = CONV (w, "post_quant_conv", "weight", cfg->latent_channels,
                             cfg->vq_embed_dim, 1, 1);
  m->post_quant_conv_bias = PLAIN (w, "post_quant_conv", "bias", cfg->latent_channels);
  d->conv_in = CONV (w, "decoder.conv_in", "weight", top, cfg->latent_channels, 3, 3);
  d->conv_in_bias = PLAIN (w, "decoder.conv_in", "bias", top);
  walk_mid (w, d, cfg, spatial, groups, "decoder");
  gint64 cout = top;
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[n - 1 - i];
      g_autofree char *bp = g_strdup_printf ("decoder.up_blocks.%d", i);
      walk_block (w, &d->blocks[i], cfg->layers_per_block + 1,
                  block_has_attention (cfg->up_block_types[i]), spatial, groups, cin, cout,
                  i < n - 1 ? "upsamplers" : NULL, bp);
    }
  walk_norm (w, &d->norm_out, spatial, groups, cfg->block_out_channels[0], "decoder.conv_norm_out");
  d->conv_out = CONV (w, "decoder.conv_out", "weight", cfg->out_channels,
                      cfg->block_out_channels[0], 3, 3);
  d->conv_out_bias = PLAIN (w, "decoder.conv_out", "bias", cfg->out_channels);
}

/* diffusers' Encoder (double_z off, as VQModel builds it) and quant_conv. */
static void
walk_encoder (Walk *w, RvMovq *m)
{
  const RvVQConfig *cfg = &m->cfg;
  Coder *e = &m->enc;
  int n = cfg->n_blocks, groups = cfg->norm_num_groups;
  gint64 top = cfg->block_out_channels[n - 1];

  e->conv_in = CONV (w, "encoder.conv_in", "weight", cfg->block_out_channels[0],
                     cfg->in_channels, 3, 3);
  e->conv_in_bias = PLAIN (w, "encoder.conv_in", "bias", cfg->block_out_channels[0]);
  gint64 cout = cfg->block_out_channels[0];
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[i];
      g_autofree char *bp = g_strdup_printf ("encoder.down_blocks.%d", i);
      walk_block (w, &e->blocks[i], cfg->layers_per_block,
                  block_has_attention (cfg->down_block_types[i]), FALSE, groups, cin, cout,
                  i < n - 1 ? "downsamplers" : NULL, bp);
    }
  walk_mid (w, e, cfg, FALSE, groups, "encoder");
  walk_norm (w, &e->norm_out, FALSE, groups, top, "encoder.conv_norm_out");
  e->conv_out = CONV (w, "encoder.conv_out", "weight", cfg->latent_channels, top, 3, 3);
  e->conv_out_bias = PLAIN (w, "encoder.conv_out", "bias", cfg->latent_channels);
  m->quant_conv = CONV (w, "quant_conv", "weight", cfg->vq_embed_dim, cfg->latent_channels, 1, 1);
  m->quant_conv_bias = PLAIN (w, "quant_conv", "bias", cfg->vq_embed_dim);
}

static gboolean
name_in (const char *name, const char *const *names)
{
  for (; *names != NULL; names++)
    if (strcmp (name, *names) == 0)
      return TRUE;
  return FALSE;
}

/* What the code supports of a VQModel config, checked before any weight is read. */
static gboolean
check_config (const RvVQConfig *c, const char *dir, gboolean with_encoder, GError **error)
{
  g_autofree char *origin = g_build_filename (dir, "config.json", NULL);
  if (c->n_blocks < 1)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: block_out_channels is empty", origin);
      return FALSE;
    }
  if (c->lookup_from_codebook)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_UNSUPPORTED,
                   "%s: lookup_from_codebook (latents given as codebook indices) is not "
                   "supported; Kandinsky 2.2 decodes its latents directly.", origin);
      return FALSE;
    }
  if (c->norm_spatial && c->vq_embed_dim != c->latent_channels)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: with norm_type “spatial” vq_embed_dim (%d) must equal latent_channels "
                   "(%d), as the decoder conditions on the latents themselves",
                   origin, c->vq_embed_dim, c->latent_channels);
      return FALSE;
    }
  for (int i = 0; i < c->n_blocks; i++)
    {
      const char *up = c->up_block_types[i], *down = c->down_block_types[i];
      if (!name_in (up, DECODER_BLOCKS) || (with_encoder && !name_in (down, ENCODER_BLOCKS)))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_UNSUPPORTED,
                       "%s: block type “%s” is not supported (MoVQ uses %s, %s, %s and %s)",
                       origin, name_in (up, DECODER_BLOCKS) ? down : up, ENCODER_BLOCKS[0],
                       ENCODER_BLOCKS[1], DECODER_BLOCKS[0], DECODER_BLOCKS[1]);
          return FALSE;
        }
      int c_i = c->block_out_channels[i];
      int dec_groups = c->norm_spatial ? SPATIAL_GROUPS : c->norm_num_groups;
      if (c_i % dec_groups != 0 || (with_encoder && c_i % c->norm_num_groups != 0))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: block_out_channels[%d] = %d does not split into %d normalization "
                       "groups", origin, i, c_i,
                       c_i % dec_groups != 0 ? dec_groups : c->norm_num_groups);
          return FALSE;
        }
    }
  return TRUE;
}

static void
free_coder (Coder *c)
{
  for (int i = 0; i < RV_MAX_BLOCKS; i++)
    {
      g_free (c->blocks[i].resnets);
      g_free (c->blocks[i].attns);
    }
}

void
rv_movq_free (RvMovq *m)
{
  if (m == NULL)
    return;
  free_coder (&m->enc);
  free_coder (&m->dec);
  g_clear_pointer (&m->tensors, g_ptr_array_unref);
  g_free (m->codebook);
  g_free (m);
}

RvMovq *
rv_movq_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, gboolean with_encoder,
              GError **error)
{
  RvVQConfig cfg;
  if (!rv_vq_config_load (dir, &cfg, error) || !check_config (&cfg, dir, with_encoder, error))
    return NULL;
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;

  RvMovq *m = g_new0 (RvMovq, 1);
  m->cfg = cfg;
  m->has_encoder = with_encoder;
  m->tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_tensor_free);

  g_autoptr (RvManifest) manifest = rv_manifest_new ();
  Walk w = { manifest, NULL, m->tensors, cfg.latent_channels };
  walk_decoder (&w, m);
  if (with_encoder)
    walk_encoder (&w, m);
  rv_manifest_add (manifest, RV_SHAPE (cfg.num_vq_embeddings, cfg.vq_embed_dim),
                   "quantize.embedding.weight");
  if (!rv_weights_check (weights, manifest, error))
    {
      rv_movq_free (m);
      return NULL;
    }

  RvLoader l;
  rv_loader_init (&l, cmd, weights, policy);
  w.manifest = NULL;
  w.loader = &l;
  walk_decoder (&w, m);
  if (with_encoder)
    walk_encoder (&w, m);
  m->codebook = rv_load_host (&l, NULL, "quantize.embedding.weight");
  if (!rv_loader_finish (&l, error))
    {
      rv_movq_free (m);
      return NULL;
    }
  return m;
}

const RvVQConfig *
rv_movq_config (RvMovq *m)
{
  return &m->cfg;
}

int
rv_movq_scale_factor (RvMovq *m)
{
  return 1 << (m->cfg.n_blocks - 1);
}

/* ---- forward helpers ---- */

static const RvConv2d SAME3 = { 3, 3, 1, 1, 1, 1, 1 };
static const RvConv2d POINTWISE = { 1, 1, 1, 0, 0, 0, 0 };
/* Downsample2D with padding 0: pad right and bottom by one, then stride 2 */
static const RvConv2d DOWN3 = { 3, 3, 2, 0, 0, 1, 1 };

typedef struct {
  RvMovq         *m;
  RvCmd          *cmd;
  const RvTensor *zq;         /* decoder with SpatialNorm: the latents (B, h, w, Z) */
  RvTensor       *zq_level;   /* zq resized to the current level, or NULL */
} Fwd;

/* Test overrides of the device's limits (0: none) */
static gsize binding_limit_override;
static guint64 memory_budget_override;

void
_rv_movq_set_limits (gsize binding_bytes, guint64 memory_bytes)
{
  binding_limit_override = binding_bytes;
  memory_budget_override = memory_bytes;
}

/* The most bytes one dispatch may write: one storage binding. */
static gsize
binding_limit (RvCmd *cmd)
{
  gsize limit = rv_device_caps (rv_cmd_device (cmd))->max_storage_range;
  if (binding_limit_override > 0)
    limit = MIN (limit, binding_limit_override);
  return limit;
}

static RvTensor *
image (Fwd *f, gint64 b, gint64 h, gint64 w, gint64 c)
{
  return RV_NET_TENSOR (f->cmd, b, h, w, c);
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
band_in (Fwd *f, const RvTensor *t, gint64 b, gint64 r0, gint64 n, RvTensor *view,
         RvTensor **copy)
{
  *view = rows_of (t, b, r0, n);
  *copy = NULL;
  if (view->offset % TEXEL_ALIGN == 0)
    return view;
  *copy = image (f, 1, n, t->shape[2], t->shape[3]);
  if (*copy != NULL)
    rv_cmd_copy (f->cmd, *copy, 0, t, view->offset - t->offset, view->size);
  return *copy;
}

/* Rows of t to write: the view when it can be bound in place, else a scratch
 * tensor (*scratch) that band_out_done copies into place. */
static RvTensor *
band_out (Fwd *f, RvTensor *t, gint64 b, gint64 r0, gint64 n, RvTensor *view,
          RvTensor **scratch)
{
  *view = rows_of (t, b, r0, n);
  *scratch = NULL;
  if (view->offset % BIND_ALIGN == 0)
    return view;
  *scratch = image (f, 1, n, t->shape[2], t->shape[3]);
  return *scratch;
}

static void
band_out_done (Fwd *f, RvTensor *t, const RvTensor *view, RvTensor *scratch)
{
  if (scratch == NULL)
    return;
  rv_cmd_copy (f->cmd, t, view->offset - t->offset, scratch, 0, view->size);
  rv_tensor_free (scratch);
}

/* Output rows per band so that one band of rows of `row` bytes fits a binding. */
static gint64
band_rows (Fwd *f, gsize row)
{
  gint64 rows = (gint64) (binding_limit (f->cmd) / row);
  if (rows < 1)
    rv_cmd_failf (f->cmd, RV_ERROR_UNSUPPORTED,
                  "MoVQ: one row of a feature map (%.1f MiB) is larger than this device can "
                  "write at once; try a smaller image size.", row / 1048576.0);
  return rows;
}

/* A new (B, Ho, Wo, Cout) = conv (x, w) + bias (+ residual). An output larger
 * than one storage binding is computed in bands of rows, each reading just
 * the input rows its windows cover (the clipped part of the kernel's reach
 * becoming that band's padding): the same sums as one dispatch. */
static RvTensor *
conv (Fwd *f, const RvTensor *x, const RvTensor *w, const RvTensor *bias, const RvConv2d *p,
      const RvTensor *res)
{
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  gint64 batch = x->shape[0], h = x->shape[1];
  gint64 ho = (h + p->pad_top + p->pad_bottom - p->kh) / p->stride + 1;
  gint64 wo = (x->shape[2] + p->pad_left + p->pad_right - p->kw) / p->stride + 1;
  RvTensor *y = image (f, batch, ho, wo, w->shape[3]);
  if (y == NULL)
    return NULL;
  if (y->size <= binding_limit (f->cmd))
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

/* A new o = single-head attention of q over k, v, all (B, H, W, C). Queries
 * are split into bands of rows when o exceeds one binding. */
static RvTensor *
attention (Fwd *f, const RvTensor *q, const RvTensor *k, const RvTensor *v)
{
  if (q == NULL || k == NULL || v == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  gint64 batch = q->shape[0], h = q->shape[1], c = q->shape[3];
  float scale = 1.0f / sqrtf ((float) c);
  RvTensor *o = image (f, batch, h, q->shape[2], c);
  if (o == NULL)
    return NULL;
  if (o->size <= binding_limit (f->cmd))
    {
      rv_op_attention (f->cmd, o, q, k, v, 1, scale, NULL, FALSE);
      return o;
    }
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
            rv_op_attention (f->cmd, ob, qb, kb, vb, 1, scale, NULL, FALSE);
          band_out_done (f, o, &ov, os);
        }
    }
  return o;
}

/* zq (B, h, w, Z) at a feature map's size, nearest-neighbour as
 * F.interpolate: the latents themselves at the coarsest level. */
static const RvTensor *
level_zq (Fwd *f, gint64 h, gint64 w)
{
  if (f->zq->shape[1] == h && f->zq->shape[2] == w)
    return f->zq;
  if (f->zq_level != NULL && f->zq_level->shape[1] == h && f->zq_level->shape[2] == w)
    return f->zq_level;
  g_clear_pointer (&f->zq_level, rv_tensor_free);
  f->zq_level = image (f, f->zq->shape[0], h, w, f->zq->shape[3]);
  if (f->zq_level != NULL)
    rv_op_resize_nearest (f->cmd, f->zq_level, f->zq);
  return f->zq_level;
}

/* A new act (norm (x)): GroupNorm, then for a SpatialNorm ·conv_y (zq') +
 * conv_b (zq'), fused into the normalization's one elementwise pass. */
static RvTensor *
norm (Fwd *f, const Norm *n, const RvTensor *x, RvAct act)
{
  if (x == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  gint64 batch = x->shape[0], h = x->shape[1], w = x->shape[2], c = x->shape[3];
  g_autoptr (RvTensor) mul = NULL;
  g_autoptr (RvTensor) add = NULL;
  if (n->conv_y != NULL)
    {
      /* 1×1 convolutions commute with the nearest resize: they run on zq at
       * the feature map's size */
      const RvTensor *zq = level_zq (f, h, w);                           /* (B, H, W, Z) */
      mul = conv (f, zq, n->conv_y, n->conv_y_bias, &POINTWISE, NULL);   /* (B, H, W, C) */
      add = conv (f, zq, n->conv_b, n->conv_b_bias, &POINTWISE, NULL);   /* (B, H, W, C) */
      if (mul == NULL || add == NULL)
        return NULL;
    }
  RvTensor *y = image (f, batch, h, w, c);                               /* (B, H, W, C) */
  if (y == NULL)
    return NULL;
  RvNorm p = { .gamma = n->gamma, .beta = n->beta, .mul = mul, .add = add, .act = act };
  rv_op_group_norm (f->cmd, y, x, n->groups, NORM_EPS, &p);
  return y;
}

/* shortcut (x) + conv2 (act (norm2 (conv1 (act (norm1 (x)))))); consumes x. */
static RvTensor *
resnet (Fwd *f, const Resnet *r, RvTensor *x_in)
{
  g_autoptr (RvTensor) x = x_in;                                          /* (B, H, W, Cin) */
  RvAct act = f->m->cfg.act_fn;
  g_autoptr (RvTensor) h = norm (f, &r->norm1, x, act);                   /* (B, H, W, Cin) */
  g_autoptr (RvTensor) h2 = conv (f, h, r->conv1, r->conv1_bias, &SAME3, NULL);  /* (…, Cout) */
  g_clear_pointer (&h, rv_tensor_free);
  h = norm (f, &r->norm2, h2, act);                                       /* (B, H, W, Cout) */
  g_clear_pointer (&h2, rv_tensor_free);
  if (r->shortcut != NULL)
    {
      RvTensor *s = conv (f, x, r->shortcut, r->shortcut_bias, &POINTWISE, NULL);  /* (…, Cout) */
      rv_tensor_free (x);
      x = s;
    }
  if (x == NULL)
    return NULL;
  return conv (f, h, r->conv2, r->conv2_bias, &SAME3, x);                 /* (B, H, W, Cout) */
}

/* x + to_out (attention (norm (x))), one head over all pixels; consumes x. */
static RvTensor *
attn (Fwd *f, const Attn *a, RvTensor *x_in)
{
  g_autoptr (RvTensor) x = x_in;                                          /* (B, H, W, C) */
  g_autoptr (RvTensor) h = norm (f, &a->norm, x, RV_ACT_NONE);            /* (B, H, W, C) */
  g_autoptr (RvTensor) q = conv (f, h, a->q, a->q_bias, &POINTWISE, NULL);  /* (B, H, W, C) */
  g_autoptr (RvTensor) k = conv (f, h, a->k, a->k_bias, &POINTWISE, NULL);  /* (B, H, W, C) */
  g_autoptr (RvTensor) v = conv (f, h, a->v, a->v_bias, &POINTWISE, NULL);  /* (B, H, W, C) */
  g_clear_pointer (&h, rv_tensor_free);
  g_autoptr (RvTensor) o = attention (f, q, k, v);                        /* (B, H, W, C) */
  g_clear_pointer (&q, rv_tensor_free);
  g_clear_pointer (&k, rv_tensor_free);
  g_clear_pointer (&v, rv_tensor_free);
  return conv (f, o, a->out, a->out_bias, &POINTWISE, x);                 /* (B, H, W, C) */
}

/* The resnets (each followed by its attention, if any) and the sampler of a
 * block; consumes h. */
static RvTensor *
block (Fwd *f, const Block *b, RvTensor *h, gboolean up)
{
  for (int j = 0; j < b->n_resnets; j++)
    {
      h = resnet (f, &b->resnets[j], h);
      if (b->attns != NULL)
        h = attn (f, &b->attns[j], h);
    }
  if (b->sampler == NULL || h == NULL)
    return h;
  g_autoptr (RvTensor) x = h;                                             /* (B, H, W, C) */
  if (!up)
    return conv (f, x, b->sampler, b->sampler_bias, &DOWN3, NULL);        /* (B, H/2, W/2, C) */
  g_autoptr (RvTensor) u = image (f, x->shape[0], 2 * x->shape[1], 2 * x->shape[2],
                                  x->shape[3]);                           /* (B, 2H, 2W, C) */
  if (u == NULL)
    return NULL;
  rv_op_upsample_nearest2x (f->cmd, u, x);
  g_clear_pointer (&x, rv_tensor_free);
  return conv (f, u, b->sampler, b->sampler_bias, &SAME3, NULL);          /* (B, 2H, 2W, C) */
}

static RvTensor *
mid_block (Fwd *f, const Coder *c, RvTensor *h)
{
  h = resnet (f, &c->mid[0], h);
  if (c->has_mid_attn)
    h = attn (f, &c->mid_attn, h);
  return resnet (f, &c->mid[1], h);
}

/* decoder (post_quant_conv (z), zq = z) of one batch chunk. */
static RvTensor *
decode_chunk (RvMovq *m, RvCmd *cmd, const RvTensor *z)
{
  const RvVQConfig *cfg = &m->cfg;
  const Coder *d = &m->dec;
  Fwd f = { m, cmd, cfg->norm_spatial ? z : NULL, NULL };

  g_autoptr (RvTensor) pq = conv (&f, z, m->post_quant_conv, m->post_quant_conv_bias,
                                  &POINTWISE, NULL);                          /* (B, h, w, Z) */
  RvTensor *h = conv (&f, pq, d->conv_in, d->conv_in_bias, &SAME3, NULL);     /* (B, h, w, Ctop) */
  g_clear_pointer (&pq, rv_tensor_free);
  h = mid_block (&f, d, h);                                                   /* (B, h, w, Ctop) */
  for (int i = 0; i < cfg->n_blocks; i++)
    h = block (&f, &d->blocks[i], h, TRUE);                                   /* (B, h·2^i, …) */
  /* conv_act is SiLU whatever act_fn says */
  g_autoptr (RvTensor) hn = norm (&f, &d->norm_out, h, RV_ACT_SILU);          /* (B, H, W, C0) */
  rv_tensor_free (h);
  RvTensor *y = conv (&f, hn, d->conv_out, d->conv_out_bias, &SAME3, NULL);   /* (B, H, W, out) */
  rv_tensor_free (f.zq_level);
  return y;
}

/* quant_conv (encoder (x)) of one batch chunk. */
static RvTensor *
encode_chunk (RvMovq *m, RvCmd *cmd, const RvTensor *x)
{
  const RvVQConfig *cfg = &m->cfg;
  const Coder *e = &m->enc;
  Fwd f = { m, cmd, NULL, NULL };

  RvTensor *h = conv (&f, x, e->conv_in, e->conv_in_bias, &SAME3, NULL);      /* (B, H, W, C0) */
  for (int i = 0; i < cfg->n_blocks; i++)
    h = block (&f, &e->blocks[i], h, FALSE);                                  /* (B, H/2^i, …) */
  h = mid_block (&f, e, h);                                                   /* (B, h, w, Ctop) */
  g_autoptr (RvTensor) hn = norm (&f, &e->norm_out, h, RV_ACT_SILU);          /* (B, h, w, Ctop) */
  rv_tensor_free (h);
  g_autoptr (RvTensor) lat = conv (&f, hn, e->conv_out, e->conv_out_bias, &SAME3, NULL);
  g_clear_pointer (&hn, rv_tensor_free);                                      /* (B, h, w, latent) */
  return conv (&f, lat, m->quant_conv, m->quant_conv_bias, &POINTWISE, NULL); /* (B, h, w, vq) */
}

/* ---- memory and batch splitting ---- */

/* Floats alive at the worst moment of each part of the forward, following
 * the allocation order of the functions above; s is 2 with SpatialNorm
 * (its scale and shift maps), else 0. A group norm's partial statistics
 * take up to half of its input again. */
static gint64
norm_peak (gint64 c, gint64 s)
{
  return c * (2 + s) + (c + 1) / 2;                 /* x, maps, y, partial statistics */
}

static gint64
resnet_peak (gint64 cin, gint64 cout, gint64 s)
{
  gint64 p = norm_peak (cin, s);                    /* x, norm1 */
  p = MAX (p, 2 * cin + cout);                      /* x, h, conv1 */
  p = MAX (p, cin + norm_peak (cout, s));           /* x, then norm2 of conv1 */
  p = MAX (p, cin + 2 * cout);                      /* x, h, shortcut (or conv2) */
  return MAX (p, 3 * cout);                         /* h, shortcut, conv2 */
}

static gint64
attn_peak (gint64 c, gint64 s)
{
  return MAX (norm_peak (c, s), 5 * c);             /* x, h (or o), q, k, v */
}

static gint64
block_peak (const RvVQConfig *cfg, gint64 px, gint64 cin, gint64 cout, gint64 n_resnets,
            gboolean attention, gint64 s)
{
  gint64 p = 0;
  for (gint64 j = 0; j < n_resnets; j++)
    {
      p = MAX (p, px * resnet_peak (j == 0 ? cin : cout, cout, s));
      if (attention)
        p = MAX (p, px * attn_peak (cout, s));
    }
  return p;
}

/* Bytes of device memory a decode of (batch, h, w) latents allocates at its
 * peak, weights aside. */
static guint64
decode_peak (const RvVQConfig *cfg, gint64 batch, gint64 h, gint64 w)
{
  int n = cfg->n_blocks;
  gint64 s = cfg->norm_spatial ? 2 : 0;
  gint64 px = batch * h * w, z = cfg->latent_channels, top = cfg->block_out_channels[n - 1];
  gint64 f = (gint64) 1 << (n - 1);
  /* resident: the latents, the output and zq at the current level */
  gint64 base = px * z + px * f * f * (cfg->out_channels + z);
  gint64 p = px * (2 * z + top);                                /* post_quant_conv, conv_in */
  p = MAX (p, px * resnet_peak (top, top, s));
  if (cfg->mid_block_add_attention)
    p = MAX (p, px * attn_peak (top, s));
  gint64 cout = top;
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[n - 1 - i];
      p = MAX (p, block_peak (cfg, px, cin, cout, cfg->layers_per_block + 1,
                              block_has_attention (cfg->up_block_types[i]), s));
      if (i < n - 1)
        {
          p = MAX (p, px * cout * 5);                           /* h, upsampled */
          px *= 4;
          p = MAX (p, px * cout * 2);                           /* upsampled, conv */
        }
    }
  gint64 c0 = cfg->block_out_channels[0];
  p = MAX (p, px * MAX (norm_peak (c0, s), c0 + cfg->out_channels));   /* norm_out, conv_out */
  return (guint64) (base + p) * sizeof (float);
}

static guint64
encode_peak (const RvVQConfig *cfg, gint64 batch, gint64 h, gint64 w)
{
  int n = cfg->n_blocks;
  gint64 px = batch * h * w, c0 = cfg->block_out_channels[0];
  gint64 f = (gint64) 1 << (n - 1);
  gint64 base = px * cfg->in_channels + px / (f * f) * cfg->vq_embed_dim;
  gint64 p = px * c0;                                           /* conv_in */
  gint64 cout = c0;
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[i];
      p = MAX (p, block_peak (cfg, px, cin, cout, cfg->layers_per_block,
                              block_has_attention (cfg->down_block_types[i]), 0));
      if (i < n - 1)
        {
          p = MAX (p, px * cout + px / 4 * cout);               /* h, downsampled */
          px /= 4;
        }
    }
  gint64 top = cfg->block_out_channels[n - 1];
  p = MAX (p, px * resnet_peak (top, top, 0));
  if (cfg->mid_block_add_attention)
    p = MAX (p, px * attn_peak (top, 0));
  p = MAX (p, px * MAX (norm_peak (top, 0), top + cfg->latent_channels));  /* norm_out, conv_out */
  return (guint64) (base + p) * sizeof (float);
}

guint64
rv_movq_decode_peak_bytes (RvMovq *m, int batch, int height, int width)
{
  return decode_peak (&m->cfg, batch, height, width);
}

guint64
rv_movq_encode_peak_bytes (RvMovq *m, int batch, int height, int width)
{
  return encode_peak (&m->cfg, batch, height, width);
}

/* How many images of the batch to run at once so the activations fit the
 * device memory left beside what is allocated already (at least one). */
static gint64
batch_chunk (RvCmd *cmd, gint64 batch, guint64 (*peak) (const RvVQConfig *, gint64, gint64, gint64),
             const RvVQConfig *cfg, gint64 h, gint64 w)
{
  RvDevice *dev = rv_cmd_device (cmd);
  guint64 in_use = 0, top = 0, blocks = 0;
  rv_device_memory_stats (dev, &in_use, &top, &blocks);
  guint64 total = rv_device_caps (dev)->device_local_bytes;
  /* leave a tenth for the driver, scratch and fragmentation */
  guint64 budget = total - total / 10 > in_use ? total - total / 10 - in_use : 0;
  if (memory_budget_override > 0)
    budget = memory_budget_override;
  gint64 n = batch;
  while (n > 1 && peak (cfg, n, h, w) > budget)
    n = (n + 1) / 2;
  return n;
}

/* Runs `chunk` on batch slices of x (B, …) and gathers the results into one
 * (B, …) tensor: each image's decode or encode is independent of the others. */
static RvTensor *
run_batched (RvMovq *m, RvCmd *cmd, const RvTensor *x, gint64 per_run,
             RvTensor *(*chunk) (RvMovq *, RvCmd *, const RvTensor *))
{
  gint64 batch = x->shape[0];
  if (per_run >= batch)
    return chunk (m, cmd, x);
  Fwd f = { m, cmd, NULL, NULL };
  RvTensor *y = NULL;
  for (gint64 b0 = 0; b0 < batch; b0 += per_run)
    {
      gint64 n = MIN (per_run, batch - b0);
      RvTensor xv = *x;
      gsize image_bytes = rv_tensor_nbytes (x) / batch;
      xv.offset += b0 * image_bytes;
      xv.size = n * image_bytes;
      xv.shape[0] = n;
      g_autoptr (RvTensor) xcopy = NULL;
      const RvTensor *xin = &xv;
      if (xv.offset % TEXEL_ALIGN != 0)
        {
          xcopy = image (&f, n, x->shape[1], x->shape[2], x->shape[3]);
          if (xcopy == NULL)
            break;
          rv_cmd_copy (cmd, xcopy, 0, x, b0 * image_bytes, xv.size);
          xin = xcopy;
        }
      g_autoptr (RvTensor) part = chunk (m, cmd, xin);                      /* (n, …) */
      if (part == NULL)
        break;
      if (y == NULL)
        y = image (&f, batch, part->shape[1], part->shape[2], part->shape[3]);
      if (y == NULL)
        break;
      rv_cmd_copy (cmd, y, b0 * rv_tensor_nbytes (part) / n, part, 0, rv_tensor_nbytes (part));
    }
  if (rv_cmd_failed (cmd))
    g_clear_pointer (&y, rv_tensor_free);
  return y;
}

static gboolean
check_input (RvCmd *cmd, const char *what, const RvTensor *t, gint64 channels)
{
  if (rv_cmd_failed (cmd))
    return FALSE;
  if (t != NULL && t->ndim == 4 && t->dtype == RV_DTYPE_F32 && t->shape[3] == channels &&
      rv_tensor_numel (t) > 0)
    return TRUE;
  g_autofree char *d = t != NULL ? rv_tensor_describe (t) : g_strdup ("nothing");
  rv_cmd_failf (cmd, RV_ERROR_INVALID, "MoVQ %s: the input is %s, not f32 (B, H, W, %"
                G_GINT64_FORMAT ")", what, d, channels);
  return FALSE;
}

RvTensor *
rv_movq_decode (RvMovq *m, RvCmd *cmd, const RvTensor *latents)
{
  if (!check_input (cmd, "decode", latents, m->cfg.vq_embed_dim))
    return NULL;
  gint64 h = latents->shape[1], w = latents->shape[2];
  gint64 per_run = batch_chunk (cmd, latents->shape[0], decode_peak, &m->cfg, h, w);
  return run_batched (m, cmd, latents, per_run, decode_chunk);
}

RvTensor *
rv_movq_encode (RvMovq *m, RvCmd *cmd, const RvTensor *pixels)
{
  if (!m->has_encoder)
    {
      rv_cmd_failf (cmd, RV_ERROR_INVALID, "MoVQ encode: the encoder was not loaded");
      return NULL;
    }
  if (!check_input (cmd, "encode", pixels, m->cfg.in_channels))
    return NULL;
  gint64 f = rv_movq_scale_factor (m);
  if (pixels->shape[1] < f || pixels->shape[2] < f)
    {
      rv_cmd_failf (cmd, RV_ERROR_INVALID, "MoVQ encode: a %" G_GINT64_FORMAT "×%"
                    G_GINT64_FORMAT " image is smaller than the %" G_GINT64_FORMAT "×%"
                    G_GINT64_FORMAT " pixels of one latent", pixels->shape[2], pixels->shape[1],
                    f, f);
      return NULL;
    }
  gint64 per_run = batch_chunk (cmd, pixels->shape[0], encode_peak, &m->cfg, pixels->shape[1],
                                pixels->shape[2]);
  return run_batched (m, cmd, pixels, per_run, encode_chunk);
}

/* ---- codebook ---- */

void
rv_movq_quantize (RvMovq *m, const float *latents, gsize n, float *quant, gint64 *indices)
{
  int dim = m->cfg.vq_embed_dim, codes = m->cfg.num_vq_embeddings;
  for (gsize i = 0; i < n; i++)
    {
      const float *z = latents + i * dim;
      double best = INFINITY;
      int arg = 0;
      for (int k = 0; k < codes; k++)
        {
          const float *e = m->codebook + (gsize) k * dim;
          double d = 0;
          for (int j = 0; j < dim; j++)
            d += ((double) z[j] - e[j]) * ((double) z[j] - e[j]);
          if (d < best)
            {
              best = d;
              arg = k;
            }
        }
      if (indices != NULL)
        indices[i] = arg;
      /* z + (e − z) in f32, as the straight-through estimator computes it */
      for (int j = 0; j < dim; j++)
        quant[i * dim + j] = z[j] + (m->codebook[(gsize) arg * dim + j] - z[j]);
    }
}
