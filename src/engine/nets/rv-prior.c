/* rv-prior.c: the PriorTransformer (MODEL_SPEC §6), as diffusers computes it:
 * text tokens, text embedding, timestep, noisy image embedding and a learned
 * query token through causal self-attention blocks to an x₀ prediction. */
#include "rv-prior.h"
#include "rv-clip.h"

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

static void
manifest_linear (RvManifest *m, gint64 out, gint64 in, const char *name)
{
  rv_manifest_add (m, RV_SHAPE (out, in), "%s.weight", name);
  rv_manifest_add (m, RV_SHAPE (out), "%s.bias", name);
}

static void
manifest_norm (RvManifest *m, gint64 c, const char *name)
{
  rv_manifest_add (m, RV_SHAPE (c), "%s.weight", name);
  rv_manifest_add (m, RV_SHAPE (c), "%s.bias", name);
}

static RvManifest *
prior_manifest (const RvPriorConfig *cfg, const RvPreLNStack *stack, int inner, int seq)
{
  RvManifest *m = rv_manifest_new ();
  manifest_linear (m, cfg->time_embed_dim, inner, "time_embedding.linear_1");
  manifest_linear (m, inner, cfg->time_embed_dim, "time_embedding.linear_2");
  if (cfg->embedding_proj_norm)
    manifest_norm (m, cfg->embedding_proj_dim, "embedding_proj_norm");
  manifest_linear (m, inner, cfg->embedding_proj_dim, "embedding_proj");
  if (cfg->encoder_hid_proj)
    manifest_linear (m, inner, cfg->embedding_dim, "encoder_hidden_states_proj");
  manifest_linear (m, inner, cfg->embedding_dim, "proj_in");
  rv_manifest_add (m, RV_SHAPE (1, seq, inner), "positional_embedding");
  if (cfg->added_prd)
    rv_manifest_add (m, RV_SHAPE (1, 1, inner), "prd_embedding");
  if (cfg->norm_in)
    manifest_norm (m, inner, "norm_in");
  rv_pre_ln_manifest (m, stack);
  manifest_norm (m, inner, "norm_out");
  manifest_linear (m, cfg->clip_embed_dim, inner, "proj_to_clip_embeddings");
  rv_manifest_add (m, RV_SHAPE (1, cfg->clip_embed_dim), "clip_mean");
  rv_manifest_add (m, RV_SHAPE (1, cfg->clip_embed_dim), "clip_std");
  return m;
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
  int seq = cfg.num_embeddings + cfg.additional_embeddings;
  g_autoptr (RvWeights) weights = rv_weights_open (dir, error);
  if (weights == NULL)
    return NULL;
  RvPreLNStack stack = {
    "transformer_blocks", &block_names, cfg.num_layers, inner, cfg.num_attention_heads,
    PRIOR_FF_MULT * inner, RV_ACT_GELU, PRIOR_LN_EPS,
  };
  g_autoptr (RvManifest) m = prior_manifest (&cfg, &stack, inner, seq);
  if (!rv_weights_check (weights, m, error))
    return NULL;

  RvPrior *p = g_new0 (RvPrior, 1);
  p->cfg = cfg;
  p->inner = inner;
  p->seq = seq;
  RvLoader l;
  rv_loader_init (&l, cmd, weights, policy);
  p->time1_w = rv_load_linear (&l, "time_embedding.linear_1.weight");
  p->time1_b = rv_load_plain (&l, "time_embedding.linear_1.bias");
  p->time2_w = rv_load_linear (&l, "time_embedding.linear_2.weight");
  p->time2_b = rv_load_plain (&l, "time_embedding.linear_2.bias");
  if (cfg.embedding_proj_norm)
    {
      p->emb_norm_w = rv_load_plain (&l, "embedding_proj_norm.weight");
      p->emb_norm_b = rv_load_plain (&l, "embedding_proj_norm.bias");
    }
  p->emb_proj_w = rv_load_linear (&l, "embedding_proj.weight");
  p->emb_proj_b = rv_load_plain (&l, "embedding_proj.bias");
  if (cfg.encoder_hid_proj)
    {
      p->ehs_proj_w = rv_load_linear (&l, "encoder_hidden_states_proj.weight");
      p->ehs_proj_b = rv_load_plain (&l, "encoder_hidden_states_proj.bias");
    }
  p->proj_in_w = rv_load_linear (&l, "proj_in.weight");
  p->proj_in_b = rv_load_plain (&l, "proj_in.bias");
  p->positional = rv_load_plain (&l, "positional_embedding");
  if (cfg.added_prd)
    p->prd = rv_load_plain (&l, "prd_embedding");
  if (cfg.norm_in)
    {
      p->norm_in_w = rv_load_plain (&l, "norm_in.weight");
      p->norm_in_b = rv_load_plain (&l, "norm_in.bias");
    }
  p->stack = stack;
  p->blocks = rv_pre_ln_load (&l, &stack);
  p->norm_out_w = rv_load_plain (&l, "norm_out.weight");
  p->norm_out_b = rv_load_plain (&l, "norm_out.bias");
  p->out_w = rv_load_linear (&l, "proj_to_clip_embeddings.weight");
  p->out_b = rv_load_plain (&l, "proj_to_clip_embeddings.bias");
  p->clip_mean = rv_load_host (&l, NULL, "clip_mean");
  p->clip_std = rv_load_host (&l, NULL, "clip_std");
  if (!rv_loader_finish (&l, error))
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
  RvTensor *own[] = {
    p->time1_w, p->time1_b, p->time2_w, p->time2_b, p->emb_norm_w, p->emb_norm_b,
    p->emb_proj_w, p->emb_proj_b, p->ehs_proj_w, p->ehs_proj_b, p->proj_in_w, p->proj_in_b,
    p->positional, p->prd, p->norm_in_w, p->norm_in_b, p->norm_out_w, p->norm_out_b,
    p->out_w, p->out_b,
  };
  for (guint i = 0; i < G_N_ELEMENTS (own); i++)
    rv_tensor_free (own[i]);
  rv_pre_ln_free (p->blocks, p->stack.layers);
  g_free (p->clip_mean);
  g_free (p->clip_std);
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
  gint64 ehs_dim = cfg->encoder_hid_proj ? cfg->embedding_dim : inner;
  if (hs->ndim != 2 || hs->shape[1] != cfg->embedding_dim || pe->ndim != 2 ||
      pe->shape[0] != batch || pe->shape[1] != cfg->embedding_proj_dim || ehs->ndim != 3 ||
      ehs->shape[0] != batch || ehs->shape[1] != tokens || ehs->shape[2] != ehs_dim)
    {
      g_autofree char *a = rv_tensor_describe (hs);
      g_autofree char *b = rv_tensor_describe (pe);
      g_autofree char *c = rv_tensor_describe (ehs);
      rv_cmd_failf (cmd, RV_ERROR_INVALID,
                    "prior: inputs %s, %s, %s; the model takes (B, %d), (B, %d), (B, %" G_GINT64_FORMAT
                    ", %" G_GINT64_FORMAT ")",
                    a, b, c, cfg->embedding_dim, cfg->embedding_proj_dim, tokens, ehs_dim);
      return NULL;
    }

  /* Every tensor of the forward, allocated up front; a NULL means the stream
   * has failed, and the ops are then no-ops. */
  RvTensor *t_sin = RV_NET_TENSOR (cmd, batch, inner);               /* (B, inner) */
  RvTensor *t_hid = RV_NET_TENSOR (cmd, batch, cfg->time_embed_dim); /* (B, Tdim) */
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
  RvTensor *last = RV_NET_TENSOR (cmd, batch, inner);                /* (B, inner) */
  RvTensor *last_n = RV_NET_TENSOR (cmd, batch, inner);              /* (B, inner) */
  RvTensor *out = RV_NET_TENSOR (cmd, batch, cfg->clip_embed_dim);   /* (B, E) */

  if (!rv_cmd_failed (cmd))
    {
      /* 1. time embedding: sinusoid (cos first, shift 0) → linear_1 → act → linear_2 */
      g_autofree float *ts = g_new (float, batch);
      for (gint64 b = 0; b < batch; b++)
        ts[b] = timestep;
      rv_op_timestep_embedding (cmd, t_sin, ts, batch, TRUE, 0.0f);
      rv_op_linear (cmd, t_hid, t_sin, p->time1_w, p->time1_b, cfg->time_embed_act_fn, NULL);
      rv_op_linear (cmd, t_emb, t_hid, p->time2_w, p->time2_b, RV_ACT_NONE, NULL);

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
  RvTensor *dead[] = { t_sin, t_hid, t_emb, pe_n, proj, h, text, xn };
  for (guint i = 0; i < G_N_ELEMENTS (dead); i++)
    rv_tensor_free (dead[i]);

  /* 5. blocks: x += attn1 (norm1 (x)); x += ff (norm3 (x)) */
  if (x != NULL)
    x = rv_pre_ln_forward (cmd, &p->stack, p->blocks, x, mask, !full); /* (B, 81, inner) */
  rv_tensor_free (mask);

  /* 6. norm_out of the last token (prd, or the hidden token without one; the
   *    norm is per token) → proj_to_clip_embeddings */
  if (!rv_cmd_failed (cmd))
    {
      g_autofree gint64 *index = g_new (gint64, batch);
      for (gint64 b = 0; b < batch; b++)
        index[b] = seq - 1;
      rv_token_rows (cmd, last, x, index);
      rv_op_layer_norm (cmd, last_n, last, p->norm_out_w, p->norm_out_b, PRIOR_LN_EPS);
      rv_op_linear (cmd, out, last_n, p->out_w, p->out_b, RV_ACT_NONE, NULL);
    }
  rv_tensor_free (x);
  rv_tensor_free (last);
  rv_tensor_free (last_n);
  if (rv_cmd_failed (cmd))
    g_clear_pointer (&out, rv_tensor_free);
  return out;
}
