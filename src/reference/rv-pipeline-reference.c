/* rv-pipeline-reference.c: reference handlers for the scheduler tables and
 * steps, and for whole pipeline runs (prior, decoder, img2img, inpaint,
 * variation) fed with the recorded noise. */
#include "rv-reference.h"
#include "rv-pipeline.h"

#include <string.h>

/* ---- recorded noise ---- */

typedef struct {
  RvRefContext *ctx;
  int           next;
} Recorded;

static gboolean
recorded_normal (gpointer self, float *out, gsize n, GError **error)
{
  Recorded *r = self;
  g_autofree char *name = g_strdup_printf ("step_noise.%03d", r->next);
  const RvStTensor *t = rv_ref_lookup (r->ctx, name);
  if (t == NULL || (gsize) t->numel != n)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "the loop asked for draw %d of %zu values, but the case has %s", r->next, n,
                   t ? "a draw of another size" : "no more recorded draws");
      return FALSE;
    }
  g_autofree float *v = rv_ref_get_f32 (r->ctx, name, error);
  if (v == NULL)
    return FALSE;
  memcpy (out, v, n * sizeof (float));
  r->next++;
  return TRUE;
}

/* ---- small helpers ---- */

static const char *
param_string (JsonObject *p, const char *key)
{
  JsonNode *n = json_object_get_member (p, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : NULL;
}

static gint64
param_int (JsonObject *p, const char *key, gint64 fallback)
{
  JsonNode *n = json_object_get_member (p, key);
  return n && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_int (n) : fallback;
}

static double
param_double (JsonObject *p, const char *key, double fallback)
{
  JsonNode *n = json_object_get_member (p, key);
  return n && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_double (n) : fallback;
}

static void
put_i64_1d (RvRefContext *ctx, const char *name, const gint64 *v, int n)
{
  if (rv_ref_lookup (ctx, name) != NULL)
    rv_ref_put_i64 (ctx, name, v, 1, (gint64[]) { n });
}

static void
put_recorded_shape (RvRefContext *ctx, const char *name, const float *v, double tol)
{
  const RvStTensor *t = rv_ref_lookup (ctx, name);
  if (t != NULL)
    rv_ref_put_f32 (ctx, name, v, t->ndim, t->shape, tol);
}

/* The latents after each step of a loop, as step_latents.<i>. */
static gboolean
put_step (int step, int steps, const float *latents, const float *x0, gsize len, gpointer data)
{
  g_autofree char *name = g_strdup_printf ("step_latents.%03d", step);
  put_recorded_shape (data, name, latents, RV_REF_TOL_AUTO);
  return TRUE;
}

/* Scheduler configuration of a case: params.scheduler_config when given,
 * else the model folder's. */
static gboolean
case_scheduler (RvRefContext *ctx, JsonObject *p, const char *model_dir, RvSchedulerKind kind,
                RvSchedulerConfig *cfg, GError **error)
{
  JsonNode *sc = json_object_get_member (p, "scheduler_config");
  if (sc != NULL && JSON_NODE_HOLDS_OBJECT (sc))
    return rv_scheduler_config_parse (json_node_get_object (sc), "params.scheduler_config", kind,
                                      cfg, error);
  g_autofree char *dir = g_build_filename (model_dir, "scheduler", NULL);
  return rv_scheduler_config_load (dir, kind, cfg, error);
}

/* Networks are loaded once per run and folder, with fp32 weights kept. */
#define CACHED(type, key_prefix, dir, load_expr, free_fn)                                \
  ({                                                                                      \
    g_autofree char *key_ = g_strconcat (key_prefix, dir, NULL);                          \
    type *m_ = rv_ref_cache_get (ctx, key_);                                              \
    if (m_ == NULL && (m_ = (load_expr)) != NULL)                                         \
      rv_ref_cache_set (ctx, key_, m_, (GDestroyNotify) free_fn);                         \
    m_;                                                                                   \
  })

static RvCmd *
case_cmd (RvRefContext *ctx, GError **error)
{
  RvDevice *dev = rv_ref_device (ctx, error);
  return dev ? rv_cmd_new (dev, error) : NULL;
}

/* ---- schedulers ---- */

gboolean
rv_ref_handle_schedulers (RvRefContext *ctx, GError **error)
{
  JsonObject *p = rv_ref_params (ctx);
  static const struct { const char *prefix, *param; RvSchedulerKind kind; } kinds[] = {
    { "unclip", "prior_scheduler", RV_SCHEDULER_UNCLIP },
    { "ddpm", "ddpm_scheduler", RV_SCHEDULER_DDPM },
    { "ddim", "ddim_scheduler", RV_SCHEDULER_DDIM },
    { "dpmpp", "dpmpp_scheduler", RV_SCHEDULER_DPM_MULTISTEP },
  };
  const RvRefCase *c = rv_ref_case (ctx);
  for (guint k = 0; k < G_N_ELEMENTS (kinds); k++)
    {
      JsonNode *cn = json_object_get_member (p, kinds[k].param);
      if (cn == NULL || !JSON_NODE_HOLDS_OBJECT (cn))
        continue;
      RvSchedulerConfig cfg;
      if (!rv_scheduler_config_parse (json_node_get_object (cn), kinds[k].param, kinds[k].kind, &cfg, error))
        return FALSE;
      g_autoptr (RvScheduler) s = rv_scheduler_new (&cfg, kinds[k].kind, error);
      if (s == NULL)
        return FALSE;
      g_autofree char *acp = g_strdup_printf ("%s.alphas_cumprod", kinds[k].prefix);
      g_autofree char *betas = g_strdup_printf ("%s.betas", kinds[k].prefix);
      put_recorded_shape (ctx, acp, rv_scheduler_alphas_cumprod (s), RV_REF_TOL_AUTO);
      put_recorded_shape (ctx, betas, rv_scheduler_betas (s), RV_REF_TOL_AUTO);

      /* timesteps_N (and sigmas_N), in the order they were recorded: the
       * last set_timesteps before the step calls decides their step ratio */
      int last_n = 0;
      g_autofree char *ts_prefix = g_strdup_printf ("%s.timesteps_", kinds[k].prefix);
      for (guint i = 0; i < c->tensors->len; i++)
        {
          const RvRefTensorInfo *t = &g_array_index (c->tensors, RvRefTensorInfo, i);
          if (!g_str_has_prefix (t->name, ts_prefix))
            continue;
          int n = (int) g_ascii_strtoll (t->name + strlen (ts_prefix), NULL, 10);
          if (!rv_scheduler_set_timesteps (s, n, error))
            return FALSE;
          int nt;
          const gint64 *ts = rv_scheduler_timesteps (s, &nt);
          put_i64_1d (ctx, t->name, ts, nt);
          g_autofree char *sig = g_strdup_printf ("%s.sigmas_%d", kinds[k].prefix, n);
          int ns;
          const float *sg = rv_scheduler_sigmas (s, &ns);
          if (sg != NULL && rv_ref_lookup (ctx, sig) != NULL)
            rv_ref_put_f32 (ctx, sig, sg, 1, (gint64[]) { ns }, RV_REF_TOL_AUTO);
          last_n = n;
        }
      if (last_n > 0 && !rv_scheduler_set_timesteps (s, last_n, error))
        return FALSE;

      /* single steps: <prefix>.stepJ.{in.*, noise0, out.prev_sample} */
      for (guint i = 0; i < c->tensors->len; i++)
        {
          const RvRefTensorInfo *t = &g_array_index (c->tensors, RvRefTensorInfo, i);
          g_autofree char *step_prefix = g_strdup_printf ("%s.step", kinds[k].prefix);
          if (!g_str_has_prefix (t->name, step_prefix) || !g_str_has_suffix (t->name, ".out.prev_sample"))
            continue;
          g_autofree char *base = g_strndup (t->name, strlen (t->name) - strlen (".out.prev_sample"));
          g_autofree char *mo_n = g_strconcat (base, ".in.model_output", NULL);
          g_autofree char *sa_n = g_strconcat (base, ".in.sample", NULL);
          g_autofree char *ts_n = g_strconcat (base, ".in.timestep", NULL);
          g_autofree char *pt_n = g_strconcat (base, ".in.prev_timestep", NULL);
          g_autofree char *no_n = g_strconcat (base, ".noise0", NULL);
          g_autofree float *mo = rv_ref_get_f32 (ctx, mo_n, error);
          g_autofree float *sample = mo ? rv_ref_get_f32 (ctx, sa_n, error) : NULL;
          g_autofree gint64 *tt = sample ? rv_ref_get_i64 (ctx, ts_n, error) : NULL;
          if (tt == NULL)
            return FALSE;
          gsize len = (gsize) rv_ref_lookup (ctx, sa_n)->numel;
          g_autofree float *noise = rv_ref_lookup (ctx, no_n) ? rv_ref_get_f32 (ctx, no_n, error)
                                                              : g_new0 (float, len);
          if (noise == NULL)
            return FALSE;
          if (kinds[k].kind == RV_SCHEDULER_UNCLIP)
            {
              g_autofree gint64 *pt = rv_ref_lookup (ctx, pt_n) ? rv_ref_get_i64 (ctx, pt_n, error) : NULL;
              rv_scheduler_unclip_step (s, tt[0], pt ? pt[0] : -1, mo, sample, len, noise);
            }
          else
            {
              int nt, idx = -1;
              const gint64 *ts = rv_scheduler_timesteps (s, &nt);
              for (int j = 0; j < nt; j++)
                if (ts[j] == tt[0])
                  idx = j;
              if (idx < 0)
                {
                  g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                               "%s: timestep %" G_GINT64_FORMAT " is not in the schedule of %d steps",
                               base, tt[0], nt);
                  return FALSE;
                }
              rv_scheduler_step (s, idx, mo, sample, len, noise);
            }
          put_recorded_shape (ctx, t->name, sample, RV_REF_TOL_AUTO);
        }
    }
  return TRUE;
}

/* ---- the prior pipeline ---- */

/* The case's model folder (params.model_folder), resolved in the reference folder. */
static char *
case_model_dir (RvRefContext *ctx, JsonObject *p, GError **error)
{
  const char *folder = param_string (p, "model_folder");
  if (folder == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "params.model_folder is missing");
      return NULL;
    }
  return rv_ref_model_folder (ctx, folder, error);
}

static gboolean
handle_prior_pipeline (RvRefContext *ctx, JsonObject *p, GError **error)
{
  g_autofree char *dir = case_model_dir (ctx, p, error);
  if (dir == NULL)
    return FALSE;
  RvSchedulerConfig sc;
  if (!case_scheduler (ctx, p, dir, RV_SCHEDULER_UNCLIP, &sc, error))
    return FALSE;
  g_autoptr (RvCmd) cmd = case_cmd (ctx, error);
  if (cmd == NULL)
    return FALSE;
  g_autofree char *tok_dir = g_build_filename (dir, "tokenizer", NULL);
  g_autofree char *text_dir = g_build_filename (dir, "text_encoder", NULL);
  g_autofree char *prior_dir = g_build_filename (dir, "prior", NULL);
  g_autofree char *vis_dir = g_build_filename (dir, "image_encoder", NULL);
  RvTokenizer *tok = CACHED (RvTokenizer, "pipe-tokenizer:", tok_dir, rv_tokenizer_new (tok_dir, error), rv_tokenizer_free);
  RvClipText *text = tok ? CACHED (RvClipText, "pipe-text:", text_dir,
                                   rv_clip_text_load (cmd, text_dir, RV_WEIGHTS_AS_STORED, error),
                                   rv_clip_text_free) : NULL;
  RvPrior *prior = text ? CACHED (RvPrior, "pipe-prior:", prior_dir,
                                  rv_prior_load (cmd, prior_dir, RV_WEIGHTS_AS_STORED, error),
                                  rv_prior_free) : NULL;
  if (prior == NULL)
    return FALSE;
  int E = rv_prior_config (prior)->embedding_dim;

  const char *negative = param_string (p, "negative_prompt");
  g_autofree float *zero = NULL;
  if (negative == NULL)
    {
      RvClipVision *vis = CACHED (RvClipVision, "pipe-vision:", vis_dir,
                                  rv_clip_vision_load (cmd, vis_dir, RV_WEIGHTS_AS_STORED, error),
                                  rv_clip_vision_free);
      if (vis == NULL)
        return FALSE;
      const RvClipVisionConfig *vc = rv_clip_vision_config (vis);
      gint64 shape[4] = { 1, vc->image_size, vc->image_size, vc->num_channels };
      g_autoptr (RvTensor) px = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 4, shape, error);
      if (px == NULL)
        return FALSE;
      rv_cmd_fill_u32 (cmd, px, 0);
      g_autoptr (RvTensor) emb = NULL;
      zero = g_new (float, E);
      if (rv_clip_vision_forward (vis, cmd, px, &emb, NULL))
        rv_cmd_download (cmd, emb, zero, E * sizeof (float));
      if (!rv_cmd_submit (cmd, error))
        return FALSE;
    }
  g_autofree float *latents = rv_ref_get_f32 (ctx, "in.latents", error);
  if (latents == NULL)
    return FALSE;
  Recorded rec = { ctx, 0 };
  RvNoise noise = { recorded_normal, &rec };
  RvPriorRun run = {
    .tokenizer = tok, .text = text, .prior = prior, .scheduler = &sc,
    .prompt = param_string (p, "prompt"), .negative = negative,
    .steps = (int) param_int (p, "num_inference_steps", 25),
    .guidance = (float) param_double (p, "guidance_scale", 4.0),
    .latents = latents, .noise = &noise, .zero_embed = zero,
  };
  if (run.prompt == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "params.prompt is missing");
      return FALSE;
    }

  g_autofree float *emb = g_new (float, E);
  g_autofree float *neg = g_new (float, E);
  if (!rv_pipe_prior (cmd, &run, emb, neg, put_step, ctx, NULL, error))
    return FALSE;
  RvSchedulerConfig c2 = sc;
  g_autoptr (RvScheduler) s = rv_scheduler_new (&c2, RV_SCHEDULER_UNCLIP, NULL);
  if (s != NULL && rv_scheduler_set_timesteps (s, run.steps, NULL))
    {
      int nt;
      const gint64 *ts = rv_scheduler_timesteps (s, &nt);
      put_i64_1d (ctx, "timesteps", ts, nt);
    }
  put_recorded_shape (ctx, "out.image_embeds", emb, RV_REF_TOL_AUTO);
  put_recorded_shape (ctx, "out.negative_image_embeds", neg, RV_REF_TOL_AUTO);
  return TRUE;
}

/* ---- decoder pipelines ---- */

static float *
image_nchw (const float *hwc_u8, int h, int w)
{
  gsize plane = (gsize) h * w;
  float *x = g_new (float, 3 * plane);
  for (gsize q = 0; q < plane; q++)
    for (int c = 0; c < 3; c++)
      x[c * plane + q] = hwc_u8[q * 3 + c] / 127.5f - 1.0f;
  return x;
}

static gboolean
handle_decoder_pipeline (RvRefContext *ctx, JsonObject *p, GError **error)
{
  g_autofree char *dir = case_model_dir (ctx, p, error);
  if (dir == NULL)
    return FALSE;
  const char *sname = param_string (p, "scheduler");
  RvSchedulerKind kind = RV_SCHEDULER_DDPM;
  if (sname != NULL && !rv_scheduler_kind_from_name (sname, &kind))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "unknown scheduler %s", sname);
      return FALSE;
    }
  RvSchedulerConfig sc;
  if (!case_scheduler (ctx, p, dir, kind, &sc, error))
    return FALSE;
  g_autoptr (RvCmd) cmd = case_cmd (ctx, error);
  if (cmd == NULL)
    return FALSE;
  g_autofree char *unet_dir = g_build_filename (dir, "unet", NULL);
  g_autofree char *movq_dir = g_build_filename (dir, "movq", NULL);
  RvUNet *unet = CACHED (RvUNet, "pipe-unet:", unet_dir,
                         rv_unet_load (cmd, unet_dir, RV_WEIGHTS_AS_STORED, error), rv_unet_free);
  RvMovq *movq = unet ? CACHED (RvMovq, "pipe-movq:", movq_dir,
                                rv_movq_load (cmd, movq_dir, RV_WEIGHTS_AS_STORED, TRUE, error),
                                rv_movq_free) : NULL;
  if (movq == NULL)
    return FALSE;

  g_autofree float *emb = rv_ref_get_f32 (ctx, "in.image_embeds", error);
  g_autofree float *neg = emb ? rv_ref_get_f32 (ctx, "in.negative_image_embeds", error) : NULL;
  if (neg == NULL)
    return FALSE;
  int E = (int) rv_ref_lookup (ctx, "in.image_embeds")->shape[1];
  int C = rv_movq_config (movq)->latent_channels;
  int lh = (int) param_int (p, "latent_height", 0), lw = (int) param_int (p, "latent_width", 0);
  int H = (int) param_int (p, "height", 0), W = (int) param_int (p, "width", 0);
  int f = rv_movq_scale_factor (movq);
  if (lh <= 0 || lw <= 0)
    {
      lh = (H + f * f - 1) / (f * f) * f;
      lw = (W + f * f - 1) / (f * f) * f;
    }
  gsize plane = (gsize) lh * lw, len = (gsize) C * plane;

  RvDecoderRun run = {
    .unet = unet, .scheduler = &sc, .kind = kind,
    .steps = (int) param_int (p, "num_inference_steps", 10),
    .guidance = (float) param_double (p, "guidance_scale", 4.0),
    .image_embeds = emb, .negative_embeds = neg, .embed_dim = E,
    .channels = C, .height = lh, .width = lw, .mode = RV_DECODE_TEXT,
  };
  Recorded rec = { ctx, 0 };
  RvNoise noise = { recorded_normal, &rec };
  run.noise = &noise;

  g_autofree float *latents = NULL, *image_latents = NULL, *mask = NULL;
  const RvStTensor *img_t = rv_ref_lookup (ctx, "in.image_uint8_hwc");
  if (img_t != NULL && (rv_ref_lookup (ctx, "in.mask") != NULL || rv_ref_lookup (ctx, "in.noise") != NULL))
    {
      int ih = (int) img_t->shape[0], iw = (int) img_t->shape[1];
      g_autofree float *u8 = rv_ref_get_f32 (ctx, "in.image_uint8_hwc", error);
      if (u8 == NULL)
        return FALSE;
      g_autofree float *x = image_nchw (u8, ih, iw);
      put_recorded_shape (ctx, "pre.image", x, 0.0);
      int lc = 0;
      image_latents = rv_pipe_movq_encode (cmd, movq, x, ih, iw, &lc, error);
      if (image_latents == NULL)
        return FALSE;
      put_recorded_shape (ctx, "pre.image_latents", image_latents, RV_REF_TOL_AUTO);
      run.image_latents = image_latents;
      if (rv_ref_lookup (ctx, "in.mask") != NULL)
        {
          run.mode = RV_DECODE_INPAINT;
          g_autofree float *m = rv_ref_get_f32 (ctx, "in.mask", error);
          if (m == NULL)
            return FALSE;
          g_autofree float *inv = g_new (float, (gsize) ih * iw);
          for (gsize q = 0; q < (gsize) ih * iw; q++)
            inv[q] = m[q] >= 0.5f ? 0.0f : 1.0f;
          put_recorded_shape (ctx, "pre.mask_inverted", inv, 0.0);
          g_autofree float *nearest = g_new (float, plane);
          for (int y = 0; y < lh; y++)
            for (int x2 = 0; x2 < lw; x2++)
              nearest[y * lw + x2] = inv[(gsize) (y * ih / lh) * iw + x2 * iw / lw];
          put_recorded_shape (ctx, "pre.mask_latent_nearest", nearest, 0.0);
          mask = rv_pipe_inpaint_mask (m, ih, iw, lh, lw);
          put_recorded_shape (ctx, "pre.mask_latent", mask, 0.0);
          g_autofree float *masked = g_new (float, len);
          for (int c = 0; c < C; c++)
            for (gsize q = 0; q < plane; q++)
              masked[c * plane + q] = image_latents[c * plane + q] * mask[q];
          put_recorded_shape (ctx, "pre.masked_image_latents", masked, RV_REF_TOL_AUTO);
          run.mask = mask;
          latents = rv_ref_get_f32 (ctx, "in.latents", error);
          if (latents == NULL)
            return FALSE;
        }
      else
        {
          run.mode = RV_DECODE_IMG2IMG;
          run.strength = (float) param_double (p, "strength", 0.3);
          latents = rv_ref_get_f32 (ctx, "in.noise", error);   /* the add_noise draw */
          if (latents == NULL)
            return FALSE;
        }
    }
  else
    {
      latents = rv_ref_get_f32 (ctx, "in.latents", error);
      if (latents == NULL)
        return FALSE;
    }
  run.latents = latents;

  /* schedule */
  g_autoptr (RvScheduler) s = rv_scheduler_new (&sc, kind, error);
  if (s == NULL || !rv_scheduler_set_timesteps (s, run.steps, error))
    return FALSE;
  int nt;
  const gint64 *ts = rv_scheduler_timesteps (s, &nt);
  int first = run.mode == RV_DECODE_IMG2IMG ? rv_pipe_img2img_start (nt, run.strength) : 0;
  if (rv_ref_lookup (ctx, "timesteps_all") != NULL)
    put_i64_1d (ctx, "timesteps_all", ts, nt);
  put_i64_1d (ctx, "timesteps", ts + first, nt - first);
  int ns;
  const float *sg = rv_scheduler_sigmas (s, &ns);
  if (sg != NULL && rv_ref_lookup (ctx, "sigmas") != NULL)
    rv_ref_put_f32 (ctx, "sigmas", sg, 1, (gint64[]) { ns }, RV_REF_TOL_AUTO);
  if (run.mode == RV_DECODE_IMG2IMG)
    {
      g_autofree float *noised = g_new (float, len);
      rv_scheduler_add_noise (s, ts[first], image_latents, latents, noised, len);
      put_recorded_shape (ctx, "pre.noised_latents", noised, RV_REF_TOL_AUTO);
    }

  g_autofree float *out = g_new (float, len);
  if (!rv_pipe_decoder (cmd, &run, out, put_step, ctx, NULL, error))
    return FALSE;

  /* end to end: decode the loop's latents, clamp, NHWC */
  g_autofree float *px = rv_pipe_movq_decode (cmd, movq, out, C, lh, lw, error);
  if (px == NULL)
    return FALSE;
  int oh = lh * f, ow = lw * f;
  gsize op = (gsize) oh * ow;
  g_autofree float *img = g_new (float, 3 * op);
  for (gsize q = 0; q < op; q++)
    for (int c = 0; c < 3; c++)
      img[q * 3 + c] = CLAMP (px[c * op + q] * 0.5f + 0.5f, 0.0f, 1.0f);
  /* tests/reference/kandinsky-2-2-tiny/README.md §7: the clamped images saturate, so the decode is held
   * to its tolerance before the clamp (calls.movq_decode.*, 1e-3). The
   * clamp divides by a much smaller norm, which magnifies the same round-off
   * in the few unsaturated pixels by an order of magnitude: the images get a
   * tolerance ten times the decode's. */
  put_recorded_shape (ctx, "out.images", img, 10 * rv_ref_tolerance (ctx, "calls.movq_decode.000.out.sample"));
  return TRUE;
}

gboolean
rv_ref_handle_pipeline (RvRefContext *ctx, GError **error)
{
  JsonObject *p = rv_ref_params (ctx);
  const char *sched = param_string (p, "scheduler");
  if (g_strcmp0 (sched, "unclip") == 0 || json_object_has_member (p, "prompt"))
    return handle_prior_pipeline (ctx, p, error);
  return handle_decoder_pipeline (ctx, p, error);
}
