/* rv-pipeline.c: the sampling loops of the Kandinsky 2.2 pipelines, as
 * diffusers' KandinskyV22{Prior,,Img2Img,Inpaint}Pipeline run them. */
#include "rv-pipeline.h"

#include <math.h>
#include <string.h>

void
rv_nchw_to_nhwc (const float *src, float *dst, int n, int c, int h, int w)
{
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          dst[(((gsize) b * h + y) * w + x) * c + ch] = src[(((gsize) b * c + ch) * h + y) * w + x];
}

void
rv_nhwc_to_nchw (const float *src, float *dst, int n, int c, int h, int w)
{
  for (int b = 0; b < n; b++)
    for (int ch = 0; ch < c; ch++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          dst[(((gsize) b * c + ch) * h + y) * w + x] = src[(((gsize) b * h + y) * w + x) * c + ch];
}

static gboolean
stopped (GError **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Cancelled");
  return FALSE;
}

static gboolean
cancelled (GCancellable *cancellable, GError **error)
{
  return g_cancellable_set_error_if_cancelled (cancellable, error);
}

static RvTensor *
upload (RvCmd *cmd, const float *data, int ndim, const gint64 *shape, GError **error)
{
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, ndim, shape, error);
  if (t != NULL)
    rv_cmd_upload (cmd, t, data, rv_tensor_nbytes (t));
  return t;
}

/* ---- text ---- */

gboolean
rv_pipe_encode_text (RvCmd *cmd, RvTokenizer *tok, RvClipText *text, const char *const *texts,
                     int n, RvTensor **hidden, RvTensor **embeds, guint8 **mask_out, int *dropped,
                     GError **error)
{
  int len = MIN (rv_tokenizer_max_length (tok), rv_clip_text_config (text)->max_position_embeddings);
  g_autofree gint32 *ids = g_new0 (gint32, (gsize) n * len);
  g_autofree gint32 *mask = g_new0 (gint32, (gsize) n * len);
  int most = 0;
  for (int i = 0; i < n; i++)
    {
      int d = 0;
      if (!rv_tokenizer_encode (tok, texts[i] ? texts[i] : "", len, ids + (gsize) i * len,
                                mask + (gsize) i * len, &d, error))
        return FALSE;
      most = MAX (most, d);
    }
  if (dropped != NULL)
    *dropped = most;
  if (!rv_clip_text_forward (text, cmd, ids, n, len, hidden, embeds) || !rv_cmd_submit (cmd, error))
    {
      if (rv_cmd_failed (cmd))
        rv_cmd_submit (cmd, error);
      if (hidden)
        g_clear_pointer (hidden, rv_tensor_free);
      if (embeds)
        g_clear_pointer (embeds, rv_tensor_free);
      return FALSE;
    }
  if (mask_out != NULL)
    {
      *mask_out = g_new (guint8, (gsize) n * len);
      for (gsize i = 0; i < (gsize) n * len; i++)
        (*mask_out)[i] = mask[i] != 0;
    }
  return TRUE;
}

/* ---- prior ---- */

gboolean
rv_pipe_prior (RvCmd *cmd, const RvPriorRun *run, float *image_embeds, float *negative_embeds,
               RvStepFunc step_fn, gpointer data, GCancellable *cancellable, GError **error)
{
  const RvPriorConfig *pc = rv_prior_config (run->prior);
  const int E = pc->embedding_dim;
  gboolean has_negative = run->negative != NULL;
  gboolean cfg = run->guidance > 1.0f;
  /* rows: the prompt, and the negative prompt when there is one; with
   * guidance the unconditional rows come first: [neg…] or [""]. */
  int rows = has_negative ? 2 : 1;
  int batch = cfg ? 2 * rows : rows;
  const char *texts[4];
  int k = 0;
  if (cfg)
    for (int r = 0; r < rows; r++)
      texts[k++] = has_negative ? run->negative : "";
  texts[k++] = run->prompt;
  if (has_negative)
    texts[k++] = run->negative;

  g_autoptr (RvTensor) hidden = NULL;
  g_autoptr (RvTensor) embeds = NULL;
  g_autofree guint8 *mask = NULL;
  gint64 t0 = g_get_monotonic_time ();
  if (!rv_pipe_encode_text (cmd, run->tokenizer, run->text, texts, batch, &hidden, &embeds, &mask,
                            NULL, error))
    return FALSE;
  if (run->text_seconds != NULL)
    *run->text_seconds += (g_get_monotonic_time () - t0) / 1e6;

  g_autoptr (RvScheduler) sched = rv_scheduler_new (run->scheduler, RV_SCHEDULER_UNCLIP, error);
  if (sched == NULL || !rv_scheduler_set_timesteps (sched, run->steps, error))
    return FALSE;
  int n_steps;
  const gint64 *ts = rv_scheduler_timesteps (sched, &n_steps);

  gsize len = (gsize) rows * E;
  g_autofree float *x = g_new (float, len);
  if (run->latents != NULL)
    memcpy (x, run->latents, len * sizeof (float));
  else if (!run->noise->normal (run->noise->self, x, len, error))
    return FALSE;
  g_autofree float *input = g_new (float, (gsize) batch * E);
  g_autofree float *out = g_new (float, (gsize) batch * E);
  g_autofree float *pred = g_new (float, len);
  g_autofree float *noise = g_new (float, len);
  g_autofree float *x0 = g_new (float, len);
  gint64 shape[2] = { batch, E };
  g_autoptr (RvTensor) hs = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 2, shape, error);
  if (hs == NULL)
    return FALSE;
  /* the text's part of every step, once (NULL: each step runs the whole forward) */
  g_autoptr (RvPriorPrefix) prefix = rv_prior_prefix_new (run->prior, cmd, embeds, hidden, mask);
  if (rv_cmd_failed (cmd))
    return rv_cmd_submit (cmd, error);

  for (int i = 0; i < n_steps; i++)
    {
      if (cancelled (cancellable, error))
        return FALSE;
      memcpy (input, x, len * sizeof (float));
      if (cfg)
        memcpy (input + len, x, len * sizeof (float));
      rv_cmd_upload (cmd, hs, input, (gsize) batch * E * sizeof (float));
      g_autoptr (RvTensor) o =
        prefix != NULL ? rv_prior_forward_prefixed (run->prior, cmd, prefix, hs, (float) ts[i])
                       : rv_prior_forward (run->prior, cmd, hs, (float) ts[i], embeds, hidden, mask);
      if (o != NULL)
        rv_cmd_download (cmd, o, out, (gsize) batch * E * sizeof (float));
      if (!rv_cmd_submit (cmd, error))
        return FALSE;
      if (cfg)
        for (gsize j = 0; j < len; j++)
          pred[j] = out[j] + run->guidance * (out[len + j] - out[j]);
      else
        memcpy (pred, out, len * sizeof (float));
      if (rv_scheduler_step_needs_noise (sched, i) &&
          !run->noise->normal (run->noise->self, noise, len, error))
        return FALSE;
      rv_scheduler_predict_x0 (sched, i, pred, x, x0, len);
      rv_scheduler_step (sched, i, pred, x, len, noise);
      if (step_fn != NULL && !step_fn (i, n_steps, x, x0, len, data))
        return stopped (error);
    }

  const float *mean = rv_prior_clip_mean (run->prior), *std = rv_prior_clip_std (run->prior);
  for (int j = 0; j < E; j++)
    image_embeds[j] = x[j] * std[j] + mean[j];
  if (has_negative)
    for (int j = 0; j < E; j++)
      negative_embeds[j] = x[E + j] * std[j] + mean[j];
  else
    memcpy (negative_embeds, run->zero_embed, E * sizeof (float));
  return TRUE;
}

/* ---- decoder ---- */

int
rv_pipe_img2img_start (int steps, float strength)
{
  int init = MIN ((int) (steps * strength), steps);
  return MAX (steps - init, 0);
}

gboolean
rv_pipe_decoder (RvCmd *cmd, const RvDecoderRun *run, float *out_latents, RvStepFunc step_fn,
                 gpointer data, GCancellable *cancellable, GError **error)
{
  return rv_pipe_decoder_batch (cmd, run, 1, out_latents, step_fn, data, cancellable, error);
}

/* Per-run state of a batched decoder loop. */
typedef struct {
  RvScheduler *sched;
  float       *x, *noise0, *masked, *known, *eps, *noise;
} DecoderRow;

static void
decoder_rows_free (DecoderRow *rows, int n)
{
  for (int r = 0; r < n; r++)
    {
      g_clear_pointer (&rows[r].sched, rv_scheduler_free);
      g_free (rows[r].x);
      g_free (rows[r].noise0);
      g_free (rows[r].masked);
      g_free (rows[r].known);
      g_free (rows[r].eps);
      g_free (rows[r].noise);
    }
  g_free (rows);
}

gboolean
rv_pipe_decoder_batch (RvCmd *cmd, const RvDecoderRun *runs, int n, float *out_latents,
                       RvStepFunc step_fn, gpointer data, GCancellable *cancellable,
                       GError **error)
{
  g_return_val_if_fail (n >= 1, FALSE);
  const RvDecoderRun *run = &runs[0];
  const RvUNetConfig *uc = rv_unet_config (run->unet);
  const int C = run->channels, H = run->height, W = run->width, E = run->embed_dim;
  const gsize plane = (gsize) H * W, len = (gsize) C * plane;
  const gboolean cfg = run->guidance > 1.0f;
  const int per = cfg ? 2 : 1;      /* UNet rows per run */
  const int batch = per * n;
  const int in_ch = uc->in_channels, out_ch = uc->out_channels;
  gboolean inpaint = run->mode == RV_DECODE_INPAINT;

  if (out_ch < C || in_ch != (inpaint ? 2 * C + 1 : C))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "The UNet takes %d channels and returns %d, which does not fit %d-channel "
                   "latents%s.", in_ch, out_ch, C, inpaint ? " for inpainting" : "");
      return FALSE;
    }

  DecoderRow *rows = g_new0 (DecoderRow, n);
  gboolean ok = FALSE;
  int n_steps = 0, first = 0;
  const gint64 *ts = NULL;
  for (int r = 0; r < n; r++)
    {
      rows[r].sched = rv_scheduler_new (run->scheduler, run->kind, error);
      if (rows[r].sched == NULL || !rv_scheduler_set_timesteps (rows[r].sched, run->steps, error))
        goto out;
    }
  ts = rv_scheduler_timesteps (rows[0].sched, &n_steps);
  first = run->mode == RV_DECODE_IMG2IMG ? rv_pipe_img2img_start (n_steps, run->strength) : 0;
  if (first >= n_steps)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "With strength %.2f and %d steps no denoising step would run; raise the "
                   "strength or the steps.", run->strength, n_steps);
      goto out;
    }

  {
  /* image embeddings: [negative, positive] per run with guidance */
  g_autofree float *emb = g_new (float, (gsize) batch * E);
  for (int r = 0; r < n; r++)
    {
      float *e = emb + (gsize) r * per * E;
      if (cfg)
        {
          memcpy (e, runs[r].negative_embeds, E * sizeof (float));
          memcpy (e + E, runs[r].image_embeds, E * sizeof (float));
        }
      else
        memcpy (e, runs[r].image_embeds, E * sizeof (float));
    }
  gint64 eshape[2] = { batch, E };
  g_autoptr (RvTensor) emb_t = upload (cmd, emb, 2, eshape, error);
  if (emb_t == NULL)
    goto out;

  /* initial latents, each run from its own noise; inpainting inputs: masked
   * image latents and the mask, as NCHW planes */
  for (int r = 0; r < n; r++)
    {
      DecoderRow *w = &rows[r];
      const RvDecoderRun *rr = &runs[r];
      w->x = g_new (float, len);
      w->noise0 = g_new (float, len);
      w->eps = g_new (float, len);
      w->noise = g_new (float, len);
      w->known = g_new (float, len);
      if (rr->latents != NULL)
        memcpy (w->noise0, rr->latents, len * sizeof (float));
      else if (!rr->noise->normal (rr->noise->self, w->noise0, len, error))
        goto out;
      if (run->mode == RV_DECODE_IMG2IMG)
        rv_scheduler_add_noise (w->sched, ts[first], rr->image_latents, w->noise0, w->x, len);
      else
        memcpy (w->x, w->noise0, len * sizeof (float));
      if (inpaint)
        {
          w->masked = g_new (float, len);
          for (int c = 0; c < C; c++)
            for (gsize q = 0; q < plane; q++)
              w->masked[c * plane + q] = rr->image_latents[c * plane + q] * rr->mask[q];
        }
    }

  g_autofree float *in_nchw = g_new (float, (gsize) batch * in_ch * plane);
  g_autofree float *in_nhwc = g_new (float, (gsize) batch * in_ch * plane);
  g_autofree float *out_nhwc = g_new (float, (gsize) batch * out_ch * plane);
  g_autofree float *out_nchw = g_new (float, (gsize) batch * out_ch * plane);
  /* what the step callback sees: every run's latents and x₀, one after another */
  g_autofree float *all_x = n > 1 ? g_new (float, n * len) : NULL;
  g_autofree float *all_x0 = g_new (float, n * len);
  g_autofree float *tsv = g_new (float, batch);
  gint64 sshape[4] = { batch, H, W, in_ch };
  g_autoptr (RvTensor) sample = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 4, sshape, error);
  if (sample == NULL)
    goto out;
  /* what every step derives from the image embeddings and the timesteps
   * alone, once */
  g_autofree float *loop_ts = g_new (float, (gsize) MAX (n_steps - first, 1) * batch);
  for (int i = first; i < n_steps; i++)
    for (int b = 0; b < batch; b++)
      loop_ts[(gsize) (i - first) * batch + b] = (float) ts[i];
  g_autoptr (RvUNetCond) cond = rv_unet_condition (run->unet, cmd, emb_t, loop_ts,
                                                   n_steps - first);
  if (cond == NULL)
    {
      if (rv_cmd_submit (cmd, error))
        g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "The UNet's conditioning could not "
                     "be recorded.");
      goto out;
    }

  for (int i = first; i < n_steps; i++)
    {
      if (cancelled (cancellable, error))
        goto out;
      for (int b = 0; b < batch; b++)
        {
          const DecoderRow *w = &rows[b / per];
          const RvDecoderRun *rr = &runs[b / per];
          float *dst = in_nchw + (gsize) b * in_ch * plane;
          memcpy (dst, w->x, len * sizeof (float));
          if (inpaint)
            {
              memcpy (dst + len, w->masked, len * sizeof (float));
              memcpy (dst + 2 * len, rr->mask, plane * sizeof (float));
            }
          tsv[b] = (float) ts[i];
        }
      rv_nchw_to_nhwc (in_nchw, in_nhwc, batch, in_ch, H, W);
      rv_cmd_upload (cmd, sample, in_nhwc, (gsize) batch * in_ch * plane * sizeof (float));
      g_autoptr (RvTensor) o = rv_unet_forward_cond (run->unet, cmd, sample, tsv, cond);
      if (o != NULL)
        rv_cmd_download (cmd, o, out_nhwc, (gsize) batch * out_ch * plane * sizeof (float));
      if (!rv_cmd_submit (cmd, error))
        goto out;
      rv_nhwc_to_nchw (out_nhwc, out_nchw, batch, out_ch, H, W);

      for (int r = 0; r < n; r++)
        {
          DecoderRow *w = &rows[r];
          const RvDecoderRun *rr = &runs[r];
          float *x0 = all_x0 + (gsize) r * len;
          /* guidance on the first C (noise) channels; the variance channels are dropped */
          const float *u = out_nchw + (gsize) r * per * out_ch * plane;
          const float *c = u + (gsize) out_ch * plane;
          for (gsize j = 0; j < len; j++)
            w->eps[j] = cfg ? u[j] + run->guidance * (c[j] - u[j]) : u[j];

          if (rv_scheduler_step_needs_noise (w->sched, i) &&
              !rr->noise->normal (rr->noise->self, w->noise, len, error))
            goto out;
          rv_scheduler_predict_x0 (w->sched, i, w->eps, w->x, x0, len);
          rv_scheduler_step (w->sched, i, w->eps, w->x, len, w->noise);

          if (inpaint)
            {
              if (i + 1 < n_steps)
                rv_scheduler_add_noise (w->sched, ts[i + 1], rr->image_latents, w->noise0, w->known, len);
              else
                memcpy (w->known, rr->image_latents, len * sizeof (float));
              for (int ch = 0; ch < C; ch++)
                for (gsize q = 0; q < plane; q++)
                  {
                    gsize j = ch * plane + q;
                    float m = rr->mask[q];
                    w->x[j] = m * w->known[j] + (1.0f - m) * w->x[j];
                  }
            }
          if (all_x != NULL)
            memcpy (all_x + (gsize) r * len, w->x, len * sizeof (float));
        }
      if (step_fn != NULL &&
          !step_fn (i - first, n_steps - first, all_x != NULL ? all_x : rows[0].x, all_x0,
                    n * len, data))
        {
          stopped (error);
          goto out;
        }
    }
  for (int r = 0; r < n; r++)
    {
      DecoderRow *w = &rows[r];
      const RvDecoderRun *rr = &runs[r];
      if (inpaint)
        for (int ch = 0; ch < C; ch++)
          for (gsize q = 0; q < plane; q++)
            {
              gsize j = ch * plane + q;
              float m = rr->mask[q];
              w->x[j] = m * rr->image_latents[j] + (1.0f - m) * w->x[j];
            }
      memcpy (out_latents + (gsize) r * len, w->x, len * sizeof (float));
    }
  ok = TRUE;
  }
out:
  decoder_rows_free (rows, n);
  return ok;
}

/* ---- MoVQ ---- */

float *
rv_pipe_movq_decode (RvCmd *cmd, RvMovq *movq, const float *latents, int channels, int height,
                     int width, GError **error)
{
  gsize plane = (gsize) height * width;
  g_autofree float *nhwc = g_new (float, channels * plane);
  rv_nchw_to_nhwc (latents, nhwc, 1, channels, height, width);
  gint64 shape[4] = { 1, height, width, channels };
  g_autoptr (RvTensor) z = upload (cmd, nhwc, 4, shape, error);
  if (z == NULL)
    return NULL;
  g_autoptr (RvTensor) img = rv_movq_decode (movq, cmd, z);
  if (img == NULL)
    {
      rv_cmd_submit (cmd, error);
      return NULL;
    }
  int H = img->shape[1], W = img->shape[2], C = img->shape[3];
  g_autofree float *out = g_new (float, (gsize) H * W * C);
  rv_cmd_download (cmd, img, out, (gsize) H * W * C * sizeof (float));
  if (!rv_cmd_submit (cmd, error))
    return NULL;
  float *nchw = g_new (float, (gsize) H * W * C);
  rv_nhwc_to_nchw (out, nchw, 1, C, H, W);
  return nchw;
}

float *
rv_pipe_movq_encode (RvCmd *cmd, RvMovq *movq, const float *image, int height, int width,
                     int *latent_channels, GError **error)
{
  gsize plane = (gsize) height * width;
  g_autofree float *nhwc = g_new (float, 3 * plane);
  rv_nchw_to_nhwc (image, nhwc, 1, 3, height, width);
  gint64 shape[4] = { 1, height, width, 3 };
  g_autoptr (RvTensor) x = upload (cmd, nhwc, 4, shape, error);
  if (x == NULL)
    return NULL;
  g_autoptr (RvTensor) z = rv_movq_encode (movq, cmd, x);
  if (z == NULL)
    {
      rv_cmd_submit (cmd, error);
      return NULL;
    }
  int h = z->shape[1], w = z->shape[2], c = z->shape[3];
  g_autofree float *out = g_new (float, (gsize) h * w * c);
  rv_cmd_download (cmd, z, out, (gsize) h * w * c * sizeof (float));
  if (!rv_cmd_submit (cmd, error))
    return NULL;
  float *nchw = g_new (float, (gsize) h * w * c);
  rv_nhwc_to_nchw (out, nchw, 1, c, h, w);
  if (latent_channels != NULL)
    *latent_channels = c;
  return nchw;
}

RvImage *
rv_pipe_to_image (const float *pixels, int height, int width)
{
  RvImage *img = rv_image_new (width, height, 3);
  gsize plane = (gsize) height * width;
  for (int c = 0; c < 3; c++)
    for (gsize p = 0; p < plane; p++)
      {
        float v = pixels[c * plane + p] * 0.5f + 0.5f;
        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        img->pixels[p * 3 + c] = (guint8) lrintf (v * 255.0f);
      }
  return img;
}

/* ---- inpainting masks ---- */

float *
rv_pipe_inpaint_mask (const float *mask, int height, int width, int lh, int lw)
{
  return rv_pipe_inpaint_mask_grown (mask, height, width, lh, lw, TRUE);
}

float *
rv_pipe_inpaint_mask_grown (const float *mask, int height, int width, int lh, int lw, gboolean grow)
{
  float *m = g_new (float, (gsize) lh * lw);
  for (int y = 0; y < lh; y++)
    for (int x = 0; x < lw; x++)
      {
        int sy = (int) ((gint64) y * height / lh), sx = (int) ((gint64) x * width / lw);
        m[y * lw + x] = mask[(gsize) sy * width + sx] >= 0.5f ? 0.0f : 1.0f;
      }
  if (!grow)
    return m;
  /* grow the repaint region: every latent pixel that is not kept clears six
   * neighbours, judged on the mask before this pass */
  static const int offs[6][2] = { { -1, 0 }, { 0, -1 }, { -1, -1 }, { 1, 0 }, { 0, 1 }, { 1, 1 } };
  g_autofree float *before = g_memdup2 (m, (gsize) lh * lw * sizeof (float));
  for (int y = 0; y < lh; y++)
    for (int x = 0; x < lw; x++)
      if (before[y * lw + x] != 1.0f)
        for (int k = 0; k < 6; k++)
          {
            int ny = y + offs[k][0], nx = x + offs[k][1];
            if (ny >= 0 && ny < lh && nx >= 0 && nx < lw)
              m[ny * lw + nx] = 0.0f;
          }
  return m;
}
