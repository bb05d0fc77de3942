/* rv-prior.c: the PriorTransformer (docs/model-spec.md §6), as diffusers computes it:
 * text tokens, text embedding, timestep, noisy image embedding and a learned
 * query token through causal self-attention blocks to an x₀ prediction. */
#include "rv-prior.h"
#include "rv-blocks.h"

#include <math.h>
#include <string.h>

/* Fixed in diffusers' PriorTransformer, not in its config. */
#define PRIOR_LN_EPS 1e-5f
#define PRIOR_MASK_VALUE -10000.0f
#define PRIOR_FF_MULT 4

/* diffusers' BasicTransformerBlock as the prior builds it: self-attention
 * with biases, a GELU feed-forward of 4× width */
static const RvPreLNNames block_names = {
  "norm1", "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "norm3",
  "ff.net.0.proj", "ff.net.2",
};

struct _RvPrior {
  RvPriorConfig cfg;
  int           inner;                     /* heads · head_dim */
  int           seq;                       /* text tokens + additional embeddings */
  RvTensor     *time1_w, *time1_b, *time2_w, *time2_b;
  RvTensor     *emb_norm_w, *emb_norm_b;   /* embedding_proj_norm, or NULL */
  RvTensor     *emb_proj_w, *emb_proj_b;
  RvTensor     *ehs_proj_w, *ehs_proj_b;   /* encoder_hidden_states_proj, or NULL */
  RvTensor     *proj_in_w, *proj_in_b;
  RvTensor     *positional;                /* (1, seq, inner) */
  RvTensor     *prd;                       /* (1, 1, inner), or NULL */
  RvTensor     *norm_in_w, *norm_in_b;     /* or NULL */
  RvPreLNStack  stack;
  RvPreLNLayer *blocks;
  RvTensor     *norm_out_w, *norm_out_b;
  RvTensor     *out_w, *out_b;             /* proj_to_clip_embeddings */
  float        *clip_mean, *clip_std;      /* host (clip_embed_dim) */
};

enum { S_INNER = -1, S_TIME = -2, S_PROJ = -3, S_EMB = -4, S_SEQ = -5, S_CLIP = -6 };
/* the optional parts, by config */
enum { EMB_NORM = 1 << 0, EHS_PROJ = 1 << 1, PRD = 1 << 2, NORM_IN = 1 << 3 };

static const RvWeightSpec prior_weights[] = {
  RV_WEIGHT (RvPrior, time1_w, "time_embedding.linear_1.weight", RV_WEIGHT_LINEAR, 0,
             S_TIME, S_INNER),
  RV_WEIGHT (RvPrior, time1_b, "time_embedding.linear_1.bias", RV_WEIGHT_PLAIN, 0, S_TIME),
  RV_WEIGHT (RvPrior, time2_w, "time_embedding.linear_2.weight", RV_WEIGHT_LINEAR, 0,
             S_INNER, S_TIME),
  RV_WEIGHT (RvPrior, time2_b, "time_embedding.linear_2.bias", RV_WEIGHT_PLAIN, 0, S_INNER),
  RV_WEIGHT (RvPrior, emb_norm_w, "embedding_proj_norm.weight", RV_WEIGHT_PLAIN, EMB_NORM, S_PROJ),
  RV_WEIGHT (RvPrior, emb_norm_b, "embedding_proj_norm.bias", RV_WEIGHT_PLAIN, EMB_NORM, S_PROJ),
  RV_WEIGHT (RvPrior, emb_proj_w, "embedding_proj.weight", RV_WEIGHT_LINEAR, 0, S_INNER, S_PROJ),
  RV_WEIGHT (RvPrior, emb_proj_b, "embedding_proj.bias", RV_WEIGHT_PLAIN, 0, S_INNER),
  RV_WEIGHT (RvPrior, ehs_proj_w, "encoder_hidden_states_proj.weight", RV_WEIGHT_LINEAR, EHS_PROJ,
             S_INNER, S_EMB),
  RV_WEIGHT (RvPrior, ehs_proj_b, "encoder_hidden_states_proj.bias", RV_WEIGHT_PLAIN, EHS_PROJ,
             S_INNER),
  RV_WEIGHT (RvPrior, proj_in_w, "proj_in.weight", RV_WEIGHT_LINEAR, 0, S_INNER, S_EMB),
  RV_WEIGHT (RvPrior, proj_in_b, "proj_in.bias", RV_WEIGHT_PLAIN, 0, S_INNER),
  RV_WEIGHT (RvPrior, positional, "positional_embedding", RV_WEIGHT_PLAIN, 0, 1, S_SEQ, S_INNER),
  RV_WEIGHT (RvPrior, prd, "prd_embedding", RV_WEIGHT_PLAIN, PRD, 1, 1, S_INNER),
  RV_WEIGHT (RvPrior, norm_in_w, "norm_in.weight", RV_WEIGHT_PLAIN, NORM_IN, S_INNER),
  RV_WEIGHT (RvPrior, norm_in_b, "norm_in.bias", RV_WEIGHT_PLAIN, NORM_IN, S_INNER),
  RV_WEIGHT (RvPrior, norm_out_w, "norm_out.weight", RV_WEIGHT_PLAIN, 0, S_INNER),
  RV_WEIGHT (RvPrior, norm_out_b, "norm_out.bias", RV_WEIGHT_PLAIN, 0, S_INNER),
  RV_WEIGHT (RvPrior, out_w, "proj_to_clip_embeddings.weight", RV_WEIGHT_LINEAR, 0,
             S_CLIP, S_INNER),
  RV_WEIGHT (RvPrior, out_b, "proj_to_clip_embeddings.bias", RV_WEIGHT_PLAIN, 0, S_CLIP),
  RV_WEIGHT (RvPrior, clip_mean, "clip_mean", RV_WEIGHT_HOST, 0, 1, S_CLIP),
  RV_WEIGHT (RvPrior, clip_std, "clip_std", RV_WEIGHT_HOST, 0, 1, S_CLIP),
};

static void
walk_prior (RvWeightWalk *w, gpointer net)
{
  RvPrior *p = net;
  const RvPriorConfig *cfg = &p->cfg;
  gint64 sizes[RV_WEIGHT_SIZES] = { 0 };
  sizes[-S_INNER] = p->inner;
  sizes[-S_TIME] = cfg->time_embed_dim;
  sizes[-S_PROJ] = cfg->embedding_proj_dim;
  sizes[-S_EMB] = cfg->embedding_dim;
  sizes[-S_SEQ] = p->seq;
  sizes[-S_CLIP] = cfg->clip_embed_dim;
  guint flags = (cfg->embedding_proj_norm ? EMB_NORM : 0) | (cfg->encoder_hid_proj ? EHS_PROJ : 0) |
                (cfg->added_prd ? PRD : 0) | (cfg->norm_in ? NORM_IN : 0);
  RV_WEIGHTS_WALK (w, p, "", prior_weights, flags, sizes);
  rv_pre_ln_walk (w, &p->stack, p->blocks);
}

RvPrior *
rv_prior_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error)
{
  RvPriorConfig cfg;
  if (!rv_prior_config_load (dir, &cfg, error))
    return NULL;
  int inner = cfg.num_attention_heads * cfg.attention_head_dim;
  /* The sequence is [text tokens, proj, time, hidden (, prd)]; diffusers'
   * causal mask and positional embedding are sized num_embeddings +
   * additional_embeddings, so the two must agree. */
  int extra = 3 + (cfg.added_prd ? 1 : 0);
  if (cfg.additional_embeddings != extra)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_UNSUPPORTED,
                   "%s/config.json: additional_embeddings %d with added_emb_type %s is not "
                   "supported (the sequence has %d extra tokens)",
                   dir, cfg.additional_embeddings, cfg.added_prd ? "“prd”" : "none", extra);
      return NULL;
    }
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;

  RvPrior *p = g_new0 (RvPrior, 1);
  p->cfg = cfg;
  p->inner = inner;
  p->seq = cfg.num_embeddings + cfg.additional_embeddings;
  p->stack = (RvPreLNStack) {
    "transformer_blocks", &block_names, cfg.num_layers, inner, cfg.num_attention_heads,
    PRIOR_FF_MULT * inner, RV_ACT_GELU, PRIOR_LN_EPS,
  };
  p->blocks = g_new0 (RvPreLNLayer, cfg.num_layers);
  if (!rv_weights_load_walk (cmd, weights, policy, walk_prior, p, NULL, error))
    {
      rv_prior_free (p);
      return NULL;
    }
  return p;
}

void
rv_prior_free (RvPrior *p)
{
  if (p == NULL)
    return;
  rv_weights_clear_walk (walk_prior, p);
  g_free (p->blocks);
  g_free (p);
}

const RvPriorConfig *
rv_prior_config (RvPrior *p)
{
  return &p->cfg;
}

const float *
rv_prior_clip_mean (RvPrior *p)
{
  return p->clip_mean;
}

const float *
rv_prior_clip_std (RvPrior *p)
{
  return p->clip_std;
}

void
rv_prior_post_process (RvPrior *p, float *x, int batch)
{
  int e = p->cfg.clip_embed_dim;
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < e; i++)
      {
        float scaled = x[b * e + i] * p->clip_std[i];
        x[b * e + i] = scaled + p->clip_mean[i];
      }
}

/* seq[b, at .. at + n) = src[b or 0, 0 .. n), for src (B or 1, n, C) */
static void
put_tokens (RvCmd *cmd, RvTensor *seq, gint64 at, const RvTensor *src)
{
  gint64 batch = seq->shape[0], len = seq->shape[1], c = seq->shape[2];
  gint64 n = rv_tensor_numel (src) / (src->shape[0] * c);
  gsize row = c * sizeof (float);
  for (gint64 b = 0; b < batch; b++)
    rv_cmd_copy (cmd, seq, (b * len + at) * row, src, (src->shape[0] == 1 ? 0 : b * n) * row,
                 n * row);
}

/* The additive mask of the text padding, (1 − mask)·(−10000), zero on the
 * extra tokens: (B, seq), with the kernel's causal exclusion on top. That
 * equals diffusers' sum (padding −10000, plus −10000 above the diagonal)
 * unless the first token of a row is padding: then an early query sees only
 * masked keys, diffusers' softmax spreads over every key masked once (padded
 * past ones and valid future ones), and only the full (B, seq, seq) sum
 * (*full, no causal flag) reproduces that. */
static float *
additive_mask (const guint8 *text_mask, int batch, int tokens, int seq, gboolean *full)
{
  *full = FALSE;
  for (int b = 0; text_mask != NULL && b < batch; b++)
    if (text_mask[(gsize) b * tokens] == 0)
      *full = TRUE;
  gsize per_row = *full ? (gsize) seq * seq : (gsize) seq;
  float *m = g_new0 (float, batch * per_row);
  for (int b = 0; b < batch; b++)
    for (int q = 0; q < (*full ? seq : 1); q++)
      for (int k = 0; k < seq; k++)
        {
          float pad = k < tokens && text_mask != NULL && text_mask[(gsize) b * tokens + k] == 0
                        ? PRIOR_MASK_VALUE : 0.0f;
          float causal = *full && k > q ? PRIOR_MASK_VALUE : 0.0f;
          m[b * per_row + (gsize) q * seq + k] = pad + causal;
        }
  return m;
}

/* The timestep's token: linear_2 (act (linear_1 (sinusoid (t)))), into
 * t_emb (B, 1, inner). */
static void
time_token (RvPrior *p, RvCmd *cmd, RvTensor *t_emb, gint64 batch, float timestep)
{
  g_autoptr (RvTensor) t_sin = RV_NET_TENSOR (cmd, batch, p->inner);                 /* (B, inner) */
  g_autoptr (RvTensor) t_hid = t_sin ? RV_NET_TENSOR (cmd, batch, p->cfg.time_embed_dim) : NULL;
  if (t_hid == NULL || t_emb == NULL)
    return;
  g_autofree float *ts = g_new (float, batch);
  for (gint64 b = 0; b < batch; b++)
    ts[b] = timestep;
  rv_op_timestep_embedding (cmd, t_sin, ts, batch, TRUE, 0.0f);
  rv_op_linear (cmd, t_hid, t_sin, p->time1_w, p->time1_b, p->cfg.time_embed_act_fn, NULL);
  rv_op_linear (cmd, t_emb, t_hid, p->time2_w, p->time2_b, RV_ACT_NONE, NULL);
}

/* norm_out of token `row` of x (B, L, inner) (prd, or the hidden token
 * without one; the norm is per token), then proj_to_clip_embeddings: the
 * prediction (B, E). Consumes x; NULL when the stream has failed. */
static RvTensor *
prediction (RvPrior *p, RvCmd *cmd, RvTensor *x, gint64 row)
{
  g_autoptr (RvTensor) xs = x;
  if (x == NULL || rv_cmd_failed (cmd))
    return NULL;
  gint64 batch = x->shape[0];
  g_autoptr (RvTensor) last = RV_NET_TENSOR (cmd, batch, p->inner);                  /* (B, inner) */
  g_autoptr (RvTensor) last_n = RV_NET_TENSOR (cmd, batch, p->inner);                /* (B, inner) */
  RvTensor *out = RV_NET_TENSOR (cmd, batch, p->cfg.clip_embed_dim);                 /* (B, E) */
  if (!rv_cmd_failed (cmd))
    {
      g_autofree gint64 *index = g_new (gint64, batch);
      for (gint64 b = 0; b < batch; b++)
        index[b] = row;
      rv_token_rows (cmd, last, x, index);
      rv_op_layer_norm (cmd, last_n, last, p->norm_out_w, p->norm_out_b, PRIOR_LN_EPS);
      rv_op_linear (cmd, out, last_n, p->out_w, p->out_b, RV_ACT_NONE, NULL);
    }
  if (rv_cmd_failed (cmd))
    g_clear_pointer (&out, rv_tensor_free);
  return out;
}

/* hs (B, embedding_dim) or NULL, pe (B, embedding_proj_dim), ehs (B, tokens,
 * embedding_dim or inner); fails the stream when they are not. */
static gboolean
check_inputs (RvPrior *p, RvCmd *cmd, const RvTensor *hs, const RvTensor *pe, const RvTensor *ehs)
{
  const RvPriorConfig *cfg = &p->cfg;
  gint64 batch = pe->shape[0], tokens = cfg->num_embeddings;
  gint64 ehs_dim = cfg->encoder_hid_proj ? cfg->embedding_dim : p->inner;
  if ((hs != NULL && (hs->ndim != 2 || hs->shape[0] != batch || hs->shape[1] != cfg->embedding_dim)) ||
      pe->ndim != 2 || pe->shape[1] != cfg->embedding_proj_dim || ehs->ndim != 3 ||
      ehs->shape[0] != batch || ehs->shape[1] != tokens || ehs->shape[2] != ehs_dim)
    {
      g_autofree char *a = hs ? rv_tensor_describe (hs) : g_strdup ("(none)");
      g_autofree char *b = rv_tensor_describe (pe);
      g_autofree char *c = rv_tensor_describe (ehs);
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "prior: inputs %s, %s, %s; the model takes (B, %d), (B, %d), (B, %" G_GINT64_FORMAT
                    ", %" G_GINT64_FORMAT ")",
                    a, b, c, cfg->embedding_dim, cfg->embedding_proj_dim, tokens, ehs_dim);
      return FALSE;
    }
  return TRUE;
}

RvTensor *
rv_prior_forward (RvPrior *p, RvCmd *cmd, const RvTensor *hidden_states, float timestep,
                  const RvTensor *proj_embedding, const RvTensor *encoder_hidden_states,
                  const guint8 *attention_mask)
{
  if (rv_cmd_failed (cmd))
    return NULL;
  const RvPriorConfig *cfg = &p->cfg;
  const RvTensor *hs = hidden_states, *pe = proj_embedding, *ehs = encoder_hidden_states;
  gint64 batch = hs->shape[0], inner = p->inner, seq = p->seq, tokens = cfg->num_embeddings;
  if (!check_inputs (p, cmd, hs, pe, ehs))
    return NULL;

  /* Every tensor of the forward, allocated up front; a NULL means the stream
   * has failed, and the ops are then no-ops. */
  RvTensor *t_emb = RV_NET_TENSOR (cmd, batch, 1, inner);            /* (B, 1, inner) */
  RvTensor *pe_n = p->emb_norm_w != NULL
                     ? RV_NET_TENSOR (cmd, batch, cfg->embedding_proj_dim) : NULL; /* (B, Ep) */
  RvTensor *proj = RV_NET_TENSOR (cmd, batch, 1, inner);             /* (B, 1, inner) */
  RvTensor *h = RV_NET_TENSOR (cmd, batch, 1, inner);                /* (B, 1, inner) */
  RvTensor *text = p->ehs_proj_w != NULL
                     ? RV_NET_TENSOR (cmd, batch, tokens, inner) : NULL; /* (B, 77, inner) */
  RvTensor *x = RV_NET_TENSOR (cmd, batch, seq, inner);              /* (B, 81, inner) */
  RvTensor *xn = p->norm_in_w != NULL
                   ? RV_NET_TENSOR (cmd, batch, seq, inner) : NULL;  /* (B, 81, inner) */
  gboolean full;
  g_autofree float *mask_host = additive_mask (attention_mask, batch, tokens, seq, &full);
  RvTensor *mask = full ? RV_NET_TENSOR (cmd, batch, seq, seq)       /* (B, 81, 81) */
                        : RV_NET_TENSOR (cmd, batch, seq);           /* (B, 81) */

  if (!rv_cmd_failed (cmd))
    {
      /* 1. time embedding: sinusoid (cos first, shift 0) → linear_1 → act → linear_2 */
      time_token (p, cmd, t_emb, batch, timestep);

      /* 2. embedding_proj (embedding_proj_norm (text_embeds)),
       *    encoder_hidden_states_proj (text tokens), proj_in (hidden_states) */
      if (pe_n != NULL)
        rv_op_layer_norm (cmd, pe_n, pe, p->emb_norm_w, p->emb_norm_b, PRIOR_LN_EPS);
      rv_op_linear (cmd, proj, pe_n ? pe_n : pe, p->emb_proj_w, p->emb_proj_b, RV_ACT_NONE, NULL);
      if (text != NULL)
        rv_op_linear (cmd, text, ehs, p->ehs_proj_w, p->ehs_proj_b, RV_ACT_NONE, NULL);
      rv_op_linear (cmd, h, hs, p->proj_in_w, p->proj_in_b, RV_ACT_NONE, NULL);

      /* 3. x = [text (77), proj, time, hidden (, prd)] + positional_embedding */
      put_tokens (cmd, x, 0, text ? text : ehs);
      put_tokens (cmd, x, tokens, proj);
      put_tokens (cmd, x, tokens + 1, t_emb);
      put_tokens (cmd, x, tokens + 2, h);
      if (p->prd != NULL)
        put_tokens (cmd, x, tokens + 3, p->prd);
      rv_op_binary (cmd, x, x, p->positional, RV_BIN_ADD);
      if (xn != NULL)
        {
          rv_op_layer_norm (cmd, xn, x, p->norm_in_w, p->norm_in_b, PRIOR_LN_EPS);
          RvTensor *swap = x;
          x = xn, xn = swap;
        }

      /* 4. mask: text padding −10000, plus causal */
      rv_cmd_upload (cmd, mask, mask_host, rv_tensor_nbytes (mask));
    }
  RvTensor *dead[] = { t_emb, pe_n, proj, h, text, xn };
  for (guint i = 0; i < G_N_ELEMENTS (dead); i++)
    rv_tensor_free (dead[i]);

  /* 5. blocks: x += attn1 (norm1 (x)); x += ff (norm3 (x)) */
  if (x != NULL)
    x = rv_pre_ln_forward (cmd, &p->stack, p->blocks, x, mask, !full); /* (B, 81, inner) */
  rv_tensor_free (mask);

  /* 6. norm_out of the last token → proj_to_clip_embeddings */
  return prediction (p, cmd, x, seq - 1);
}

/* ---- the text prefix, computed once per run ----
 *
 * Under the causal mask token i attends to tokens 0..i only. The first P =
 * num_embeddings + 1 tokens (the text tokens and the projected text
 * embedding) are the same at every step of a sampling loop, so their keys and
 * values in every layer are too: they are computed once, and a step runs only
 * the last tokens (timestep, noisy embedding, prd) through the stack, against
 * those cached rows. The result is the forward's, up to float rounding. */

struct _RvPriorPrefix {
  gint64     batch;
  gint64     len;        /* P, the prefix */
  int        layers;
  RvTensor **keys, **values;   /* per layer (B, seq, inner) */
  RvTensor  *mask;             /* (B, seq − P, seq): padding and causal exclusion */
  RvTensor  *positional;       /* (1, seq − P, inner): the suffix's rows */
};

void
rv_prior_prefix_free (RvPriorPrefix *pre)
{
  if (pre == NULL)
    return;
  for (int i = 0; i < pre->layers; i++)
    {
      rv_tensor_free (pre->keys[i]);
      rv_tensor_free (pre->values[i]);
    }
  g_free (pre->keys);
  g_free (pre->values);
  rv_tensor_free (pre->mask);
  rv_tensor_free (pre->positional);
  g_free (pre);
}

/* rows [at, at + n) of the positional embedding, as (1, n, inner) */
static RvTensor *
positional_rows (RvPrior *p, RvCmd *cmd, gint64 at, gint64 n)
{
  RvTensor *t = RV_NET_TENSOR (cmd, 1, n, p->inner);
  if (t != NULL)
    rv_cmd_copy (cmd, t, 0, p->positional, at * p->inner * sizeof (float),
                 n * p->inner * sizeof (float));
  return t;
}

RvPriorPrefix *
rv_prior_prefix_new (RvPrior *p, RvCmd *cmd, const RvTensor *proj_embedding,
                     const RvTensor *encoder_hidden_states, const guint8 *attention_mask)
{
  if (rv_cmd_failed (cmd) || !check_inputs (p, cmd, NULL, proj_embedding, encoder_hidden_states))
    return NULL;
  const RvPriorConfig *cfg = &p->cfg;
  gint64 batch = proj_embedding->shape[0], inner = p->inner, seq = p->seq;
  gint64 tokens = cfg->num_embeddings, len = tokens + 1, rest = seq - len;
  gboolean full;
  g_autofree float *pad = additive_mask (attention_mask, batch, tokens, seq, &full);
  /* a row whose first token is padding needs the whole (seq, seq) mask of
   * rv_prior_forward: its early tokens then see later ones */
  if (full || rest < 1)
    return NULL;

  RvPriorPrefix *pre = g_new0 (RvPriorPrefix, 1);
  pre->batch = batch;
  pre->len = len;
  pre->layers = p->stack.layers;
  pre->keys = g_new0 (RvTensor *, pre->layers);
  pre->values = g_new0 (RvTensor *, pre->layers);
  for (int i = 0; i < pre->layers; i++)
    {
      pre->keys[i] = RV_NET_TENSOR (cmd, batch, seq, inner);
      pre->values[i] = RV_NET_TENSOR (cmd, batch, seq, inner);
    }
  pre->mask = RV_NET_TENSOR (cmd, batch, rest, seq);
  pre->positional = positional_rows (p, cmd, len, rest);
  g_autoptr (RvTensor) pos = positional_rows (p, cmd, 0, len);
  g_autoptr (RvTensor) mask = RV_NET_TENSOR (cmd, batch, len);
  g_autoptr (RvTensor) proj = RV_NET_TENSOR (cmd, batch, 1, inner);
  g_autoptr (RvTensor) pe_n = p->emb_norm_w != NULL
                                ? RV_NET_TENSOR (cmd, batch, cfg->embedding_proj_dim) : NULL;
  g_autoptr (RvTensor) text = p->ehs_proj_w != NULL ? RV_NET_TENSOR (cmd, batch, tokens, inner) : NULL;
  RvTensor *x = RV_NET_TENSOR (cmd, batch, len, inner);
  g_autoptr (RvTensor) xn = p->norm_in_w != NULL ? RV_NET_TENSOR (cmd, batch, len, inner) : NULL;
  if (rv_cmd_failed (cmd))
    {
      rv_tensor_free (x);
      rv_prior_prefix_free (pre);
      return NULL;
    }

  /* the masks: the prefix's own padding (B, P); the suffix's (B, rest, seq),
   * where suffix token r (position P + r) sees keys up to P + r */
  g_autofree float *m_pre = g_new (float, batch * len);
  g_autofree float *m_suf = g_new (float, batch * rest * seq);
  for (gint64 b = 0; b < batch; b++)
    {
      memcpy (m_pre + b * len, pad + b * seq, len * sizeof (float));
      for (gint64 r = 0; r < rest; r++)
        for (gint64 k = 0; k < seq; k++)
          m_suf[(b * rest + r) * seq + k] = pad[b * seq + k] + (k > len + r ? PRIOR_MASK_VALUE : 0.0f);
    }
  rv_cmd_upload (cmd, mask, m_pre, batch * len * sizeof (float));
  rv_cmd_upload (cmd, pre->mask, m_suf, batch * rest * seq * sizeof (float));

  /* x = [text (77), proj] + positional, as rv_prior_forward's first rows */
  const RvTensor *pe = proj_embedding;
  if (pe_n != NULL)
    rv_op_layer_norm (cmd, pe_n, pe, p->emb_norm_w, p->emb_norm_b, PRIOR_LN_EPS);
  rv_op_linear (cmd, proj, pe_n ? pe_n : pe, p->emb_proj_w, p->emb_proj_b, RV_ACT_NONE, NULL);
  if (text != NULL)
    rv_op_linear (cmd, text, encoder_hidden_states, p->ehs_proj_w, p->ehs_proj_b, RV_ACT_NONE, NULL);
  put_tokens (cmd, x, 0, text ? text : encoder_hidden_states);
  put_tokens (cmd, x, tokens, proj);
  rv_op_binary (cmd, x, x, pos, RV_BIN_ADD);
  if (xn != NULL)
    {
      rv_op_layer_norm (cmd, xn, x, p->norm_in_w, p->norm_in_b, PRIOR_LN_EPS);
      RvTensor *swap = x;
      x = g_steal_pointer (&xn), xn = swap;
    }
  if (!rv_pre_ln_prefix (cmd, &p->stack, p->blocks, x, mask, pre->keys, pre->values))
    g_clear_pointer (&pre, rv_prior_prefix_free);
  return pre;
}

RvTensor *
rv_prior_forward_prefixed (RvPrior *p, RvCmd *cmd, RvPriorPrefix *pre,
                           const RvTensor *hidden_states, float timestep)
{
  if (rv_cmd_failed (cmd))
    return NULL;
  const RvPriorConfig *cfg = &p->cfg;
  const RvTensor *hs = hidden_states;
  gint64 batch = pre->batch, inner = p->inner, rest = p->seq - pre->len;
  if (hs->ndim != 2 || hs->shape[0] != batch || hs->shape[1] != cfg->embedding_dim)
    {
      g_autofree char *a = rv_tensor_describe (hs);
      rv_cmd_failf (cmd, RV_ERROR_INVALID, "prior: hidden states %s; the model takes (%" G_GINT64_FORMAT
                    ", %d)", a, batch, cfg->embedding_dim);
      return NULL;
    }
  RvTensor *t_emb = RV_NET_TENSOR (cmd, batch, 1, inner);
  RvTensor *h = RV_NET_TENSOR (cmd, batch, 1, inner);
  RvTensor *x = RV_NET_TENSOR (cmd, batch, rest, inner);
  RvTensor *xn = p->norm_in_w != NULL ? RV_NET_TENSOR (cmd, batch, rest, inner) : NULL;
  if (!rv_cmd_failed (cmd))
    {
      time_token (p, cmd, t_emb, batch, timestep);
      rv_op_linear (cmd, h, hs, p->proj_in_w, p->proj_in_b, RV_ACT_NONE, NULL);
      /* x = [time, hidden (, prd)] + their positional rows */
      put_tokens (cmd, x, 0, t_emb);
      put_tokens (cmd, x, 1, h);
      if (p->prd != NULL)
        put_tokens (cmd, x, 2, p->prd);
      rv_op_binary (cmd, x, x, pre->positional, RV_BIN_ADD);
      if (xn != NULL)
        {
          rv_op_layer_norm (cmd, xn, x, p->norm_in_w, p->norm_in_b, PRIOR_LN_EPS);
          RvTensor *swap = x;
          x = xn, xn = swap;
        }
    }
  RvTensor *dead[] = { t_emb, h, xn };
  for (guint i = 0; i < G_N_ELEMENTS (dead); i++)
    rv_tensor_free (dead[i]);
  if (x != NULL)
    x = rv_pre_ln_forward_suffix (cmd, &p->stack, p->blocks, x, pre->keys, pre->values, pre->mask);
  return prediction (p, cmd, x, rest - 1);
}
