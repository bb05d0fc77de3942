/* rv-unet.c: the decoder UNet (diffusers UNet2DConditionModel as Kandinsky 2.2
 * configures it: image-embedding conditioning, scale-shift resnets that
 * resample inside, added-KV attention), docs/model-spec.md §7. */
#include "rv-unet.h"
#include "rv-blocks.h"

#include <math.h>
#include <string.h>

/* diffusers' Attention keeps its own GroupNorm eps, whatever norm_eps says */
#define ATTN_NORM_EPS 1e-5f
/* nn.LayerNorm's default, used by ImageTimeEmbedding and ImageProjection */
#define LAYER_NORM_EPS 1e-5f
/* ImageProjection's default num_image_text_embeds, when the weight's shape
 * does not tell */
#define DEFAULT_CONTEXT_TOKENS 32

/* A down, mid or up block: resnets, each followed by an attention when the
 * block has them (the mid block: resnet, then attention + resnet pairs), and
 * an optional resnet that resamples. */
typedef struct {
  char     *prefix;               /* "down_blocks.1" */
  int       n_resnets, n_attns;
  RvResnet *resnets;
  RvAttn   *attns;
  RvResnet *sampler;
} Block;

struct _RvUNet {
  RvUNetConfig cfg;
  gboolean     center_input;      /* center_input_sample: 2·x − 1 first */
  float        mid_scale;         /* mid_block_scale_factor */
  int          ctx_tokens;        /* image tokens of the cross-attention context */
  guint64      weight_bytes;

  RvTensor    *conv_in_w, *conv_in_b;
  RvTensor    *time1_w, *time1_b, *time2_w, *time2_b;
  RvTensor    *add_proj_w, *add_proj_b, *add_norm_w, *add_norm_b;
  RvTensor    *hid_proj_w, *hid_proj_b, *hid_norm_w, *hid_norm_b;
  Block        down[RV_MAX_BLOCKS];
  gboolean     has_mid;
  Block        mid;
  Block        up[RV_MAX_BLOCKS];
  RvTensor    *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
};

/* ---- layout from the config ---- */

static gboolean
is_attn_block (const char *type)
{
  return strcmp (type, "SimpleCrossAttnDownBlock2D") == 0 ||
         strcmp (type, "SimpleCrossAttnUpBlock2D") == 0;
}

static gboolean
unsupported (GError **error, const char *origin, const char *what)
{
  g_set_error (error, RV_ERROR, RV_ERROR_UNSUPPORTED,
               "%s: %s is not supported by Reverie's UNet", origin, what);
  return FALSE;
}

/* What the forward implements: the Kandinsky 2.2 decoder family with any sizes. */
static gboolean
check_config (const RvUNetConfig *c, const char *origin, GError **error)
{
  int n = c->n_blocks;
  if (n < 1 || n > RV_MAX_BLOCKS)
    return unsupported (error, origin, "this number of blocks");
  for (int i = 0; i < n; i++)
    {
      const char *d = c->down_block_types[i], *u = c->up_block_types[i];
      if (strcmp (d, "ResnetDownsampleBlock2D") != 0 && strcmp (d, "SimpleCrossAttnDownBlock2D") != 0)
        {
          g_autofree char *what = g_strdup_printf ("the down block type “%s”", d);
          return unsupported (error, origin, what);
        }
      if (strcmp (u, "ResnetUpsampleBlock2D") != 0 && strcmp (u, "SimpleCrossAttnUpBlock2D") != 0)
        {
          g_autofree char *what = g_strdup_printf ("the up block type “%s”", u);
          return unsupported (error, origin, what);
        }
    }
  if (c->mid_block_type[0] != '\0' && strcmp (c->mid_block_type, "UNetMidBlock2DSimpleCrossAttn") != 0)
    {
      g_autofree char *what = g_strdup_printf ("the mid block type “%s”", c->mid_block_type);
      return unsupported (error, origin, what);
    }
  if (c->encoder_hid_dim_type != RV_HID_PROJ_IMAGE || c->encoder_hid_dim <= 0)
    return unsupported (error, origin, "an encoder_hid_dim_type other than \"image_proj\"");
  if (c->addition_embed_type != RV_ADD_EMBED_NONE && c->addition_embed_type != RV_ADD_EMBED_IMAGE)
    return unsupported (error, origin, "an addition_embed_type other than \"image\"");
  if (c->class_embed_type != RV_CLASS_EMBED_NONE)
    return unsupported (error, origin, "class_embed_type");
  if (c->conv_in_kernel % 2 == 0 || c->conv_out_kernel % 2 == 0)
    return unsupported (error, origin, "an even conv_in_kernel or conv_out_kernel");
  for (int i = 0; i < n; i++)
    {
      int ch = c->block_out_channels[i];
      if (c->attention_head_dim[i] <= 0 || ch % c->attention_head_dim[i] != 0)
        return unsupported (error, origin, "block_out_channels that are not a multiple of "
                            "attention_head_dim");
    }
  return TRUE;
}

/* Options RvUNetConfig does not carry: read from config.json itself. */
static gboolean
read_extra_config (RvUNet *m, const char *dir, GError **error)
{
  g_autofree char *path = g_build_filename (dir, "config.json", NULL);
  JsonNode *root = rv_json_load_object (path, error);
  if (root == NULL)
    return FALSE;
  JsonObject *o = json_node_get_object (root);
  static const char *const must_be_null[] = {
    "cross_attention_norm", "time_cond_proj_dim", "timestep_post_act", "addition_time_embed_dim",
  };
  gboolean ok = TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (must_be_null) && ok; i++)
    if (json_object_has_member (o, must_be_null[i]) &&
        !json_node_is_null (json_object_get_member (o, must_be_null[i])))
      {
        g_autofree char *what = g_strdup_printf ("a non-null “%s”", must_be_null[i]);
        ok = unsupported (error, path, what);
      }
  m->center_input = FALSE;
  m->mid_scale = 1.0f;
  JsonNode *v;
  if (ok && (v = json_object_get_member (o, "center_input_sample")) != NULL && !json_node_is_null (v))
    {
      if (json_node_get_value_type (v) != G_TYPE_BOOLEAN)
        ok = unsupported (error, path, "a center_input_sample that is not true or false");
      else
        m->center_input = json_node_get_boolean (v);
    }
  if (ok && (v = json_object_get_member (o, "mid_block_scale_factor")) != NULL && !json_node_is_null (v))
    {
      GType t = json_node_get_value_type (v);
      if (t != G_TYPE_DOUBLE && t != G_TYPE_INT64)
        ok = unsupported (error, path, "a mid_block_scale_factor that is not a number");
      else
        m->mid_scale = (float) json_node_get_double (v);
      if (ok && !(m->mid_scale != 0.0f && isfinite (m->mid_scale)))
        ok = unsupported (error, path, "a zero or infinite mid_block_scale_factor");
    }
  json_node_unref (root);
  return ok;
}


static void
resnet_layout (RvResnet *r, const RvUNetConfig *c, int cin, int cout, RvResnetResample resample,
               float out_scale)
{
  RvGroupNorm n = { .groups = c->norm_num_groups, .eps = c->norm_eps };
  *r = (RvResnet) {
    .cin = cin, .cout = cout, .act = c->act_fn, .resample = resample,
    .time = c->resnet_time_scale_shift == RV_TIME_SHIFT_SCALE_SHIFT ? RV_TIME_SCALE_SHIFT
                                                                     : RV_TIME_ADD,
    .temb_dim = c->time_embedding_dim, .out_scale = out_scale, .norm1 = n, .norm2 = n,
  };
}

static void
attn_layout (RvAttn *a, const RvUNetConfig *c, int channels, int head_dim, gboolean only_cross)
{
  *a = (RvAttn) { .channels = channels, .heads = channels / head_dim,
                  .cross_dim = c->cross_attention_dim, .self_kv = !only_cross, .added_kv = TRUE,
                  .norm = { .groups = c->norm_num_groups, .eps = ATTN_NORM_EPS } };
}

/* Block `prefix` ("down_blocks.1"): layer j is a resnet from cin[j] to cout
 * channels, followed by an attention when `attn`; then the resampler. */
static void
block_layout (Block *b, const RvUNetConfig *c, const char *prefix, int layers, const int *cin,
              int cout, gboolean attn, int head_dim, gboolean only_cross, RvResnetResample sampler,
              float out_scale)
{
  b->prefix = g_strdup (prefix);
  b->n_resnets = layers;
  b->n_attns = attn ? layers : 0;
  b->resnets = g_new0 (RvResnet, layers);
  b->attns = attn ? g_new0 (RvAttn, layers) : NULL;
  for (int j = 0; j < layers; j++)
    {
      resnet_layout (&b->resnets[j], c, cin[j], cout, RV_RESNET_SAME, out_scale);
      if (attn)
        attn_layout (&b->attns[j], c, cout, head_dim, only_cross);
    }
  if (sampler != RV_RESNET_SAME)
    {
      b->sampler = g_new0 (RvResnet, 1);
      resnet_layout (b->sampler, c, cout, cout, sampler, out_scale);
    }
}

/* Fills the blocks' channels from the config, as diffusers builds them: down
 * block i goes from block_out_channels[i−1] to [i]; up block i (reversed
 * lists) has layers + 1 resnets, each fed cat (h, skip). */
static void
build_layout (RvUNet *m)
{
  const RvUNetConfig *c = &m->cfg;
  int n = c->n_blocks;
  const int *ch = c->block_out_channels;
  float rs = c->resnet_out_scale_factor;

  for (int i = 0; i < n; i++)
    {
      int layers = c->layers_per_block[i];
      g_autofree int *cin = g_new (int, layers);
      g_autofree char *prefix = g_strdup_printf ("down_blocks.%d", i);
      for (int j = 0; j < layers; j++)
        cin[j] = j > 0 ? ch[i] : ch[MAX (i - 1, 0)];
      block_layout (&m->down[i], c, prefix, layers, cin, ch[i],
                    is_attn_block (c->down_block_types[i]), c->attention_head_dim[i],
                    c->only_cross_attention[i], i < n - 1 ? RV_RESNET_DOWN : RV_RESNET_SAME, rs);
    }

  m->has_mid = c->mid_block_type[0] != '\0';
  if (m->has_mid)
    {
      /* resnet, then attention + resnet: the attention sits between */
      Block *b = &m->mid;
      int cm = ch[n - 1];
      const int cin[2] = { cm, cm };
      block_layout (b, c, "mid_block", 2, cin, cm, FALSE, 0, FALSE, RV_RESNET_SAME, m->mid_scale);
      b->n_attns = 1;
      b->attns = g_new0 (RvAttn, 1);
      attn_layout (&b->attns[0], c, cm, c->attention_head_dim[n - 1],
                   c->mid_block_only_cross_attention);
    }

  for (int i = 0; i < n; i++)
    {
      int r = n - 1 - i;                                  /* the matching down level */
      int prev = i == 0 ? ch[n - 1] : ch[r + 1], skip_in = ch[MAX (r - 1, 0)];
      int layers = c->layers_per_block[r] + 1;
      g_autofree int *cin = g_new (int, layers);
      g_autofree char *prefix = g_strdup_printf ("up_blocks.%d", i);
      for (int j = 0; j < layers; j++)
        cin[j] = (j == 0 ? prev : ch[r]) + (j == layers - 1 ? skip_in : ch[r]);
      block_layout (&m->up[i], c, prefix, layers, cin, ch[r],
                    is_attn_block (c->up_block_types[i]), c->attention_head_dim[r],
                    c->only_cross_attention[r], i < n - 1 ? RV_RESNET_UP : RV_RESNET_SAME, rs);
    }
}

static void
block_clear (Block *b)
{
  g_clear_pointer (&b->prefix, g_free);
  g_clear_pointer (&b->resnets, g_free);
  g_clear_pointer (&b->attns, g_free);
  g_clear_pointer (&b->sampler, g_free);
  b->n_resnets = b->n_attns = 0;
}

/* ---- weights ---- */

/* symbolic sizes and optional parts of the model's own weights */
enum { S_TEMB = -1, S_CROSS = -2, S_C0 = -3, S_IN = -4, S_OUT = -5, S_KIN = -6, S_KOUT = -7,
       S_HID = -8, S_CTX = -9 };
enum { ADD_EMBED = 1 };

static const RvWeightSpec unet_weights[] = {
  RV_WEIGHT (RvUNet, conv_in_w,  "conv_in.weight",                  RV_WEIGHT_CONV,   0,
             S_C0, S_IN, S_KIN, S_KIN),
  RV_WEIGHT (RvUNet, conv_in_b,  "conv_in.bias",                    RV_WEIGHT_PLAIN,  0, S_C0),
  RV_WEIGHT (RvUNet, time1_w,    "time_embedding.linear_1.weight",  RV_WEIGHT_LINEAR, 0,
             S_TEMB, S_C0),
  RV_WEIGHT (RvUNet, time1_b,    "time_embedding.linear_1.bias",    RV_WEIGHT_PLAIN,  0, S_TEMB),
  RV_WEIGHT (RvUNet, time2_w,    "time_embedding.linear_2.weight",  RV_WEIGHT_LINEAR, 0,
             S_TEMB, S_TEMB),
  RV_WEIGHT (RvUNet, time2_b,    "time_embedding.linear_2.bias",    RV_WEIGHT_PLAIN,  0, S_TEMB),
  RV_WEIGHT (RvUNet, add_proj_w, "add_embedding.image_proj.weight", RV_WEIGHT_LINEAR, ADD_EMBED,
             S_TEMB, S_HID),
  RV_WEIGHT (RvUNet, add_proj_b, "add_embedding.image_proj.bias",   RV_WEIGHT_PLAIN,  ADD_EMBED,
             S_TEMB),
  RV_WEIGHT (RvUNet, add_norm_w, "add_embedding.image_norm.weight", RV_WEIGHT_PLAIN,  ADD_EMBED,
             S_TEMB),
  RV_WEIGHT (RvUNet, add_norm_b, "add_embedding.image_norm.bias",   RV_WEIGHT_PLAIN,  ADD_EMBED,
             S_TEMB),
  RV_WEIGHT (RvUNet, hid_proj_w, "encoder_hid_proj.image_embeds.weight", RV_WEIGHT_LINEAR, 0,
             S_CTX, S_HID),
  RV_WEIGHT (RvUNet, hid_proj_b, "encoder_hid_proj.image_embeds.bias", RV_WEIGHT_PLAIN, 0, S_CTX),
  RV_WEIGHT (RvUNet, hid_norm_w, "encoder_hid_proj.norm.weight",    RV_WEIGHT_PLAIN,  0, S_CROSS),
  RV_WEIGHT (RvUNet, hid_norm_b, "encoder_hid_proj.norm.bias",      RV_WEIGHT_PLAIN,  0, S_CROSS),
  RV_WEIGHT (RvUNet, norm_out_w, "conv_norm_out.weight",            RV_WEIGHT_PLAIN,  0, S_C0),
  RV_WEIGHT (RvUNet, norm_out_b, "conv_norm_out.bias",              RV_WEIGHT_PLAIN,  0, S_C0),
  RV_WEIGHT (RvUNet, conv_out_w, "conv_out.weight",                 RV_WEIGHT_CONV,   0,
             S_OUT, S_C0, S_KOUT, S_KOUT),
  RV_WEIGHT (RvUNet, conv_out_b, "conv_out.bias",                   RV_WEIGHT_PLAIN,  0, S_OUT),
};

static void
walk_block (RvWeightWalk *w, Block *b)
{
  for (int j = 0; j < b->n_resnets; j++)
    {
      g_autofree char *p = g_strdup_printf ("%s.resnets.%d", b->prefix, j);
      rv_resnet_walk (w, &b->resnets[j], p, 0);
    }
  for (int j = 0; j < b->n_attns; j++)
    {
      g_autofree char *p = g_strdup_printf ("%s.attentions.%d", b->prefix, j);
      g_autofree char *np = g_strconcat (p, ".group_norm", NULL);
      rv_attn_walk (w, &b->attns[j], p, np, 0);
    }
  if (b->sampler != NULL)
    {
      g_autofree char *p = g_strdup_printf ("%s.%s.0", b->prefix, b->sampler->resample == RV_RESNET_DOWN
                                            ? "downsamplers" : "upsamplers");
      rv_resnet_walk (w, b->sampler, p, 0);
    }
}

static void
walk_unet (RvWeightWalk *w, gpointer net)
{
  RvUNet *m = net;
  const RvUNetConfig *c = &m->cfg;
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_TEMB] = c->time_embedding_dim;
  sizes[-S_CROSS] = c->cross_attention_dim;
  sizes[-S_C0] = c->block_out_channels[0];
  sizes[-S_IN] = c->in_channels;
  sizes[-S_OUT] = c->out_channels;
  sizes[-S_KIN] = c->conv_in_kernel;
  sizes[-S_KOUT] = c->conv_out_kernel;
  sizes[-S_HID] = c->encoder_hid_dim;
  sizes[-S_CTX] = (gint64) m->ctx_tokens * c->cross_attention_dim;
  RV_WEIGHTS_WALK (w, m, "", unet_weights,
                   c->addition_embed_type == RV_ADD_EMBED_IMAGE ? ADD_EMBED : 0, sizes);
  for (int i = 0; i < c->n_blocks; i++)
    walk_block (w, &m->down[i]);
  if (m->has_mid)
    walk_block (w, &m->mid);
  for (int i = 0; i < c->n_blocks; i++)
    walk_block (w, &m->up[i]);
}

/* ImageProjection makes num_image_text_embeds tokens (32 in diffusers'
 * UNet); the weight (tokens · cross_attention_dim, encoder_hid_dim) says how
 * many this checkpoint has. */
static int
context_tokens (RvWeights *w, const RvUNetConfig *c)
{
  const RvStTensor *t = rv_weights_lookup (w, "encoder_hid_proj.image_embeds.weight");
  if (t != NULL && t->ndim == 2 && t->shape[0] > 0 && t->shape[0] % c->cross_attention_dim == 0 &&
      t->shape[0] / c->cross_attention_dim <= 4096)
    return (int) (t->shape[0] / c->cross_attention_dim);
  return DEFAULT_CONTEXT_TOKENS;
}


RvUNet *
rv_unet_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error)
{
  g_return_val_if_fail (cmd != NULL && dir != NULL, NULL);
  g_autoptr (RvUNet) m = g_new0 (RvUNet, 1);
  g_autofree char *origin = g_build_filename (dir, "config.json", NULL);
  if (!rv_unet_config_load (dir, &m->cfg, error) || !check_config (&m->cfg, origin, error) ||
      !read_extra_config (m, dir, error))
    return NULL;
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;
  m->ctx_tokens = context_tokens (weights, &m->cfg);
  build_layout (m);
  if (!rv_weights_load_walk (cmd, weights, policy, walk_unet, m, &m->weight_bytes, error))
    return NULL;
  return g_steal_pointer (&m);
}

void
rv_unet_free (RvUNet *m)
{
  if (m == NULL)
    return;
  rv_weights_clear_walk (walk_unet, m);
  for (int i = 0; i < RV_MAX_BLOCKS; i++)
    {
      block_clear (&m->down[i]);
      block_clear (&m->up[i]);
    }
  block_clear (&m->mid);
  g_free (m);
}

const RvUNetConfig *
rv_unet_config (RvUNet *m)
{
  return &m->cfg;
}

guint64
rv_unet_weight_bytes (RvUNet *m)
{
  return m->weight_bytes;
}

/* ---- forward ---- */


/* The embedding every resnet projects, already through the resnets' act:
 *   emb = linear_2 (act (linear_1 (sinusoid (t)))) + aug
 * (B, time_embedding_dim), with aug the image's part (RvUNetCond) or NULL. */
static RvTensor *
time_embedding (RvNetCtx *f, const RvUNet *m, const float *timesteps, gint64 b,
                const RvTensor *aug)
{
  const RvUNetConfig *c = &m->cfg;
  gint64 te = c->time_embedding_dim;
  g_autoptr (RvTensor) ts = RV_CTX_TENSOR (f, b, c->block_out_channels[0]);   /* (B, C0) */
  g_autoptr (RvTensor) e1 = ts ? RV_CTX_TENSOR (f, b, te) : NULL;             /* (B, TE) */
  g_autoptr (RvTensor) emb = e1 ? RV_CTX_TENSOR (f, b, te) : NULL;            /* (B, TE) */
  if (emb == NULL)
    return NULL;
  rv_op_timestep_embedding (f->cmd, ts, timesteps, (int) b, c->flip_sin_to_cos, (float) c->freq_shift);
  rv_op_linear (f->cmd, e1, ts, m->time1_w, m->time1_b, c->act_fn, NULL);
  rv_op_linear (f->cmd, emb, e1, m->time2_w, m->time2_b, RV_ACT_NONE, aug);

  /* time_embedding_act_fn on emb, then each resnet's own act before its
   * time_emb_proj (unless resnet_skip_time_act) */
  RvAct acts[2] = { c->time_embedding_act_fn, c->resnet_skip_time_act ? RV_ACT_NONE : c->act_fn };
  for (int i = 0; i < 2; i++)
    if (acts[i] != RV_ACT_NONE)
      {
        RvTensor *next = RV_CTX_TENSOR (f, b, te);
        if (next == NULL)
          return NULL;
        rv_op_unary (f->cmd, next, emb, acts[i]);
        rv_tensor_free (emb);
        emb = next;
      }
  return g_steal_pointer (&emb);
}

/* ImageProjection: LN (image_embeds (image_embeds)) as (B, T, X), the
 * cross-attention context. */
static RvTensor *
image_context (RvNetCtx *f, const RvUNet *m, const RvTensor *image_embeds)
{
  gint64 b = image_embeds->shape[0], nt = m->ctx_tokens, x = m->cfg.cross_attention_dim;
  g_autoptr (RvTensor) p = RV_CTX_TENSOR (f, b, nt * x);                     /* (B, T·X) */
  RvTensor *ctx = p ? RV_CTX_TENSOR (f, b, nt, x) : NULL;                    /* (B, T, X) */
  if (ctx == NULL)
    return NULL;
  rv_op_linear (f->cmd, p, image_embeds, m->hid_proj_w, m->hid_proj_b, RV_ACT_NONE, NULL);
  rv_tensor_reshape (p, 3, (const gint64[]) { b, nt, x });
  rv_op_layer_norm (f->cmd, ctx, p, m->hid_norm_w, m->hid_norm_b, LAYER_NORM_EPS);
  return ctx;
}

static gboolean
check_embeds (RvUNet *m, RvCmd *cmd, const RvTensor *image_embeds)
{
  if (image_embeds->ndim != 2 || image_embeds->dtype != RV_DTYPE_F32 ||
      image_embeds->shape[1] != m->cfg.encoder_hid_dim)
    {
      g_autofree char *es = rv_tensor_describe (image_embeds);
      rv_cmd_failf (cmd, RV_ERROR_INVALID, "UNet: image_embeds %s must be f32 (B, %d)", es,
                    m->cfg.encoder_hid_dim);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_inputs (RvUNet *m, RvCmd *cmd, const RvTensor *sample, const float *timesteps,
              gint64 embeds_batch)
{
  const RvUNetConfig *c = &m->cfg;
  gint64 f = (gint64) 1 << (c->n_blocks - 1);
  if (sample->ndim != 4 || sample->dtype != RV_DTYPE_F32 || sample->shape[3] != c->in_channels ||
      embeds_batch != sample->shape[0] || timesteps == NULL)
    {
      g_autofree char *ss = rv_tensor_describe (sample);
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "UNet: sample %s must be f32 (B, H, W, %d) with one image embedding (%"
                    G_GINT64_FORMAT " given) and one timestep per batch row", ss,
                    c->in_channels, embeds_batch);
      return FALSE;
    }
  if (sample->shape[1] % f != 0 || sample->shape[2] % f != 0)
    {
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "UNet: latents of %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT " are not a "
                    "multiple of %" G_GINT64_FORMAT " a side, as its %d levels need",
                    sample->shape[2], sample->shape[1], f, c->n_blocks);
      return FALSE;
    }
  return TRUE;
}

/* ---- conditioning shared by the steps ---- */

/* One attention block's keys and values of the image context. */
typedef struct {
  const RvAttn *attn;
  RvTensor     *k, *v;                                   /* (B, T, C) */
} ContextKV;

/* One resnet's time_emb_proj of every step's time embedding. */
typedef struct {
  const RvResnet *resnet;
  RvTensor       *all;                                   /* (S, B, Cout or 2·Cout) */
} StepProj;

struct _RvUNetCond {
  const RvUNet *m;
  gint64        batch;
  RvTensor     *aug;                                     /* (B, TE), or NULL */
  ContextKV    *kv;
  int           n_kv;
  int           n_steps;                                 /* 0: no step projections */
  float        *step_ts;                                 /* (S, B) */
  StepProj     *proj;
  int           n_proj;
};

void
rv_unet_cond_free (RvUNetCond *cond)
{
  if (cond == NULL)
    return;
  g_clear_pointer (&cond->aug, rv_tensor_free);
  for (int i = 0; i < cond->n_kv; i++)
    {
      g_clear_pointer (&cond->kv[i].k, rv_tensor_free);
      g_clear_pointer (&cond->kv[i].v, rv_tensor_free);
    }
  g_free (cond->kv);
  for (int i = 0; i < cond->n_proj; i++)
    g_clear_pointer (&cond->proj[i].all, rv_tensor_free);
  g_free (cond->proj);
  g_free (cond->step_ts);
  g_free (cond);
}

/* The down blocks, the mid block if any, the up blocks: the order of the
 * forward. Returns how many (at most 2·RV_MAX_BLOCKS + 1). */
static int
all_blocks (const RvUNet *m, const Block **blocks)
{
  int nb = 0;
  for (int i = 0; i < m->cfg.n_blocks; i++)
    blocks[nb++] = &m->down[i];
  if (m->has_mid)
    blocks[nb++] = &m->mid;
  for (int i = 0; i < m->cfg.n_blocks; i++)
    blocks[nb++] = &m->up[i];
  return nb;
}

/* The resnets with time conditioning, in the order of the forward (at most
 * max); returns how many. */
static int
time_resnets (const RvUNet *m, const RvResnet **out, int max)
{
  const Block *blocks[2 * RV_MAX_BLOCKS + 1];
  int nb = all_blocks (m, blocks), n = 0;
  for (int i = 0; i < nb; i++)
    for (int j = 0; j <= blocks[i]->n_resnets; j++)
      {
        const RvResnet *r = j < blocks[i]->n_resnets ? &blocks[i]->resnets[j] : blocks[i]->sampler;
        if (r != NULL && r->time != RV_TIME_NONE)
          {
            if (n < max)
              out[n] = r;
            n++;
          }
      }
  return n;
}

/* Every step's time embedding, (S·B, TE), and each resnet's projection of
 * it, kept in cond. Where a step's row of a projection would not start on a
 * texel, none is kept and the forwards compute their own. */
static gboolean
step_projections (RvNetCtx *f, const RvUNet *m, RvUNetCond *cond, const float *timesteps,
                  int n_steps)
{
  gint64 b = cond->batch, rows = n_steps * b, te = m->cfg.time_embedding_dim;
  int n = time_resnets (m, NULL, 0);
  g_autofree const RvResnet **rs = g_new0 (const RvResnet *, MAX (n, 1));
  time_resnets (m, rs, n);
  for (int i = 0; i < n; i++)
    if ((b * rv_resnet_time_width (rs[i])) % 4 != 0)
      return TRUE;
  g_autoptr (RvTensor) aug = NULL;                                        /* (S·B, TE) */
  if (cond->aug != NULL)
    {
      aug = RV_CTX_TENSOR (f, rows, te);
      if (aug == NULL)
        return FALSE;
      for (int s = 0; s < n_steps; s++)
        rv_cmd_copy (f->cmd, aug, s * rv_tensor_nbytes (cond->aug), cond->aug, 0,
                     rv_tensor_nbytes (cond->aug));
    }
  g_autoptr (RvTensor) temb = time_embedding (f, m, timesteps, rows, aug);  /* (S·B, TE) */
  if (temb == NULL)
    return FALSE;
  cond->proj = g_new0 (StepProj, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      StepProj *p = &cond->proj[cond->n_proj++];
      p->resnet = rs[i];
      p->all = RV_CTX_TENSOR (f, n_steps, b, rv_resnet_time_width (rs[i]));
      if (p->all == NULL)
        return FALSE;
      rv_op_linear (f->cmd, p->all, temb, rs[i]->temb_w, rs[i]->temb_b, RV_ACT_NONE, NULL);
    }
  cond->step_ts = g_memdup2 (timesteps, rows * sizeof (float));
  cond->n_steps = n_steps;
  return TRUE;
}

/* A UNet of config c with its layout and no weights: what the memory
 * figures walk. */
static RvUNet *
layout_only (const RvUNetConfig *c)
{
  RvUNet *m = g_new0 (RvUNet, 1);
  m->cfg = *c;
  m->mid_scale = 1.0f;
  m->ctx_tokens = DEFAULT_CONTEXT_TOKENS;
  build_layout (m);
  return m;
}

guint64
rv_unet_condition_bytes (const RvUNetConfig *c, int batch, int n_steps)
{
  g_return_val_if_fail (c != NULL, 0);
  if (batch < 1 || n_steps < 1 || !check_config (c, "UNet config", NULL))
    return 0;
  g_autoptr (RvUNet) m = layout_only (c);
  int n = time_resnets (m, NULL, 0);
  g_autofree const RvResnet **rs = g_new0 (const RvResnet *, MAX (n, 1));
  time_resnets (m, rs, n);
  guint64 bytes = 0;
  for (int i = 0; i < n; i++)
    bytes += ((guint64) n_steps * batch * rv_resnet_time_width (rs[i]) * 4 + 255) / 256 * 256;
  return bytes;
}

static gboolean
block_context_kv (RvNetCtx *f, RvUNetCond *cond, const Block *blk, const RvTensor *ctx)
{
  for (int j = 0; j < blk->n_attns; j++)
    if (blk->attns[j].added_kv)
      {
        ContextKV *e = &cond->kv[cond->n_kv++];
        e->attn = &blk->attns[j];
        if (!rv_attn_context_kv (f, e->attn, ctx, &e->k, &e->v))
          return FALSE;
      }
  return TRUE;
}

RvUNetCond *
rv_unet_condition (RvUNet *m, RvCmd *cmd, const RvTensor *image_embeds, const float *timesteps,
                   int n_steps)
{
  const RvUNetConfig *c = &m->cfg;
  if (rv_cmd_failed (cmd) || !check_embeds (m, cmd, image_embeds))
    return NULL;
  RvNetCtx f;
  rv_net_ctx_init (&f, cmd, "UNet", 0, TRUE);
  gint64 b = image_embeds->shape[0], te = c->time_embedding_dim;
  g_autoptr (RvUNetCond) cond = g_new0 (RvUNetCond, 1);
  cond->m = m;
  cond->batch = b;

  /* ImageTimeEmbedding: LN (image_embeds (image_embeds)), added to the
   * time embedding */
  if (c->addition_embed_type == RV_ADD_EMBED_IMAGE)
    {
      g_autoptr (RvTensor) ap = RV_CTX_TENSOR (&f, b, te);
      cond->aug = ap ? RV_CTX_TENSOR (&f, b, te) : NULL;
      if (cond->aug == NULL)
        return NULL;
      rv_op_linear (cmd, ap, image_embeds, m->add_proj_w, m->add_proj_b, RV_ACT_NONE, NULL);
      rv_op_layer_norm (cmd, cond->aug, ap, m->add_norm_w, m->add_norm_b, LAYER_NORM_EPS);
    }

  /* the context, then every attention block's keys and values of it */
  g_autoptr (RvTensor) ctx = image_context (&f, m, image_embeds);         /* (B, T, X) */
  if (ctx == NULL)
    return NULL;
  const Block *blocks[2 * RV_MAX_BLOCKS + 1];
  int nb = all_blocks (m, blocks), n = 0;
  for (int i = 0; i < nb; i++)
    n += blocks[i]->n_attns;
  cond->kv = g_new0 (ContextKV, MAX (n, 1));
  for (int i = 0; i < nb; i++)
    if (!block_context_kv (&f, cond, blocks[i], ctx))
      return NULL;
  g_clear_pointer (&ctx, rv_tensor_free);
  if (timesteps != NULL && n_steps > 0 && !step_projections (&f, m, cond, timesteps, n_steps))
    return NULL;
  return g_steal_pointer (&cond);
}

/* What a forward's resnets take of the time: the time embedding, or for a
 * step the conditioning has, that step's row of each resnet's projection. */
typedef struct {
  const RvTensor   *temb;                                /* (B, TE), or NULL */
  const RvUNetCond *cond;
  int               step;                                /* row of cond's projections, or -1 */
} StepTime;

static RvTensor *
resnet (RvNetCtx *f, const RvResnet *r, RvTensor *x, gboolean consume, const StepTime *t)
{
  if (t->step >= 0 && r->time != RV_TIME_NONE)
    {
      for (int i = 0; i < t->cond->n_proj; i++)
        if (t->cond->proj[i].resnet == r)
          {
            const RvTensor *all = t->cond->proj[i].all;                  /* (S, B, N) */
            RvTensor row = rv_tensor_part (all, t->step, 2, all->shape + 1); /* (B, N) */
            return rv_resnet_forward_proj (f, r, x, consume, &row);
          }
      if (consume)
        rv_tensor_free (x);
      rv_cmd_failf (f->cmd, RV_ERROR_INVALID, "UNet: a resnet has no time projection");
      return NULL;
    }
  return rv_resnet_forward (f, r, x, consume, t->temb);
}

/* An attention block's forward with the context's keys and values. */
static RvTensor *
attention (RvNetCtx *f, const RvAttn *a, RvTensor *x, const RvUNetCond *cond)
{
  const RvTensor *k = NULL, *v = NULL;
  for (int i = 0; i < cond->n_kv; i++)
    if (cond->kv[i].attn == a)
      {
        k = cond->kv[i].k;
        v = cond->kv[i].v;
      }
  return rv_attn_forward (f, a, x, TRUE, k, v);
}

/* The down path's outputs, kept for the up path (last in, first out). */
typedef GPtrArray SkipStack;

static SkipStack *
skips_new (void)
{
  return g_ptr_array_new_with_free_func ((GDestroyNotify) rv_tensor_free);
}

/* Keeps t (NULL: nothing) and returns it, still owned by the stack. */
static RvTensor *
skip_push (SkipStack *s, RvTensor *t)
{
  if (t != NULL)
    g_ptr_array_add (s, t);
  return t;
}

static RvTensor *
skip_pop (SkipStack *s)
{
  return s->len > 0 ? g_ptr_array_steal_index (s, s->len - 1) : NULL;
}

/* A new cat (h, skip) along the channels; frees both. */
static RvTensor *
cat_skip (RvNetCtx *f, RvTensor *h_in, RvTensor *skip_in)
{
  g_autoptr (RvTensor) h = h_in;                                          /* (B, H, W, Ch) */
  g_autoptr (RvTensor) skip = skip_in;                                    /* (B, H, W, Cs) */
  if (h == NULL || rv_cmd_failed (f->cmd))
    return NULL;
  if (skip == NULL)
    {
      rv_cmd_failf (f->cmd, RV_ERROR_MODEL, "UNet: the up blocks take more skips than the "
                    "down blocks made");
      return NULL;
    }
  RvTensor *cat = RV_CTX_TENSOR (f, h->shape[0], h->shape[1], h->shape[2],
                                 h->shape[3] + skip->shape[3]);           /* (B, H, W, Ch + Cs) */
  if (cat != NULL)
    rv_op_concat (f->cmd, cat, h, skip, 3);
  return cat;
}

/* Resnet j of a block, then its attention if the block has them; frees x
 * when `consume`. */
static RvTensor *
layer (RvNetCtx *f, const Block *blk, int j, RvTensor *x, gboolean consume, const StepTime *t)
{
  RvTensor *h = resnet (f, &blk->resnets[j], x, consume, t);
  return blk->n_attns > 0 ? attention (f, &blk->attns[j], h, t->cond) : h;
}

/* A down block on x (not freed): every layer's output, and the
 * downsampler's, is pushed as a skip; returns the last (owned by skips). */
static RvTensor *
down_block (RvNetCtx *f, const Block *blk, const RvTensor *x, SkipStack *skips,
            const StepTime *t)
{
  RvTensor *h = (RvTensor *) x;
  for (int j = 0; j < blk->n_resnets; j++)
    h = skip_push (skips, layer (f, blk, j, h, FALSE, t));                /* (B, h, w, C_i) */
  if (blk->sampler != NULL)
    h = skip_push (skips, resnet (f, blk->sampler, h, FALSE, t));         /* (…/2) */
  return h;
}

/* resnet, then (attention, resnet); x is not freed. */
static RvTensor *
mid_block (RvNetCtx *f, const Block *blk, const RvTensor *x, const StepTime *t)
{
  RvTensor *h = resnet (f, &blk->resnets[0], (RvTensor *) x, FALSE, t);
  for (int j = 0; j < blk->n_attns; j++)
    {
      h = attention (f, &blk->attns[j], h, t->cond);
      h = resnet (f, &blk->resnets[j + 1], h, TRUE, t);
    }
  return h;
}

/* An up block on h (freed): each layer takes cat (h, the last skip), then
 * the upsampler. */
static RvTensor *
up_block (RvNetCtx *f, const Block *blk, RvTensor *h, SkipStack *skips, const StepTime *t)
{
  for (int j = 0; j < blk->n_resnets; j++)
    h = layer (f, blk, j, cat_skip (f, h, skip_pop (skips)), TRUE, t);
  if (blk->sampler != NULL)
    h = resnet (f, blk->sampler, h, TRUE, t);                            /* (B, 2h, 2w, C) */
  return h;
}

RvTensor *
rv_unet_forward (RvUNet *m, RvCmd *cmd, const RvTensor *sample, const float *timesteps,
                 const RvTensor *image_embeds)
{
  if (rv_cmd_failed (cmd) || !check_embeds (m, cmd, image_embeds) ||
      !check_inputs (m, cmd, sample, timesteps, image_embeds->shape[0]))
    return NULL;
  g_autoptr (RvUNetCond) cond = rv_unet_condition (m, cmd, image_embeds, NULL, 0);
  return cond != NULL ? rv_unet_forward_cond (m, cmd, sample, timesteps, cond) : NULL;
}

RvTensor *
rv_unet_forward_cond (RvUNet *m, RvCmd *cmd, const RvTensor *sample, const float *timesteps,
                      const RvUNetCond *cond)
{
  const RvUNetConfig *c = &m->cfg;
  if (rv_cmd_failed (cmd))
    return NULL;
  g_return_val_if_fail (cond != NULL && cond->m == m, NULL);
  if (!check_inputs (m, cmd, sample, timesteps, cond->batch))
    return NULL;
  gint64 b = sample->shape[0], h = sample->shape[1], w = sample->shape[2];
  /* activations must fit one binding: the UNet does not split its work */
  RvNetCtx f;
  rv_net_ctx_init (&f, cmd, "UNet", 0, TRUE);

  /* the step's row of the conditioning's time projections, or its own time embedding */
  StepTime st = { NULL, cond, -1 };
  for (int s = 0; s < cond->n_steps && st.step < 0; s++)
    if (memcmp (cond->step_ts + s * b, timesteps, b * sizeof (float)) == 0)
      st.step = s;
  g_autoptr (RvTensor) temb = NULL;                                       /* (B, TE) */
  if (st.step < 0)
    {
      temb = time_embedding (&f, m, timesteps, b, cond->aug);
      if (temb == NULL)
        return NULL;
      st.temb = temb;
    }
  g_autoptr (RvTensor) centered = NULL;                                  /* (B, H, W, in) */
  if (m->center_input)
    {
      centered = RV_CTX_TENSOR (&f, b, h, w, c->in_channels);
      if (centered == NULL)
        return NULL;
      rv_op_affine (cmd, centered, sample, 2.0f, -1.0f);
      sample = centered;
    }

  /* conv_in, then the down blocks; every output is a skip for the up path */
  g_autoptr (GPtrArray) skips = skips_new ();
  RvConv2d pin = rv_conv_same (c->conv_in_kernel);
  RvTensor *x = skip_push (skips, rv_block_conv (&f, sample, m->conv_in_w, m->conv_in_b, &pin,
                                                 NULL));                  /* (B, H, W, C0) */
  g_clear_pointer (&centered, rv_tensor_free);
  for (int i = 0; i < c->n_blocks; i++)
    x = down_block (&f, &m->down[i], x, skips, &st);                       /* (B, H/2^i, W/2^i, C_i) */

  /* mid block (or the last skip itself) */
  RvTensor *y = m->has_mid ? mid_block (&f, &m->mid, x, &st)
                           : skip_pop (skips);                            /* (B, h, w, C_n−1) */

  /* up blocks, with the skips in reverse */
  for (int i = 0; i < c->n_blocks; i++)
    y = up_block (&f, &m->up[i], y, skips, &st);                          /* (…·2^i, C_n−1−i) */
  g_clear_pointer (&temb, rv_tensor_free);

  /* out: conv_out (act (GN (y))) */
  RvGroupNorm norm_out = { c->norm_num_groups, c->norm_eps, m->norm_out_w, m->norm_out_b };
  g_autoptr (RvTensor) yn = rv_group_norm_forward (&f, &norm_out, y, c->act_fn, NULL);
  g_clear_pointer (&y, rv_tensor_free);                                   /* (B, H, W, C0) */
  RvConv2d pout = rv_conv_same (c->conv_out_kernel);
  return rv_block_conv (&f, yn, m->conv_out_w, m->conv_out_b, &pout, NULL);  /* (B, H, W, out) */
}

/* ---- memory estimate ----
 * Replays the allocations and frees of the forward above (and of the
 * blocks it calls, rv-blocks.c) on a counter. Allocations round up to 256
 * bytes as the device's do. tests/test-unet.c holds it to the measured peak. */

typedef struct {
  guint64 live, peak;
} Sim;

static guint64
sim_bytes (gint64 numel)
{
  return ((guint64) numel * 4 + 255) / 256 * 256;
}

static void
sim_alloc (Sim *s, gint64 numel)
{
  s->live += sim_bytes (numel);
  s->peak = MAX (s->peak, s->live);
}

static void
sim_free (Sim *s, gint64 numel)
{
  s->live -= sim_bytes (numel);
}

/* rv_op_group_norm's partial sums live while the op records. A bound, not a
 * copy of the op's tiling: about one partial per 4 to 64 rows per (batch,
 * channel), which matters only for small images. */
static void
sim_group_norm (Sim *s, gint64 b, gint64 rows, gint64 ch)
{
  gint64 units = ch % 4 == 0 ? ch / 4 : ch;
  gint64 tr = MAX (1, 256 / MIN (units, 256));
  gint64 partials = MIN (rows / 4, MAX (rows / 64, 32 * tr)) + tr + 1;
  gint64 numel = b * partials * 3 * ch + 3 * (b * ch + 3);
  sim_alloc (s, numel);
  sim_free (s, numel);
}

/* the scratch of a 3×3 "same" convolution, taken and given back */
static void
sim_conv3 (Sim *s, gint64 b, gint64 h, gint64 w, gint64 cin, gint64 cout)
{
  const RvConv2d p = { 3, 3, 1, 1, 1, 1, 1 };
  guint64 bytes = rv_op_conv2d_scratch_bytes (b, h, w, cin, cout, &p);
  s->peak = MAX (s->peak, s->live + bytes);
}

/* rv_resnet_forward on x (B, H, W, Cin), already counted; leaves the output
 * counted and, when consume, x freed. */
static void
sim_resnet (Sim *s, const RvResnet *r, gint64 b, gint64 *h, gint64 *w, gboolean consume)
{
  gint64 ho = rv_resample_size (r->resample, *h), wo = rv_resample_size (r->resample, *w);
  gint64 x = b * *h * *w * r->cin, xr = 0;
  gint64 out = b * ho * wo * r->cout, tp = rv_resnet_time_width (r);
  gint64 hn = x;
  sim_alloc (s, hn);                           /* norm1 */
  sim_group_norm (s, b, *h * *w, r->cin);
  if (r->resample != RV_RESNET_SAME)
    {
      xr = b * ho * wo * r->cin;
      sim_alloc (s, xr);
      sim_alloc (s, xr);
      if (consume)
        sim_free (s, x), consume = FALSE, x = 0;
      sim_free (s, hn);
      hn = xr;
    }
  sim_alloc (s, out);                          /* conv1 */
  sim_conv3 (s, b, ho, wo, r->cin, r->cout);
  sim_free (s, hn);
  if (r->time != RV_TIME_NONE)
    sim_alloc (s, b * tp);
  sim_alloc (s, out);                          /* norm2 */
  sim_group_norm (s, b, ho * wo, r->cout);
  sim_free (s, out);
  if (r->time != RV_TIME_NONE)
    sim_free (s, b * tp);
  gint64 sc = 0;
  if (r->cin != r->cout)
    {
      sc = out;
      sim_alloc (s, sc);                       /* shortcut */
      if (consume)
        sim_free (s, x), consume = FALSE;
      if (xr != 0)
        sim_free (s, xr), xr = 0;
    }
  sim_alloc (s, out);                          /* conv2 */
  sim_conv3 (s, b, ho, wo, r->cout, r->cout);
  if (r->out_scale != 1.0f)
    {
      sim_free (s, out);                       /* norm2's output, then the unscaled sum */
      sim_alloc (s, out);
      sim_free (s, out);
      sim_free (s, out);
      sim_alloc (s, out);
    }
  else
    sim_free (s, out);                         /* norm2's output */
  if (sc != 0)
    sim_free (s, sc);
  if (xr != 0)
    sim_free (s, xr);
  if (consume)
    sim_free (s, x);
  *h = ho;
  *w = wo;
}

/* rv_attn_forward over x (B, HW, C), already counted, the context's keys and
 * values (B, nt, C) in the conditioning; leaves the output counted and, when
 * consume, x freed. With keys and values of its own, q, k and v come from one
 * grouped product, (3, B, HW, C), kept until the attention has run; where
 * the device cannot bind that at once they are three tensors, which take
 * less. */
static void
sim_attn (Sim *s, const RvAttn *a, gint64 b, gint64 hw, gint64 nt, gboolean consume)
{
  gint64 x = b * hw * a->channels, xc = a->added_kv ? b * nt * a->channels : 0;
  sim_alloc (s, x);                            /* t */
  sim_group_norm (s, b, hw, a->channels);
  sim_alloc (s, a->self_kv ? 3 * x : x);       /* q (and to_k (t), to_v (t)) */
  sim_free (s, x);                             /* t */
  if (a->self_kv && xc > 0)
    {
      sim_alloc (s, x + xc);                   /* k = cat (context keys, to_k (t)) */
      sim_alloc (s, x + xc);                   /* v = cat */
    }
  sim_alloc (s, x);                            /* o */
  sim_free (s, a->self_kv ? 3 * x : x);
  if (a->self_kv && xc > 0)
    {
      sim_free (s, x + xc);
      sim_free (s, x + xc);
    }
  sim_alloc (s, x);                            /* out */
  sim_free (s, x);                             /* o */
  if (consume)
    sim_free (s, x);
}

/* The conditioning of rv_unet_condition: the image's time embedding part and
 * each attention block's keys and values, which stay (their bytes are
 * returned); the context, which goes. */
static guint64
sim_condition (Sim *s, const RvUNet *m, gint64 b)
{
  const RvUNetConfig *c = &m->cfg;
  gint64 nt = m->ctx_tokens, te = c->time_embedding_dim, ctx = b * nt * c->cross_attention_dim;
  guint64 kept = 0;
  if (c->addition_embed_type == RV_ADD_EMBED_IMAGE)
    {
      sim_alloc (s, b * te);
      kept += sim_bytes (b * te);
    }
  sim_alloc (s, ctx);
  const Block *blocks[2 * RV_MAX_BLOCKS + 1];
  int n = all_blocks (m, blocks);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < blocks[i]->n_attns; j++)
      if (blocks[i]->attns[j].added_kv)
        {
          gint64 kv = b * nt * blocks[i]->attns[j].channels;
          sim_alloc (s, kv);
          sim_alloc (s, kv);
          kept += 2 * sim_bytes (kv);
        }
  sim_free (s, ctx);
  return kept;
}

/* layer(): resnet j, then its attention; leaves the output counted. */
static void
sim_layer (Sim *s, const Block *blk, int j, gint64 b, gint64 nt, gint64 *h, gint64 *w,
           gboolean consume)
{
  sim_resnet (s, &blk->resnets[j], b, h, w, consume);
  if (blk->n_attns > 0)
    sim_attn (s, &blk->attns[j], b, *h * *w, nt, TRUE);
}

guint64
rv_unet_estimate_memory (const RvUNetConfig *c, int batch, int height, int width)
{
  g_return_val_if_fail (c != NULL, 0);
  if (batch < 1 || height < 1 || width < 1 || !check_config (c, "UNet config", NULL))
    return 0;
  gint64 f = (gint64) 1 << (c->n_blocks - 1);
  if (height % f != 0 || width % f != 0)
    return 0;
  g_autoptr (RvUNet) m = layout_only (c);

  Sim s = { 0 };
  gint64 b = batch, h = height, w = width, te = c->time_embedding_dim;
  gint64 nt = m->ctx_tokens, c0 = c->block_out_channels[0];
  /* conditioning and temb stay to the end; the centered input until conv_in has run */
  guint64 cond = sim_condition (&s, m, b);
  sim_alloc (&s, b * te);
  sim_alloc (&s, b * h * w * c->in_channels);
  g_autoptr (GArray) skips = g_array_new (FALSE, FALSE, sizeof (gint64));
  gint64 cur = b * h * w * c0;
  sim_alloc (&s, cur);
  sim_free (&s, b * h * w * c->in_channels);
  g_array_append_val (skips, cur);
  for (int i = 0; i < c->n_blocks; i++)
    {
      const Block *blk = &m->down[i];
      for (int j = 0; j <= blk->n_resnets; j++)
        {
          const RvResnet *r = j < blk->n_resnets ? &blk->resnets[j] : blk->sampler;
          if (r == NULL)
            break;
          if (j < blk->n_resnets)
            sim_layer (&s, blk, j, b, nt, &h, &w, FALSE);
          else
            sim_resnet (&s, r, b, &h, &w, FALSE);
          cur = b * h * w * r->cout;
          g_array_append_val (skips, cur);
        }
    }
  if (m->has_mid)
    {
      sim_resnet (&s, &m->mid.resnets[0], b, &h, &w, FALSE);
      sim_attn (&s, &m->mid.attns[0], b, h * w, nt, TRUE);
      sim_resnet (&s, &m->mid.resnets[1], b, &h, &w, TRUE);
      cur = b * h * w * m->mid.resnets[1].cout;
    }
  else
    g_array_set_size (skips, skips->len - 1);
  for (int i = 0; i < c->n_blocks; i++)
    {
      const Block *blk = &m->up[i];
      for (int j = 0; j < blk->n_resnets && skips->len > 0; j++)
        {
          gint64 skip = g_array_index (skips, gint64, skips->len - 1);
          g_array_set_size (skips, skips->len - 1);
          sim_alloc (&s, cur + skip);            /* cat (h, skip) */
          sim_free (&s, cur);
          sim_free (&s, skip);
          sim_layer (&s, blk, j, b, nt, &h, &w, TRUE);
          cur = b * h * w * blk->resnets[j].cout;
        }
      if (blk->sampler != NULL)
        {
          sim_resnet (&s, blk->sampler, b, &h, &w, TRUE);
          cur = b * h * w * blk->sampler->cout;
        }
    }
  sim_free (&s, b * te);
  s.live -= cond;
  sim_alloc (&s, b * h * w * c0);                /* norm_out */
  sim_group_norm (&s, b, h * w, c0);
  sim_free (&s, cur);
  sim_alloc (&s, b * h * w * c->out_channels);   /* conv_out */
  return s.peak;
}
