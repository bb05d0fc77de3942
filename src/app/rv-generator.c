/* rv-generator.c: runs the engine's jobs for the studio, one at a time, in a
 * worker thread, posting progress to the main context and saving every result
 * to the gallery with its recipe. */
#include "config.h"

#include <errno.h>
#include <glib/gi18n.h>
#include <math.h>

#include "rv-generator.h"
#include "rv-util.h"

struct _RvGenerator
{
  GObject    parent_instance;

  /* owned */
  char      *device;
  char      *model_dir;
  char      *gallery_dir;
  char      *upscaler_dir;     /* "" or NULL: the model set's own */
  gboolean   busy;
  GSettings *settings;
  RvEngineInfo *info;          /* NULL until a worker has seen the engine */
  RvCosts    costs;            /* the last measured, else zeros */

  /* The engine last made, with the device and model it was made for, and
   * the upscaler folder applied to it ("" = the set's own); guarded by lock
   * since workers make and use it. One worker at a time opens engines. */
  GMutex     lock;
  GMutex     open_lock;
  GMutex     use_lock;         /* held by a job from start to recipes, and by
                                  whatever changes the upscaler: a recipe never
                                  names an upscaler swapped in meanwhile */
  RvEngine  *engine;
  char      *engine_key;
  char      *engine_upscaler;
};

G_DEFINE_FINAL_TYPE (RvGenerator, rv_generator, G_TYPE_OBJECT)

G_DEFINE_QUARK (rv-generator-error-quark, rv_generator_error)

/* First guesses, before anything was measured: seconds per pixel and decoder
 * step of a generated picture, and per input pixel of an upscaler pass (a
 * small model on a CPU Vulkan device: slow hardware errs on the safe side). */
#define GUESS_GEN_PER_UNIT  5.0e-5
#define GUESS_GEN_FIXED     1.0
#define GUESS_UP_PER_PX     2.0e-5

enum {
  PROP_0,
  PROP_BUSY,
  N_PROPS
};

enum {
  PROGRESS,
  INFO_CHANGED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* ---- specs and outputs ---- */

RvJobSpec *
rv_job_spec_new (RvJobKind kind)
{
  RvJobSpec *spec = g_new0 (RvJobSpec, 1);
  spec->kind = kind;
  spec->n = 1;
  spec->previews = TRUE;
  return spec;
}

void
rv_job_spec_free (RvJobSpec *spec)
{
  if (spec == NULL)
    return;
  g_free (spec->prompt);
  g_free (spec->negative_prompt);
  g_free (spec->scheduler);
  g_clear_pointer (&spec->image, rv_image_free);
  g_clear_pointer (&spec->mask, rv_image_free);
  g_clear_pointer (&spec->source_recipe, rv_recipe_free);
  g_free (spec);
}

void
rv_engine_info_free (RvEngineInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->model_name);
  g_free (info->upscaler_name);
  g_free (info->upscaler_hash);
  g_free (info->upscaler_error);
  g_free (info);
}

static RvEngineInfo *
engine_info_copy (const RvEngineInfo *info)
{
  RvEngineInfo *c = g_new0 (RvEngineInfo, 1);
  *c = *info;
  c->model_name = g_strdup (info->model_name);
  c->upscaler_name = g_strdup (info->upscaler_name);
  c->upscaler_hash = g_strdup (info->upscaler_hash);
  c->upscaler_error = g_strdup (info->upscaler_error);
  return c;
}

void
rv_output_free (RvOutput *output)
{
  if (output == NULL)
    return;
  g_clear_pointer (&output->image, rv_image_free);
  g_clear_pointer (&output->recipe, rv_recipe_free);
  g_free (output->path);
  g_free (output->save_error);
  g_free (output);
}

/* ---- a job in flight ---- */

typedef struct {
  RvGenerator *generator;
  RvJobSpec   *spec;
  char        *device;
  char        *model_dir;
  char        *gallery_dir;
  char        *upscaler_dir;
  GMainContext *context;

  /* what the worker learnt, for the main context */
  RvEngineInfo *info;
  RvCosts      costs;            /* fields < 0: not measured by this job */
  gint64       tiles_t0;         /* the upscale stage of the current image began */
  int          tiles;            /* tiles timed */
  double       tile_seconds;

  /* progress waiting for the main context; newer replaces older, so a slow
   * main loop never queues a backlog of previews */
  GMutex       lock;
  gboolean     posted;
  RvProgress   pending;
  RvImage     *pending_preview;
} Job;

static void
job_clear (Job *job)
{
  g_clear_object (&job->generator);
  g_clear_pointer (&job->spec, rv_job_spec_free);
  g_free (job->device);
  g_free (job->model_dir);
  g_free (job->gallery_dir);
  g_free (job->upscaler_dir);
  g_clear_pointer (&job->info, rv_engine_info_free);
  g_clear_pointer (&job->context, g_main_context_unref);
  g_clear_pointer (&job->pending_preview, rv_image_free);
  g_mutex_clear (&job->lock);
}

static Job *
job_ref (Job *job)
{
  return g_atomic_rc_box_acquire (job);
}

static void
job_unref (Job *job)
{
  g_atomic_rc_box_release_full (job, (GDestroyNotify) job_clear);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Job, job_unref)

/* main context */
static gboolean
deliver_progress (gpointer data)
{
  Job *job = data;
  g_mutex_lock (&job->lock);
  RvProgress p = job->pending;
  g_autoptr (RvImage) preview = g_steal_pointer (&job->pending_preview);
  job->posted = FALSE;
  g_mutex_unlock (&job->lock);

  g_autoptr (GdkTexture) texture = preview ? _rv_texture_new_for_image (preview) : NULL;
  g_signal_emit (job->generator, signals[PROGRESS], 0, (int) p.stage, p.image, p.n_images,
                 p.step, p.steps, p.fraction, p.eta, texture, p.frame, p.n_frames, p.frames_at_once);
  return G_SOURCE_REMOVE;
}

/* worker thread */
static void
post_progress (Job *job, const RvProgress *p)
{
  g_mutex_lock (&job->lock);
  job->pending = *p;
  job->pending.preview = NULL;
  if (p->preview != NULL)
    {
      g_clear_pointer (&job->pending_preview, rv_image_free);
      job->pending_preview = rv_image_copy (p->preview);
    }
  gboolean post = !job->posted;
  job->posted = TRUE;
  g_mutex_unlock (&job->lock);
  if (post)
    g_main_context_invoke_full (job->context, G_PRIORITY_DEFAULT, deliver_progress, job_ref (job),
                                (GDestroyNotify) job_unref);
}

/* worker thread: times the upscaler's tiles from its first (step 0, once
 * it is loaded) to its last report of each picture */
static void
on_engine_progress (const RvProgress *p, gpointer data)
{
  Job *job = data;
  if (p->stage == RV_STAGE_UPSCALE)
    {
      gint64 now = g_get_monotonic_time ();
      if (p->step == 0)
        job->tiles_t0 = now;
      else if (p->step == p->steps && job->tiles_t0 > 0)
        {
          job->tile_seconds += (now - job->tiles_t0) / 1e6;
          job->tiles += p->steps;
          job->tiles_t0 = 0;
        }
    }
  post_progress (job, p);
}

/* ---- engines (worker thread) ---- */

static char *
engine_key (const char *device, const char *model_dir)
{
  return g_strdup_printf ("%s\n%s", device ? device : "", model_dir ? model_dir : "");
}

static RvEngine *
get_engine_locked (RvGenerator *self, const char *device, const char *model_dir, GError **error)
{
  g_autofree char *key = engine_key (device, model_dir);
  g_mutex_lock (&self->lock);
  if (self->engine != NULL && g_strcmp0 (self->engine_key, key) == 0)
    {
      RvEngine *e = rv_engine_ref (self->engine);
      g_mutex_unlock (&self->lock);
      return e;
    }
  g_mutex_unlock (&self->lock);

  /* A bad folder fails here before any device is opened, and the engine in
   * use stays; weights load only when a job needs them, so two engines side
   * by side cost little until the old one goes. */
  RvEngine *e = rv_engine_new (device && device[0] ? device : NULL,
                               model_dir && model_dir[0] ? model_dir : NULL,
                               NULL, NULL, NULL, RV_WEIGHTS_AUTO, error);
  if (e == NULL)
    return NULL;
  g_mutex_lock (&self->lock);
  g_clear_pointer (&self->engine, rv_engine_unref);
  g_free (self->engine_key);
  self->engine = rv_engine_ref (e);
  self->engine_key = g_steal_pointer (&key);
  g_free (self->engine_upscaler);
  self->engine_upscaler = g_strdup ("");   /* a new engine has its set's own */
  g_mutex_unlock (&self->lock);
  return e;
}

static RvEngine *
get_engine (RvGenerator *self, const char *device, const char *model_dir, GError **error)
{
  /* the preparation at start and a first job must not open two engines */
  g_mutex_lock (&self->open_lock);
  RvEngine *e = get_engine_locked (self, device, model_dir, error);
  g_mutex_unlock (&self->open_lock);
  return e;
}

/* Applies an upscaler folder ("" or NULL: the model set's own) to e, unless
 * it is applied already. The engine waits for a running job before it
 * changes upscalers. */
static gboolean
apply_upscaler (RvGenerator *self, RvEngine *e, const char *dir, GError **error)
{
  const char *want = dir != NULL ? dir : "";
  g_mutex_lock (&self->lock);
  gboolean same = e == self->engine && g_strcmp0 (self->engine_upscaler, want) == 0;
  g_mutex_unlock (&self->lock);
  if (same)
    return TRUE;
  if (!rv_engine_set_upscaler (e, want[0] ? want : NULL, error))
    return FALSE;
  g_mutex_lock (&self->lock);
  if (e == self->engine)
    {
      g_free (self->engine_upscaler);
      self->engine_upscaler = g_strdup (want);
    }
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/* The upscaler setting onto e: a folder that cannot be used (moved, deleted)
 * leaves the model set's own in use, and says why in *why. */
static void
ensure_upscaler (RvGenerator *self, RvEngine *e, const char *dir, char **why)
{
  g_autoptr (GError) error = NULL;
  if (apply_upscaler (self, e, dir, &error))
    return;
  *why = g_strdup (error->message);
  apply_upscaler (self, e, NULL, NULL);
}

static RvEngineInfo *
engine_info (RvGenerator *self, RvEngine *e, const char *why)
{
  RvEngineInfo *info = g_new0 (RvEngineInfo, 1);
  const RvDefaults *d = rv_engine_defaults (e);
  info->model_name = g_strdup (rv_engine_model_name (e));
  info->native_size = rv_engine_native_size (e);
  info->default_width = d->width;
  info->default_height = d->height;
  info->decoder_steps = d->decoder_steps;
  info->upscaler_name = g_strdup (rv_engine_upscaler_name (e));
  info->upscaler_hash = g_strdup (rv_engine_upscaler_hash (e));
  info->upscaler_scale = rv_engine_upscaler_scale (e);
  g_mutex_lock (&self->lock);
  info->upscaler_own = g_strcmp0 (self->engine_upscaler, "") == 0;
  g_mutex_unlock (&self->lock);
  info->upscaler_error = g_strdup (why);
  return info;
}

/* ---- results (worker thread) ---- */

static RvRecipe *
make_recipe (RvEngine *e, const RvRequest *req, const RvResult *res, const RvRecipe *source,
             const char *source_sha, const char *mask_sha, const char *mask_base64)
{
  RvRecipe *r = rv_recipe_for_request (e, req, res->seed, res->image->width, res->image->height);
  if (req->kind == RV_JOB_EXTEND)
    {
      /* the engine's recipe names the source, the borders and the frames */
      r->feather = req->feather > 0 ? req->feather : -1;
      return r;
    }
  r->source_sha256 = g_strdup (source_sha);
  if (req->kind == RV_JOB_UPSCALE)
    {
      /* what the picture was made with, where it says; not the settings of
       * a model that had no part in it */
      r->prior_steps = r->decoder_steps = 0;
      r->prior_guidance = r->decoder_guidance = -1;
      g_clear_pointer (&r->scheduler, g_free);
      g_clear_pointer (&r->model, g_free);
      g_clear_pointer (&r->model_hash, g_free);
      if (source != NULL)
        {
          r->prompt = g_strdup (source->prompt);
          r->negative_prompt = g_strdup (source->negative_prompt);
          r->seed = source->seed;
          r->prior_steps = source->prior_steps;
          r->prior_guidance = source->prior_guidance;
          r->decoder_steps = source->decoder_steps;
          r->decoder_guidance = source->decoder_guidance;
          r->scheduler = g_strdup (source->scheduler);
          r->model = g_strdup (source->model);
          r->model_hash = g_strdup (source->model_hash);
          r->mix = g_strdup (source->mix);
        }
    }
  if (req->kind == RV_JOB_INPAINT)
    {
      r->feather = req->feather;
      r->mask_sha256 = g_strdup (mask_sha);
      r->mask_png_base64 = g_strdup (mask_base64);
      r->mask_mode = g_strdup ("grey");
    }
  return r;
}

/* gallery/reverie-YYYYmmdd-HHMMSS-SEED.png, never over an existing file */
static char *
gallery_path (const char *dir, guint64 seed)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  for (int k = 1; ; k++)
    {
      g_autofree char *name = k == 1
        ? g_strdup_printf ("reverie-%s-%" G_GUINT64_FORMAT ".png", stamp, seed)
        : g_strdup_printf ("reverie-%s-%" G_GUINT64_FORMAT "-%d.png", stamp, seed, k);
      char *path = g_build_filename (dir, name, NULL);
      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        return path;
      g_free (path);
    }
}

static void
save_output (RvOutput *out, const char *dir)
{
  g_autoptr (GError) error = NULL;
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      out->save_error = g_strdup_printf (_("Could not create the gallery folder %s: %s"), dir,
                                         g_strerror (errno));
      return;
    }
  g_autofree char *path = gallery_path (dir, out->recipe->seed);
  g_autoptr (GHashTable) text = rv_recipe_to_text (out->recipe);
  if (!rv_image_save_png (out->image, path, text, &error))
    out->save_error = g_strdup (error->message);
  else
    out->path = g_steal_pointer (&path);
}

/* The costs of a finished job, for the estimates: a text-to-image picture at
 * the size it was generated at, and the upscaler's tiles. */
static void
measure (Job *job, RvEngine *e, const RvRequest *req, gboolean upscaled, int gen_w, int gen_h)
{
  RvJobStats stats;
  rv_engine_last_stats (e, &stats);
  job->costs = (RvCosts) { -1, -1, -1, -1 };
  int n = MAX (req->n, 1);
  if (req->kind == RV_JOB_GENERATE)
    {
      double gen = stats.total - stats.load - stats.upscale;
      int steps = req->decoder_steps > 0 ? req->decoder_steps : rv_engine_defaults (e)->decoder_steps;
      if (gen > 0)
        {
          job->costs.gen_seconds = gen / n;
          job->costs.gen_units = (double) gen_w * gen_h * steps;
        }
    }
  if (job->tiles <= 0 || (!upscaled && req->kind != RV_JOB_UPSCALE))
    return;
  /* the upscaler's input, pass after pass, over every picture */
  int s = MAX (rv_engine_upscaler_scale (e), 2);
  double in_w, in_h, out_w, out_h;
  if (req->kind == RV_JOB_UPSCALE)
    {
      in_w = req->image->width;
      in_h = req->image->height;
      int f = req->upscale > 0 ? req->upscale : s;
      out_w = req->width > 0 ? req->width : in_w * f;
      out_h = req->height > 0 ? req->height : in_h * f;
    }
  else
    {
      in_w = gen_w;
      in_h = gen_h;
      out_w = req->width;
      out_h = req->height;
    }
  double pixels = 0;
  for (double w = in_w, h = in_h; w < out_w || h < out_h; w *= s, h *= s)
    pixels += w * h;
  if (req->kind != RV_JOB_UPSCALE)
    pixels *= n;
  if (pixels <= 0)
    return;
  job->costs.tile_seconds = job->tile_seconds / job->tiles;
  job->costs.tile_pixels = pixels / job->tiles;
}

static void
run_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  RvGenerator *self = source;
  Job *job = data;
  const RvJobSpec *spec = job->spec;
  GError *error = NULL;
  g_autoptr (GMutexLocker) using = g_mutex_locker_new (&self->use_lock);

  RvProgress start = { .stage = RV_STAGE_LOAD, .n_images = spec->n, .eta = -1 };
  post_progress (job, &start);
  g_autoptr (RvEngine) e = get_engine (self, job->device, job->model_dir, &error);
  if (e == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_autofree char *why = NULL;
  ensure_upscaler (self, e, job->upscaler_dir, &why);
  job->info = engine_info (self, e, why);

  RvRequest req;
  rv_request_init (&req, spec->kind);
  req.prompt = spec->prompt;
  req.negative_prompt = spec->negative_prompt;
  req.width = spec->width;
  req.height = spec->height;
  req.n = spec->n;
  req.seed = spec->seed;
  req.decoder_steps = spec->steps;
  if (spec->guidance > 0)
    req.decoder_guidance = (float) spec->guidance;
  req.scheduler = spec->scheduler;
  req.image = spec->image;
  req.mask = spec->mask;
  req.mask_mode = RV_MASK_GREY;
  req.feather = (float) spec->feather;
  req.upscale = spec->upscale;
  req.previews = spec->previews;
  if (spec->kind == RV_JOB_EXTEND)
    {
      req.extend_left = spec->extend_left;
      req.extend_right = spec->extend_right;
      req.extend_top = spec->extend_top;
      req.extend_bottom = spec->extend_bottom;
      req.width = req.height = 0;   /* the canvas decides */
      req.mask = NULL;
      req.feather = 0;              /* the engine's: an eighth of a frame */
      g_autoptr (GArray) frames = rv_engine_plan_extend (e, &req, NULL, NULL, &error);
      if (frames == NULL)
        {
          g_task_return_error (task, error);
          return;
        }
    }

  /* the upscaler chosen in Preferences is not there: a job that needs one
   * says so rather than use another */
  int gen_w, gen_h;
  gboolean upscaled = rv_engine_plan_upscale (e, &req, &gen_w, &gen_h);
  int side = MAX (req.width > 0 ? req.width : job->info->default_width,
                  req.height > 0 ? req.height : job->info->default_height);
  gboolean text_mode = spec->kind == RV_JOB_GENERATE || spec->kind == RV_JOB_VARIATION ||
                       spec->kind == RV_JOB_MIX;
  if (why != NULL && (spec->kind == RV_JOB_UPSCALE || (text_mode && side > job->info->native_size)))
    {
      g_task_return_new_error (task, RV_GENERATOR_ERROR, RV_GENERATOR_ERROR_UPSCALER,
                               _("The upscaler chosen in Preferences cannot be used: %s"), why);
      return;
    }

  g_autoptr (GPtrArray) results = rv_engine_run (e, &req, on_engine_progress, job, cancellable, &error);
  if (results == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  measure (job, e, &req, upscaled, gen_w, gen_h);

  g_autofree char *source_sha = spec->image ? rv_image_sha256 (spec->image) : NULL;
  g_autofree char *mask_sha = spec->mask ? rv_image_sha256 (spec->mask) : NULL;
  g_autofree char *mask_base64 = NULL;
  if (spec->mask != NULL)
    {
      g_autoptr (GBytes) png = rv_image_encode_png (spec->mask, NULL, NULL);
      if (png != NULL)
        mask_base64 = g_base64_encode (g_bytes_get_data (png, NULL), g_bytes_get_size (png));
    }
  GPtrArray *outputs = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_output_free);
  for (guint i = 0; i < results->len; i++)
    {
      RvResult *res = g_ptr_array_index (results, i);
      RvOutput *out = g_new0 (RvOutput, 1);
      out->recipe = make_recipe (e, &req, res, spec->source_recipe, source_sha, mask_sha, mask_base64);
      out->image = g_steal_pointer (&res->image);
      save_output (out, job->gallery_dir);
      g_ptr_array_add (outputs, out);
    }
  g_task_return_pointer (task, outputs, (GDestroyNotify) g_ptr_array_unref);
}

static void
check_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  RvGenerator *self = source;
  Job *job = data;
  GError *error = NULL;
  g_autoptr (RvEngine) e = get_engine (self, job->device, job->model_dir, &error);
  if (e == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, g_strdup (rv_engine_model_name (e)), g_free);
}

static void
info_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  RvGenerator *self = source;
  Job *job = data;
  GError *error = NULL;
  g_autoptr (GMutexLocker) using = g_mutex_locker_new (&self->use_lock);
  g_autoptr (RvEngine) e = get_engine (self, job->device, job->model_dir, &error);
  if (e == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_autofree char *why = NULL;
  ensure_upscaler (self, e, job->upscaler_dir, &why);
  g_task_return_pointer (task, engine_info (self, e, why), (GDestroyNotify) rv_engine_info_free);
}

static void
check_upscaler_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  RvGenerator *self = source;
  Job *job = data;
  GError *error = NULL;
  g_autoptr (GMutexLocker) using = g_mutex_locker_new (&self->use_lock);
  g_autoptr (RvEngine) e = get_engine (self, job->device, job->model_dir, &error);
  if (e == NULL || !apply_upscaler (self, e, job->upscaler_dir, &error))
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, engine_info (self, e, NULL), (GDestroyNotify) rv_engine_info_free);
}

/* ---- GObject ---- */

static void
rv_generator_finalize (GObject *object)
{
  RvGenerator *self = RV_GENERATOR (object);
  g_free (self->device);
  g_free (self->model_dir);
  g_free (self->gallery_dir);
  g_free (self->upscaler_dir);
  g_clear_object (&self->settings);
  g_clear_pointer (&self->info, rv_engine_info_free);
  g_clear_pointer (&self->engine, rv_engine_unref);
  g_free (self->engine_key);
  g_free (self->engine_upscaler);
  g_mutex_clear (&self->lock);
  g_mutex_clear (&self->open_lock);
  g_mutex_clear (&self->use_lock);
  G_OBJECT_CLASS (rv_generator_parent_class)->finalize (object);
}

static void
rv_generator_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  RvGenerator *self = RV_GENERATOR (object);
  switch (prop_id)
    {
    case PROP_BUSY:
      g_value_set_boolean (value, self->busy);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rv_generator_class_init (RvGeneratorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->finalize = rv_generator_finalize;
  object_class->get_property = rv_generator_get_property;

  properties[PROP_BUSY] = g_param_spec_boolean ("busy", NULL, NULL, FALSE,
                                                G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                                                G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* stage (RvStage), image, n_images, step, steps, fraction, eta (s, < 0 =
   * unknown), preview (a GdkTexture or NULL), frame, n_frames, frames_at_once
   * (extend jobs: the first frame being filled, how many there are, how many
   * run together; 0, 0 and 1 for others) */
  signals[PROGRESS] = g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                    NULL, NULL, NULL, G_TYPE_NONE, 11, G_TYPE_INT, G_TYPE_INT,
                                    G_TYPE_INT, G_TYPE_INT, G_TYPE_INT, G_TYPE_DOUBLE,
                                    G_TYPE_DOUBLE, GDK_TYPE_TEXTURE, G_TYPE_INT, G_TYPE_INT,
                                    G_TYPE_INT);
  /* what the engine offers, or the measured costs, changed: estimates too */
  signals[INFO_CHANGED] = g_signal_new ("info-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                        0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
rv_generator_init (RvGenerator *self)
{
  g_mutex_init (&self->lock);
  g_mutex_init (&self->open_lock);
  g_mutex_init (&self->use_lock);
  self->gallery_dir = rv_generator_default_gallery_dir ();
  self->settings = g_settings_new (APP_ID);
  g_settings_get (self->settings, "measured-costs", "(dddd)", &self->costs.gen_seconds,
                  &self->costs.gen_units, &self->costs.tile_seconds, &self->costs.tile_pixels);
}

/* ---- API ---- */

RvGenerator *
rv_generator_new (void)
{
  return g_object_new (RV_TYPE_GENERATOR, NULL);
}

char *
rv_generator_default_gallery_dir (void)
{
  return g_build_filename (g_get_user_data_dir (), "reverie", "gallery", NULL);
}

/* device, model_dir: NULL or "" = the best device, the embedded model;
 * gallery_dir: NULL or "" = the default under the XDG data directory;
 * upscaler_dir: NULL or "" = the model set's own upscaler. */
void
rv_generator_configure (RvGenerator *self, const char *device, const char *model_dir,
                        const char *gallery_dir, const char *upscaler_dir)
{
  g_return_if_fail (RV_IS_GENERATOR (self));
  g_free (self->device);
  self->device = g_strdup (device);
  g_free (self->model_dir);
  self->model_dir = g_strdup (model_dir);
  g_free (self->gallery_dir);
  self->gallery_dir = gallery_dir && gallery_dir[0] ? g_strdup (gallery_dir)
                                                    : rv_generator_default_gallery_dir ();
  g_free (self->upscaler_dir);
  self->upscaler_dir = g_strdup (upscaler_dir ? upscaler_dir : "");
}

const char *
rv_generator_get_gallery_dir (RvGenerator *self)
{
  return self->gallery_dir;
}

gboolean
rv_generator_get_busy (RvGenerator *self)
{
  return self->busy;
}

static void
set_busy (RvGenerator *self, gboolean busy)
{
  if (self->busy == busy)
    return;
  self->busy = busy;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BUSY]);
}

static Job *
job_new (RvGenerator *self, const char *model_dir)
{
  Job *job = g_atomic_rc_box_new0 (Job);
  g_mutex_init (&job->lock);
  job->generator = g_object_ref (self);
  job->device = g_strdup (self->device);
  job->model_dir = g_strdup (model_dir);
  job->gallery_dir = g_strdup (self->gallery_dir);
  job->upscaler_dir = g_strdup (self->upscaler_dir);
  job->context = g_main_context_ref_thread_default ();
  return job;
}

static void
set_info (RvGenerator *self, const RvEngineInfo *info)
{
  if (info == NULL)
    return;
  g_clear_pointer (&self->info, rv_engine_info_free);
  self->info = engine_info_copy (info);
  g_signal_emit (self, signals[INFO_CHANGED], 0);
}

/* main context: what a job measured becomes the estimates' base */
static void
take_costs (RvGenerator *self, const RvCosts *c)
{
  gboolean changed = FALSE;
  if (c->gen_seconds > 0 && c->gen_units > 0)
    {
      self->costs.gen_seconds = c->gen_seconds;
      self->costs.gen_units = c->gen_units;
      changed = TRUE;
    }
  if (c->tile_seconds > 0 && c->tile_pixels > 0)
    {
      self->costs.tile_seconds = c->tile_seconds;
      self->costs.tile_pixels = c->tile_pixels;
      changed = TRUE;
    }
  if (!changed)
    return;
  g_settings_set (self->settings, "measured-costs", "(dddd)", self->costs.gen_seconds,
                  self->costs.gen_units, self->costs.tile_seconds, self->costs.tile_pixels);
  g_signal_emit (self, signals[INFO_CHANGED], 0);
}

static void
on_run_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GTask) outer = data;
  GError *error = NULL;
  GPtrArray *outputs = g_task_propagate_pointer (G_TASK (result), &error);
  RvGenerator *self = RV_GENERATOR (source);
  Job *job = g_task_get_task_data (G_TASK (result));
  if (job->info != NULL)
    set_info (self, job->info);
  if (outputs != NULL)
    take_costs (self, &job->costs);
  /* busy ends before the caller hears of the result, so it may start the next job */
  set_busy (self, FALSE);
  if (outputs == NULL)
    g_task_return_error (outer, error);
  else
    g_task_return_pointer (outer, outputs, (GDestroyNotify) g_ptr_array_unref);
}

/* Takes spec. One job at a time: the caller checks busy. */
void
rv_generator_run_async (RvGenerator *self, RvJobSpec *spec, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (RV_IS_GENERATOR (self));
  g_return_if_fail (spec != NULL);
  g_return_if_fail (!self->busy);
  Job *job = job_new (self, self->model_dir);
  job->spec = spec;
  GTask *outer = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (outer, rv_generator_run_async);
  g_autoptr (GTask) task = g_task_new (self, cancellable, on_run_done, outer);
  g_task_set_task_data (task, job, (GDestroyNotify) job_unref);
  set_busy (self, TRUE);
  g_task_run_in_thread (task, run_thread);
}

/* RvOutput*, in batch order */
GPtrArray *
rv_generator_run_finish (RvGenerator *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Opens a model folder on the chosen device: returns its name, or an error
 * that says what is wrong with it. */
void
rv_generator_check_model_async (RvGenerator *self, const char *model_dir,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  g_return_if_fail (RV_IS_GENERATOR (self));
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, rv_generator_check_model_async);
  g_task_set_task_data (task, job_new (self, model_dir), (GDestroyNotify) job_unref);
  g_task_run_in_thread (task, check_thread);
}

char *
rv_generator_check_model_finish (RvGenerator *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* What the engine offers, as last seen (NULL before any worker saw it). */
const RvEngineInfo *
rv_generator_get_info (RvGenerator *self)
{
  g_return_val_if_fail (RV_IS_GENERATOR (self), NULL);
  return self->info;
}

static void
on_info (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvEngineInfo) info = g_task_propagate_pointer (G_TASK (result), NULL);
  /* an engine that cannot be opened says why when a job asks for it */
  set_info (RV_GENERATOR (source), info);
}

/* Opens the engine as configured, in a worker, and applies the upscaler
 * setting; "info-changed" follows. Weights load only when a job needs them. */
void
rv_generator_refresh_info (RvGenerator *self)
{
  g_return_if_fail (RV_IS_GENERATOR (self));
  g_autoptr (GTask) task = g_task_new (self, NULL, on_info, NULL);
  g_task_set_source_tag (task, rv_generator_refresh_info);
  g_task_set_task_data (task, job_new (self, self->model_dir), (GDestroyNotify) job_unref);
  g_task_run_in_thread (task, info_thread);
}

/* Tries an upscaler folder ("" = the model set's own) on the engine in use:
 * on success it is in use from now on and its info comes back; an error
 * leaves the upscaler as it was. */
void
rv_generator_check_upscaler_async (RvGenerator *self, const char *upscaler_dir,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data)
{
  g_return_if_fail (RV_IS_GENERATOR (self));
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, rv_generator_check_upscaler_async);
  Job *job = job_new (self, self->model_dir);
  g_free (job->upscaler_dir);
  job->upscaler_dir = g_strdup (upscaler_dir ? upscaler_dir : "");
  g_task_set_task_data (task, job, (GDestroyNotify) job_unref);
  g_task_run_in_thread (task, check_upscaler_thread);
}

RvEngineInfo *
rv_generator_check_upscaler_finish (RvGenerator *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  RvEngineInfo *info = g_task_propagate_pointer (G_TASK (result), error);
  set_info (self, info);
  return info;
}

/* The time a job is expected to take, from the last measured costs (a
 * picture at the size it was generated at, scaled by pixels × steps; an
 * upscaler tile, scaled by the pixels going in) or first guesses from the
 * pixel count; and whether the size goes through the upscaler, mirroring the
 * engine's plan (rv_engine_plan_upscale). width, height: the size asked for
 * (0 = the model's), or an upscale job's input; FALSE while nothing is known
 * of the engine. */
gboolean
rv_generator_estimate (RvGenerator *self, RvJobKind kind, int width, int height, int n, int steps,
                       RvEstimate *estimate)
{
  g_return_val_if_fail (RV_IS_GENERATOR (self), FALSE);
  const RvEngineInfo *info = self->info;
  *estimate = (RvEstimate) { 0 };
  if (info == NULL)
    return FALSE;
  int w = width > 0 ? width : info->default_width;
  int h = height > 0 ? height : info->default_height;
  steps = steps > 0 ? steps : info->decoder_steps;
  n = MAX (n, 1);
  int s = info->upscaler_scale;
  double up_pixels = 0, gen_seconds = 0;
  gboolean measured = TRUE;
  estimate->gen_width = w;
  estimate->gen_height = h;
  estimate->factor = 1;
  if (kind == RV_JOB_UPSCALE)
    {
      if (s < 2)
        return FALSE;
      up_pixels = (double) w * h;
      estimate->upscaled = TRUE;
      estimate->factor = s;
      n = 1;
    }
  else
    {
      gboolean text_mode = kind == RV_JOB_GENERATE || kind == RV_JOB_VARIATION || kind == RV_JOB_MIX;
      if (text_mode && s >= 2 && MAX (w, h) > info->native_size)
        {
          double f = (double) info->native_size / MAX (w, h);
          int gw = MAX (16, (int) lround (w * f)), gh = MAX (16, (int) lround (h * f));
          for (double cw = gw, ch = gh; cw < w || ch < h; cw *= s, ch *= s)
            up_pixels += cw * ch;
          estimate->upscaled = TRUE;
          estimate->gen_width = gw;
          estimate->gen_height = gh;
          estimate->factor = (int) lround ((double) MAX (w, h) / MAX (gw, gh));
        }
      double units = (double) estimate->gen_width * estimate->gen_height * steps;
      if (self->costs.gen_seconds > 0 && self->costs.gen_units > 0)
        gen_seconds = self->costs.gen_seconds * units / self->costs.gen_units;
      else
        {
          gen_seconds = GUESS_GEN_FIXED + GUESS_GEN_PER_UNIT * units;
          measured = FALSE;
        }
    }
  double up_seconds = 0;
  if (up_pixels > 0)
    {
      if (self->costs.tile_seconds > 0 && self->costs.tile_pixels > 0)
        up_seconds = self->costs.tile_seconds * ceil (up_pixels / self->costs.tile_pixels);
      else
        {
          up_seconds = GUESS_UP_PER_PX * up_pixels;
          measured = FALSE;
        }
    }
  estimate->seconds = n * (gen_seconds + up_seconds);
  estimate->measured = measured;
  return TRUE;
}

/* The canvas size and frames (RvRect, in the order they will run) of
 * extending image by these borders, as the engine in use plans them; NULL
 * while no engine is open yet, or when the request cannot run. Cheap: no
 * weights, no device work. */
GArray *
rv_generator_plan_extend (RvGenerator *self, const RvImage *image, int left, int right, int top,
                          int bottom, int *width, int *height)
{
  g_return_val_if_fail (RV_IS_GENERATOR (self), NULL);
  g_mutex_lock (&self->lock);
  g_autoptr (RvEngine) e = self->engine ? rv_engine_ref (self->engine) : NULL;
  g_mutex_unlock (&self->lock);
  if (e == NULL || image == NULL)
    return NULL;
  RvRequest req;
  rv_request_init (&req, RV_JOB_EXTEND);
  req.image = image;
  req.extend_left = left;
  req.extend_right = right;
  req.extend_top = top;
  req.extend_bottom = bottom;
  return rv_engine_plan_extend (e, &req, width, height, NULL);
}
