/* rv-config.c: components' config.json files read into typed structs, with
 * diffusers' and transformers' defaults (see rv-config.h for the rules). */
#include "config.h"

#include "rv-config.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---- config reading: sticky errors, one line per key ---- */

#define REQUIRED G_MININT

typedef struct {
  JsonObject *o;
  const char *origin;
  GError     *error;      /* the first failure */
} Cfg;

typedef struct {
  const char *name;
  int         value;
} EnumName;

static void
cfg_fail (Cfg *c, const char *key, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
cfg_fail (Cfg *c, const char *key, const char *fmt, ...)
{
  if (c->error != NULL)
    return;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (&c->error, RV_ERROR, RV_ERROR_MODEL, "%s: \"%s\" %s", c->origin, key,
               msg);
}

/* The member, NULL when absent; *is_null tells an explicit null apart. */
static JsonNode *
cfg_member (Cfg *c, const char *key, gboolean *is_null)
{
  JsonNode *n = c->o != NULL ? json_object_get_member (c->o, key) : NULL;
  *is_null = n != NULL && JSON_NODE_HOLDS_NULL (n);
  return *is_null ? NULL : n;
}

static gboolean
node_int (JsonNode *n, gint64 *out)
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    {
      *out = json_node_get_int (n);
      return TRUE;
    }
  if (t == G_TYPE_DOUBLE)   /* 1000.0 */
    {
      double d = json_node_get_double (n);
      if (d == floor (d) && fabs (d) < 9e15)
        {
          *out = (gint64) d;
          return TRUE;
        }
    }
  return FALSE;
}

static gboolean
node_double (JsonNode *n, double *out)
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64 || t == G_TYPE_DOUBLE)
    {
      *out = t == G_TYPE_INT64 ? (double) json_node_get_int (n) : json_node_get_double (n);
      return TRUE;
    }
  if (t == G_TYPE_STRING)   /* "inf", "-inf", "nan" as written for non-finite numbers */
    {
      const char *s = json_node_get_string (n);
      const char *p = s[0] == '-' || s[0] == '+' ? s + 1 : s;
      double sign = s[0] == '-' ? -1.0 : 1.0;
      if (g_ascii_strcasecmp (p, "inf") == 0 || g_ascii_strcasecmp (p, "infinity") == 0)
        *out = sign * INFINITY;
      else if (g_ascii_strcasecmp (p, "nan") == 0)
        *out = NAN;
      else
        return FALSE;
      return TRUE;
    }
  return FALSE;
}

#define RV_CONFIG_COUNT_MAX (1 << 24)

static int
int_value (Cfg *c, const char *key, JsonNode *n, int min)
{
  gint64 v;
  if (!node_int (n, &v))
    {
      cfg_fail (c, key, "must be an integer");
      return 0;
    }
  /* Counts, sizes and ids stay far below 2^24 in every real config; the
     ceiling keeps products such as 4 × block_out_channels[0] within int. */
  gint64 max = min >= 0 ? RV_CONFIG_COUNT_MAX : G_MAXINT32;
  if (v < min || v > max)
    {
      cfg_fail (c, key, "is %" G_GINT64_FORMAT ", outside %d to %" G_GINT64_FORMAT, v, min, max);
      return 0;
    }
  return (int) v;
}

/* An integer ≥ min; `def` when absent or null (REQUIRED: must be present). */
static int
cfg_int_min (Cfg *c, const char *key, int def, int min)
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  if (n == NULL)
    {
      if (def == REQUIRED)
        cfg_fail (c, key, is_null ? "must be an integer, not null" : "is required but missing");
      return def == REQUIRED ? 0 : def;
    }
  return int_value (c, key, n, min);
}

static int
cfg_int (Cfg *c, const char *key, int def)
{
  return cfg_int_min (c, key, def, G_MININT32);
}

/* A size: an integer ≥ 1. */
static int
cfg_size (Cfg *c, const char *key, int def)
{
  return cfg_int_min (c, key, def, 1);
}

static double
cfg_double (Cfg *c, const char *key, double def)
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  double v = def;
  if (n != NULL && !node_double (n, &v))
    cfg_fail (c, key, "must be a number");
  return v;
}

static gboolean
cfg_bool (Cfg *c, const char *key, gboolean def)
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  if (n == NULL)
    return def;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    {
      cfg_fail (c, key, "must be true or false");
      return def;
    }
  return json_node_get_boolean (n);
}

/* One of the names of `table`: `def` when absent, `null_value` when null. */
static int
cfg_enum (Cfg *c, const char *key, const EnumName *table, int def, int null_value)
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  if (n == NULL)
    return is_null ? null_value : def;
  const char *s = JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
                  ? json_node_get_string (n) : NULL;
  for (const EnumName *e = table; s != NULL && e->name != NULL; e++)
    if (strcmp (e->name, s) == 0)
      return e->value;
  g_autoptr (GString) names = g_string_new (NULL);
  for (const EnumName *e = table; e->name != NULL; e++)
    g_string_append_printf (names, "%s“%s”", e == table ? "" : ", ", e->name);
  if (s != NULL)
    cfg_fail (c, key, "is “%s”; supported: %s", s, names->str);
  else
    cfg_fail (c, key, "must be a string, one of %s", names->str);
  return def;
}

/* "none" for null and only value "value": a flag. */
static gboolean
cfg_flag (Cfg *c, const char *key, const char *value, gboolean def)
{
  const EnumName t[] = { { value, TRUE }, { NULL, 0 } };
  return cfg_enum (c, key, t, def, FALSE);
}

/* A string into a fixed buffer; def NULL = required. */
static void
cfg_name (Cfg *c, const char *key, JsonNode *n, char out[RV_BLOCK_NAME_MAX])
{
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      cfg_fail (c, key, "must hold strings");
      return;
    }
  const char *s = json_node_get_string (n);
  if (strlen (s) >= RV_BLOCK_NAME_MAX)
    {
      cfg_fail (c, key, "holds a name longer than %d characters", RV_BLOCK_NAME_MAX - 1);
      return;
    }
  g_strlcpy (out, s, RV_BLOCK_NAME_MAX);
}

/* A required list of 1..RV_MAX_BLOCKS elements; its length, 0 on error. */
static guint
cfg_list (Cfg *c, const char *key, JsonArray **out)
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    {
      cfg_fail (c, key, n == NULL && !is_null ? "is required but missing" : "must be a list");
      return 0;
    }
  *out = json_node_get_array (n);
  guint len = json_array_get_length (*out);
  if (len < 1 || len > RV_MAX_BLOCKS)
    {
      cfg_fail (c, key, "has %u entries; 1 to %d are supported", len, RV_MAX_BLOCKS);
      return 0;
    }
  return len;
}

static int
cfg_size_list (Cfg *c, const char *key, int out[RV_MAX_BLOCKS])
{
  JsonArray *a = NULL;
  guint len = cfg_list (c, key, &a);
  for (guint i = 0; i < len; i++)
    out[i] = int_value (c, key, json_array_get_element (a, i), 1);
  return (int) len;
}

static void
cfg_name_list (Cfg *c, const char *key, int expect, char out[][RV_BLOCK_NAME_MAX])
{
  JsonArray *a = NULL;
  guint len = cfg_list (c, key, &a);
  if (len != 0 && (int) len != expect)
    {
      cfg_fail (c, key, "has %u entries but block_out_channels has %d", len, expect);
      return;
    }
  for (guint i = 0; i < len; i++)
    cfg_name (c, key, json_array_get_element (a, i), out[i]);
}

/* An int (or bool, with is_bool) for every block, or a list of n of them. */
static void
cfg_per_block (Cfg *c, const char *key, int def, int min, gboolean is_bool, int n,
               int out[RV_MAX_BLOCKS])
{
  gboolean is_null;
  JsonNode *node = cfg_member (c, key, &is_null);
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    {
      int v = def;
      if (node != NULL && is_bool)
        v = cfg_bool (c, key, def);
      else if (node != NULL)
        v = int_value (c, key, node, min);
      for (int i = 0; i < n; i++)
        out[i] = v;
      return;
    }
  JsonArray *a = json_node_get_array (node);
  if ((int) json_array_get_length (a) != n)
    {
      cfg_fail (c, key, "has %u entries but there are %d blocks", json_array_get_length (a), n);
      return;
    }
  for (int i = 0; i < n; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (is_bool)
        {
          if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_BOOLEAN)
            cfg_fail (c, key, "must hold true or false");
          else
            out[i] = json_node_get_boolean (e);
        }
      else
        out[i] = JSON_NODE_HOLDS_NULL (e) ? def : int_value (c, key, e, min);
    }
}

static gboolean
cfg_done (Cfg *c, GError **error)
{
  if (c->error != NULL)
    {
      g_propagate_error (error, c->error);
      return FALSE;
    }
  return TRUE;
}

static const EnumName clip_acts[] = {
  { "gelu", RV_ACT_GELU }, { "quick_gelu", RV_ACT_QUICK_GELU }, { NULL, 0 },
};

static const EnumName diffusers_acts[] = {
  { "silu", RV_ACT_SILU }, { "swish", RV_ACT_SILU }, { "gelu", RV_ACT_GELU }, { NULL, 0 },
};

/* ---- transformers configs ---- */

/* The keys both CLIP towers have, with transformers' defaults. */
static void
cfg_clip_tower (Cfg *c, int *hidden, int *layers, int *heads, int *intermediate, RvAct *act,
                float *eps, int *projection)
{
  *hidden = cfg_size (c, "hidden_size", REQUIRED);
  *layers = cfg_size (c, "num_hidden_layers", REQUIRED);
  *heads = cfg_size (c, "num_attention_heads", REQUIRED);
  *intermediate = cfg_size (c, "intermediate_size", REQUIRED);
  *act = cfg_enum (c, "hidden_act", clip_acts, RV_ACT_QUICK_GELU, RV_ACT_QUICK_GELU);
  *eps = (float) cfg_double (c, "layer_norm_eps", 1e-5);
  *projection = cfg_size (c, "projection_dim", 512);
  if (c->error == NULL && *hidden % *heads != 0)
    cfg_fail (c, "hidden_size", "(%d) is not a multiple of num_attention_heads (%d)", *hidden,
              *heads);
}

gboolean
rv_clip_text_config_parse (JsonObject *o, const char *origin, RvClipTextConfig *t,
                           GError **error)
{
  Cfg c = { o, origin, NULL };
  memset (t, 0, sizeof *t);
  cfg_clip_tower (&c, &t->hidden_size, &t->num_hidden_layers, &t->num_attention_heads,
                  &t->intermediate_size, &t->hidden_act, &t->layer_norm_eps, &t->projection_dim);
  t->vocab_size = cfg_size (&c, "vocab_size", 49408);
  t->max_position_embeddings = cfg_size (&c, "max_position_embeddings", 77);
  t->bos_token_id = cfg_int_min (&c, "bos_token_id", 49406, 0);
  t->eos_token_id = cfg_int_min (&c, "eos_token_id", 49407, 0);
  t->pad_token_id = cfg_int_min (&c, "pad_token_id", 1, 0);
  return cfg_done (&c, error);
}

gboolean
rv_clip_vision_config_parse (JsonObject *o, const char *origin, RvClipVisionConfig *v,
                             GError **error)
{
  Cfg c = { o, origin, NULL };
  memset (v, 0, sizeof *v);
  cfg_clip_tower (&c, &v->hidden_size, &v->num_hidden_layers, &v->num_attention_heads,
                  &v->intermediate_size, &v->hidden_act, &v->layer_norm_eps, &v->projection_dim);
  v->image_size = cfg_size (&c, "image_size", REQUIRED);
  v->patch_size = cfg_size (&c, "patch_size", REQUIRED);
  v->num_channels = cfg_size (&c, "num_channels", 3);
  if (c.error == NULL && v->image_size % v->patch_size != 0)
    cfg_fail (&c, "image_size", "(%d) is not a multiple of patch_size (%d)", v->image_size,
              v->patch_size);
  return cfg_done (&c, error);
}

/* size / crop_size: an int, {"shortest_edge": n} or {"height": h, "width": w} */
static void
cfg_image_size (Cfg *c, const char *key, int *shortest, int *h, int *w)
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  if (n == NULL)
    return;
  if (JSON_NODE_HOLDS_OBJECT (n))
    {
      Cfg sub = { json_node_get_object (n), c->origin, NULL };
      if (shortest != NULL && json_object_has_member (sub.o, "shortest_edge"))
        {
          *shortest = cfg_size (&sub, "shortest_edge", REQUIRED);
          *h = *w = 0;
        }
      else
        {
          *h = cfg_size (&sub, "height", REQUIRED);
          *w = cfg_size (&sub, "width", REQUIRED);
          if (shortest != NULL)
            *shortest = 0;
        }
      if (sub.error != NULL)
        {
          cfg_fail (c, key, "must be an integer, {\"shortest_edge\": n} or {\"height\": h, "
                    "\"width\": w}");
          g_error_free (sub.error);
        }
      return;
    }
  int v = int_value (c, key, n, 1);
  if (shortest != NULL)   /* CLIP: an int is the shortest edge */
    {
      *shortest = v;
      *h = *w = 0;
    }
  else
    *h = *w = v;
}

static void
cfg_channels (Cfg *c, const char *key, const float def[3], float out[3])
{
  gboolean is_null;
  JsonNode *n = cfg_member (c, key, &is_null);
  memcpy (out, def, 3 * sizeof (float));
  if (n == NULL)
    return;
  double v;
  if (node_double (n, &v))   /* one value for all channels */
    {
      out[0] = out[1] = out[2] = (float) v;
      return;
    }
  JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  guint len = a != NULL ? json_array_get_length (a) : 0;
  if (len != 3 && len != 1)
    {
      cfg_fail (c, key, "must be a list of 3 numbers");
      return;
    }
  for (guint i = 0; i < 3; i++)
    if (!node_double (json_array_get_element (a, len == 1 ? 0 : i), &v))
      cfg_fail (c, key, "must be a list of 3 numbers");
    else
      out[i] = (float) v;
}

gboolean
rv_image_processor_config_parse (JsonObject *o, const char *origin, RvImageProcessorConfig *p,
                                 GError **error)
{
  static const float clip_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
  static const float clip_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };
  Cfg c = { o, origin, NULL };
  memset (p, 0, sizeof *p);
  p->do_resize = cfg_bool (&c, "do_resize", TRUE);
  p->shortest_edge = 224;
  cfg_image_size (&c, "size", &p->shortest_edge, &p->resize_height, &p->resize_width);
  p->resample = cfg_int_min (&c, "resample", RV_RESAMPLE_BICUBIC, 0);
  if (p->resample > RV_RESAMPLE_HAMMING)
    cfg_fail (&c, "resample", "is %d, not a PIL resampling filter (0 to 5)", p->resample);
  p->do_center_crop = cfg_bool (&c, "do_center_crop", TRUE);
  p->crop_height = p->crop_width = 224;
  cfg_image_size (&c, "crop_size", NULL, &p->crop_height, &p->crop_width);
  p->do_rescale = cfg_bool (&c, "do_rescale", TRUE);
  p->rescale_factor = cfg_double (&c, "rescale_factor", 1.0 / 255.0);
  p->do_normalize = cfg_bool (&c, "do_normalize", TRUE);
  cfg_channels (&c, "image_mean", clip_mean, p->image_mean);
  cfg_channels (&c, "image_std", clip_std, p->image_std);
  for (int i = 0; i < 3 && p->do_normalize; i++)
    if (!(p->image_std[i] != 0.0f))
      cfg_fail (&c, "image_std", "must not be zero");
  p->do_convert_rgb = cfg_bool (&c, "do_convert_rgb", TRUE);
  return cfg_done (&c, error);
}

/* ---- diffusers configs ---- */

gboolean
rv_prior_config_parse (JsonObject *o, const char *origin, RvPriorConfig *p, GError **error)
{
  Cfg c = { o, origin, NULL };
  memset (p, 0, sizeof *p);
  p->num_attention_heads = cfg_size (&c, "num_attention_heads", REQUIRED);
  p->attention_head_dim = cfg_size (&c, "attention_head_dim", REQUIRED);
  p->num_layers = cfg_size (&c, "num_layers", REQUIRED);
  p->embedding_dim = cfg_size (&c, "embedding_dim", REQUIRED);
  p->num_embeddings = cfg_size (&c, "num_embeddings", 77);
  p->additional_embeddings = cfg_int_min (&c, "additional_embeddings", 4, 0);
  int inner = p->num_attention_heads * p->attention_head_dim;
  p->time_embed_dim = cfg_size (&c, "time_embed_dim", inner);
  p->embedding_proj_dim = cfg_size (&c, "embedding_proj_dim", p->embedding_dim);
  p->clip_embed_dim = cfg_size (&c, "clip_embed_dim", p->embedding_dim);
  p->time_embed_act_fn = cfg_enum (&c, "time_embed_act_fn", diffusers_acts, RV_ACT_SILU,
                                   RV_ACT_SILU);
  p->norm_in = cfg_flag (&c, "norm_in_type", "layer", FALSE);
  p->embedding_proj_norm = cfg_flag (&c, "embedding_proj_norm_type", "layer", FALSE);
  p->encoder_hid_proj = cfg_flag (&c, "encoder_hid_proj_type", "linear", TRUE);
  p->added_prd = cfg_flag (&c, "added_emb_type", "prd", TRUE);
  return cfg_done (&c, error);
}

gboolean
rv_unet_config_parse (JsonObject *o, const char *origin, RvUNetConfig *u, GError **error)
{
  static const EnumName hid_types[] = {
    { "text_proj", RV_HID_PROJ_TEXT }, { "text_image_proj", RV_HID_PROJ_TEXT_IMAGE },
    { "image_proj", RV_HID_PROJ_IMAGE }, { "ip_image_proj", RV_HID_PROJ_IP_IMAGE }, { NULL, 0 },
  };
  static const EnumName add_types[] = {
    { "text", RV_ADD_EMBED_TEXT }, { "text_image", RV_ADD_EMBED_TEXT_IMAGE },
    { "text_time", RV_ADD_EMBED_TEXT_TIME }, { "image", RV_ADD_EMBED_IMAGE },
    { "image_hint", RV_ADD_EMBED_IMAGE_HINT }, { NULL, 0 },
  };
  static const EnumName class_types[] = {
    { "timestep", RV_CLASS_EMBED_TIMESTEP }, { "identity", RV_CLASS_EMBED_IDENTITY },
    { "projection", RV_CLASS_EMBED_PROJECTION },
    { "simple_projection", RV_CLASS_EMBED_SIMPLE_PROJECTION }, { NULL, 0 },
  };
  static const EnumName shifts[] = {
    { "default", RV_TIME_SHIFT_DEFAULT }, { "scale_shift", RV_TIME_SHIFT_SCALE_SHIFT },
    { NULL, 0 },
  };
  static const EnumName positional[] = { { "positional", 0 }, { NULL, 0 } };
  Cfg c = { o, origin, NULL };
  memset (u, 0, sizeof *u);

  u->in_channels = cfg_size (&c, "in_channels", REQUIRED);
  u->out_channels = cfg_size (&c, "out_channels", REQUIRED);
  int n = u->n_blocks = cfg_size_list (&c, "block_out_channels", u->block_out_channels);
  cfg_name_list (&c, "down_block_types", n, u->down_block_types);
  cfg_name_list (&c, "up_block_types", n, u->up_block_types);
  gboolean is_null;
  JsonNode *mid = cfg_member (&c, "mid_block_type", &is_null);
  if (mid != NULL)
    cfg_name (&c, "mid_block_type", mid, u->mid_block_type);
  else if (!is_null)
    g_strlcpy (u->mid_block_type, "UNetMidBlock2DCrossAttn", RV_BLOCK_NAME_MAX);
  if (c.error == NULL && cfg_member (&c, "layers_per_block", &is_null) == NULL)
    cfg_fail (&c, "layers_per_block", "is required but missing");
  cfg_per_block (&c, "layers_per_block", 2, 1, FALSE, n, u->layers_per_block);
  cfg_per_block (&c, "attention_head_dim", 8, 1, FALSE, n, u->attention_head_dim);
  cfg_per_block (&c, "num_attention_heads", 0, 1, FALSE, n, u->num_attention_heads);
  for (int i = 0; i < n; i++)   /* null entries: as attention_head_dim */
    if (u->num_attention_heads[i] == 0)
      u->num_attention_heads[i] = u->attention_head_dim[i];
  cfg_per_block (&c, "transformer_layers_per_block", 1, 1, FALSE, n,
                 u->transformer_layers_per_block);
  JsonNode *oca = cfg_member (&c, "only_cross_attention", &is_null);
  gboolean oca_bool = oca != NULL && !JSON_NODE_HOLDS_ARRAY (oca) && cfg_bool (&c, "only_cross_attention", FALSE);
  cfg_per_block (&c, "only_cross_attention", FALSE, 0, TRUE, n, u->only_cross_attention);
  /* null: the bool only_cross_attention, or false when that is a list */
  u->mid_block_only_cross_attention = cfg_bool (&c, "mid_block_only_cross_attention", oca_bool);
  u->cross_attention_dim = cfg_size (&c, "cross_attention_dim", 1280);
  u->encoder_hid_dim = cfg_size (&c, "encoder_hid_dim", 0);
  u->encoder_hid_dim_type = cfg_enum (&c, "encoder_hid_dim_type", hid_types,
                                      RV_HID_PROJ_NONE, RV_HID_PROJ_NONE);
  if (u->encoder_hid_dim_type == RV_HID_PROJ_NONE && u->encoder_hid_dim > 0)
    u->encoder_hid_dim_type = RV_HID_PROJ_TEXT;   /* as diffusers */
  u->addition_embed_type = cfg_enum (&c, "addition_embed_type", add_types, RV_ADD_EMBED_NONE,
                                     RV_ADD_EMBED_NONE);
  u->addition_embed_type_num_heads = cfg_size (&c, "addition_embed_type_num_heads", 64);
  u->class_embed_type = cfg_enum (&c, "class_embed_type", class_types, RV_CLASS_EMBED_NONE,
                                  RV_CLASS_EMBED_NONE);
  u->resnet_time_scale_shift = cfg_enum (&c, "resnet_time_scale_shift", shifts,
                                         RV_TIME_SHIFT_DEFAULT, RV_TIME_SHIFT_DEFAULT);
  u->act_fn = cfg_enum (&c, "act_fn", diffusers_acts, RV_ACT_SILU, RV_ACT_SILU);
  u->norm_num_groups = cfg_size (&c, "norm_num_groups", 32);
  u->norm_eps = (float) cfg_double (&c, "norm_eps", 1e-5);
  u->flip_sin_to_cos = cfg_bool (&c, "flip_sin_to_cos", TRUE);
  u->freq_shift = cfg_int (&c, "freq_shift", 0);
  cfg_enum (&c, "time_embedding_type", positional, 0, 0);
  u->time_embedding_dim = cfg_size (&c, "time_embedding_dim",
                                    n > 0 ? 4 * u->block_out_channels[0] : 0);
  u->time_embedding_act_fn = cfg_enum (&c, "time_embedding_act_fn", diffusers_acts,
                                       RV_ACT_NONE, RV_ACT_NONE);
  u->resnet_skip_time_act = cfg_bool (&c, "resnet_skip_time_act", FALSE);
  u->resnet_out_scale_factor = (float) cfg_double (&c, "resnet_out_scale_factor", 1.0);
  u->conv_in_kernel = cfg_size (&c, "conv_in_kernel", 3);
  u->conv_out_kernel = cfg_size (&c, "conv_out_kernel", 3);
  u->upcast_attention = cfg_bool (&c, "upcast_attention", FALSE);
  return cfg_done (&c, error);
}

gboolean
rv_vq_config_parse (JsonObject *o, const char *origin, RvVQConfig *v, GError **error)
{
  static const EnumName norms[] = { { "group", FALSE }, { "spatial", TRUE }, { NULL, 0 } };
  Cfg c = { o, origin, NULL };
  memset (v, 0, sizeof *v);
  v->in_channels = cfg_size (&c, "in_channels", 3);
  v->out_channels = cfg_size (&c, "out_channels", 3);
  int n = v->n_blocks = cfg_size_list (&c, "block_out_channels", v->block_out_channels);
  cfg_name_list (&c, "down_block_types", n, v->down_block_types);
  cfg_name_list (&c, "up_block_types", n, v->up_block_types);
  v->layers_per_block = cfg_size (&c, "layers_per_block", 1);
  v->act_fn = cfg_enum (&c, "act_fn", diffusers_acts, RV_ACT_SILU, RV_ACT_SILU);
  v->latent_channels = cfg_size (&c, "latent_channels", REQUIRED);
  v->num_vq_embeddings = cfg_size (&c, "num_vq_embeddings", 256);
  v->vq_embed_dim = cfg_size (&c, "vq_embed_dim", v->latent_channels);
  v->norm_num_groups = cfg_size (&c, "norm_num_groups", 32);
  v->norm_spatial = cfg_enum (&c, "norm_type", norms, FALSE, FALSE);
  v->mid_block_add_attention = cfg_bool (&c, "mid_block_add_attention", TRUE);
  v->lookup_from_codebook = cfg_bool (&c, "lookup_from_codebook", FALSE);
  v->scaling_factor = (float) cfg_double (&c, "scaling_factor", 0.18215);
  return cfg_done (&c, error);
}

static const EnumName scheduler_classes[] = {
  { "DDPMScheduler", RV_SCHEDULER_DDPM },
  { "DDIMScheduler", RV_SCHEDULER_DDIM },
  { "UnCLIPScheduler", RV_SCHEDULER_UNCLIP },
  { "DPMSolverMultistepScheduler", RV_SCHEDULER_DPM_MULTISTEP },
  { NULL, 0 },
};

const char *
rv_scheduler_kind_name (RvSchedulerKind kind)
{
  for (const EnumName *e = scheduler_classes; e->name != NULL; e++)
    if (e->value == (int) kind)
      return e->name;
  return "unknown scheduler";
}

gboolean
rv_scheduler_config_parse (JsonObject *o, const char *origin, int kind, RvSchedulerConfig *s,
                           GError **error)
{
  static const EnumName betas[] = {
    { "linear", RV_BETAS_LINEAR }, { "scaled_linear", RV_BETAS_SCALED_LINEAR },
    { "squaredcos_cap_v2", RV_BETAS_SQUAREDCOS_CAP_V2 }, { NULL, 0 },
  };
  static const EnumName predictions[] = {
    { "epsilon", RV_PREDICT_EPSILON }, { "sample", RV_PREDICT_SAMPLE },
    { "v_prediction", RV_PREDICT_V }, { NULL, 0 },
  };
  static const EnumName variances[] = {
    { "fixed_small", RV_VARIANCE_FIXED_SMALL }, { "fixed_small_log", RV_VARIANCE_FIXED_SMALL_LOG },
    { "fixed_large", RV_VARIANCE_FIXED_LARGE }, { "fixed_large_log", RV_VARIANCE_FIXED_LARGE_LOG },
    { "learned", RV_VARIANCE_LEARNED }, { "learned_range", RV_VARIANCE_LEARNED_RANGE },
    { NULL, 0 },
  };
  static const EnumName spacings[] = {
    { "leading", RV_SPACING_LEADING }, { "trailing", RV_SPACING_TRAILING },
    { "linspace", RV_SPACING_LINSPACE }, { NULL, 0 },
  };
  static const EnumName algorithms[] = {
    { "dpmsolver++", RV_DPM_DPMSOLVER_PP }, { "sde-dpmsolver++", RV_DPM_SDE_DPMSOLVER_PP },
    { "dpmsolver", RV_DPM_DPMSOLVER }, { "sde-dpmsolver", RV_DPM_SDE_DPMSOLVER }, { NULL, 0 },
  };
  static const EnumName solvers[] = {
    { "midpoint", RV_DPM_SOLVER_MIDPOINT }, { "heun", RV_DPM_SOLVER_HEUN }, { NULL, 0 },
  };
  static const EnumName finals[] = {
    { "zero", RV_FINAL_SIGMA_ZERO }, { "sigma_min", RV_FINAL_SIGMA_MIN }, { NULL, 0 },
  };
  g_return_val_if_fail (kind <= RV_SCHEDULER_DPM_MULTISTEP, FALSE);
  Cfg c = { o, origin, NULL };
  memset (s, 0, sizeof *s);
  if (kind < 0)
    {
      gboolean is_null;
      if (cfg_member (&c, "_class_name", &is_null) == NULL)
        cfg_fail (&c, "_class_name", "is missing: which scheduler is this?");
      kind = cfg_enum (&c, "_class_name", scheduler_classes, 0, 0);
    }
  s->kind = kind;
  gboolean unclip = kind == RV_SCHEDULER_UNCLIP, dpm = kind == RV_SCHEDULER_DPM_MULTISTEP;

  s->num_train_timesteps = cfg_size (&c, "num_train_timesteps", 1000);
  s->beta_start = cfg_double (&c, "beta_start", 0.0001);
  s->beta_end = cfg_double (&c, "beta_end", 0.02);
  s->beta_schedule = cfg_enum (&c, "beta_schedule", betas,
                               unclip ? RV_BETAS_SQUAREDCOS_CAP_V2 : RV_BETAS_LINEAR,
                               RV_BETAS_LINEAR);
  gboolean is_null;
  if (cfg_member (&c, "trained_betas", &is_null) != NULL)
    cfg_fail (&c, "trained_betas", "is given: explicit beta tables are not supported");
  s->prediction_type = cfg_enum (&c, "prediction_type", predictions, RV_PREDICT_EPSILON,
                                 RV_PREDICT_EPSILON);
  s->variance_type = cfg_enum (&c, "variance_type", variances,
                               unclip ? RV_VARIANCE_FIXED_SMALL_LOG
                               : dpm ? RV_VARIANCE_NONE : RV_VARIANCE_FIXED_SMALL,
                               RV_VARIANCE_NONE);
  s->clip_sample = cfg_bool (&c, "clip_sample", !dpm);
  s->clip_sample_range = cfg_double (&c, "clip_sample_range", 1.0);
  s->thresholding = cfg_bool (&c, "thresholding", FALSE);
  s->dynamic_thresholding_ratio = cfg_double (&c, "dynamic_thresholding_ratio", 0.995);
  s->sample_max_value = cfg_double (&c, "sample_max_value", 1.0);
  s->timestep_spacing = cfg_enum (&c, "timestep_spacing", spacings,
                                  dpm ? RV_SPACING_LINSPACE : RV_SPACING_LEADING,
                                  dpm ? RV_SPACING_LINSPACE : RV_SPACING_LEADING);
  s->steps_offset = cfg_int_min (&c, "steps_offset", 0, 0);
  s->rescale_betas_zero_snr = cfg_bool (&c, "rescale_betas_zero_snr", FALSE);
  s->set_alpha_to_one = cfg_bool (&c, "set_alpha_to_one", TRUE);
  s->solver_order = cfg_size (&c, "solver_order", 2);
  s->algorithm_type = cfg_enum (&c, "algorithm_type", algorithms, RV_DPM_DPMSOLVER_PP,
                                RV_DPM_DPMSOLVER_PP);
  s->solver_type = cfg_enum (&c, "solver_type", solvers, RV_DPM_SOLVER_MIDPOINT,
                             RV_DPM_SOLVER_MIDPOINT);
  s->lower_order_final = cfg_bool (&c, "lower_order_final", TRUE);
  s->euler_at_final = cfg_bool (&c, "euler_at_final", FALSE);
  s->use_karras_sigmas = cfg_bool (&c, "use_karras_sigmas", FALSE);
  s->use_exponential_sigmas = cfg_bool (&c, "use_exponential_sigmas", FALSE);
  s->use_beta_sigmas = cfg_bool (&c, "use_beta_sigmas", FALSE);
  s->use_lu_lambdas = cfg_bool (&c, "use_lu_lambdas", FALSE);
  s->final_sigmas_type = cfg_enum (&c, "final_sigmas_type", finals, RV_FINAL_SIGMA_ZERO,
                                   RV_FINAL_SIGMA_ZERO);
  s->lambda_min_clipped = cfg_double (&c, "lambda_min_clipped", -INFINITY);
  if (c.error == NULL && s->beta_schedule != RV_BETAS_SQUAREDCOS_CAP_V2
      && !(s->beta_start > 0 && s->beta_end >= s->beta_start && s->beta_end < 1))
    cfg_fail (&c, "beta_start", "and beta_end must satisfy 0 < beta_start ≤ beta_end < 1");
  return cfg_done (&c, error);
}

/* ---- loading configs from folders ---- */

static JsonObject *
load_config (const char *dir, const char *file, char **path, JsonNode **root, GError **error)
{
  *path = g_build_filename (dir, file, NULL);
  *root = rv_json_load_object (*path, error);
  return *root != NULL ? json_node_get_object (*root) : NULL;
}

#define DEFINE_LOAD(type, prefix, file)                                                      \
  gboolean                                                                                   \
  prefix##_load (const char *dir, type *c, GError **error)                                    \
  {                                                                                          \
    g_autofree char *path = NULL;                                                            \
    g_autoptr (JsonNode) root = NULL;                                                        \
    JsonObject *o = load_config (dir, file, &path, &root, error);                            \
    return o != NULL && prefix##_parse (o, path, c, error);                                  \
  }

DEFINE_LOAD (RvClipTextConfig, rv_clip_text_config, "config.json")
DEFINE_LOAD (RvClipVisionConfig, rv_clip_vision_config, "config.json")
DEFINE_LOAD (RvImageProcessorConfig, rv_image_processor_config, "preprocessor_config.json")
DEFINE_LOAD (RvPriorConfig, rv_prior_config, "config.json")
DEFINE_LOAD (RvUNetConfig, rv_unet_config, "config.json")
DEFINE_LOAD (RvVQConfig, rv_vq_config, "config.json")

gboolean
rv_scheduler_config_load (const char *dir, int kind, RvSchedulerConfig *c, GError **error)
{
  g_autofree char *path = NULL;
  g_autoptr (JsonNode) root = NULL;
  JsonObject *o = load_config (dir, "scheduler_config.json", &path, &root, error);
  return o != NULL && rv_scheduler_config_parse (o, path, kind, c, error);
}
