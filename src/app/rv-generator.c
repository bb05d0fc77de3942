/* rv-generator.c: runs the engine's jobs for the studio, one at a time, in a
 * worker thread, posting progress to the main context and saving every result
 * to the gallery with its recipe. */
#include "config.h"

#include <errno.h>
#include <glib/gi18n.h>

#include "rv-generator.h"
#include "rv-util.h"

struct _RvGenerator
{
  GObject    parent_instance;

  /* owned */
  char      *device;
  char      *model_dir;
  char      *gallery_dir;
  gboolean   busy;

  /* The engine last made, with the device and model it was made for; guarded
   * by lock since workers make and use it. */
  GMutex     lock;
  RvEngine  *engine;
  char      *engine_key;
};

G_DEFINE_FINAL_TYPE (RvGenerator, rv_generator, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_BUSY,
  N_PROPS
};

enum {
  PROGRESS,
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
  g_free (spec);
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
  GMainContext *context;

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
                 p.step, p.steps, p.fraction, p.eta, texture);
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

static void
on_engine_progress (const RvProgress *p, gpointer data)
{
  post_progress (data, p);
}

/* ---- engines (worker thread) ---- */

static char *
engine_key (const char *device, const char *model_dir)
{
  return g_strdup_printf ("%s\n%s", device ? device : "", model_dir ? model_dir : "");
}

static RvEngine *
get_engine (RvGenerator *self, const char *device, const char *model_dir, GError **error)
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
  g_mutex_unlock (&self->lock);
  return e;
}

/* ---- results (worker thread) ---- */

static RvRecipe *
make_recipe (RvEngine *e, const RvRequest *req, const RvResult *res, const char *source_sha,
             const char *mask_sha, const char *mask_base64)
{
  RvRecipe *r = rv_recipe_for_request (e, req, res->seed, res->image->width, res->image->height);
  r->source_sha256 = g_strdup (source_sha);
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

static void
run_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  RvGenerator *self = source;
  Job *job = data;
  const RvJobSpec *spec = job->spec;
  GError *error = NULL;

  RvProgress start = { .stage = RV_STAGE_LOAD, .n_images = spec->n, .eta = -1 };
  post_progress (job, &start);
  g_autoptr (RvEngine) e = get_engine (self, job->device, job->model_dir, &error);
  if (e == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

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
  req.previews = spec->previews;

  g_autoptr (GPtrArray) results = rv_engine_run (e, &req, on_engine_progress, job, cancellable, &error);
  if (results == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

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
      out->recipe = make_recipe (e, &req, res, source_sha, mask_sha, mask_base64);
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

/* ---- GObject ---- */

static void
rv_generator_finalize (GObject *object)
{
  RvGenerator *self = RV_GENERATOR (object);
  g_free (self->device);
  g_free (self->model_dir);
  g_free (self->gallery_dir);
  g_clear_pointer (&self->engine, rv_engine_unref);
  g_free (self->engine_key);
  g_mutex_clear (&self->lock);
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
   * unknown), preview (a GdkTexture or NULL) */
  signals[PROGRESS] = g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                    NULL, NULL, NULL, G_TYPE_NONE, 8, G_TYPE_INT, G_TYPE_INT,
                                    G_TYPE_INT, G_TYPE_INT, G_TYPE_INT, G_TYPE_DOUBLE,
                                    G_TYPE_DOUBLE, GDK_TYPE_TEXTURE);
}

static void
rv_generator_init (RvGenerator *self)
{
  g_mutex_init (&self->lock);
  self->gallery_dir = rv_generator_default_gallery_dir ();
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
 * gallery_dir: NULL or "" = the default under the XDG data directory. */
void
rv_generator_configure (RvGenerator *self, const char *device, const char *model_dir,
                        const char *gallery_dir)
{
  g_return_if_fail (RV_IS_GENERATOR (self));
  g_free (self->device);
  self->device = g_strdup (device);
  g_free (self->model_dir);
  self->model_dir = g_strdup (model_dir);
  g_free (self->gallery_dir);
  self->gallery_dir = gallery_dir && gallery_dir[0] ? g_strdup (gallery_dir)
                                                    : rv_generator_default_gallery_dir ();
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
  job->context = g_main_context_ref_thread_default ();
  return job;
}

static void
on_run_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GTask) outer = data;
  GError *error = NULL;
  GPtrArray *outputs = g_task_propagate_pointer (G_TASK (result), &error);
  /* busy ends before the caller hears of the result, so it may start the next job */
  set_busy (RV_GENERATOR (source), FALSE);
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
