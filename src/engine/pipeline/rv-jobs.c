/* rv-jobs.c: running requests: seeds, the stages of each job kind, progress
 * with ETA, cancellation. Previews are in rv-preview.c, masks in rv-masks.c. */
#include "config.h"

#include "rv-jobs-private.h"
#include "rv-upscale.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* The decoder's noise comes from a stream of its own, so that changing the
 * prior's step count does not change the decoder's noise. */
#define DECODER_STREAM G_GUINT64_CONSTANT (0x5bd1e9955bd1e995)

static gboolean
noise_from_random (gpointer self, float *out, gsize n, GError **error)
{
  rv_random_normal (self, out, n);
  return TRUE;
}

static double
now_s (Job *j)
{
  return (g_get_monotonic_time () - j->t0) / 1e6;
}

static void
report (Job *j, RvStage stage, int step, int steps, const RvImage *preview)
{
  if (j->progress == NULL)
    return;
  /* work left in seconds, from what each kind of step has cost so far */
  double dstep = j->decoder_step_s > 0 ? j->decoder_step_s : -1;
  double pstep = j->prior_step_s > 0 ? j->prior_step_s : -1;
  int images_left = j->n_images - j->image - 1;
  double left = 0;
  gboolean known = dstep > 0 && (pstep > 0 || !j->with_prior);
  if (known)
    {
      double dec = j->decode_s > 0 ? j->decode_s : dstep;
      /* an extend job runs the decoder once per wave of frames (a decoder
       * step of a wave is what decoder_step_s measures) */
      int frames = MAX (j->n_waves, 1);
      int frames_left = j->n_waves > 0 ? j->n_waves - j->wave - 1 : 0;
      double per_frame = j->decoder_steps * dstep + dec;
      double per_image = (j->with_prior ? j->prior_steps * pstep : 0) + frames * per_frame;
      int prior_left = stage == RV_STAGE_PRIOR ? steps - step : 0;
      int decoder_left = stage <= RV_STAGE_PRIOR ? j->decoder_steps
                       : stage == RV_STAGE_DECODER ? steps - step : 0;
      left = (j->with_prior ? prior_left * pstep : 0) + decoder_left * dstep +
             (stage >= RV_STAGE_DECODE ? 0 : dec) + frames_left * per_frame +
             images_left * per_image;
    }
  if (stage == RV_STAGE_UPSCALE)
    {
      /* every image's upscale has `steps` tiles, each about as costly */
      known = j->tile_s > 0;
      left = ((steps - step) + images_left * steps) * j->tile_s;
    }
  double elapsed = now_s (j);
  RvProgress p = {
    .stage = stage,
    .image = j->image,
    .n_images = j->n_images,
    .step = step,
    .steps = steps,
    .elapsed = elapsed,
    .eta = known ? left : -1,
    .preview = preview,
    .frame = j->frame,
    .n_frames = j->n_frames,
    .frames_at_once = MAX (j->frames_at_once, 1),
  };
  p.fraction = known && elapsed + left > 0 ? elapsed / (elapsed + left) : 0;
  j->progress (&p, j->user_data);
}

static gboolean
on_prior_step (int step, int steps, const float *latents, const float *x0, gsize len, gpointer data)
{
  Job *j = data;
  gint64 t = g_get_monotonic_time ();
  double dt = (t - j->step_start) / 1e6;
  j->step_start = t;
  j->prior_done++;
  rv_device_fault_stage ("prior");
  j->prior_step_s = j->prior_step_s > 0 ? 0.8 * j->prior_step_s + 0.2 * dt : dt;
  report (j, RV_STAGE_PRIOR, step + 1, steps, NULL);
  return TRUE;
}

/* An extend job's preview: the canvas with the running frames' estimates
 * (x0: one after another) in their empty pixels. */
static void extend_preview_frame (Job *j, RvRect r);

static const RvImage *
extend_preview (Job *j, const float *x0)
{
  const RvImage *c = j->ext_canvas;
  if (j->ext_preview == NULL || j->ext_preview->width != c->width ||
      j->ext_preview->height != c->height || j->ext_preview->channels != c->channels)
    {
      g_clear_pointer (&j->ext_preview, rv_image_free);
      j->ext_preview = rv_image_new (c->width, c->height, c->channels);
    }
  memcpy (j->ext_preview->pixels, c->pixels, (gsize) c->width * c->height * c->channels);
  gsize len = (gsize) j->C * j->lh * j->lw;
  for (int k = 0; k < j->ext_n; k++)
    {
      _rv_preview_make (j, x0 + k * len);
      extend_preview_frame (j, j->ext_rects[k]);
    }
  return j->ext_preview;
}

static void
extend_preview_frame (Job *j, RvRect r)
{
  const RvImage *c = j->ext_canvas;
  g_autoptr (RvImage) sized = j->preview->width == r.width && j->preview->height == r.height
                                ? NULL : rv_pil_resize (j->preview, r.width, r.height,
                                                        RV_RESAMPLE_BILINEAR);
  const RvImage *est = sized ? sized : j->preview;
  for (int y = 0; y < r.height; y++)
    for (int x = 0; x < r.width; x++)
      {
        gsize cp = (gsize) (y + r.y) * c->width + x + r.x;
        if (j->ext_owner[cp] >= 0)
          continue;
        guint8 *dst = j->ext_preview->pixels + cp * c->channels;
        memcpy (dst, est->pixels + ((gsize) y * r.width + x) * est->channels, 3);
        if (c->channels == 4)
          dst[3] = 255;
      }
}

static gboolean
on_decoder_step (int step, int steps, const float *latents, const float *x0, gsize len, gpointer data)
{
  Job *j = data;
  gint64 t = g_get_monotonic_time ();
  double dt = (t - j->step_start) / 1e6;
  j->decoder_done++;
  j->decoder_step_s = j->decoder_step_s > 0 ? 0.8 * j->decoder_step_s + 0.2 * dt : dt;
  const RvImage *preview = NULL;
  if (j->req->previews && j->progress != NULL)
    {
      gboolean last = step + 1 == steps;
      if (j->e->have_projection || (!last && (step + 1) % MAX (j->decode_every, 1) == 0))
        {
          if (j->ext_canvas != NULL)
            preview = extend_preview (j, x0);
          else
            {
              _rv_preview_make (j, x0);
              preview = j->preview;
            }
        }
    }
  report (j, RV_STAGE_DECODER, step + 1, steps, preview);
  j->step_start = g_get_monotonic_time ();
  return TRUE;
}

void
rv_engine_last_stats (RvEngine *e, RvJobStats *stats)
{
  g_mutex_lock (&e->lock);
  *stats = e->stats;
  g_mutex_unlock (&e->lock);
}

/* ---- jobs ---- */

typedef struct {
  int width, height;      /* output pixels */
  int lh, lw;             /* latent */
} Size;

/* Kandinsky rounds the requested size up: latent side = ceil(side / f²)·f. */
static Size
output_size (RvEngine *e, int width, int height, int f)
{
  Size s;
  int f2 = f * f;
  s.lh = (height + f2 - 1) / f2 * f;
  s.lw = (width + f2 - 1) / f2 * f;
  s.height = s.lh * f;
  s.width = s.lw * f;
  return s;
}

static gboolean
invalid (GError **error, const char *message)
{
  g_set_error_literal (error, RV_ERROR, RV_ERROR_INVALID, message);
  return FALSE;
}

static gboolean
check_request (RvEngine *e, const RvRequest *req, GError **error)
{
  if (req->n < 1 || req->n > 64)
    return invalid (error, "The number of images must be between 1 and 64.");
  int max_side = req->kind == RV_JOB_UPSCALE ? RV_UPSCALE_MAX_SIDE : 4096;
  if (req->width < 0 || req->height < 0 || req->width > max_side || req->height > max_side)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "Image sides must be between 1 and %d pixels.", max_side);
      return FALSE;
    }
  if (req->kind == RV_JOB_UPSCALE && (req->upscale < 0 || req->upscale > 64))
    return invalid (error, "The upscale factor must be between 1 and 64.");
  if (req->prior_steps < 0 || req->prior_steps > 1000 || req->decoder_steps < 0 ||
      req->decoder_steps > 1000 || req->prior_steps == 1)
    return invalid (error, "Step counts must be between 2 and 1000 for the prior and between "
                           "1 and 1000 for the decoder.");
  if (req->prior_guidance > 100 || req->decoder_guidance > 100 ||
      isnan (req->prior_guidance) || isnan (req->decoder_guidance))
    return invalid (error, "Guidance scales above 100 are not meaningful.");
  if (req->kind == RV_JOB_GENERATE && (req->prompt == NULL || req->prompt[0] == '\0'))
    return invalid (error, "The prompt is empty.");
  if ((req->kind == RV_JOB_VARIATION || req->kind == RV_JOB_INPAINT || req->kind == RV_JOB_IMG2IMG ||
       req->kind == RV_JOB_UPSCALE || req->kind == RV_JOB_EXTEND) && req->image == NULL)
    return invalid (error, "This job needs an input image.");
  if (req->feather < 0 || req->feather > 256)
    return invalid (error, "The feather radius must be between 0 and 256 pixels.");
  if (req->kind == RV_JOB_EXTEND && !(req->extend_context <= 1))
    return invalid (error, "The context weight of an extend must be between 0 (the prompt) and 1 "
                           "(the picture around each frame).");
  return TRUE;
}

/* Settings shared by every job kind, with the model's defaults filled in. */
typedef struct {
  float           prior_guidance, decoder_guidance;
  RvSchedulerKind kind;
  const char     *negative;
} Settings;

static gboolean
settings_for (Job *j, Settings *s, GError **error)
{
  const RvRequest *req = j->req;
  const RvDefaults *d = &j->e->defaults;
  j->prior_steps = req->prior_steps ? req->prior_steps : d->prior_steps;
  j->decoder_steps = req->decoder_steps ? req->decoder_steps : d->decoder_steps;
  s->prior_guidance = req->prior_guidance >= 0 ? req->prior_guidance : d->prior_guidance;
  s->decoder_guidance = req->decoder_guidance >= 0 ? req->decoder_guidance
                      : req->kind == RV_JOB_EXTEND ? d->extend_guidance : d->decoder_guidance;
  const char *sname = req->scheduler ? req->scheduler : d->scheduler;
  if (!rv_scheduler_kind_from_name (sname, &s->kind) || s->kind == RV_SCHEDULER_UNCLIP)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "Unknown scheduler “%s”: use ddpm, ddim or dpmpp.", sname);
      return FALSE;
    }
  s->negative = req->negative_prompt && req->negative_prompt[0] ? req->negative_prompt : NULL;
  return TRUE;
}

/* Loads what a text job needs before its first step. */
static gboolean
prepare_text (Job *j, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = _rv_engine_need_prior (j->e, j->cmd, error) &&
                _rv_engine_need_zero_embed (j->e, j->cmd, error);
  j->stats.load += (g_get_monotonic_time () - t0) / 1e6;
  return ok;
}

/* Device memory the job may count on: most of the device-local heap. */
static guint64
memory_budget (RvEngine *e)
{
  return rv_device_caps (e->dev)->device_local_bytes / 10 * 9;
}

/* Before the decoder side loads: when the device is tight, the prior side
 * (text encoder, prior, vision tower) goes; it reloads for the next job. */
static void
make_room_for_decoder (Job *j, gboolean inpaint)
{
  RvEngine *e = j->e;
  gboolean loaded = inpaint ? e->unet_inpaint != NULL : e->unet != NULL;
  if (loaded || (e->text == NULL && e->prior == NULL && e->vision == NULL))
    return;
  guint64 in_use;
  rv_device_memory_stats (e->dev, &in_use, NULL, NULL);
  /* the decoder's weights are about the size of its files */
  const char *folder = inpaint ? e->inpaint_dir : e->decoder_dir;
  g_autofree char *unet_dir = g_build_filename (folder, "unet", NULL);
  guint64 need = 0;
  g_autoptr (GDir) d = g_dir_open (unet_dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (name, ".safetensors"))
      {
        g_autofree char *path = g_build_filename (unet_dir, name, NULL);
        GStatBuf st;
        if (g_stat (path, &st) == 0)
          need += st.st_size;
      }
  if (in_use + need <= memory_budget (e))
    return;
  g_clear_pointer (&e->text, rv_clip_text_free);
  g_clear_pointer (&e->prior, rv_prior_free);
  g_clear_pointer (&e->vision, rv_clip_vision_free);
  rv_device_trim (e->dev);
}

/* Refuses, before any work, a size whose activations cannot fit. */
static gboolean
check_memory (Job *j, RvUNet *unet, const Size *sz, GError **error)
{
  RvEngine *e = j->e;
  guint64 in_use;
  rv_device_memory_stats (e->dev, &in_use, NULL, NULL);
  /* the UNet's forward with the loop's time projections kept beside it */
  guint64 act = MAX (rv_unet_estimate_memory (rv_unet_config (unet), 2, sz->lh, sz->lw) +
                       rv_unet_condition_bytes (rv_unet_config (unet), 2, j->decoder_steps),
                     rv_movq_decode_peak_bytes (j->movq, 1, sz->lh, sz->lw));
  guint64 budget = memory_budget (e);
  if (in_use + act <= budget)
    return TRUE;
  g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
               "A %d×%d image needs about %.0f MiB of device memory for its activations on top "
               "of %.0f MiB of weights, more than this device has (%.0f MiB). Choose a smaller "
               "size.", sz->width, sz->height, act / 1048576.0, in_use / 1048576.0,
               budget / 1048576.0);
  return FALSE;
}

/* Loads the decoder side and sets the latent geometry for an output size. */
static gboolean
prepare_decoder (Job *j, gboolean inpaint, int width, int height, Size *sz, GError **error)
{
  RvEngine *e = j->e;
  gint64 t0 = g_get_monotonic_time ();
  make_room_for_decoder (j, inpaint);
  gboolean loaded = _rv_engine_need_decoder (e, j->cmd, inpaint, error);
  j->stats.load += (g_get_monotonic_time () - t0) / 1e6;
  if (!loaded)
    return FALSE;
  j->movq = inpaint ? e->movq_inpaint : e->movq;
  j->f = rv_movq_scale_factor (j->movq);
  *sz = output_size (e, width, height, j->f);
  j->C = rv_movq_config (j->movq)->latent_channels;
  j->lh = sz->lh;
  j->lw = sz->lw;
  if (!check_memory (j, inpaint ? e->unet_inpaint : e->unet, sz, error))
    return FALSE;
  if (j->req->previews && j->progress != NULL)
    _rv_preview_ensure_projection (j);
  return TRUE;
}

/* The prior for one prompt: image and negative image embeddings (E each). */
static gboolean
run_prior (Job *j, const Settings *s, const char *prompt, const char *negative, RvNoise *noise,
           float *emb, float *neg, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  if (!_rv_engine_need_prior (e, j->cmd, error))   /* it may have made room for the decoder */
    return FALSE;
  RvPriorRun pr = {
    .tokenizer = e->tokenizer, .text = e->text, .prior = e->prior,
    .scheduler = &e->prior_sched, .prompt = prompt, .negative = negative,
    .steps = j->prior_steps, .guidance = s->prior_guidance, .noise = noise,
    .zero_embed = e->zero_embed, .text_seconds = &j->stats.text,
  };
  gint64 t0 = g_get_monotonic_time ();
  double text0 = j->stats.text;
  j->step_start = t0;
  /* the text encoder, then the prior from its first step's callback on */
  rv_device_fault_stage ("text");
  gboolean ok = rv_pipe_prior (j->cmd, &pr, emb, neg, on_prior_step, j, cancellable, error);
  j->stats.prior += (g_get_monotonic_time () - t0) / 1e6 - (j->stats.text - text0);
  j->stats.prior_steps += j->prior_steps;
  return ok;
}

/* The decoder (n runs in one batch) and the MoVQ decode of each; returns
 * pixels NCHW, one image after another. */
static float *
run_decoder_batch (Job *j, const Settings *s, RvDecoderRun *drs, int n, const Size *sz,
                   GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  gsize len = (gsize) j->C * sz->lh * sz->lw;
  g_autofree float *lat = g_new (float, n * len);
  for (int r = 0; r < n; r++)
    {
      RvDecoderRun *dr = &drs[r];
      dr->scheduler = dr->mode == RV_DECODE_INPAINT ? &e->inpaint_sched : &e->decoder_sched;
      dr->kind = s->kind;
      dr->steps = j->decoder_steps;
      dr->guidance = s->decoder_guidance;
      dr->channels = j->C;
      dr->height = sz->lh;
      dr->width = sz->lw;
    }
  gint64 t0 = g_get_monotonic_time ();
  j->step_start = t0;
  rv_device_fault_stage ("decoder");
  if (!rv_pipe_decoder_batch (j->cmd, drs, n, lat, on_decoder_step, j, cancellable, error))
    return NULL;
  gint64 t = g_get_monotonic_time ();
  j->stats.decoder += (t - t0) / 1e6;
  j->stats.decoder_steps += drs[0].mode == RV_DECODE_IMG2IMG
                              ? drs[0].steps - rv_pipe_img2img_start (drs[0].steps, drs[0].strength)
                              : drs[0].steps;
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  rv_device_fault_stage ("decode");
  gsize npx = (gsize) 3 * sz->height * sz->width;
  g_autofree float *px = g_new (float, n * npx);
  for (int r = 0; r < n; r++)
    {
      g_autofree float *one = rv_pipe_movq_decode (j->cmd, j->movq, lat + r * len, j->C, sz->lh,
                                                   sz->lw, error);
      if (one == NULL)
        return NULL;
      memcpy (px + r * npx, one, npx * sizeof (float));
    }
  j->decode_s = (g_get_monotonic_time () - t) / 1e6;
  j->stats.decode += j->decode_s;
  if (!e->have_projection && j->decoder_step_s > 0)
    j->decode_every = (int) ceil (j->decode_s / (0.1 * j->decoder_step_s));
  report (j, RV_STAGE_DECODE, 1, 1, NULL);
  return g_steal_pointer (&px);
}

/* The decoder and the MoVQ decode for one image; returns pixels NCHW. */
static float *
run_decoder (Job *j, const Settings *s, RvDecoderRun *dr, const Size *sz, GCancellable *cancellable,
             GError **error)
{
  return run_decoder_batch (j, s, dr, 1, sz, cancellable, error);
}

static void
add_result (GPtrArray *results, RvImage *image, guint64 seed)
{
  RvResult *res = g_new0 (RvResult, 1);
  res->image = image;
  res->seed = seed;
  g_ptr_array_add (results, res);
}

/* ---- super-resolution ---- */

typedef struct {
  Job *j;
  int  done_before, total;
} TileProgress;

static gboolean
on_tile (int done, int total, const RvImage *partial, gpointer data)
{
  TileProgress *tp = data;
  Job *j = tp->j;
  gint64 t = g_get_monotonic_time ();
  double dt = (t - j->step_start) / 1e6;
  j->step_start = t;
  j->tile_s = j->tile_s > 0 ? 0.8 * j->tile_s + 0.2 * dt : dt;
  rv_device_fault_stage ("upscale");
  report (j, RV_STAGE_UPSCALE, tp->done_before + done, tp->total, partial);
  return TRUE;
}

static int
count_tiles (int w, int h, int tile)
{
  return ((w + tile - 1) / tile) * ((h + tile - 1) / tile);
}

/* img through the upscaler until both sides reach (width, height), then
 * resized to exactly that size (Pillow's Lanczos). */
static RvImage *
upscale_to (Job *j, const RvImage *img, int width, int height, GCancellable *cancellable,
            GError **error)
{
  RvEngine *e = j->e;
  gint64 t0 = g_get_monotonic_time ();
  rv_device_fault_stage ("upscale");
  if (!_rv_engine_need_upscaler (e, j->cmd, error))
    return NULL;
  const RvUpscalerConfig *cfg = rv_upscaler_config (e->upscaler);
  int s = rv_upscaler_config_scale (cfg);
  guint64 in_use = 0;
  rv_device_memory_stats (e->dev, &in_use, NULL, NULL);
  guint64 budget = memory_budget (e) > in_use ? memory_budget (e) - in_use : 0;
  RvTiling t = rv_upscale_device_tiling (e->dev, cfg);
  if (rv_upscaler_estimate_memory (cfg, 1, t.tile + 2 * t.overlap, t.tile + 2 * t.overlap) > budget)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                   "The graphics device has too little free memory for the upscaler %s, even "
                   "in small tiles. Close other programs that use the device, or choose a "
                   "smaller upscaler.", e->upscaler_name);
      return NULL;
    }
  TileProgress tp = { j, 0, 0 };
  int passes = 0;
  for (int w = img->width, h = img->height; s > 1 && (w < width || h < height); w *= s, h *= s)
    {
      tp.total += count_tiles (w, h, t.tile);
      passes++;
    }
  g_autoptr (RvImage) cur = rv_image_copy (img);
  j->step_start = g_get_monotonic_time ();
  report (j, RV_STAGE_UPSCALE, 0, MAX (tp.total, 1), NULL);
  for (int p = 0; p < passes; p++)
    {
      RvImage *next = rv_upscale_image (e->upscaler, j->cmd, cur, &t, on_tile,
                                        j->req->previews && j->progress != NULL, &tp, cancellable,
                                        error);
      if (next == NULL)
        return NULL;
      tp.done_before += count_tiles (cur->width, cur->height, t.tile);
      rv_image_free (cur);
      cur = next;
    }
  if (cur->width != width || cur->height != height)
    {
      RvImage *sized = rv_pil_resize (cur, width, height, RV_RESAMPLE_LANCZOS);
      rv_image_free (cur);
      cur = sized;
    }
  j->stats.upscale += (g_get_monotonic_time () - t0) / 1e6;
  return g_steal_pointer (&cur);
}

/* A text-mode job's results, generated at the native size, to the size asked. */
static gboolean
upscale_results (Job *j, GPtrArray *results, int width, int height, GCancellable *cancellable,
                 GError **error)
{
  for (j->image = 0; j->image < (int) results->len; j->image++)
    {
      RvResult *r = g_ptr_array_index (results, j->image);
      RvImage *big = upscale_to (j, r->image, width, height, cancellable, error);
      if (big == NULL)
        return FALSE;
      rv_image_free (r->image);
      r->image = big;
    }
  return TRUE;
}

/* Any picture, enlarged by a power of the upscaler's scale (or to the
 * request's exact size). */
static GPtrArray *
run_upscale (Job *j, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  int s = rv_engine_upscaler_scale (e);
  if (s == 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "The model set %s has no upscaler: choose a Real-ESRGAN model folder "
                   "(tools/convert-esrgan.py makes one from a .pth file).", e->model_name);
      return NULL;
    }
  int factor = req->upscale > 0 ? req->upscale : s;
  int power = 1;
  while (power < factor && s > 1)
    power *= s;
  if (power != factor)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "The upscaler %s enlarges ×%d: ×%d is not a power of that (ask for ×%d or "
                   "×%d, or choose another upscaler).", e->upscaler_name, s, factor, s, s * s);
      return NULL;
    }
  int w = req->width > 0 ? req->width : req->image->width * factor;
  int h = req->height > 0 ? req->height : req->image->height * factor;
  if ((gint64) req->image->width * factor > RV_UPSCALE_MAX_SIDE ||
      (gint64) req->image->height * factor > RV_UPSCALE_MAX_SIDE || w > RV_UPSCALE_MAX_SIDE ||
      h > RV_UPSCALE_MAX_SIDE || (gint64) w * h > RV_UPSCALE_MAX_PIXELS)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "A %d×%d picture enlarged ×%d would be over the limits (%d pixels a side, %d "
                   "megapixels).", req->image->width, req->image->height, factor,
                   RV_UPSCALE_MAX_SIDE, RV_UPSCALE_MAX_PIXELS >> 20);
      return NULL;
    }
  j->n_images = 1;
  report (j, RV_STAGE_LOAD, 0, 1, NULL);
  g_autoptr (RvImage) out = upscale_to (j, req->image, w, h, cancellable, error);
  if (out == NULL)
    return NULL;
  g_autoptr (GPtrArray) results = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_result_free);
  add_result (results, g_steal_pointer (&out), req->seed);
  return g_steal_pointer (&results);
}

/* The output size of an image-input job: the request's, else the input's
 * aspect ratio at about the model's default area. */
static void
work_size (Job *j, const RvImage *img, int *width, int *height)
{
  const RvDefaults *d = &j->e->defaults;
  if (j->req->width > 0 && j->req->height > 0)
    {
      *width = j->req->width;
      *height = j->req->height;
      return;
    }
  double area = (double) d->width * d->height;
  double s = sqrt (area / ((double) img->width * img->height));
  *width = MAX (1, (int) lround (img->width * s));
  *height = MAX (1, (int) lround (img->height * s));
}

/* The n images of a text-mode job (text-to-image, variations, mix): image k
 * gets seed + k and the embeddings at embeds + k·embeds_stride (negatives
 * likewise; a stride of 0 shares one embedding across the batch). */
static GPtrArray *
decode_images (Job *j, const Settings *s, const Size *sz, const float *embeds, gsize embeds_stride,
               const float *negatives, gsize negatives_stride, GCancellable *cancellable,
               GError **error)
{
  RvEngine *e = j->e;
  g_autoptr (GPtrArray) results = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_result_free);
  for (j->image = 0; j->image < j->n_images; j->image++)
    {
      guint64 seed = j->req->seed + (guint64) j->image;
      RvRandom drng;
      rv_random_init (&drng, seed ^ DECODER_STREAM);
      RvNoise dnoise = { noise_from_random, &drng };
      RvDecoderRun dr = {
        .unet = e->unet, .image_embeds = embeds + (gsize) j->image * embeds_stride,
        .negative_embeds = negatives + (gsize) j->image * negatives_stride, .embed_dim = e->embed_dim,
        .mode = RV_DECODE_TEXT, .noise = &dnoise,
      };
      g_autofree float *px = run_decoder (j, s, &dr, sz, cancellable, error);
      if (px == NULL)
        return NULL;
      add_result (results, rv_pipe_to_image (px, sz->height, sz->width), seed);
    }
  return g_steal_pointer (&results);
}

/* 8-bit RGB(A) → (1, 3, H, W) in [−1, 1] at the given size (PIL bicubic). */
static float *
image_to_latent_input (const RvImage *img, int width, int height)
{
  g_autoptr (RvImage) r = rv_pil_resize (img, width, height, RV_RESAMPLE_BICUBIC);
  gsize plane = (gsize) width * height;
  float *x = g_new (float, 3 * plane);
  for (gsize p = 0; p < plane; p++)
    for (int c = 0; c < 3; c++)
      x[c * plane + p] = r->pixels[p * r->channels + c] / 127.5f - 1.0f;
  return x;
}

static gboolean
encode_image_embedding (Job *j, const RvImage *img, float *emb, GError **error)
{
  RvEngine *e = j->e;
  if (!_rv_engine_need_vision (e, j->cmd, error))
    return FALSE;
  int h = 0, w = 0;
  g_autofree float *px = rv_clip_preprocess (&e->improc, img, &h, &w, error);
  if (px == NULL)
    return FALSE;
  gint64 shape[4] = { 1, h, w, 3 };
  g_autoptr (RvTensor) t = rv_tensor_new (e->dev, RV_DTYPE_F32, 4, shape, error);
  if (t == NULL)
    return FALSE;
  rv_cmd_upload (j->cmd, t, px, rv_tensor_nbytes (t));
  g_autoptr (RvTensor) out = NULL;
  if (rv_clip_vision_forward (e->vision, j->cmd, t, &out, NULL))
    rv_cmd_download (j->cmd, out, emb, e->embed_dim * sizeof (float));
  return rv_cmd_submit (j->cmd, error);
}

/* The prior for every image of the job, first: the decoder side may then
 * take the prior's memory. embs and negs receive n·E floats. */
static gboolean
run_priors (Job *j, const Settings *s, const char *prompt, float *embs, float *negs,
            GCancellable *cancellable, GError **error)
{
  int E = j->e->embed_dim;
  for (j->image = 0; j->image < j->n_images; j->image++)
    {
      RvRandom prng;
      rv_random_init (&prng, j->req->seed + (guint64) j->image);
      RvNoise pnoise = { noise_from_random, &prng };
      if (!run_prior (j, s, prompt, s->negative, &pnoise, embs + (gsize) j->image * E,
                      negs + (gsize) j->image * E, cancellable, error))
        return FALSE;
    }
  return TRUE;
}

/* The load and prior stages of a job with a prompt: each image's image and
 * negative embeddings (n·E floats each, g_free). */
static gboolean
prompt_stage (Job *j, const Settings *s, float **embs, float **negs, GCancellable *cancellable,
              GError **error)
{
  j->with_prior = TRUE;
  rv_device_fault_stage ("load");
  report (j, RV_STAGE_LOAD, 0, 1, NULL);
  if (!prepare_text (j, error))
    return FALSE;
  gsize n = (gsize) j->n_images * j->e->embed_dim;
  g_autofree float *e = g_new (float, n);
  g_autofree float *ne = g_new (float, n);
  if (!run_priors (j, s, j->req->prompt, e, ne, cancellable, error))
    return FALSE;
  *embs = g_steal_pointer (&e);
  *negs = g_steal_pointer (&ne);
  return TRUE;
}

static GPtrArray *
run_generate (Job *j, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  Settings s;
  if (!settings_for (j, &s, error))
    return NULL;
  g_autofree float *embs = NULL, *negs = NULL;
  if (!prompt_stage (j, &s, &embs, &negs, cancellable, error))
    return NULL;
  int E = e->embed_dim;   /* known once the prior has loaded */
  Size sz;
  if (!prepare_decoder (j, FALSE, req->width ? req->width : e->defaults.width,
                        req->height ? req->height : e->defaults.height, &sz, error))
    return NULL;

  return decode_images (j, &s, &sz, embs, E, negs, E, cancellable, error);
}

/* Variations: the image's CLIP embedding through the decoder. */
static GPtrArray *
run_variation (Job *j, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  Settings s;
  if (!settings_for (j, &s, error))
    return NULL;
  rv_device_fault_stage ("load");
  report (j, RV_STAGE_LOAD, 0, 1, NULL);
  if (!_rv_engine_need_zero_embed (e, j->cmd, error))
    return NULL;
  int w, h;
  work_size (j, req->image, &w, &h);
  if (req->width <= 0 || req->height <= 0)
    w = h = MAX (e->defaults.width, e->defaults.height);   /* variations are square by default */
  Size sz;
  if (!prepare_decoder (j, FALSE, w, h, &sz, error))
    return NULL;
  int E = e->embed_dim;
  g_autofree float *emb = g_new (float, E);
  rv_device_fault_stage ("encode");
  report (j, RV_STAGE_ENCODE, 0, 1, NULL);
  if (!encode_image_embedding (j, req->image, emb, error))
    return NULL;
  report (j, RV_STAGE_ENCODE, 1, 1, NULL);
  return decode_images (j, &s, &sz, emb, 0, e->zero_embed, 0, cancellable, error);
}

/* Interpolation: weighted sum of prompt and image embeddings. */
static GPtrArray *
run_mix (Job *j, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  Settings s;
  if (!settings_for (j, &s, error))
    return NULL;
  if (req->n_mix < 1 || req->mix == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "A mix needs at least one prompt or image.");
      return NULL;
    }
  gboolean any_prompt = FALSE;
  for (int i = 0; i < req->n_mix; i++)
    {
      if ((req->mix[i].prompt == NULL) == (req->mix[i].image == NULL))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       "Each mix item is either a prompt or an image (item %d).", i + 1);
          return NULL;
        }
      if (!isfinite (req->mix[i].weight))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "Mix weights must be numbers.");
          return NULL;
        }
      any_prompt |= req->mix[i].prompt != NULL;
    }
  j->with_prior = any_prompt;
  rv_device_fault_stage ("load");
  report (j, RV_STAGE_LOAD, 0, 1, NULL);
  if (!_rv_engine_need_zero_embed (e, j->cmd, error))
    return NULL;
  int E = e->embed_dim;
  g_autofree float *item = g_new (float, E);
  g_autofree float *unused = g_new (float, E);
  g_autofree float *embs = g_new0 (float, (gsize) j->n_images * E);
  for (j->image = 0; j->image < j->n_images; j->image++)
    {
      RvRandom prng;
      rv_random_init (&prng, req->seed + (guint64) j->image);
      RvNoise pnoise = { noise_from_random, &prng };
      float *emb = embs + (gsize) j->image * E;
      for (int i = 0; i < req->n_mix; i++)
        {
          const RvMixItem *m = &req->mix[i];
          gboolean ok = m->prompt ? run_prior (j, &s, m->prompt, NULL, &pnoise, item, unused,
                                               cancellable, error)
                                  : encode_image_embedding (j, m->image, item, error);
          if (!ok)
            return NULL;
          for (int k = 0; k < E; k++)
            emb[k] += m->weight * item[k];
        }
    }
  Size sz;
  if (!prepare_decoder (j, FALSE, req->width ? req->width : e->defaults.width,
                        req->height ? req->height : e->defaults.height, &sz, error))
    return NULL;
  return decode_images (j, &s, &sz, embs, E, e->zero_embed, 0, cancellable, error);
}

/* Inpainting (§11.4) and img2img (§11.3): the image through the MoVQ
 * encoder, then the decoder from part of the schedule or with the known
 * region re-imposed every step. */
static GPtrArray *
run_edit (Job *j, gboolean inpaint, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  Settings s;
  if (!settings_for (j, &s, error))
    return NULL;
  if (req->image == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "This job needs an input image.");
      return NULL;
    }
  if (!inpaint && !(req->strength > 0 && req->strength <= 1))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "The strength must be above 0 and at most 1 (got %g).", req->strength);
      return NULL;
    }
  if (req->prompt == NULL || req->prompt[0] == '\0')
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "The prompt is empty.");
      return NULL;
    }
  g_autofree float *repaint = inpaint ? _rv_repaint_mask (req->image, req->mask, req->mask_mode, error) : NULL;
  if (inpaint && repaint == NULL)
    return NULL;

  g_autofree float *embs = NULL, *negs = NULL;
  if (!prompt_stage (j, &s, &embs, &negs, cancellable, error))
    return NULL;
  int E = e->embed_dim;   /* known once the prior has loaded */
  j->image = 0;
  int w, h;
  work_size (j, req->image, &w, &h);
  Size sz;
  if (!prepare_decoder (j, inpaint, w, h, &sz, error))
    return NULL;

  /* the image in latent space, at the working size */
  rv_device_fault_stage ("encode");
  report (j, RV_STAGE_ENCODE, 0, 1, NULL);
  g_autofree float *x = image_to_latent_input (req->image, sz.width, sz.height);
  int lc = 0;
  g_autofree float *image_latents = rv_pipe_movq_encode (j->cmd, j->movq, x, sz.height, sz.width, &lc, error);
  if (image_latents == NULL)
    return NULL;
  if (lc != j->C)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "The MoVQ encoder makes %d channels, the "
                   "decoder takes %d.", lc, j->C);
      return NULL;
    }
  g_autofree float *latent_mask = NULL;
  if (inpaint)
    latent_mask = _rv_repaint_mask_latent (repaint, req->image->width, req->image->height,
                                           sz.width, sz.height, sz.lh, sz.lw, TRUE);
  report (j, RV_STAGE_ENCODE, 1, 1, NULL);

  g_autoptr (GPtrArray) results = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_result_free);
  for (j->image = 0; j->image < j->n_images; j->image++)
    {
      guint64 seed = req->seed + (guint64) j->image;
      RvRandom drng;
      rv_random_init (&drng, seed ^ DECODER_STREAM);
      RvNoise dnoise = { noise_from_random, &drng };
      RvDecoderRun dr = {
        .unet = inpaint ? e->unet_inpaint : e->unet, .image_embeds = embs + (gsize) j->image * E,
        .negative_embeds = negs + (gsize) j->image * E,
        .embed_dim = E, .mode = inpaint ? RV_DECODE_INPAINT : RV_DECODE_IMG2IMG,
        .strength = req->strength, .image_latents = image_latents, .mask = latent_mask,
        .noise = &dnoise,
      };
      g_autofree float *px = run_decoder (j, &s, &dr, &sz, cancellable, error);
      if (px == NULL)
        return NULL;
      g_autoptr (RvImage) gen = rv_pipe_to_image (px, sz.height, sz.width);
      RvImage *out = inpaint ? _rv_composite (req->image, gen, repaint, req->feather)
                             : g_steal_pointer (&gen);
      add_result (results, out, seed);
    }
  return g_steal_pointer (&results);
}

/* Outpainting: the canvas filled frame by frame (the plan is in
 * rv-extend.c), each frame an inpainting of a native-size crop whose repaint
 * region is what is still empty in it. */
static GPtrArray *
run_extend (Job *j, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  Settings s;
  if (!settings_for (j, &s, error))
    return NULL;
  if (req->prompt == NULL || req->prompt[0] == '\0')
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "The prompt is empty.");
      return NULL;
    }
  g_autoptr (RvExtendPlan) plan = _rv_extend_plan (req, e->extend_frame, error);
  if (plan == NULL)
    return NULL;
  j->n_frames = plan->frames->len;
  g_autofree float *embs = NULL, *negs = NULL;
  if (!prompt_stage (j, &s, &embs, &negs, cancellable, error))
    return NULL;
  int E = e->embed_dim;   /* known once the prior has loaded */
  j->image = 0;
  Size sz;
  if (!prepare_decoder (j, TRUE, plan->fw, plan->fh, &sz, error))
    return NULL;
  float feather = req->feather > 0 ? req->feather : MAX (1, MIN (plan->fw, plan->fh) / 8);
  gsize fn = (gsize) plan->fw * plan->fh;
  g_autofree float *repaint = g_new (float, fn);

  g_autoptr (GPtrArray) results = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_result_free);
  int n_waves = 0;
  for (guint k = 0; k < plan->waves->len; k++)
    n_waves = MAX (n_waves, g_array_index (plan->waves, int, k) + 1);
  j->n_waves = n_waves;
  guint nf = plan->frames->len;
  g_autofree RvRect *rects = g_new (RvRect, nf);
  g_autofree int *members = g_new (int, nf);
  g_autofree RvDecoderRun *runs = g_new (RvDecoderRun, nf);
  g_autofree RvRandom *rngs = g_new (RvRandom, nf);
  g_autofree RvNoise *noises = g_new (RvNoise, nf);
  g_autofree float **lat_in = g_new0 (float *, nf);
  g_autofree float **masks = g_new0 (float *, nf);
  g_autofree float *frame_embs = g_new (float, (gsize) nf * E);
  float context = req->extend_context >= 0 ? req->extend_context : e->defaults.extend_context;
  gboolean ok = TRUE;
  for (j->image = 0; j->image < j->n_images && ok; j->image++)
    {
      guint64 seed = req->seed + (guint64) j->image;
      g_autoptr (RvImage) canvas = _rv_extend_canvas (plan, req->image);
      g_autofree gint32 *owner = g_memdup2 (plan->owner, (gsize) plan->width * plan->height *
                                                          sizeof (gint32));
      j->ext_canvas = canvas;
      j->ext_owner = owner;
      int done_frames = 0;
      /* wave by wave: the frames of a wave are cropped and encoded, denoised
       * in one decoder batch, decoded, then pasted in the plan's order */
      for (j->wave = 0; j->wave < n_waves && ok; j->wave++)
        {
          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            {
              ok = FALSE;
              break;
            }
          int n = 0;
          for (guint k = 0; k < nf; k++)
            if (g_array_index (plan->waves, int, k) == j->wave)
              members[n++] = (int) k;
          rv_device_fault_stage ("encode");
          report (j, RV_STAGE_ENCODE, 0, 1, NULL);
          for (int m = 0; m < n && ok; m++)
            {
              int k = members[m];
              RvRect r = g_array_index (plan->frames, RvRect, k);
              rects[m] = r;
              g_autoptr (RvImage) crop = _rv_extend_crop (canvas, owner, r, repaint);
              /* the frame's conditioning: the prompt's embedding, mixed with
               * the image embedding of the crop (what is already there, the
               * empty part given the nearest colours) by the context weight */
              float *fe = frame_embs + (gsize) m * E;
              memcpy (fe, embs + (gsize) j->image * E, E * sizeof (float));
              if (context > 0)
                {
                  g_autofree float *ce = g_new (float, E);
                  g_autoptr (RvImage) seen = _rv_extend_context_crop (canvas, owner, r);
                  if (!encode_image_embedding (j, seen, ce, error))
                    {
                      ok = FALSE;
                      break;
                    }
                  for (int q = 0; q < E; q++)
                    fe[q] = (1 - context) * fe[q] + context * ce[q];
                }
              g_autofree float *x = image_to_latent_input (crop, sz.width, sz.height);
              int lc = 0;
              lat_in[m] = rv_pipe_movq_encode (j->cmd, j->movq, x, sz.height, sz.width, &lc, error);
              if (lat_in[m] == NULL)
                ok = FALSE;
              else if (lc != j->C)
                {
                  g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "The MoVQ encoder makes %d "
                               "channels, the decoder takes %d.", lc, j->C);
                  ok = FALSE;
                }
              if (!ok)
                break;
              /* the kept latents reach the empty area's border: what is there is
               * put back exactly, so the decoder continues it rather than
               * redrawing a band of it that would be thrown away */
              masks[m] = _rv_repaint_mask_latent (repaint, r.width, r.height, sz.width, sz.height,
                                                  sz.lh, sz.lw, FALSE);
              /* every frame its own noise, from the image's seed and the frame */
              rv_random_init (&rngs[m], (seed ^ DECODER_STREAM) +
                                        (guint64) k * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
              noises[m] = (RvNoise) { noise_from_random, &rngs[m] };
              runs[m] = (RvDecoderRun) {
                .unet = e->unet_inpaint, .image_embeds = fe,
                .negative_embeds = negs + (gsize) j->image * E, .embed_dim = E,
                .mode = RV_DECODE_INPAINT, .image_latents = lat_in[m], .mask = masks[m],
                .noise = &noises[m],
              };
            }
          if (ok)
            {
              report (j, RV_STAGE_ENCODE, 1, 1, NULL);
              j->frame = done_frames;
              j->frames_at_once = n;
              j->ext_rects = rects;
              j->ext_n = n;
              g_autofree float *px = run_decoder_batch (j, &s, runs, n, &sz, cancellable, error);
              j->ext_rects = NULL;
              j->ext_n = 0;
              if (px == NULL)
                ok = FALSE;
              gsize npx = (gsize) 3 * sz.height * sz.width;
              for (int m = 0; m < n && ok; m++)
                {
                  g_autoptr (RvImage) gen = rv_pipe_to_image (px + m * npx, sz.height, sz.width);
                  RvRect r = rects[m];
                  if (gen->width != r.width || gen->height != r.height)
                    {
                      RvImage *sized = rv_pil_resize (gen, r.width, r.height, RV_RESAMPLE_BICUBIC);
                      rv_image_free (gen);
                      gen = sized;
                    }
                  _rv_extend_paste (canvas, owner, r, gen, members[m], feather);
                }
              if (ok && req->previews)
                report (j, RV_STAGE_DECODE, 1, 1, canvas);
              done_frames += n;
            }
          for (int m = 0; m < n; m++)
            {
              g_clear_pointer (&lat_in[m], g_free);
              g_clear_pointer (&masks[m], g_free);
            }
        }
      if (ok)
        _rv_extend_smooth_seams (canvas, owner);
      j->frame = j->n_frames - 1;
      j->frames_at_once = 1;
      j->wave = MAX (n_waves - 1, 0);
      j->ext_canvas = NULL;
      j->ext_owner = NULL;
      if (ok)
        add_result (results, g_steal_pointer (&canvas), seed);
    }
  if (!ok)
    return NULL;
  return g_steal_pointer (&results);
}

GPtrArray *
rv_engine_run (RvEngine *e, const RvRequest *req, RvProgressFunc progress, gpointer user_data,
               GCancellable *cancellable, GError **error)
{
  if (!check_request (e, req, error))
    return NULL;
  g_mutex_lock (&e->lock);
  /* a device lost before and not opened again since */
  if (rv_device_is_lost (e->dev) && !_rv_engine_recover_device (e, error))
    {
      g_mutex_unlock (&e->lock);
      return NULL;
    }
  Job j = {
    .e = e, .req = req, .progress = progress, .user_data = user_data,
    .t0 = g_get_monotonic_time (), .n_images = req->n, .decode_every = 4,
  };
  GPtrArray *results = NULL;
  /* sizes beyond the model's own: generated at its size, then upscaled */
  RvRequest native;
  int up_w = 0, up_h = 0, gen_w, gen_h;
  if (rv_engine_plan_upscale (e, req, &gen_w, &gen_h))
    {
      up_w = req->width;
      up_h = req->height;
      native = *req;
      native.width = gen_w;
      native.height = gen_h;
      j.req = &native;
    }
  /* the kernels the last run of this model set used, built beside the loading */
  rv_device_prewarm_kernels (e->dev, e->model_hash);
  j.cmd = rv_cmd_new (e->dev, error);
  if (j.cmd != NULL)
    {
      rv_device_reset_peak (e->dev);
      switch (req->kind)
        {
        case RV_JOB_GENERATE:
          results = run_generate (&j, cancellable, error);
          break;
        case RV_JOB_VARIATION:
          results = run_variation (&j, cancellable, error);
          break;
        case RV_JOB_MIX:
          results = run_mix (&j, cancellable, error);
          break;
        case RV_JOB_INPAINT:
          results = run_edit (&j, TRUE, cancellable, error);
          break;
        case RV_JOB_IMG2IMG:
          results = run_edit (&j, FALSE, cancellable, error);
          break;
        case RV_JOB_UPSCALE:
          results = run_upscale (&j, cancellable, error);
          break;
        case RV_JOB_EXTEND:
          results = run_extend (&j, cancellable, error);
          break;
        default:
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "Unknown job kind %d.", req->kind);
          break;
        }
      if (results != NULL && up_w > 0 &&
          !upscale_results (&j, results, up_w, up_h, cancellable, error))
        g_clear_pointer (&results, g_ptr_array_unref);
      if (results != NULL)
        rv_device_save_kernel_list (e->dev, e->model_hash);
      rv_device_memory_stats (e->dev, NULL, &e->peak, NULL);
      j.stats.peak_bytes = e->peak;
      j.stats.dispatches = rv_cmd_dispatch_count (j.cmd);
      j.stats.total = (g_get_monotonic_time () - j.t0) / 1e6;
      e->stats = j.stats;
      rv_cmd_free (j.cmd);
      rv_device_fault_stage ("");
      /* nothing of this job's output can be trusted, and the next job needs
       * a working device */
      GError *lost = NULL;
      if (rv_device_is_lost (e->dev) && !_rv_engine_recover_device (e, &lost))
        {
          g_clear_pointer (&results, g_ptr_array_unref);
          g_clear_error (error);
          g_propagate_error (error, lost);
        }
    }
  g_clear_pointer (&j.preview, rv_image_free);
  g_clear_pointer (&j.ext_preview, rv_image_free);
  g_mutex_unlock (&e->lock);
  /* reverie.h promises RV_ERROR codes (and G_IO_ERROR_CANCELLED): what the
   * model-file readers report in their own domains is a model error */
  if (results == NULL && error != NULL && *error != NULL && (*error)->domain != RV_ERROR &&
      !g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      GError *model = g_error_new_literal (RV_ERROR, RV_ERROR_MODEL, (*error)->message);
      g_clear_error (error);
      g_propagate_error (error, model);
    }
  return results;
}
