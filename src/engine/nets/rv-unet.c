/* rv-unet.c: the decoder UNet (diffusers UNet2DConditionModel as Kandinsky 2.2
 * configures it: image-embedding conditioning, scale-shift resnets that
 * resample inside, added-KV attention), MODEL_SPEC §7. */
#include "rv-unet.h"

#include <math.h>
#include <string.h>

/* diffusers' Attention keeps its own GroupNorm eps, whatever norm_eps says */
#define ATTN_NORM_EPS 1e-5f
/* nn.LayerNorm's default, used by ImageTimeEmbedding and ImageProjection */
#define LAYER_NORM_EPS 1e-5f
/* ImageProjection's default num_image_text_embeds, when the weight's shape
 * does not tell */
#define DEFAULT_CONTEXT_TOKENS 32

typedef enum {
  RESAMPLE_NONE,
  RESAMPLE_DOWN,       /* 2×2 average pool */
  RESAMPLE_UP,         /* nearest ×2 */
} Resample;

/* ResnetBlock2D */
typedef struct {
  char     *name;      /* "down_blocks.0.resnets.1" */
  int       cin, cout;
  Resample  resample;
  float     out_scale;
  RvTensor *norm1_w, *norm1_b, *conv1_w, *conv1_b, *temb_w, *temb_b;
  RvTensor *norm2_w, *norm2_b, *conv2_w, *conv2_b, *short_w, *short_b;
} Resnet;

/* Attention with added K/V projections of the context (AttnAddedKVProcessor) */
typedef struct {
  char     *name;
  int       channels, heads;
  gboolean  only_cross;           /* no to_k / to_v: keys and values from the context only */
  RvTensor *norm_w, *norm_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;
  RvTensor *add_k_w, *add_k_b, *add_v_w, *add_v_b, *out_w, *out_b;
} Attn;

/* A down, mid or up block: resnets, each followed by an attention when the
 * block has them (the mid block: resnet, then attention + resnet pairs), and
 * an optional resnet resampler. */
typedef struct {
  int     n_resnets, n_attns;
  Resnet *resnets;
  Attn   *attns;
  Resnet *sampler;
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
resnet_init (Resnet *r, char *name, int cin, int cout, Resample resample, float out_scale)
{
  *r = (Resnet) { .name = name, .cin = cin, .cout = cout, .resample = resample,
                  .out_scale = out_scale };
}

static void
attn_init (Attn *a, char *name, int channels, int head_dim, gboolean only_cross)
{
  *a = (Attn) { .name = name, .channels = channels, .heads = channels / head_dim,
                .only_cross = only_cross };
}

/* Block `prefix` ("down_blocks.1"): layer j is a resnet from cin[j] to cout
 * channels, followed by an attention when `attn`; then the resampler. */
static void
block_init (Block *b, const char *prefix, int layers, const int *cin, int cout, gboolean attn,
            int head_dim, gboolean only_cross, Resample sampler, float out_scale)
{
  b->n_resnets = layers;
  b->n_attns = attn ? layers : 0;
  b->resnets = g_new0 (Resnet, layers);
  b->attns = attn ? g_new0 (Attn, layers) : NULL;
  for (int j = 0; j < layers; j++)
    {
      resnet_init (&b->resnets[j], g_strdup_printf ("%s.resnets.%d", prefix, j), cin[j], cout,
                   RESAMPLE_NONE, out_scale);
      if (attn)
        attn_init (&b->attns[j], g_strdup_printf ("%s.attentions.%d", prefix, j), cout, head_dim,
                   only_cross);
    }
  if (sampler != RESAMPLE_NONE)
    {
      b->sampler = g_new0 (Resnet, 1);
      resnet_init (b->sampler, g_strdup_printf ("%s.%s.0", prefix, sampler == RESAMPLE_DOWN
                                                ? "downsamplers" : "upsamplers"),
                   cout, cout, sampler, out_scale);
    }
}

/* Fills the blocks' channels and names from the config, as diffusers builds
 * them: down block i goes from block_out_channels[i−1] to [i]; up block i
 * (reversed lists) has layers + 1 resnets, each fed cat (h, skip). */
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
      block_init (&m->down[i], prefix, layers, cin, ch[i], is_attn_block (c->down_block_types[i]),
                  c->attention_head_dim[i], c->only_cross_attention[i],
                  i < n - 1 ? RESAMPLE_DOWN : RESAMPLE_NONE, rs);
    }

  m->has_mid = c->mid_block_type[0] != '\0';
  if (m->has_mid)
    {
      /* resnet, then attention + resnet: the attention sits between */
      Block *b = &m->mid;
      int cm = ch[n - 1];
      const int cin[2] = { cm, cm };
      block_init (b, "mid_block", 2, cin, cm, FALSE, 0, FALSE, RESAMPLE_NONE, m->mid_scale);
      b->n_attns = 1;
      b->attns = g_new0 (Attn, 1);
      attn_init (&b->attns[0], g_strdup ("mid_block.attentions.0"), cm, c->attention_head_dim[n - 1],
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
      block_init (&m->up[i], prefix, layers, cin, ch[r], is_attn_block (c->up_block_types[i]),
                  c->attention_head_dim[r], c->only_cross_attention[r],
                  i < n - 1 ? RESAMPLE_UP : RESAMPLE_NONE, rs);
    }
}

/* ---- manifest and weights ----
 * Each layer type lists its checkpoint tensors once: the struct field, the
 * name after the layer's prefix, how it uploads, and its PyTorch shape in
 * sizes that the layer resolves (CIN, COUT, …). The manifest, the upload and
 * the freeing all walk these lists. */

typedef enum { PLAIN, LINEAR, CONV } Upload;

/* symbolic sizes in the shapes below (literal sizes are positive) */
enum {
  CIN = -1, COUT = -2, TPROJ = -3, TEMB = -4, CROSS = -5, C0 = -6, IN = -7, OUT = -8,
  KIN = -9, KOUT = -10, HID = -11, CTX = -12,
  N_SIZES = 13
};

typedef struct {
  gsize       offset;        /* of the RvTensor * in the layer struct */
  const char *name;
  Upload      upload;
  gboolean    optional;      /* only in layers that have it (see *_has_optional) */
  gint64      shape[4];      /* 0-terminated */
} Weight;

#define W(type, field, name, upload, optional, ...) \
  { G_STRUCT_OFFSET (type, field), name, upload, optional, { __VA_ARGS__ } }

static const Weight resnet_weights[] = {
  W (Resnet, norm1_w, "norm1.weight",          PLAIN,  FALSE, CIN),
  W (Resnet, norm1_b, "norm1.bias",            PLAIN,  FALSE, CIN),
  W (Resnet, conv1_w, "conv1.weight",          CONV,   FALSE, COUT, CIN, 3, 3),
  W (Resnet, conv1_b, "conv1.bias",            PLAIN,  FALSE, COUT),
  W (Resnet, temb_w,  "time_emb_proj.weight",  LINEAR, FALSE, TPROJ, TEMB),
  W (Resnet, temb_b,  "time_emb_proj.bias",    PLAIN,  FALSE, TPROJ),
  W (Resnet, norm2_w, "norm2.weight",          PLAIN,  FALSE, COUT),
  W (Resnet, norm2_b, "norm2.bias",            PLAIN,  FALSE, COUT),
  W (Resnet, conv2_w, "conv2.weight",          CONV,   FALSE, COUT, COUT, 3, 3),
  W (Resnet, conv2_b, "conv2.bias",            PLAIN,  FALSE, COUT),
  W (Resnet, short_w, "conv_shortcut.weight",  CONV,   TRUE,  COUT, CIN, 1, 1),
  W (Resnet, short_b, "conv_shortcut.bias",    PLAIN,  TRUE,  COUT),
};

static const Weight attn_weights[] = {
  W (Attn, norm_w,  "group_norm.weight",  PLAIN,  FALSE, COUT),
  W (Attn, norm_b,  "group_norm.bias",    PLAIN,  FALSE, COUT),
  W (Attn, q_w,     "to_q.weight",        LINEAR, FALSE, COUT, COUT),
  W (Attn, q_b,     "to_q.bias",          PLAIN,  FALSE, COUT),
  W (Attn, k_w,     "to_k.weight",        LINEAR, TRUE,  COUT, COUT),
  W (Attn, k_b,     "to_k.bias",          PLAIN,  TRUE,  COUT),
  W (Attn, v_w,     "to_v.weight",        LINEAR, TRUE,  COUT, COUT),
  W (Attn, v_b,     "to_v.bias",          PLAIN,  TRUE,  COUT),
  W (Attn, add_k_w, "add_k_proj.weight",  LINEAR, FALSE, COUT, CROSS),
  W (Attn, add_k_b, "add_k_proj.bias",    PLAIN,  FALSE, COUT),
  W (Attn, add_v_w, "add_v_proj.weight",  LINEAR, FALSE, COUT, CROSS),
  W (Attn, add_v_b, "add_v_proj.bias",    PLAIN,  FALSE, COUT),
  W (Attn, out_w,   "to_out.0.weight",    LINEAR, FALSE, COUT, COUT),
  W (Attn, out_b,   "to_out.0.bias",      PLAIN,  FALSE, COUT),
};

/* the model's own, outside the blocks; optional: add_embedding */
static const Weight unet_weights[] = {
  W (RvUNet, conv_in_w,  "conv_in.weight",                       CONV,   FALSE, C0, IN, KIN, KIN),
  W (RvUNet, conv_in_b,  "conv_in.bias",                         PLAIN,  FALSE, C0),
  W (RvUNet, time1_w,    "time_embedding.linear_1.weight",       LINEAR, FALSE, TEMB, C0),
  W (RvUNet, time1_b,    "time_embedding.linear_1.bias",         PLAIN,  FALSE, TEMB),
  W (RvUNet, time2_w,    "time_embedding.linear_2.weight",       LINEAR, FALSE, TEMB, TEMB),
  W (RvUNet, time2_b,    "time_embedding.linear_2.bias",         PLAIN,  FALSE, TEMB),
  W (RvUNet, add_proj_w, "add_embedding.image_proj.weight",      LINEAR, TRUE,  TEMB, HID),
  W (RvUNet, add_proj_b, "add_embedding.image_proj.bias",        PLAIN,  TRUE,  TEMB),
  W (RvUNet, add_norm_w, "add_embedding.image_norm.weight",      PLAIN,  TRUE,  TEMB),
  W (RvUNet, add_norm_b, "add_embedding.image_norm.bias",        PLAIN,  TRUE,  TEMB),
  W (RvUNet, hid_proj_w, "encoder_hid_proj.image_embeds.weight", LINEAR, FALSE, CTX, HID),
  W (RvUNet, hid_proj_b, "encoder_hid_proj.image_embeds.bias",   PLAIN,  FALSE, CTX),
  W (RvUNet, hid_norm_w, "encoder_hid_proj.norm.weight",         PLAIN,  FALSE, CROSS),
  W (RvUNet, hid_norm_b, "encoder_hid_proj.norm.bias",           PLAIN,  FALSE, CROSS),
  W (RvUNet, norm_out_w, "conv_norm_out.weight",                 PLAIN,  FALSE, C0),
  W (RvUNet, norm_out_b, "conv_norm_out.bias",                   PLAIN,  FALSE, C0),
  W (RvUNet, conv_out_w, "conv_out.weight",                      CONV,   FALSE, OUT, C0, KOUT, KOUT),
  W (RvUNet, conv_out_b, "conv_out.bias",                        PLAIN,  FALSE, OUT),
};

/* "prefix.name", or the name alone for the model's own weights */
static char *
weight_name (const char *prefix, const Weight *w)
{
  return prefix[0] ? g_strconcat (prefix, ".", w->name, NULL) : g_strdup (w->name);
}

static void
weights_manifest (RvManifest *man, const char *prefix, const Weight *ws, guint n,
                  gboolean optional, const gint64 sizes[N_SIZES])
{
  for (guint i = 0; i < n; i++)
    {
      if (ws[i].optional && !optional)
        continue;
      gint64 shape[4];
      int ndim = 0;
      for (; ndim < 4 && ws[i].shape[ndim] != 0; ndim++)
        shape[ndim] = ws[i].shape[ndim] > 0 ? ws[i].shape[ndim] : sizes[-ws[i].shape[ndim]];
      g_autofree char *name = weight_name (prefix, &ws[i]);
      rv_manifest_add (man, ndim, shape, "%s", name);
    }
}

static void
weights_load (RvLoader *l, gpointer layer, const char *prefix, const Weight *ws, guint n,
              gboolean optional)
{
  for (guint i = 0; i < n; i++)
    {
      if (ws[i].optional && !optional)
        continue;
      g_autofree char *name = weight_name (prefix, &ws[i]);
      RvTensor **t = G_STRUCT_MEMBER_P (layer, ws[i].offset);
      *t = ws[i].upload == CONV ? rv_load_conv (l, "%s", name)
           : ws[i].upload == LINEAR ? rv_load_linear (l, "%s", name) : rv_load_plain (l, "%s", name);
    }
}

static void
weights_clear (gpointer layer, const Weight *ws, guint n)
{
  for (guint i = 0; i < n; i++)
    g_clear_pointer ((RvTensor **) G_STRUCT_MEMBER_P (layer, ws[i].offset), rv_tensor_free);
}

static gint64
temb_out (const RvUNetConfig *c, int cout)
{
  return c->resnet_time_scale_shift == RV_TIME_SHIFT_SCALE_SHIFT ? 2 * cout : cout;
}

static void
resnet_manifest (RvManifest *man, const RvUNetConfig *c, const Resnet *r)
{
  gint64 sizes[N_SIZES] = { 0 };
  sizes[-CIN] = r->cin;
  sizes[-COUT] = r->cout;
  sizes[-TPROJ] = temb_out (c, r->cout);
  sizes[-TEMB] = c->time_embedding_dim;
  weights_manifest (man, r->name, resnet_weights, G_N_ELEMENTS (resnet_weights), r->cin != r->cout,
                    sizes);
}

static void
attn_manifest (RvManifest *man, const RvUNetConfig *c, const Attn *a)
{
  gint64 sizes[N_SIZES] = { 0 };
  sizes[-COUT] = a->channels;
  sizes[-CROSS] = c->cross_attention_dim;
  weights_manifest (man, a->name, attn_weights, G_N_ELEMENTS (attn_weights), !a->only_cross, sizes);
}

static void
resnet_clear (Resnet *r)
{
  weights_clear (r, resnet_weights, G_N_ELEMENTS (resnet_weights));
  g_clear_pointer (&r->name, g_free);
}

static void
attn_clear (Attn *a)
{
  weights_clear (a, attn_weights, G_N_ELEMENTS (attn_weights));
  g_clear_pointer (&a->name, g_free);
}

/* Resnet i of a block, counting the sampler after the others; NULL past the end. */
static Resnet *
block_resnet (const Block *b, int i)
{
  return i < b->n_resnets ? &b->resnets[i] : i == b->n_resnets ? b->sampler : NULL;
}

static void
block_manifest (RvManifest *man, const RvUNetConfig *c, const Block *b)
{
  for (int i = 0; i <= b->n_resnets; i++)
    if (block_resnet (b, i) != NULL)
      resnet_manifest (man, c, block_resnet (b, i));
  for (int i = 0; i < b->n_attns; i++)
    attn_manifest (man, c, &b->attns[i]);
}

static void
block_load (RvLoader *l, Block *b)
{
  for (int i = 0; i <= b->n_resnets; i++)
    {
      Resnet *r = block_resnet (b, i);
      if (r != NULL)
        weights_load (l, r, r->name, resnet_weights, G_N_ELEMENTS (resnet_weights), r->cin != r->cout);
    }
  for (int i = 0; i < b->n_attns; i++)
    weights_load (l, &b->attns[i], b->attns[i].name, attn_weights, G_N_ELEMENTS (attn_weights),
                  !b->attns[i].only_cross);
}

static void
block_clear (Block *b)
{
  for (int i = 0; i <= b->n_resnets; i++)
    if (block_resnet (b, i) != NULL)
      resnet_clear (block_resnet (b, i));
  for (int i = 0; i < b->n_attns; i++)
    attn_clear (&b->attns[i]);
  g_clear_pointer (&b->resnets, g_free);
  g_clear_pointer (&b->attns, g_free);
  g_clear_pointer (&b->sampler, g_free);
  b->n_resnets = b->n_attns = 0;
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

static RvManifest *
build_manifest (const RvUNet *m)
{
  const RvUNetConfig *c = &m->cfg;
  RvManifest *man = rv_manifest_new ();
  gint64 sizes[N_SIZES] = { 0 };
  sizes[-TEMB] = c->time_embedding_dim;
  sizes[-CROSS] = c->cross_attention_dim;
  sizes[-C0] = c->block_out_channels[0];
  sizes[-IN] = c->in_channels;
  sizes[-OUT] = c->out_channels;
  sizes[-KIN] = c->conv_in_kernel;
  sizes[-KOUT] = c->conv_out_kernel;
  sizes[-HID] = c->encoder_hid_dim;
  sizes[-CTX] = (gint64) m->ctx_tokens * c->cross_attention_dim;
  weights_manifest (man, "", unet_weights, G_N_ELEMENTS (unet_weights),
                    c->addition_embed_type == RV_ADD_EMBED_IMAGE, sizes);
  for (int i = 0; i < c->n_blocks; i++)
    block_manifest (man, c, &m->down[i]);
  if (m->has_mid)
    block_manifest (man, c, &m->mid);
  for (int i = 0; i < c->n_blocks; i++)
    block_manifest (man, c, &m->up[i]);
  return man;
}

static void
load_weights (RvLoader *l, RvUNet *m)
{
  const RvUNetConfig *c = &m->cfg;
  weights_load (l, m, "", unet_weights, G_N_ELEMENTS (unet_weights),
                c->addition_embed_type == RV_ADD_EMBED_IMAGE);
  for (int i = 0; i < c->n_blocks; i++)
    block_load (l, &m->down[i]);
  if (m->has_mid)
    block_load (l, &m->mid);
  for (int i = 0; i < c->n_blocks; i++)
    block_load (l, &m->up[i]);
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
  g_autoptr (RvManifest) man = build_manifest (m);
  if (!rv_weights_check (weights, man, error))
    return NULL;

  RvLoader l;
  rv_loader_init (&l, cmd, weights, policy);
  load_weights (&l, m);
  m->weight_bytes = l.bytes;
  if (!rv_loader_finish (&l, error))
    return NULL;
  return g_steal_pointer (&m);
}

void
rv_unet_free (RvUNet *m)
{
  if (m == NULL)
    return;
  weights_clear (m, unet_weights, G_N_ELEMENTS (unet_weights));
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

/* A new f32 activation, or NULL with the error on cmd. The GEMM and attention
 * kernels bind their output whole, so an activation must fit one storage
 * binding: refuse rather than let a large image overrun it. */
static RvTensor *
unet_tensor (RvCmd *cmd, int ndim, const gint64 *shape)
{
  RvTensor *t = rv_net_tensor (cmd, ndim, shape);
  VkDeviceSize range = rv_device_caps (rv_cmd_device (cmd))->max_storage_range;
  if (t != NULL && rv_tensor_nbytes (t) > range)
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "UNet: an activation of %.0f MiB exceeds the %.0f MiB this device can "
                    "bind at once; use a smaller image size or fewer images at once.",
                    rv_tensor_nbytes (t) / 1048576.0, range / 1048576.0);
      g_clear_pointer (&t, rv_tensor_free);
    }
  return t;
}
#define UNET_TENSOR(cmd, ...) \
  unet_tensor ((cmd), (int) (sizeof ((const gint64[]) { __VA_ARGS__ }) / sizeof (gint64)), \
               (const gint64[]) { __VA_ARGS__ })

static const RvConv2d conv3x3 = { 3, 3, 1, 1, 1, 1, 1 };
static const RvConv2d conv1x1 = { 1, 1, 1, 0, 0, 0, 0 };

static RvConv2d
conv_same (int k)
{
  return (RvConv2d) { k, k, 1, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2 };
}

/* ResnetBlock2D:
 *   h = act (GN1 (x)), then x and h both resampled (pool or nearest ×2)
 *   h = conv1 (h); h = act (GN2 (h)·(1 + scale) + shift)   [scale_shift]
 *              or  h = act (GN2 (h + temb))                 [default]
 *   out = (shortcut (x) + conv2 (h)) / out_scale
 * temb_act: act (emb) (B, time_embedding_dim). Returns a new tensor. */
static RvTensor *
resnet_forward (RvCmd *cmd, const RvUNetConfig *c, const Resnet *r, const RvTensor *x,
                const RvTensor *temb_act)
{
  gint64 b = x->shape[0], h = x->shape[1], w = x->shape[2];
  gint64 ho = r->resample == RESAMPLE_DOWN ? h / 2 : r->resample == RESAMPLE_UP ? 2 * h : h;
  gint64 wo = r->resample == RESAMPLE_DOWN ? w / 2 : r->resample == RESAMPLE_UP ? 2 * w : w;

  g_autoptr (RvTensor) hn = UNET_TENSOR (cmd, b, h, w, r->cin);     /* (B, H, W, Cin) */
  if (hn == NULL)
    return NULL;
  RvNorm n1 = { .gamma = r->norm1_w, .beta = r->norm1_b, .act = c->act_fn };
  rv_op_group_norm (cmd, hn, x, c->norm_num_groups, c->norm_eps, &n1);

  g_autoptr (RvTensor) xr = NULL;
  const RvTensor *xs = x;                                           /* (B, Ho, Wo, Cin) */
  if (r->resample != RESAMPLE_NONE)
    {
      xr = UNET_TENSOR (cmd, b, ho, wo, r->cin);
      RvTensor *hr = xr ? UNET_TENSOR (cmd, b, ho, wo, r->cin) : NULL;
      if (hr == NULL)
        return NULL;
      if (r->resample == RESAMPLE_DOWN)
        {
          rv_op_avgpool2x2 (cmd, xr, x);
          rv_op_avgpool2x2 (cmd, hr, hn);
        }
      else
        {
          rv_op_upsample_nearest2x (cmd, xr, x);
          rv_op_upsample_nearest2x (cmd, hr, hn);
        }
      rv_tensor_free (hn);
      hn = hr;
      xs = xr;
    }

  g_autoptr (RvTensor) h1 = UNET_TENSOR (cmd, b, ho, wo, r->cout);  /* (B, Ho, Wo, Cout) */
  g_autoptr (RvTensor) tp = h1 ? UNET_TENSOR (cmd, b, temb_out (c, r->cout)) : NULL;
  if (tp == NULL)
    return NULL;
  rv_op_conv2d (cmd, h1, hn, r->conv1_w, r->conv1_b, &conv3x3, NULL);
  g_clear_pointer (&hn, rv_tensor_free);
  rv_op_linear (cmd, tp, temb_act, r->temb_w, r->temb_b, RV_ACT_NONE, NULL);   /* (B, 2·Cout) */

  RvNorm n2 = { .gamma = r->norm2_w, .beta = r->norm2_b, .act = c->act_fn };
  if (c->resnet_time_scale_shift == RV_TIME_SHIFT_SCALE_SHIFT)
    n2.scale_shift = tp;
  else
    {
      RvTensor tv = *tp;                                            /* (B, 1, 1, Cout) */
      rv_tensor_reshape (&tv, 4, (const gint64[]) { b, 1, 1, r->cout });
      rv_op_binary (cmd, h1, h1, &tv, RV_BIN_ADD);
    }
  g_autoptr (RvTensor) h2 = UNET_TENSOR (cmd, b, ho, wo, r->cout);
  if (h2 == NULL)
    return NULL;
  rv_op_group_norm (cmd, h2, h1, c->norm_num_groups, c->norm_eps, &n2);
  g_clear_pointer (&h1, rv_tensor_free);
  g_clear_pointer (&tp, rv_tensor_free);

  g_autoptr (RvTensor) sc = NULL;                                   /* (B, Ho, Wo, Cout) */
  if (r->short_w != NULL)
    {
      sc = UNET_TENSOR (cmd, b, ho, wo, r->cout);
      if (sc == NULL)
        return NULL;
      rv_op_conv2d (cmd, sc, xs, r->short_w, r->short_b, &conv1x1, NULL);
      g_clear_pointer (&xr, rv_tensor_free);
    }
  RvTensor *out = UNET_TENSOR (cmd, b, ho, wo, r->cout);
  if (out == NULL)
    return NULL;
  rv_op_conv2d (cmd, out, h2, r->conv2_w, r->conv2_b, &conv3x3, sc ? sc : xs);
  if (r->out_scale != 1.0f)
    {
      g_clear_pointer (&h2, rv_tensor_free);
      g_clear_pointer (&sc, rv_tensor_free);
      g_clear_pointer (&xr, rv_tensor_free);
      RvTensor *scaled = UNET_TENSOR (cmd, b, ho, wo, r->cout);
      if (scaled != NULL)
        rv_op_affine (cmd, scaled, out, 1.0f / r->out_scale, 0.0f);
      rv_tensor_free (out);
      out = scaled;
    }
  return out;
}

/* Added-KV attention (AttnAddedKVProcessor):
 *   t = GN (x); q = to_q (t)
 *   k = cat [add_k_proj (ctx), to_k (t)], v likewise (context first; the
 *   context only when only_cross_attention)
 *   out = to_out.0 (softmax (q kᵀ / √d) v) + x
 * x (B, H, W, C), ctx (B, T, X). Returns a new tensor. */
static RvTensor *
attn_forward (RvCmd *cmd, const RvUNetConfig *c, const Attn *a, const RvTensor *x,
              const RvTensor *ctx)
{
  gint64 b = x->shape[0], hw = x->shape[1] * x->shape[2], ch = a->channels;
  gint64 nt = ctx->shape[1];

  g_autoptr (RvTensor) t = UNET_TENSOR (cmd, b, hw, ch);            /* (B, HW, C) */
  g_autoptr (RvTensor) q = t ? UNET_TENSOR (cmd, b, hw, ch) : NULL;
  g_autoptr (RvTensor) kc = q ? UNET_TENSOR (cmd, b, nt, ch) : NULL;   /* (B, T, C) */
  g_autoptr (RvTensor) vc = kc ? UNET_TENSOR (cmd, b, nt, ch) : NULL;
  if (vc == NULL)
    return NULL;
  RvTensor xv = *x;
  rv_tensor_reshape (&xv, 3, (const gint64[]) { b, hw, ch });
  RvNorm n = { .gamma = a->norm_w, .beta = a->norm_b };
  rv_op_group_norm (cmd, t, &xv, c->norm_num_groups, ATTN_NORM_EPS, &n);
  rv_op_linear (cmd, q, t, a->q_w, a->q_b, RV_ACT_NONE, NULL);
  rv_op_linear (cmd, kc, ctx, a->add_k_w, a->add_k_b, RV_ACT_NONE, NULL);
  rv_op_linear (cmd, vc, ctx, a->add_v_w, a->add_v_b, RV_ACT_NONE, NULL);

  g_autoptr (RvTensor) k = NULL, v = NULL;                          /* (B, T + HW, C) */
  if (a->only_cross)
    {
      k = g_steal_pointer (&kc);
      v = g_steal_pointer (&vc);
    }
  else
    {
      g_autoptr (RvTensor) ks = UNET_TENSOR (cmd, b, hw, ch);       /* (B, HW, C) */
      g_autoptr (RvTensor) vs = ks ? UNET_TENSOR (cmd, b, hw, ch) : NULL;
      if (vs == NULL)
        return NULL;
      rv_op_linear (cmd, ks, t, a->k_w, a->k_b, RV_ACT_NONE, NULL);
      rv_op_linear (cmd, vs, t, a->v_w, a->v_b, RV_ACT_NONE, NULL);
      g_clear_pointer (&t, rv_tensor_free);
      k = UNET_TENSOR (cmd, b, nt + hw, ch);
      if (k == NULL)
        return NULL;
      rv_op_concat (cmd, k, kc, ks, 1);
      g_clear_pointer (&kc, rv_tensor_free);
      g_clear_pointer (&ks, rv_tensor_free);
      v = UNET_TENSOR (cmd, b, nt + hw, ch);
      if (v == NULL)
        return NULL;
      rv_op_concat (cmd, v, vc, vs, 1);
      g_clear_pointer (&vc, rv_tensor_free);
    }
  g_clear_pointer (&t, rv_tensor_free);

  g_autoptr (RvTensor) o = UNET_TENSOR (cmd, b, hw, ch);            /* (B, HW, C) */
  if (o == NULL)
    return NULL;
  rv_op_attention (cmd, o, q, k, v, a->heads, 1.0f / sqrtf ((float) (ch / a->heads)), NULL, FALSE);
  g_clear_pointer (&q, rv_tensor_free);
  g_clear_pointer (&k, rv_tensor_free);
  g_clear_pointer (&v, rv_tensor_free);

  RvTensor *out = UNET_TENSOR (cmd, b, x->shape[1], x->shape[2], ch);   /* (B, H, W, C) */
  if (out != NULL)
    rv_op_linear (cmd, out, o, a->out_w, a->out_b, RV_ACT_NONE, x);
  return out;
}

/* The embedding every resnet projects, already through the resnets' act:
 *   emb = linear_2 (act (linear_1 (sinusoid (t)))) + LN (image_proj (image_embeds))
 * (B, time_embedding_dim). */
static RvTensor *
time_embedding (RvCmd *cmd, const RvUNet *m, const float *timesteps, gint64 b,
                const RvTensor *image_embeds)
{
  const RvUNetConfig *c = &m->cfg;
  gint64 te = c->time_embedding_dim;
  g_autoptr (RvTensor) ts = UNET_TENSOR (cmd, b, c->block_out_channels[0]);   /* (B, C0) */
  g_autoptr (RvTensor) e1 = ts ? UNET_TENSOR (cmd, b, te) : NULL;             /* (B, TE) */
  if (e1 == NULL)
    return NULL;
  rv_op_timestep_embedding (cmd, ts, timesteps, (int) b, c->flip_sin_to_cos, (float) c->freq_shift);
  rv_op_linear (cmd, e1, ts, m->time1_w, m->time1_b, c->act_fn, NULL);

  g_autoptr (RvTensor) aug = NULL;                                            /* (B, TE) */
  if (c->addition_embed_type == RV_ADD_EMBED_IMAGE)
    {
      g_autoptr (RvTensor) ap = UNET_TENSOR (cmd, b, te);
      aug = ap ? UNET_TENSOR (cmd, b, te) : NULL;
      if (aug == NULL)
        return NULL;
      rv_op_linear (cmd, ap, image_embeds, m->add_proj_w, m->add_proj_b, RV_ACT_NONE, NULL);
      rv_op_layer_norm (cmd, aug, ap, m->add_norm_w, m->add_norm_b, LAYER_NORM_EPS);
    }
  g_autoptr (RvTensor) emb = UNET_TENSOR (cmd, b, te);
  if (emb == NULL)
    return NULL;
  rv_op_linear (cmd, emb, e1, m->time2_w, m->time2_b, RV_ACT_NONE, aug);

  /* time_embedding_act_fn on emb, then each resnet's own act before its
   * time_emb_proj (unless resnet_skip_time_act) */
  RvAct acts[2] = { c->time_embedding_act_fn, c->resnet_skip_time_act ? RV_ACT_NONE : c->act_fn };
  for (int i = 0; i < 2; i++)
    if (acts[i] != RV_ACT_NONE)
      {
        RvTensor *next = UNET_TENSOR (cmd, b, te);
        if (next == NULL)
          return NULL;
        rv_op_unary (cmd, next, emb, acts[i]);
        rv_tensor_free (emb);
        emb = next;
      }
  return g_steal_pointer (&emb);
}

/* ImageProjection: LN (image_embeds (image_embeds)) as (B, T, X), the
 * cross-attention context. */
static RvTensor *
image_context (RvCmd *cmd, const RvUNet *m, const RvTensor *image_embeds)
{
  gint64 b = image_embeds->shape[0], nt = m->ctx_tokens, x = m->cfg.cross_attention_dim;
  g_autoptr (RvTensor) p = UNET_TENSOR (cmd, b, nt * x);                     /* (B, T·X) */
  RvTensor *ctx = p ? UNET_TENSOR (cmd, b, nt, x) : NULL;                    /* (B, T, X) */
  if (ctx == NULL)
    return NULL;
  rv_op_linear (cmd, p, image_embeds, m->hid_proj_w, m->hid_proj_b, RV_ACT_NONE, NULL);
  rv_tensor_reshape (p, 3, (const gint64[]) { b, nt, x });
  rv_op_layer_norm (cmd, ctx, p, m->hid_norm_w, m->hid_norm_b, LAYER_NORM_EPS);
  return ctx;
}

/* Resnet i of a block, then its attention if the block has one. */
static RvTensor *
layer_forward (RvCmd *cmd, const RvUNetConfig *c, const Block *blk, int i, const RvTensor *x,
               const RvTensor *temb, const RvTensor *ctx)
{
  RvTensor *h = resnet_forward (cmd, c, &blk->resnets[i], x, temb);
  if (h == NULL || blk->n_attns == 0)
    return h;
  RvTensor *a = attn_forward (cmd, c, &blk->attns[i], h, ctx);
  rv_tensor_free (h);
  return a;
}

static gboolean
check_inputs (RvUNet *m, RvCmd *cmd, const RvTensor *sample, const float *timesteps,
              const RvTensor *image_embeds)
{
  const RvUNetConfig *c = &m->cfg;
  gint64 f = (gint64) 1 << (c->n_blocks - 1);
  if (sample->ndim != 4 || sample->dtype != RV_DTYPE_F32 || sample->shape[3] != c->in_channels ||
      image_embeds->ndim != 2 || image_embeds->dtype != RV_DTYPE_F32 ||
      image_embeds->shape[0] != sample->shape[0] || image_embeds->shape[1] != c->encoder_hid_dim ||
      timesteps == NULL)
    {
      g_autofree char *ss = rv_tensor_describe (sample);
      g_autofree char *es = rv_tensor_describe (image_embeds);
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "UNet: sample %s must be f32 (B, H, W, %d) and image_embeds %s f32 (B, %d), "
                    "with one timestep per batch row", ss, c->in_channels, es, c->encoder_hid_dim);
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

RvTensor *
rv_unet_forward (RvUNet *m, RvCmd *cmd, const RvTensor *sample, const float *timesteps,
                 const RvTensor *image_embeds)
{
  const RvUNetConfig *c = &m->cfg;
  if (rv_cmd_failed (cmd) || !check_inputs (m, cmd, sample, timesteps, image_embeds))
    return NULL;
  gint64 b = sample->shape[0], h = sample->shape[1], w = sample->shape[2];
  gint64 c0 = c->block_out_channels[0];

  /* conditioning */
  g_autoptr (RvTensor) temb = time_embedding (cmd, m, timesteps, b, image_embeds);  /* (B, TE) */
  g_autoptr (RvTensor) ctx = temb ? image_context (cmd, m, image_embeds) : NULL;    /* (B, T, X) */
  if (ctx == NULL)
    return NULL;

  g_autoptr (RvTensor) centered = NULL;
  if (m->center_input)
    {
      centered = UNET_TENSOR (cmd, b, h, w, c->in_channels);
      if (centered == NULL)
        return NULL;
      rv_op_affine (cmd, centered, sample, 2.0f, -1.0f);
      sample = centered;
    }

  /* down: every layer's output (and conv_in's) is a skip for the up path */
  g_autoptr (GPtrArray) skips = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_tensor_free);
  RvTensor *x = UNET_TENSOR (cmd, b, h, w, c0);                                 /* (B, H, W, C0) */
  if (x == NULL)
    return NULL;
  RvConv2d pin = conv_same (c->conv_in_kernel);
  rv_op_conv2d (cmd, x, sample, m->conv_in_w, m->conv_in_b, &pin, NULL);
  g_ptr_array_add (skips, x);
  g_clear_pointer (&centered, rv_tensor_free);
  for (int i = 0; i < c->n_blocks; i++)
    {
      const Block *blk = &m->down[i];
      for (int j = 0; j <= blk->n_resnets; j++)
        {
          if (j == blk->n_resnets && blk->sampler == NULL)
            break;
          x = j < blk->n_resnets ? layer_forward (cmd, c, blk, j, x, temb, ctx)
                                 : resnet_forward (cmd, c, blk->sampler, x, temb);
          if (x == NULL)
            return NULL;
          g_ptr_array_add (skips, x);                       /* (B, H/2^i, W/2^i, C_i) */
        }
    }

  /* mid: resnet, then (attention, resnet) */
  g_autoptr (RvTensor) y = NULL;                            /* (B, H/2^(n−1), W/2^(n−1), C_n−1) */
  if (m->has_mid)
    {
      y = resnet_forward (cmd, c, &m->mid.resnets[0], x, temb);
      for (int j = 0; j < m->mid.n_attns && y != NULL; j++)
        {
          g_autoptr (RvTensor) a = attn_forward (cmd, c, &m->mid.attns[j], y, ctx);
          g_clear_pointer (&y, rv_tensor_free);
          if (a != NULL)
            y = resnet_forward (cmd, c, &m->mid.resnets[j + 1], a, temb);
        }
    }
  else
    y = g_ptr_array_steal_index (skips, skips->len - 1);
  if (y == NULL)
    return NULL;

  /* up: each resnet takes cat (h, the last skip) along the channels */
  for (int i = 0; i < c->n_blocks; i++)
    {
      const Block *blk = &m->up[i];
      for (int j = 0; j < blk->n_resnets; j++)
        {
          if (skips->len == 0)
            {
              rv_cmd_failf (cmd, RV_ERROR_MODEL, "UNet: the up blocks take more skips "
                            "than the down blocks made");
              return NULL;
            }
          g_autoptr (RvTensor) skip = g_ptr_array_steal_index (skips, skips->len - 1);
          g_autoptr (RvTensor) cat = UNET_TENSOR (cmd, b, y->shape[1], y->shape[2],
                                                  y->shape[3] + skip->shape[3]);
          if (cat == NULL)
            return NULL;
          rv_op_concat (cmd, cat, y, skip, 3);
          g_clear_pointer (&y, rv_tensor_free);
          g_clear_pointer (&skip, rv_tensor_free);
          y = layer_forward (cmd, c, blk, j, cat, temb, ctx);
          if (y == NULL)
            return NULL;
        }
      if (blk->sampler != NULL)
        {
          RvTensor *up = resnet_forward (cmd, c, blk->sampler, y, temb);
          g_clear_pointer (&y, rv_tensor_free);
          if ((y = up) == NULL)
            return NULL;
        }
    }
  g_clear_pointer (&temb, rv_tensor_free);
  g_clear_pointer (&ctx, rv_tensor_free);

  /* out: conv_out (act (GN (y))) */
  g_autoptr (RvTensor) yn = UNET_TENSOR (cmd, b, h, w, c0);                     /* (B, H, W, C0) */
  RvTensor *out = yn ? UNET_TENSOR (cmd, b, h, w, c->out_channels) : NULL;     /* (B, H, W, out) */
  if (out == NULL)
    return NULL;
  RvNorm n = { .gamma = m->norm_out_w, .beta = m->norm_out_b, .act = c->act_fn };
  rv_op_group_norm (cmd, yn, y, c->norm_num_groups, c->norm_eps, &n);
  g_clear_pointer (&y, rv_tensor_free);
  RvConv2d pout = conv_same (c->conv_out_kernel);
  rv_op_conv2d (cmd, out, yn, m->conv_out_w, m->conv_out_b, &pout, NULL);
  return out;
}

/* ---- memory estimate ----
 * Replays the forward's allocations and frees (the same order as above) on a
 * counter. Allocations round up to 256 bytes as the device's do. */

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

static void
sim_resnet (Sim *s, const RvUNetConfig *c, const Resnet *r, gint64 b, gint64 *h, gint64 *w)
{
  gint64 hw = *h * *w;
  gint64 ho = r->resample == RESAMPLE_DOWN ? *h / 2 : r->resample == RESAMPLE_UP ? 2 * *h : *h;
  gint64 wo = r->resample == RESAMPLE_DOWN ? *w / 2 : r->resample == RESAMPLE_UP ? 2 * *w : *w;
  gint64 hwo = ho * wo, ci = r->cin, co = r->cout;
  gint64 hn = b * hw * ci, xr = 0;
  sim_alloc (s, hn);
  sim_group_norm (s, b, hw, ci);
  if (r->resample != RESAMPLE_NONE)
    {
      xr = b * hwo * ci;
      sim_alloc (s, xr);
      sim_alloc (s, xr);
      sim_free (s, hn);
      hn = xr;
    }
  sim_alloc (s, b * hwo * co);                 /* h1 */
  sim_alloc (s, b * temb_out (c, co));         /* time projection */
  sim_free (s, hn);
  sim_alloc (s, b * hwo * co);                 /* h2 */
  sim_group_norm (s, b, hwo, co);
  sim_free (s, b * hwo * co);
  sim_free (s, b * temb_out (c, co));
  if (ci != co)
    {
      sim_alloc (s, b * hwo * co);             /* shortcut */
      if (xr != 0)
        sim_free (s, xr);
      xr = 0;
    }
  sim_alloc (s, b * hwo * co);                 /* out */
  sim_free (s, b * hwo * co);                  /* h2 */
  if (ci != co)
    sim_free (s, b * hwo * co);
  if (xr != 0)
    sim_free (s, xr);
  if (r->out_scale != 1.0f)
    {
      sim_alloc (s, b * hwo * co);
      sim_free (s, b * hwo * co);
    }
  *h = ho;
  *w = wo;
}

static void
sim_attn (Sim *s, const Attn *a, gint64 b, gint64 hw, gint64 nt)
{
  gint64 x = b * hw * a->channels, xc = b * nt * a->channels;
  sim_alloc (s, x);                            /* t */
  sim_alloc (s, x);                            /* q */
  sim_alloc (s, xc);
  sim_alloc (s, xc);
  sim_group_norm (s, b, hw, a->channels);
  if (!a->only_cross)
    {
      sim_alloc (s, x);                        /* to_k (t), to_v (t) */
      sim_alloc (s, x);
      sim_free (s, x);                         /* t */
      sim_alloc (s, x + xc);                   /* k */
      sim_free (s, xc);
      sim_free (s, x);
      sim_alloc (s, x + xc);                   /* v */
      sim_free (s, xc);
      sim_free (s, x);
    }
  else
    sim_free (s, x);
  sim_alloc (s, x);                            /* o */
  sim_free (s, x);                             /* q */
  sim_free (s, a->only_cross ? xc : x + xc);
  sim_free (s, a->only_cross ? xc : x + xc);
  sim_alloc (s, x);                            /* out */
  sim_free (s, x);                             /* o */
}

/* Runs layer i (resnet + attention); leaves its output allocated. */
static void
sim_layer (Sim *s, const RvUNetConfig *c, const Block *blk, int i, gint64 b, gint64 nt,
           gint64 *h, gint64 *w)
{
  sim_resnet (s, c, &blk->resnets[i], b, h, w);
  if (blk->n_attns > 0)
    {
      gint64 x = b * *h * *w * blk->resnets[i].cout;
      sim_attn (s, &blk->attns[i], b, *h * *w, nt);
      sim_free (s, x);
    }
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
  g_autoptr (RvUNet) m = g_new0 (RvUNet, 1);
  m->cfg = *c;
  m->mid_scale = 1.0f;
  m->ctx_tokens = DEFAULT_CONTEXT_TOKENS;
  build_layout (m);

  Sim s = { 0 };
  gint64 b = batch, h = height, w = width, te = c->time_embedding_dim;
  gint64 nt = m->ctx_tokens, x = c->cross_attention_dim;
  /* conditioning: temb and ctx stay to the end */
  sim_alloc (&s, b * te);
  sim_alloc (&s, b * nt * x);
  GArray *skips = g_array_new (FALSE, FALSE, sizeof (gint64));
  gint64 cur = b * h * w * c->block_out_channels[0];
  sim_alloc (&s, cur);
  g_array_append_val (skips, cur);
  for (int i = 0; i < c->n_blocks; i++)
    {
      const Block *blk = &m->down[i];
      for (int j = 0; j < blk->n_resnets; j++)
        {
          sim_layer (&s, c, blk, j, b, nt, &h, &w);
          cur = b * h * w * blk->resnets[j].cout;
          g_array_append_val (skips, cur);
        }
      if (blk->sampler != NULL)
        {
          sim_resnet (&s, c, blk->sampler, b, &h, &w);
          cur = b * h * w * blk->sampler->cout;
          g_array_append_val (skips, cur);
        }
    }
  if (m->has_mid)
    {
      gint64 ch = m->mid.resnets[0].cout;
      sim_resnet (&s, c, &m->mid.resnets[0], b, &h, &w);
      sim_attn (&s, &m->mid.attns[0], b, h * w, nt);
      sim_free (&s, b * h * w * ch);
      sim_resnet (&s, c, &m->mid.resnets[1], b, &h, &w);
      sim_free (&s, b * h * w * ch);
      cur = b * h * w * ch;
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
          gint64 cat = cur + skip;
          sim_alloc (&s, cat);
          sim_free (&s, cur);
          sim_free (&s, skip);
          sim_layer (&s, c, blk, j, b, nt, &h, &w);
          sim_free (&s, cat);
          cur = b * h * w * blk->resnets[j].cout;
        }
      if (blk->sampler != NULL)
        {
          sim_resnet (&s, c, blk->sampler, b, &h, &w);
          sim_free (&s, cur);
          cur = b * h * w * blk->sampler->cout;
        }
    }
  sim_free (&s, b * te);
  sim_free (&s, b * nt * x);
  sim_alloc (&s, b * h * w * c->block_out_channels[0]);
  sim_alloc (&s, b * h * w * c->out_channels);
  sim_group_norm (&s, b, h * w, c->block_out_channels[0]);
  g_array_unref (skips);
  return s.peak;
}
