/* rv-clip.c: the CLIP text and vision towers with their projections
 * (docs/model-spec.md §4–5), as transformers' CLIP*ModelWithProjection computes them. */
#include "rv-clip.h"

#include <math.h>
#include <string.h>

/* transformers takes eos_token_id 2 as the mark of configs written before
 * the id was set right, and pools their rows at the largest token id, which
 * is the first <|endoftext|> (docs/model-spec.md §4). */
#define LEGACY_EOS_TOKEN_ID 2

static const RvPreLNNames clip_layer_names = {
  "layer_norm1", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
  "self_attn.out_proj", "layer_norm2", "mlp.fc1", "mlp.fc2",
};

/* The layer stack of a CLIP tower, checked against its config. */
static gboolean
clip_stack (RvPreLNStack *s, const char *prefix, int hidden, int layers, int heads, int mlp,
            RvAct act, float eps, const char *dir, GError **error)
{
  *s = (RvPreLNStack) { prefix, &clip_layer_names, layers, hidden, heads, mlp, act, eps };
  if (hidden % heads != 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s/config.json: hidden_size %d does not split into %d attention heads",
                   dir, hidden, heads);
      return FALSE;
    }
  return TRUE;
}

/* ---- text ---- */

struct _RvClipText {
  RvClipTextConfig  cfg;
  RvPreLNStack      stack;
  /* The token table stays in the (mapped) file: a forward reads only the
   * rows it needs, and the real table (253 MB) never goes to the device. */
  RvWeights        *weights;
  const RvStTensor *token_embedding;       /* (vocab, C) */
  float            *position_embedding;    /* host (positions, C) */
  RvPreLNLayer     *layers;
  RvTensor         *final_ln_w, *final_ln_b;
  RvTensor         *projection;            /* (C, P) */
};

#define TEXT "text_model"

enum { S_C = -1, S_VOCAB = -2, S_POS = -3, S_PROJ = -4, S_PATCH = -5, S_CHANNELS = -6,
       S_GRID = -7 };

static const RvWeightSpec text_weights[] = {
  RV_WEIGHT (RvClipText, token_embedding,    TEXT ".embeddings.token_embedding.weight",
             RV_WEIGHT_MAPPED, 0, S_VOCAB, S_C),
  RV_WEIGHT (RvClipText, position_embedding, TEXT ".embeddings.position_embedding.weight",
             RV_WEIGHT_HOST, 0, S_POS, S_C),
  RV_WEIGHT (RvClipText, final_ln_w, TEXT ".final_layer_norm.weight", RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvClipText, final_ln_b, TEXT ".final_layer_norm.bias",   RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvClipText, projection, "text_projection.weight", RV_WEIGHT_LINEAR, 0, S_PROJ, S_C),
};

static void
walk_text (RvWeightWalk *w, gpointer net)
{
  RvClipText *t = net;
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_C] = t->cfg.hidden_size;
  sizes[-S_VOCAB] = t->cfg.vocab_size;
  sizes[-S_POS] = t->cfg.max_position_embeddings;
  sizes[-S_PROJ] = t->cfg.projection_dim;
  RV_WEIGHTS_WALK (w, t, "", text_weights, 0, sizes);
  rv_pre_ln_walk (w, &t->stack, t->layers);
}

RvClipText *
rv_clip_text_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error)
{
  RvClipTextConfig cfg;
  if (!rv_clip_text_config_load (dir, &cfg, error))
    return NULL;
  RvPreLNStack stack;
  if (!clip_stack (&stack, TEXT ".encoder.layers", cfg.hidden_size, cfg.num_hidden_layers,
                   cfg.num_attention_heads, cfg.intermediate_size, cfg.hidden_act,
                   cfg.layer_norm_eps, dir, error))
    return NULL;
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;

  RvClipText *t = g_new0 (RvClipText, 1);
  t->cfg = cfg;
  t->stack = stack;
  t->layers = g_new0 (RvPreLNLayer, stack.layers);
  if (!rv_weights_load_walk (cmd, weights, policy, walk_text, t, NULL, error))
    {
      rv_clip_text_free (t);
      return NULL;
    }
  /* the token table is read from the mapped file by each forward */
  t->weights = g_steal_pointer (&weights);
  return t;
}

void
rv_clip_text_free (RvClipText *t)
{
  if (t == NULL)
    return;
  rv_weights_clear_walk (walk_text, t);
  g_free (t->layers);
  g_clear_pointer (&t->weights, rv_weights_free);
  g_free (t);
}

const RvClipTextConfig *
rv_clip_text_config (RvClipText *t)
{
  return &t->cfg;
}

/* x (B·L, C) = token_embedding[ids] + position_embedding[0..L) on the host,
 * reading each row from the file. */
static float *
embed_tokens (RvClipText *t, RvCmd *cmd, const gint32 *ids, int batch, int len)
{
  gint64 c = t->cfg.hidden_size;
  g_autofree float *x = g_new (float, (gsize) batch * len * c);
  gsize itemsize = rv_st_dtype_size (t->token_embedding->dtype);
  for (gint64 i = 0; i < (gint64) batch * len; i++)
    {
      if (ids[i] < 0 || ids[i] >= t->cfg.vocab_size)
        {
          rv_cmd_failf (cmd, RV_ERROR_INVALID,
                        "CLIP text encoder: token id %d is outside the vocabulary (%d tokens)",
                        ids[i], t->cfg.vocab_size);
          return NULL;
        }
      RvStTensor row = *t->token_embedding;
      row.ndim = 1;
      row.shape[0] = row.numel = c;
      row.nbytes = c * itemsize;
      row.data += (gsize) ids[i] * row.nbytes;
      GError *error = NULL;
      g_autofree float *e = rv_st_tensor_to_f32 (&row, &error);
      if (e == NULL)
        {
          rv_cmd_fail (cmd, error);
          return NULL;
        }
      const float *p = t->position_embedding + (i % len) * c;
      for (gint64 j = 0; j < c; j++)
        x[i * c + j] = e[j] + p[j];
    }
  return g_steal_pointer (&x);
}

gboolean
rv_clip_text_forward (RvClipText *t, RvCmd *cmd, const gint32 *ids, int batch, int len,
                      RvTensor **last_hidden_state, RvTensor **text_embeds)
{
  if (last_hidden_state != NULL)
    *last_hidden_state = NULL;
  if (text_embeds != NULL)
    *text_embeds = NULL;
  if (rv_cmd_failed (cmd))
    return FALSE;
  if (batch < 1 || len < 1 || len > t->cfg.max_position_embeddings)
    {
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "CLIP text encoder: %d × %d token ids; the model takes 1 to %d per row",
                    batch, len, t->cfg.max_position_embeddings);
      return FALSE;
    }
  gint64 c = t->cfg.hidden_size;

  /* 1. token + position embeddings */
  g_autofree float *emb = embed_tokens (t, cmd, ids, batch, len);
  RvTensor *x = emb ? RV_NET_TENSOR (cmd, batch, len, c) : NULL;    /* (B, L, C) */
  if (x == NULL)
    return FALSE;
  rv_cmd_upload (cmd, x, emb, (gsize) batch * len * c * sizeof (float));

  /* 2. pre-LN layers, causal mask only */
  x = rv_pre_ln_forward (cmd, &t->stack, t->layers, x, NULL, TRUE);
  if (x == NULL)
    return FALSE;

  /* 3. final layer norm */
  RvTensor *last = RV_NET_TENSOR (cmd, batch, len, c);              /* (B, L, C) */
  if (last != NULL)
    rv_op_layer_norm (cmd, last, x, t->final_ln_w, t->final_ln_b, t->cfg.layer_norm_eps);
  rv_tensor_free (x);
  if (last == NULL)
    return FALSE;

  /* 4. pooled row: the first eos, found as transformers does */
  if (text_embeds != NULL)
    {
      g_autofree gint64 *pool = g_new0 (gint64, batch);
      for (int b = 0; b < batch; b++)
        {
          const gint32 *row = ids + (gsize) b * len;
          for (int i = 1; i < len; i++)
            if (t->cfg.eos_token_id == LEGACY_EOS_TOKEN_ID
                  ? row[i] > row[pool[b]]
                  : row[i] == t->cfg.eos_token_id && row[pool[b]] != t->cfg.eos_token_id)
              pool[b] = i;
        }
      RvTensor *pooled = RV_NET_TENSOR (cmd, batch, c);             /* (B, C) */
      RvTensor *embeds = RV_NET_TENSOR (cmd, batch, t->cfg.projection_dim); /* (B, P) */
      if (pooled != NULL && embeds != NULL)
        {
          rv_token_rows (cmd, pooled, last, pool);
          rv_op_linear (cmd, embeds, pooled, t->projection, NULL, RV_ACT_NONE, NULL);
        }
      rv_tensor_free (pooled);
      *text_embeds = embeds;
    }

  if (last_hidden_state != NULL)
    *last_hidden_state = last;
  else
    rv_tensor_free (last);
  if (rv_cmd_failed (cmd))
    {
      if (last_hidden_state != NULL)
        g_clear_pointer (last_hidden_state, rv_tensor_free);
      if (text_embeds != NULL)
        g_clear_pointer (text_embeds, rv_tensor_free);
      return FALSE;
    }
  return TRUE;
}

/* ---- vision ---- */

struct _RvClipVision {
  RvClipVisionConfig cfg;
  RvPreLNStack       stack;
  int                grid;                 /* patches per side */
  float             *class_embedding;      /* host (C) */
  RvTensor          *patch_w;              /* (p, p, Cin, C) */
  RvTensor          *position_embedding;   /* (1 + grid², C) */
  RvTensor          *pre_ln_w, *pre_ln_b;
  RvPreLNLayer      *layers;
  RvTensor          *post_ln_w, *post_ln_b;
  RvTensor          *projection;           /* (C, P) */
};

#define VISION "vision_model"

static const RvWeightSpec vision_weights[] = {
  RV_WEIGHT (RvClipVision, class_embedding,    VISION ".embeddings.class_embedding",
             RV_WEIGHT_HOST, 0, S_C),
  RV_WEIGHT (RvClipVision, patch_w,            VISION ".embeddings.patch_embedding.weight",
             RV_WEIGHT_CONV, 0, S_C, S_CHANNELS, S_PATCH, S_PATCH),
  RV_WEIGHT (RvClipVision, position_embedding, VISION ".embeddings.position_embedding.weight",
             RV_WEIGHT_PLAIN, 0, S_GRID, S_C),
  RV_WEIGHT (RvClipVision, pre_ln_w,  VISION ".pre_layrnorm.weight",   RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvClipVision, pre_ln_b,  VISION ".pre_layrnorm.bias",     RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvClipVision, post_ln_w, VISION ".post_layernorm.weight", RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvClipVision, post_ln_b, VISION ".post_layernorm.bias",   RV_WEIGHT_PLAIN, 0, S_C),
  RV_WEIGHT (RvClipVision, projection, "visual_projection.weight", RV_WEIGHT_LINEAR, 0,
             S_PROJ, S_C),
};

static void
walk_vision (RvWeightWalk *w, gpointer net)
{
  RvClipVision *v = net;
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_C] = v->cfg.hidden_size;
  sizes[-S_CHANNELS] = v->cfg.num_channels;
  sizes[-S_PATCH] = v->cfg.patch_size;
  sizes[-S_GRID] = (gint64) v->grid * v->grid + 1;
  sizes[-S_PROJ] = v->cfg.projection_dim;
  RV_WEIGHTS_WALK (w, v, "", vision_weights, 0, sizes);
  rv_pre_ln_walk (w, &v->stack, v->layers);
}

RvClipVision *
rv_clip_vision_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error)
{
  RvClipVisionConfig cfg;
  if (!rv_clip_vision_config_load (dir, &cfg, error))
    return NULL;
  RvPreLNStack stack;
  if (!clip_stack (&stack, VISION ".encoder.layers", cfg.hidden_size, cfg.num_hidden_layers,
                   cfg.num_attention_heads, cfg.intermediate_size, cfg.hidden_act,
                   cfg.layer_norm_eps, dir, error))
    return NULL;
  int grid = cfg.image_size / cfg.patch_size;
  if (grid < 1)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s/config.json: image_size %d is smaller than patch_size %d", dir,
                   cfg.image_size, cfg.patch_size);
      return NULL;
    }
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;

  RvClipVision *v = g_new0 (RvClipVision, 1);
  v->cfg = cfg;
  v->stack = stack;
  v->grid = grid;
  v->layers = g_new0 (RvPreLNLayer, stack.layers);
  if (!rv_weights_load_walk (cmd, weights, policy, walk_vision, v, NULL, error))
    {
      rv_clip_vision_free (v);
      return NULL;
    }
  return v;
}

void
rv_clip_vision_free (RvClipVision *v)
{
  if (v == NULL)
    return;
  rv_weights_clear_walk (walk_vision, v);
  g_free (v->layers);
  g_free (v);
}

const RvClipVisionConfig *
rv_clip_vision_config (RvClipVision *v)
{
  return &v->cfg;
}

gboolean
rv_clip_vision_forward (RvClipVision *v, RvCmd *cmd, const RvTensor *pixel_values,
                        RvTensor **image_embeds, RvTensor **last_hidden_state)
{
  if (image_embeds != NULL)
    *image_embeds = NULL;
  if (last_hidden_state != NULL)
    *last_hidden_state = NULL;
  if (rv_cmd_failed (cmd))
    return FALSE;
  const RvClipVisionConfig *cfg = &v->cfg;
  const RvTensor *px = pixel_values;
  if (px->ndim != 4 || px->dtype != RV_DTYPE_F32 || px->shape[1] != cfg->image_size ||
      px->shape[2] != cfg->image_size || px->shape[3] != cfg->num_channels)
    {
      g_autofree char *s = rv_tensor_describe (px);
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "CLIP vision encoder: pixel values %s; the model takes f32 (B, %d, %d, %d)",
                    s, cfg->image_size, cfg->image_size, cfg->num_channels);
      return FALSE;
    }
  gint64 b = px->shape[0], c = cfg->hidden_size, n = (gint64) v->grid * v->grid, len = n + 1;

  /* patch embeddings: a conv with kernel = stride = patch, no bias */
  RvTensor *patches = RV_NET_TENSOR (cmd, b, v->grid, v->grid, c);  /* (B, g, g, C) */
  if (patches == NULL)
    return FALSE;
  RvConv2d conv = { .kh = cfg->patch_size, .kw = cfg->patch_size, .stride = cfg->patch_size };
  rv_op_conv2d (cmd, patches, px, v->patch_w, NULL, &conv, NULL);
  rv_tensor_reshape (patches, 3, (gint64[]) { b, n, c });           /* (B, N, C) */

  /* [class, patches] + position embeddings */
  RvTensor *cls = RV_NET_TENSOR (cmd, b, 1, c);                     /* (B, 1, C) */
  RvTensor *x = RV_NET_TENSOR (cmd, b, len, c);                     /* (B, 1 + N, C) */
  if (cls != NULL && x != NULL)
    {
      g_autofree float *rows = g_new (float, b * c);
      for (gint64 i = 0; i < b; i++)
        memcpy (rows + i * c, v->class_embedding, c * sizeof (float));
      rv_cmd_upload (cmd, cls, rows, b * c * sizeof (float));
      rv_op_concat (cmd, x, cls, patches, 1);
      rv_op_binary (cmd, x, x, v->position_embedding, RV_BIN_ADD);
    }
  rv_tensor_free (cls);
  rv_tensor_free (patches);
  RvTensor *h = x ? RV_NET_TENSOR (cmd, b, len, c) : NULL;          /* (B, 1 + N, C) */
  if (h != NULL)
    rv_op_layer_norm (cmd, h, x, v->pre_ln_w, v->pre_ln_b, cfg->layer_norm_eps);
  rv_tensor_free (x);
  if (h == NULL)
    return FALSE;

  /* pre-LN layers, no mask */
  RvTensor *last = rv_pre_ln_forward (cmd, &v->stack, v->layers, h, NULL, FALSE); /* (B, 1 + N, C) */
  if (last == NULL)
    return FALSE;

  /* visual_projection (post_layernorm (last[:, 0])) */
  if (image_embeds != NULL)
    {
      RvTensor *pooled = RV_NET_TENSOR (cmd, b, c);                 /* (B, C) */
      RvTensor *normed = RV_NET_TENSOR (cmd, b, c);                 /* (B, C) */
      RvTensor *embeds = RV_NET_TENSOR (cmd, b, cfg->projection_dim);  /* (B, P) */
      if (pooled != NULL && normed != NULL && embeds != NULL)
        {
          g_autofree gint64 *first = g_new0 (gint64, b);
          rv_token_rows (cmd, pooled, last, first);
          rv_op_layer_norm (cmd, normed, pooled, v->post_ln_w, v->post_ln_b,
                            cfg->layer_norm_eps);
          rv_op_linear (cmd, embeds, normed, v->projection, NULL, RV_ACT_NONE, NULL);
        }
      rv_tensor_free (pooled);
      rv_tensor_free (normed);
      *image_embeds = embeds;
    }

  if (last_hidden_state != NULL)
    *last_hidden_state = last;
  else
    rv_tensor_free (last);
  if (rv_cmd_failed (cmd))
    {
      if (image_embeds != NULL)
        g_clear_pointer (image_embeds, rv_tensor_free);
      if (last_hidden_state != NULL)
        g_clear_pointer (last_hidden_state, rv_tensor_free);
      return FALSE;
    }
  return TRUE;
}
