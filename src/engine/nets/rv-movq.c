/* rv-movq.c: the MoVQ image codec (diffusers' VQModel with SpatialNorm,
 * docs/model-spec.md §8): decoder, encoder and the host codebook lookup. */
#include "rv-movq.h"
#include "rv-blocks.h"

#include <math.h>
#include <string.h>

/* diffusers builds every VQModel normalization with this epsilon, and
 * SpatialNorm's GroupNorm with 32 groups whatever norm_num_groups says. */
#define NORM_EPS 1e-6f
#define SPATIAL_GROUPS 32

/* Alignment of a tensor read through the f32 texel view (one RGBA32F texel). */
#define TEXEL_ALIGN 16

/* ---- layout and weights ---- */

/* Resnets, each followed by an attention when the block has them, then an
 * optional resampler. */
typedef struct {
  int        n_resnets;
  RvResnet  *resnets;
  RvAttn    *attns;                       /* one after each resnet, or NULL */
  gboolean   has_sampler;
  RvSampler  sampler;
} Block;

/* The encoder or the decoder. */
typedef struct {
  RvTensor   *conv_in, *conv_in_bias;
  Block       blocks[RV_MAX_BLOCKS];
  RvResnet    mid[2];
  RvAttn      mid_attn;
  gboolean    has_mid_attn;
  RvGroupNorm norm_out;
  RvTensor   *conv_out, *conv_out_bias;
} Coder;

struct _RvMovq {
  RvVQConfig  cfg;
  gboolean    has_encoder;
  Coder       enc, dec;
  RvTensor   *quant_conv, *quant_conv_bias;              /* (1, 1, latent, vq) */
  RvTensor   *post_quant_conv, *post_quant_conv_bias;    /* (1, 1, vq, latent) */
  float      *codebook;                                  /* host (num_vq_embeddings, vq_embed_dim) */
};

static const char *const ENCODER_BLOCKS[] = { "DownEncoderBlock2D", "AttnDownEncoderBlock2D", NULL };
static const char *const DECODER_BLOCKS[] = { "UpDecoderBlock2D", "AttnUpDecoderBlock2D", NULL };

/* symbolic sizes of the tables below */
enum { S_IN_OUT = -1, S_IN_IN = -2, S_OUT_OUT = -3, S_OUT_IN = -4, S_LAT = -5, S_VQ = -6,
       S_CODES = -7 };
enum { HAS_ENCODER = 1 };

/* a coder's own convolutions, around its blocks */
static const RvWeightSpec coder_weights[] = {
  RV_WEIGHT (Coder, conv_in,       "conv_in.weight",  RV_WEIGHT_CONV,  0, S_IN_OUT, S_IN_IN, 3, 3),
  RV_WEIGHT (Coder, conv_in_bias,  "conv_in.bias",    RV_WEIGHT_PLAIN, 0, S_IN_OUT),
  RV_WEIGHT (Coder, conv_out,      "conv_out.weight", RV_WEIGHT_CONV,  0, S_OUT_OUT, S_OUT_IN, 3, 3),
  RV_WEIGHT (Coder, conv_out_bias, "conv_out.bias",   RV_WEIGHT_PLAIN, 0, S_OUT_OUT),
};

static const RvWeightSpec movq_weights[] = {
  RV_WEIGHT (RvMovq, post_quant_conv,      "post_quant_conv.weight",    RV_WEIGHT_CONV,  0,
             S_LAT, S_VQ, 1, 1),
  RV_WEIGHT (RvMovq, post_quant_conv_bias, "post_quant_conv.bias",      RV_WEIGHT_PLAIN, 0, S_LAT),
  RV_WEIGHT (RvMovq, quant_conv,           "quant_conv.weight",         RV_WEIGHT_CONV,
             HAS_ENCODER, S_VQ, S_LAT, 1, 1),
  RV_WEIGHT (RvMovq, quant_conv_bias,      "quant_conv.bias",           RV_WEIGHT_PLAIN,
             HAS_ENCODER, S_VQ),
  RV_WEIGHT (RvMovq, codebook,             "quantize.embedding.weight", RV_WEIGHT_HOST,  0,
             S_CODES, S_VQ),
};

static gboolean
block_has_attention (const char *type)
{
  return g_str_has_prefix (type, "Attn");
}

/* The norms of a coder: SpatialNorms of zq (zq_channels > 0), else GroupNorms. */
typedef struct {
  const RvVQConfig *cfg;
  gint64            zq_channels;
} Style;

static void
resnet_layout (RvResnet *r, const Style *s, gint64 cin, gint64 cout)
{
  int groups = s->zq_channels > 0 ? SPATIAL_GROUPS : s->cfg->norm_num_groups;
  *r = (RvResnet) { .cin = cin, .cout = cout, .act = s->cfg->act_fn, .out_scale = 1.0f,
                    .norm1 = { .groups = groups, .eps = NORM_EPS },
                    .norm2 = { .groups = groups, .eps = NORM_EPS } };
}

static void
attn_layout (RvAttn *a, const Style *s, gint64 c)
{
  int groups = s->zq_channels > 0 ? SPATIAL_GROUPS : s->cfg->norm_num_groups;
  *a = (RvAttn) { .channels = c, .heads = 1, .self_kv = TRUE, .pointwise = TRUE,
                  .norm = { .groups = groups, .eps = NORM_EPS } };
}

/* Walks resnet p (laying it out on the first walk). Legacy files name the
 * attention projections query/key/value/proj_attn; the weights layer
 * resolves those from the current names. */
static void
walk_resnet (RvWeightWalk *w, RvResnet *r, const Style *s, gint64 cin, gint64 cout, const char *p)
{
  if (w->mode == RV_WALK_MANIFEST)
    resnet_layout (r, s, cin, cout);
  rv_resnet_walk (w, r, p, s->zq_channels);
}

static void
walk_attn (RvWeightWalk *w, RvAttn *a, const Style *s, gint64 c, const char *p)
{
  if (w->mode == RV_WALK_MANIFEST)
    attn_layout (a, s, c);
  g_autofree char *np = g_strconcat (p, s->zq_channels > 0 ? ".spatial_norm" : ".group_norm", NULL);
  rv_attn_walk (w, a, p, np, s->zq_channels);
}

static void
walk_block (RvWeightWalk *w, Block *b, const Style *s, int n_resnets, gboolean attention,
            gint64 cin, gint64 cout, const char *sampler, const char *p)
{
  if (w->mode == RV_WALK_MANIFEST && b->resnets == NULL)
    {
      b->n_resnets = n_resnets;
      b->resnets = g_new0 (RvResnet, n_resnets);
      b->attns = attention ? g_new0 (RvAttn, n_resnets) : NULL;
      b->has_sampler = sampler != NULL;
      b->sampler.up = sampler != NULL && strcmp (sampler, "upsamplers") == 0;
    }
  for (int j = 0; j < b->n_resnets; j++)
    {
      g_autofree char *rp = g_strdup_printf ("%s.resnets.%d", p, j);
      walk_resnet (w, &b->resnets[j], s, j == 0 ? cin : cout, cout, rp);
      if (b->attns != NULL)
        {
          g_autofree char *ap = g_strdup_printf ("%s.attentions.%d", p, j);
          walk_attn (w, &b->attns[j], s, cout, ap);
        }
    }
  if (b->has_sampler)
    {
      g_autofree char *sp = g_strdup_printf ("%s.%s.0", p, sampler);
      rv_sampler_walk (w, &b->sampler, sp, cout);
    }
}

static void
walk_mid (RvWeightWalk *w, Coder *c, const Style *s, const char *p)
{
  const RvVQConfig *cfg = s->cfg;
  gint64 top = cfg->block_out_channels[cfg->n_blocks - 1];
  for (int j = 0; j < 2; j++)
    {
      g_autofree char *rp = g_strdup_printf ("%s.mid_block.resnets.%d", p, j);
      walk_resnet (w, &c->mid[j], s, top, top, rp);
    }
  c->has_mid_attn = cfg->mid_block_add_attention;
  if (c->has_mid_attn)
    {
      g_autofree char *ap = g_strdup_printf ("%s.mid_block.attentions.0", p);
      walk_attn (w, &c->mid_attn, s, top, ap);
    }
}

/* A coder's own weights and its output norm. */
static void
walk_coder_ends (RvWeightWalk *w, Coder *c, const Style *s, const char *p, gint64 in_out,
                 gint64 in_in, gint64 out_out, gint64 out_in)
{
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_IN_OUT] = in_out;
  sizes[-S_IN_IN] = in_in;
  sizes[-S_OUT_OUT] = out_out;
  sizes[-S_OUT_IN] = out_in;
  RV_WEIGHTS_WALK (w, c, p, coder_weights, 0, sizes);
  if (w->mode == RV_WALK_MANIFEST)
    c->norm_out = (RvGroupNorm) { .groups = s->zq_channels > 0 ? SPATIAL_GROUPS
                                                                : s->cfg->norm_num_groups,
                                  .eps = NORM_EPS };
  g_autofree char *np = g_strconcat (p, ".conv_norm_out", NULL);
  rv_group_norm_walk (w, &c->norm_out, np, out_in, s->zq_channels);
}

/* diffusers' Decoder: conv_in → mid → up blocks (coarsest first) → norm_out → conv_out. */
static void
walk_decoder (RvWeightWalk *w, RvMovq *m)
{
  const RvVQConfig *cfg = &m->cfg;
  Coder *d = &m->dec;
  int n = cfg->n_blocks;
  Style s = { cfg, cfg->norm_spatial ? cfg->latent_channels : 0 };
  gint64 top = cfg->block_out_channels[n - 1];

  walk_coder_ends (w, d, &s, "decoder", top, cfg->latent_channels, cfg->out_channels,
                   cfg->block_out_channels[0]);
  walk_mid (w, d, &s, "decoder");
  gint64 cout = top;
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[n - 1 - i];
      g_autofree char *bp = g_strdup_printf ("decoder.up_blocks.%d", i);
      walk_block (w, &d->blocks[i], &s, cfg->layers_per_block + 1,
                  block_has_attention (cfg->up_block_types[i]), cin, cout,
                  i < n - 1 ? "upsamplers" : NULL, bp);
    }
}

/* diffusers' Encoder (double_z off, as VQModel builds it). */
static void
walk_encoder (RvWeightWalk *w, RvMovq *m)
{
  const RvVQConfig *cfg = &m->cfg;
  Coder *e = &m->enc;
  int n = cfg->n_blocks;
  Style s = { cfg, 0 };
  gint64 top = cfg->block_out_channels[n - 1];

  walk_coder_ends (w, e, &s, "encoder", cfg->block_out_channels[0], cfg->in_channels,
                   cfg->latent_channels, top);
  gint64 cout = cfg->block_out_channels[0];
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[i];
      g_autofree char *bp = g_strdup_printf ("encoder.down_blocks.%d", i);
      walk_block (w, &e->blocks[i], &s, cfg->layers_per_block,
                  block_has_attention (cfg->down_block_types[i]), cin, cout,
                  i < n - 1 ? "downsamplers" : NULL, bp);
    }
  walk_mid (w, e, &s, "encoder");
}

/* Every weight of the model: the decoder, the encoder when loaded, the
 * (post_)quant_conv and the codebook (kept on the host). */
static void
walk_movq (RvWeightWalk *w, gpointer net)
{
  RvMovq *m = net;
  const RvVQConfig *cfg = &m->cfg;
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_LAT] = cfg->latent_channels;
  sizes[-S_VQ] = cfg->vq_embed_dim;
  sizes[-S_CODES] = cfg->num_vq_embeddings;
  RV_WEIGHTS_WALK (w, m, "", movq_weights, m->has_encoder ? HAS_ENCODER : 0, sizes);
  walk_decoder (w, m);
  if (m->has_encoder)
    walk_encoder (w, m);
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
  rv_weights_clear_walk (walk_movq, m);
  free_coder (&m->enc);
  free_coder (&m->dec);
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
  g_autoptr (RvMovq) m = g_new0 (RvMovq, 1);
  m->cfg = cfg;
  m->has_encoder = with_encoder;
  if (!rv_weights_load_walk (cmd, weights, policy, walk_movq, m, NULL, error))
    return NULL;
  return g_steal_pointer (&m);
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

/* ---- forward ---- */

/* Test overrides of the device's limits (0: none) */
static gsize binding_limit_override;
static guint64 memory_budget_override;

void
_rv_movq_set_limits (gsize binding_bytes, guint64 memory_bytes)
{
  binding_limit_override = binding_bytes;
  memory_budget_override = memory_bytes;
}

/* Work larger than one binding runs in bands (rv_block_conv). */
static void
ctx_init (RvNetCtx *f, RvCmd *cmd, const RvTensor *zq)
{
  rv_net_ctx_init (f, cmd, "MoVQ", binding_limit_override, FALSE);
  f->zq = zq;
}

/* The resnets (each followed by its attention, if any) and the sampler of a
 * block; consumes h. */
static RvTensor *
block (RvNetCtx *f, const Block *b, RvTensor *h)
{
  for (int j = 0; j < b->n_resnets; j++)
    {
      h = rv_resnet_forward (f, &b->resnets[j], h, TRUE, NULL);
      if (b->attns != NULL)
        h = rv_attn_forward (f, &b->attns[j], h, TRUE, NULL, NULL);
    }
  return b->has_sampler ? rv_sampler_forward (f, &b->sampler, h) : h;
}

static RvTensor *
mid_block (RvNetCtx *f, const Coder *c, RvTensor *h)
{
  h = rv_resnet_forward (f, &c->mid[0], h, TRUE, NULL);
  if (c->has_mid_attn)
    h = rv_attn_forward (f, &c->mid_attn, h, TRUE, NULL, NULL);
  return rv_resnet_forward (f, &c->mid[1], h, TRUE, NULL);
}

/* decoder (post_quant_conv (z), zq = z) of one batch chunk. */
static RvTensor *
decode_chunk (RvMovq *m, RvCmd *cmd, const RvTensor *z)
{
  const RvVQConfig *cfg = &m->cfg;
  const Coder *d = &m->dec;
  RvNetCtx f;
  ctx_init (&f, cmd, cfg->norm_spatial ? z : NULL);

  g_autoptr (RvTensor) pq = rv_block_conv (&f, z, m->post_quant_conv, m->post_quant_conv_bias,
                                           &rv_conv_pointwise, NULL);         /* (B, h, w, Z) */
  RvTensor *h = rv_block_conv (&f, pq, d->conv_in, d->conv_in_bias, &rv_conv_same3,
                               NULL);                                         /* (B, h, w, Ctop) */
  g_clear_pointer (&pq, rv_tensor_free);
  h = mid_block (&f, d, h);                                                   /* (B, h, w, Ctop) */
  for (int i = 0; i < cfg->n_blocks; i++)
    h = block (&f, &d->blocks[i], h);                                         /* (B, h·2^i, …) */
  /* conv_act is SiLU whatever act_fn says */
  g_autoptr (RvTensor) hn = rv_group_norm_forward (&f, &d->norm_out, h, RV_ACT_SILU,
                                                   NULL);                     /* (B, H, W, C0) */
  rv_tensor_free (h);
  RvTensor *y = rv_block_conv (&f, hn, d->conv_out, d->conv_out_bias, &rv_conv_same3,
                               NULL);                                         /* (B, H, W, out) */
  rv_net_ctx_clear (&f);
  return y;
}

/* quant_conv (encoder (x)) of one batch chunk. */
static RvTensor *
encode_chunk (RvMovq *m, RvCmd *cmd, const RvTensor *x)
{
  const RvVQConfig *cfg = &m->cfg;
  const Coder *e = &m->enc;
  RvNetCtx f;
  ctx_init (&f, cmd, NULL);

  RvTensor *h = rv_block_conv (&f, x, e->conv_in, e->conv_in_bias, &rv_conv_same3,
                               NULL);                                         /* (B, H, W, C0) */
  for (int i = 0; i < cfg->n_blocks; i++)
    h = block (&f, &e->blocks[i], h);                                         /* (B, H/2^i, …) */
  h = mid_block (&f, e, h);                                                   /* (B, h, w, Ctop) */
  g_autoptr (RvTensor) hn = rv_group_norm_forward (&f, &e->norm_out, h, RV_ACT_SILU,
                                                   NULL);                     /* (B, h, w, Ctop) */
  rv_tensor_free (h);
  g_autoptr (RvTensor) lat = rv_block_conv (&f, hn, e->conv_out, e->conv_out_bias,
                                            &rv_conv_same3, NULL);            /* (B, h, w, latent) */
  g_clear_pointer (&hn, rv_tensor_free);
  return rv_block_conv (&f, lat, m->quant_conv, m->quant_conv_bias, &rv_conv_pointwise,
                        NULL);                                                /* (B, h, w, vq) */
}

/* ---- memory and batch splitting ---- */

/* Floats alive at the worst moment of each part of the forward, following
 * the allocation order of the forward above and of its blocks (rv-blocks.c);
 * s is 2 with SpatialNorm (its scale and shift maps), else 0. A group
 * norm's partial statistics take up to half of its input again. */
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

/* Bytes a 3×3 convolution at (batch, h, w) takes beside its output
 * (rv_op_conv2d_scratch_bytes), the most over cin -> cout and cout -> cout. */
static guint64
conv_scratch (gint64 batch, gint64 h, gint64 w, gint64 cin, gint64 cout)
{
  const RvConv2d p = { 3, 3, 1, 1, 1, 1, 1 };
  return MAX (rv_op_conv2d_scratch_bytes (batch, h, w, cin, cout, &p),
              rv_op_conv2d_scratch_bytes (batch, h, w, cout, cout, &p));
}

/* Bytes of device memory a decode of (batch, h, w) latents allocates at its
 * peak, weights aside (and the convolutions' scratch counted as if it were
 * taken at the peak: an upper bound). */
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
  guint64 scratch = conv_scratch (batch, h, w, top, top);
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[n - 1 - i];
      p = MAX (p, block_peak (cfg, px, cin, cout, cfg->layers_per_block + 1,
                              block_has_attention (cfg->up_block_types[i]), s));
      scratch = MAX (scratch, conv_scratch (batch, h, w, cin, cout));
      if (i < n - 1)
        {
          p = MAX (p, px * cout * 5);                           /* h, upsampled */
          px *= 4;
          h *= 2;
          w *= 2;
          p = MAX (p, px * cout * 2);                           /* upsampled, conv */
          scratch = MAX (scratch, conv_scratch (batch, h, w, cout, cout));
        }
    }
  gint64 c0 = cfg->block_out_channels[0];
  p = MAX (p, px * MAX (norm_peak (c0, s), c0 + cfg->out_channels));   /* norm_out, conv_out */
  return (guint64) (base + p) * sizeof (float) + scratch;
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
  guint64 scratch = 0;
  for (int i = 0; i < n; i++)
    {
      gint64 cin = cout;
      cout = cfg->block_out_channels[i];
      p = MAX (p, block_peak (cfg, px, cin, cout, cfg->layers_per_block,
                              block_has_attention (cfg->down_block_types[i]), 0));
      scratch = MAX (scratch, conv_scratch (batch, h, w, cin, cout));
      if (i < n - 1)
        {
          p = MAX (p, px * cout + px / 4 * cout);               /* h, downsampled */
          px /= 4;
          h /= 2;
          w /= 2;
        }
    }
  gint64 top = cfg->block_out_channels[n - 1];
  p = MAX (p, px * resnet_peak (top, top, 0));
  scratch = MAX (scratch, conv_scratch (batch, h, w, top, top));
  if (cfg->mid_block_add_attention)
    p = MAX (p, px * attn_peak (top, 0));
  p = MAX (p, px * MAX (norm_peak (top, 0), top + cfg->latent_channels));  /* norm_out, conv_out */
  return (guint64) (base + p) * sizeof (float) + scratch;
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
  RvNetCtx f;
  ctx_init (&f, cmd, NULL);
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
          xcopy = RV_CTX_TENSOR (&f, n, x->shape[1], x->shape[2], x->shape[3]);
          if (xcopy == NULL)
            break;
          rv_cmd_copy (cmd, xcopy, 0, x, b0 * image_bytes, xv.size);
          xin = xcopy;
        }
      g_autoptr (RvTensor) part = chunk (m, cmd, xin);                      /* (n, …) */
      if (part == NULL)
        break;
      if (y == NULL)
        y = RV_CTX_TENSOR (&f, batch, part->shape[1], part->shape[2], part->shape[3]);
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
