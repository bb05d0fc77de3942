/* rv-jobs.c: running requests — seeds, the stages of each job kind, progress
 * with ETA and previews, cancellation. */
#include "config.h"

#include "rv-engine-private.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* The decoder's noise comes from a stream of its own, so that changing the
 * prior's step count does not change the decoder's noise. */
#define DECODER_STREAM G_GUINT64_CONSTANT (0x5bd1e9955bd1e995)

typedef struct {
  RvEngine        *e;
  const RvRequest *req;
  RvProgressFunc   progress;
  gpointer         user_data;
  RvCmd           *cmd;
  gint64           t0;
  int              image, n_images;
  int              prior_steps, decoder_steps;
  gboolean         with_prior;
  /* measured costs in seconds, for the ETA */
  double           prior_step_s, decoder_step_s, decode_s;
  int              prior_done, decoder_done;
  gint64           step_start;
  /* previews */
  RvJobStats       stats;
  RvMovq          *movq;
  int              C, lh, lw, f;
  int              decode_every;
  RvImage         *preview;
} Job;

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
      double per_image = (j->with_prior ? j->prior_steps * pstep : 0) + j->decoder_steps * dstep + dec;
      int prior_left = stage == RV_STAGE_PRIOR ? steps - step : 0;
      int decoder_left = stage <= RV_STAGE_PRIOR ? j->decoder_steps
                       : stage == RV_STAGE_DECODER ? steps - step : 0;
      left = (j->with_prior ? prior_left * pstep : 0) + decoder_left * dstep +
             (stage == RV_STAGE_DECODE ? 0 : dec) + images_left * per_image;
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

/* x₀ (C, h, w) → preview pixels at the output size */
static void
make_preview (Job *j, const float *x0)
{
  RvEngine *e = j->e;
  int H = j->lh * j->f, W = j->lw * j->f;
  if (j->preview == NULL || j->preview->width != W || j->preview->height != H)
    {
      g_clear_pointer (&j->preview, rv_image_free);
      j->preview = rv_image_new (W, H, 3);
    }
  gsize plane = (gsize) j->lh * j->lw;
  if (e->have_projection)
    {
      for (int y = 0; y < j->lh; y++)
        for (int x = 0; x < j->lw; x++)
          {
            guint8 rgb[3];
            for (int c = 0; c < 3; c++)
              {
                float v = e->projection[j->C][c];
                for (int k = 0; k < j->C; k++)
                  v += e->projection[k][c] * x0[k * plane + (gsize) y * j->lw + x];
                v = v * 0.5f + 0.5f;
                rgb[c] = (guint8) lrintf (CLAMP (v, 0.0f, 1.0f) * 255.0f);
              }
            for (int dy = 0; dy < j->f; dy++)
              for (int dx = 0; dx < j->f; dx++)
                memcpy (j->preview->pixels + (((gsize) y * j->f + dy) * W + (gsize) x * j->f + dx) * 3,
                        rgb, 3);
          }
      return;
    }
  g_autoptr (GError) error = NULL;
  g_autofree float *px = rv_pipe_movq_decode (j->cmd, j->movq, x0, j->C, j->lh, j->lw, &error);
  if (px != NULL)
    {
      g_autoptr (RvImage) img = rv_pipe_to_image (px, H, W);
      memcpy (j->preview->pixels, img->pixels, (gsize) W * H * 3);
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
          make_preview (j, x0);
          preview = j->preview;
        }
    }
  report (j, RV_STAGE_DECODER, step + 1, steps, preview);
  j->step_start = g_get_monotonic_time ();
  return TRUE;
}

/* ---- preview projection ---- */

static char *
projection_cache_path (RvEngine *e)
{
  g_autofree char *name = g_strdup_printf ("preview-%s.json", rv_engine_model_hash (e));
  return g_build_filename (g_get_user_cache_dir (), "reverie", name, NULL);
}

static gboolean
load_projection (RvEngine *e, int C)
{
  g_autofree char *path = projection_cache_path (e);
  g_autoptr (JsonNode) root = rv_json_load_object (path, NULL);
  if (root == NULL)
    return FALSE;
  JsonArray *rows = json_object_get_array_member (json_node_get_object (root), "projection");
  if (rows == NULL || (int) json_array_get_length (rows) != C + 1)
    return FALSE;
  for (int k = 0; k <= C; k++)
    {
      JsonArray *r = json_array_get_array_element (rows, k);
      if (r == NULL || json_array_get_length (r) != 3)
        return FALSE;
      for (int c = 0; c < 3; c++)
        e->projection[k][c] = (float) json_array_get_double_element (r, c);
    }
  return TRUE;
}

static void
save_projection (RvEngine *e, int C)
{
  GString *s = g_string_new ("{\"projection\": [");
  for (int k = 0; k <= C; k++)
    {
      char a[G_ASCII_DTOSTR_BUF_SIZE], b[G_ASCII_DTOSTR_BUF_SIZE], c[G_ASCII_DTOSTR_BUF_SIZE];
      g_string_append_printf (s, "%s[%s, %s, %s]", k ? ", " : "",
                              g_ascii_dtostr (a, sizeof a, e->projection[k][0]),
                              g_ascii_dtostr (b, sizeof b, e->projection[k][1]),
                              g_ascii_dtostr (c, sizeof c, e->projection[k][2]));
    }
  g_string_append (s, "]}\n");
  g_autofree char *path = projection_cache_path (e);
  g_autofree char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);
  g_file_set_contents (path, s->str, s->len, NULL);
  g_string_free (s, TRUE);
}

/* Solves (XᵀX + λI) P = XᵀY for the C+1 by 3 projection by Gaussian
 * elimination; X rows are [latent channels…, 1]. */
static void
solve_projection (RvEngine *e, int C, const double *xtx, const double *xty)
{
  int n = C + 1;
  double a[9][12];
  double trace = 0;
  for (int i = 0; i < n; i++)
    trace += xtx[i * n + i];
  for (int i = 0; i < n; i++)
    {
      for (int k = 0; k < n; k++)
        a[i][k] = xtx[i * n + k] + (i == k ? 1e-4 * trace / n : 0);
      for (int c = 0; c < 3; c++)
        a[i][n + c] = xty[i * 3 + c];
    }
  for (int col = 0; col < n; col++)
    {
      int piv = col;
      for (int r = col + 1; r < n; r++)
        if (fabs (a[r][col]) > fabs (a[piv][col]))
          piv = r;
      for (int k = 0; k < n + 3; k++)
        {
          double t = a[col][k];
          a[col][k] = a[piv][k];
          a[piv][k] = t;
        }
      if (fabs (a[col][col]) < 1e-12)
        continue;
      for (int r = 0; r < n; r++)
        if (r != col)
          {
            double fct = a[r][col] / a[col][col];
            for (int k = col; k < n + 3; k++)
              a[r][k] -= fct * a[col][k];
          }
    }
  for (int i = 0; i < n; i++)
    for (int c = 0; c < 3; c++)
      e->projection[i][c] = fabs (a[i][i]) > 1e-12 ? (float) (a[i][n + c] / a[i][i]) : 0.0f;
}

/* Fits the latent → RGB projection once per model: a calibration picture of
 * colour patches and gradients goes through the MoVQ encoder and decoder,
 * and each latent pixel is matched with the mean colour of the pixels it
 * decodes to. Cached by the model's hash. */
static void
ensure_projection (Job *j)
{
  RvEngine *e = j->e;
  int C = j->C, f = j->f;
  if (e->have_projection || C > 8)
    return;
  if (load_projection (e, C))
    {
      e->have_projection = TRUE;
      return;
    }
  int side = 16 * f;
  gsize plane = (gsize) side * side;
  g_autofree float *img = g_new (float, 3 * plane);
  RvRandom r;
  rv_random_init (&r, 12345);
  int cell = MAX (side / 8, f);
  for (int by = 0; by < side; by += cell)
    for (int bx = 0; bx < side; bx += cell)
      {
        float col[3], grad[3];
        for (int c = 0; c < 3; c++)
          {
            col[c] = (float) rv_random_uniform (&r) * 2 - 1;
            grad[c] = rv_random_uniform (&r) < 0.3 ? (float) rv_random_uniform (&r) - 0.5f : 0;
          }
        for (int y = by; y < MIN (by + cell, side); y++)
          for (int x = bx; x < MIN (bx + cell, side); x++)
            for (int c = 0; c < 3; c++)
              img[c * plane + (gsize) y * side + x] =
                CLAMP (col[c] + grad[c] * (x - bx) / (float) cell, -1.0f, 1.0f);
      }
  g_autoptr (GError) error = NULL;
  int lc = 0;
  g_autofree float *lat = rv_pipe_movq_encode (j->cmd, j->movq, img, side, side, &lc, &error);
  g_autofree float *dec = lat && lc == C ? rv_pipe_movq_decode (j->cmd, j->movq, lat, C, 16, 16, &error) : NULL;
  if (dec == NULL)
    return;
  int n = C + 1;
  double xtx[81] = { 0 }, xty[27] = { 0 };
  for (int y = 0; y < 16; y++)
    for (int x = 0; x < 16; x++)
      {
        double row[9], rgb[3] = { 0 };
        for (int k = 0; k < C; k++)
          row[k] = lat[k * 256 + y * 16 + x];
        row[C] = 1;
        for (int c = 0; c < 3; c++)
          {
            for (int dy = 0; dy < f; dy++)
              for (int dx = 0; dx < f; dx++)
                rgb[c] += dec[c * plane + (gsize) (y * f + dy) * side + x * f + dx];
            rgb[c] /= f * f;
          }
        for (int a = 0; a < n; a++)
          {
            for (int b = 0; b < n; b++)
              xtx[a * n + b] += row[a] * row[b];
            for (int c = 0; c < 3; c++)
              xty[a * 3 + c] += row[a] * rgb[c];
          }
      }
  solve_projection (e, C, xtx, xty);
  e->have_projection = TRUE;
  save_projection (e, C);
}

void
rv_engine_last_stats (RvEngine *e, RvJobStats *stats)
{
  g_mutex_lock (&e->lock);
  *stats = e->stats;
  g_mutex_unlock (&e->lock);
}

const char *
rv_engine_preview_method (RvEngine *e)
{
  return e->have_projection ? "linear projection" : "full decode";
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
  if (req->width < 0 || req->height < 0 || req->width > 4096 || req->height > 4096)
    return invalid (error, "Image sides must be between 1 and 4096 pixels.");
  if (req->prior_steps < 0 || req->prior_steps > 1000 || req->decoder_steps < 0 ||
      req->decoder_steps > 1000 || req->prior_steps == 1)
    return invalid (error, "Step counts must be between 2 and 1000 for the prior and between "
                           "1 and 1000 for the decoder.");
  if (req->prior_guidance > 100 || req->decoder_guidance > 100 ||
      isnan (req->prior_guidance) || isnan (req->decoder_guidance))
    return invalid (error, "Guidance scales above 100 are not meaningful.");
  if (req->kind == RV_JOB_GENERATE && (req->prompt == NULL || req->prompt[0] == '\0'))
    return invalid (error, "The prompt is empty.");
  if ((req->kind == RV_JOB_VARIATION || req->kind == RV_JOB_INPAINT || req->kind == RV_JOB_IMG2IMG) &&
      req->image == NULL)
    return invalid (error, "This job needs an input image.");
  if (req->feather < 0 || req->feather > 256)
    return invalid (error, "The feather radius must be between 0 and 256 pixels.");
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
  s->decoder_guidance = req->decoder_guidance >= 0 ? req->decoder_guidance : d->decoder_guidance;
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
  guint64 act = MAX (rv_unet_estimate_memory (rv_unet_config (unet), 2, sz->lh, sz->lw),
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
    ensure_projection (j);
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

/* The decoder and the MoVQ decode for one image; returns pixels NCHW. */
static float *
run_decoder (Job *j, const Settings *s, RvDecoderRun *dr, const Size *sz, GCancellable *cancellable,
             GError **error)
{
  RvEngine *e = j->e;
  gsize len = (gsize) j->C * sz->lh * sz->lw;
  g_autofree float *lat = g_new (float, len);
  dr->scheduler = dr->mode == RV_DECODE_INPAINT ? &e->inpaint_sched : &e->decoder_sched;
  dr->kind = s->kind;
  dr->steps = j->decoder_steps;
  dr->guidance = s->decoder_guidance;
  dr->channels = j->C;
  dr->height = sz->lh;
  dr->width = sz->lw;
  gint64 t0 = g_get_monotonic_time ();
  j->step_start = t0;
  rv_device_fault_stage ("decoder");
  if (!rv_pipe_decoder (j->cmd, dr, lat, on_decoder_step, j, cancellable, error))
    return NULL;
  gint64 t = g_get_monotonic_time ();
  j->stats.decoder += (t - t0) / 1e6;
  j->stats.decoder_steps += dr->mode == RV_DECODE_IMG2IMG
                              ? dr->steps - rv_pipe_img2img_start (dr->steps, dr->strength)
                              : dr->steps;
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  rv_device_fault_stage ("decode");
  float *px = rv_pipe_movq_decode (j->cmd, j->movq, lat, j->C, sz->lh, sz->lw, error);
  j->decode_s = (g_get_monotonic_time () - t) / 1e6;
  j->stats.decode += j->decode_s;
  if (!e->have_projection && j->decoder_step_s > 0)
    j->decode_every = (int) ceil (j->decode_s / (0.1 * j->decoder_step_s));
  report (j, RV_STAGE_DECODE, 1, 1, NULL);
  return px;
}

static void
add_result (GPtrArray *results, RvImage *image, guint64 seed)
{
  RvResult *res = g_new0 (RvResult, 1);
  res->image = image;
  res->seed = seed;
  g_ptr_array_add (results, res);
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

static GPtrArray *
run_generate (Job *j, GCancellable *cancellable, GError **error)
{
  RvEngine *e = j->e;
  const RvRequest *req = j->req;
  Settings s;
  if (!settings_for (j, &s, error))
    return NULL;
  j->with_prior = TRUE;
  rv_device_fault_stage ("load");
  report (j, RV_STAGE_LOAD, 0, 1, NULL);
  if (!prepare_text (j, error))
    return NULL;
  int E = e->embed_dim;
  g_autofree float *embs = g_new (float, (gsize) j->n_images * E);
  g_autofree float *negs = g_new (float, (gsize) j->n_images * E);
  if (!run_priors (j, &s, req->prompt, embs, negs, cancellable, error))
    return NULL;
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

/* ---- masks ---- */

RvMaskMode
rv_mask_mode_detect (const RvImage *mask)
{
  if (mask->channels == 4)
    for (gsize p = 0; p < (gsize) mask->width * mask->height; p++)
      if (mask->pixels[p * 4 + 3] < 255)
        return RV_MASK_ALPHA;
  return RV_MASK_GREY;
}

/* The repaint region at the image's size, 1 = repaint; mask NULL = the
 * image's own transparency. */
float *
_rv_repaint_mask (const RvImage *img, const RvImage *given, RvMaskMode mode, GError **error)
{
  const RvImage *mask = given ? given : img;
  if (given == NULL)
    mode = RV_MASK_ALPHA;
  gboolean has_alpha = mask->channels == 4;
  if (mode == RV_MASK_AUTO)
    mode = rv_mask_mode_detect (mask);
  if (mode == RV_MASK_ALPHA && !has_alpha)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   given ? "The mask has no transparency: with alpha masks the transparent "
                               "pixels are the ones to repaint."
                             : "No mask was given and the image has no transparent pixels to "
                               "repaint.");
      return NULL;
    }
  /* same aspect ratio (within a pixel), any size */
  double ia = (double) img->width / img->height, ma = (double) mask->width / mask->height;
  if (fabs (ia - ma) > MAX (1.0 / img->height, 1.0 / mask->height) * ia * 1.5)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "The mask is %d×%d but the image is %d×%d: they must have the same shape "
                   "(aspect ratio).", mask->width, mask->height, img->width, img->height);
      return NULL;
    }
  g_autoptr (RvImage) grey = rv_image_new (mask->width, mask->height, 3);
  for (gsize p = 0; p < (gsize) mask->width * mask->height; p++)
    {
      const guint8 *px = mask->pixels + p * mask->channels;
      guint8 v;
      if (mode == RV_MASK_ALPHA)
        v = px[3] < 128 ? 255 : 0;      /* transparent = repaint */
      else
        v = (guint8) ((px[0] * 299 + px[1] * 587 + px[2] * 114 + 500) / 1000);
      memset (grey->pixels + p * 3, v, 3);
    }
  g_autoptr (RvImage) sized = rv_pil_resize (grey, img->width, img->height, RV_RESAMPLE_NEAREST);
  gsize n = (gsize) img->width * img->height;
  float *m = g_new (float, n);
  gsize count = 0;
  for (gsize p = 0; p < n; p++)
    {
      m[p] = sized->pixels[p * 3] >= 128 ? 1.0f : 0.0f;
      count += m[p] > 0;
    }
  if (count == 0 || count == n)
    {
      g_free (m);
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   count == 0 ? "The mask marks nothing to repaint (%s)."
                              : "The mask marks the whole image (%s); use generate or variations "
                                "instead.",
                   mode == RV_MASK_ALPHA ? "transparent pixels are repainted"
                                         : "white pixels are repainted");
      return NULL;
    }
  return m;
}

/* Box blur of radius r, in place, separable. */
static void
box_blur (float *m, int w, int h, int r)
{
  g_autofree float *tmp = g_new (float, (gsize) w * h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        double s = 0;
        int n = 0;
        for (int k = MAX (0, x - r); k <= MIN (w - 1, x + r); k++, n++)
          s += m[(gsize) y * w + k];
        tmp[(gsize) y * w + x] = (float) (s / n);
      }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        double s = 0;
        int n = 0;
        for (int k = MAX (0, y - r); k <= MIN (h - 1, y + r); k++, n++)
          s += tmp[(gsize) k * w + x];
        m[(gsize) y * w + x] = (float) (s / n);
      }
}

/* Puts the original pixels back outside the repaint region; with a feather
 * radius the blend ramps up inside the region, never outside it. */
static RvImage *
composite (const RvImage *orig, const RvImage *gen, const float *repaint, float feather)
{
  int w = orig->width, h = orig->height;
  gsize n = (gsize) w * h;
  g_autoptr (RvImage) g = rv_pil_resize (gen, w, h, RV_RESAMPLE_BICUBIC);
  g_autofree float *alpha = g_memdup2 (repaint, n * sizeof (float));
  int r = (int) lroundf (feather);
  if (r > 0)
    {
      box_blur (alpha, w, h, r);
      for (gsize p = 0; p < n; p++)
        alpha[p] = repaint[p] > 0 ? CLAMP (2.0f * alpha[p] - 1.0f, 0.0f, 1.0f) : 0.0f;
    }
  RvImage *out = rv_image_new (w, h, orig->channels);
  for (gsize p = 0; p < n; p++)
    for (int c = 0; c < orig->channels; c++)
      {
        guint8 o = orig->pixels[p * orig->channels + c];
        if (c == 3)
          {
            out->pixels[p * 4 + 3] = repaint[p] > 0 ? 255 : o;
            continue;
          }
        float a = alpha[p];
        out->pixels[p * orig->channels + c] =
          a <= 0 ? o : (guint8) lrintf (a * g->pixels[p * 3 + c] + (1 - a) * o);
      }
  return out;
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

  j->with_prior = TRUE;
  rv_device_fault_stage ("load");
  report (j, RV_STAGE_LOAD, 0, 1, NULL);
  if (!prepare_text (j, error))
    return NULL;
  int E = e->embed_dim;
  g_autofree float *embs = g_new (float, (gsize) j->n_images * E);
  g_autofree float *negs = g_new (float, (gsize) j->n_images * E);
  if (!run_priors (j, &s, req->prompt, embs, negs, cancellable, error))
    return NULL;
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
    {
      /* the repaint mask at the working size (PIL Lanczos, as diffusers),
       * binarized, then on the latent grid */
      g_autoptr (RvImage) mimg = rv_image_new (req->image->width, req->image->height, 3);
      for (gsize p = 0; p < (gsize) mimg->width * mimg->height; p++)
        memset (mimg->pixels + p * 3, repaint[p] > 0 ? 255 : 0, 3);
      g_autoptr (RvImage) msized = rv_pil_resize (mimg, sz.width, sz.height, RV_RESAMPLE_LANCZOS);
      g_autofree float *mwork = g_new (float, (gsize) sz.width * sz.height);
      for (gsize p = 0; p < (gsize) sz.width * sz.height; p++)
        mwork[p] = msized->pixels[p * 3] / 255.0f >= 0.5f ? 1.0f : 0.0f;
      latent_mask = rv_pipe_inpaint_mask (mwork, sz.height, sz.width, sz.lh, sz.lw);
    }
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
      RvImage *out = inpaint ? composite (req->image, gen, repaint, req->feather)
                             : g_steal_pointer (&gen);
      add_result (results, out, seed);
    }
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
        default:
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "Unknown job kind %d.", req->kind);
          break;
        }
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
