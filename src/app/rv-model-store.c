/* rv-model-store.c: the catalogue's model sets, what is installed or half
 * downloaded, and the download running (a GTask owned by the store, which
 * the application owns). */
#include "config.h"

#include <glib/gi18n.h>

#include "reverie.h"
#include "rv-model-store.h"
#ifdef RV_HAVE_HUB
#include "rv-catalogue.h"
#include "rv-hub.h"
#endif

struct _RvModelStore
{
  GObject       parent_instance;

  GPtrArray    *sets;            /* RvModelSet*, NULL until listed */
  char         *error;
  gboolean      refreshing;
  gboolean      refresh_again;
  guint64       device_memory;
  char         *device_name;
  gboolean      device_asked;
  GSettings    *settings;

  /* the download running */
  char         *pulling;
  GCancellable *cancellable;
  GMutex        lock;
  gboolean      posted;
  int           p_stage;
  guint64       p_done, p_total;
  double        p_eta;
};

G_DEFINE_FINAL_TYPE (RvModelStore, rv_model_store, G_TYPE_OBJECT)

enum {
  CHANGED,
  PULLED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void
model_set_free (RvModelSet *s)
{
  g_free (s->name);
  g_free (s->title);
  g_free (s->description);
  g_free (s->licence_name);
  g_free (s->licence_text);
  g_free (s->installed_dir);
  g_free (s->error);
  g_free (s);
}

static RvModelSet *
find (GPtrArray *sets, const char *name)
{
  for (guint i = 0; sets != NULL && i < sets->len; i++)
    {
      RvModelSet *s = g_ptr_array_index (sets, i);
      if (g_strcmp0 (s->name, name) == 0)
        return s;
    }
  return NULL;
}

/* ---- listing (worker) ---- */

#ifdef RV_HAVE_HUB
static void
list_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  GError *error = NULL;
  g_autoptr (RvCatalogue) cat = rv_catalogue_load_default (&error);
  if (cat == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  GPtrArray *sets = g_ptr_array_new_with_free_func ((GDestroyNotify) model_set_free);
  for (guint i = 0; i < rv_catalogue_size (cat); i++)
    {
      const RvCatalogueEntry *e = rv_catalogue_get (cat, i);
      if (e->kind == RV_CATALOGUE_UPSCALER)
        continue;
      RvModelSet *s = g_new0 (RvModelSet, 1);
      s->name = g_strdup (e->name);
      s->title = g_strdup (e->title ? e->title : e->name);
      s->description = g_strdup (e->description);
      s->embedded = e->kind == RV_CATALOGUE_EMBEDDED;
      s->licence_name = g_strdup (e->licence_name);
      s->licence_text = g_strdup (e->licence_text);
      s->download_bytes = e->n_variants > 0 ? e->variants[0].download_bytes : 0;
      s->memory_bytes = e->n_memory > 0 ? e->memory[0].bytes : 0;
      if (!s->embedded)
        {
          s->installed_dir = rv_hub_installed_dir (NULL, e->name);
          if (s->installed_dir != NULL)
            rv_hub_installed_info (NULL, e->name, NULL, &s->installed_bytes);
          else
            s->staged = rv_hub_staged_info (NULL, e->name, &s->staged_done, &s->staged_total);
        }
      g_ptr_array_add (sets, s);
    }
  g_task_return_pointer (task, sets, (GDestroyNotify) g_ptr_array_unref);
}
#endif

G_GNUC_UNUSED static void
on_listed (GObject *source, GAsyncResult *result, gpointer data)
{
  RvModelStore *self = RV_MODEL_STORE (source);
  g_autoptr (GError) error = NULL;
  GPtrArray *sets = g_task_propagate_pointer (G_TASK (result), &error);
  self->refreshing = FALSE;
  g_clear_pointer (&self->error, g_free);
  if (sets == NULL)
    self->error = g_strdup (error->message);
  else
    {
      /* what the running download and failed ones said carries over */
      for (guint i = 0; i < sets->len; i++)
        {
          RvModelSet *s = g_ptr_array_index (sets, i), *old = find (self->sets, s->name);
          if (old != NULL && old->error != NULL && s->installed_dir == NULL)
            s->error = g_strdup (old->error);
          if (g_strcmp0 (s->name, self->pulling) == 0)
            {
              s->pulling = TRUE;
              s->stage = self->p_stage;
              s->done = self->p_done;
              s->total = self->p_total;
              s->eta = self->p_eta;
            }
        }
      g_clear_pointer (&self->sets, g_ptr_array_unref);
      self->sets = sets;
    }
  g_signal_emit (self, signals[CHANGED], 0);
  if (self->refresh_again)
    {
      self->refresh_again = FALSE;
      rv_model_store_refresh (self);
    }
}

/* ---- the device (worker) ---- */

static void
device_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  const char *want = data;
  g_autoptr (GArray) infos = rv_engine_list_device_info (NULL);
  if (infos == NULL || infos->len == 0)
    {
      g_task_return_pointer (task, NULL, NULL);
      return;
    }
  RvDeviceInfo *pick = NULL;
  for (guint i = 0; i < infos->len; i++)
    {
      RvDeviceInfo *d = &g_array_index (infos, RvDeviceInfo, i);
      if (want != NULL && want[0] != '\0' ? g_str_equal (d->name, want) : d->selected)
        pick = d;
    }
  if (pick == NULL)
    pick = &g_array_index (infos, RvDeviceInfo, 0);
  g_task_return_pointer (task, g_memdup2 (pick, sizeof *pick), g_free);
}

static void
on_device (GObject *source, GAsyncResult *result, gpointer data)
{
  RvModelStore *self = RV_MODEL_STORE (source);
  g_autofree RvDeviceInfo *info = g_task_propagate_pointer (G_TASK (result), NULL);
  if (info == NULL)
    return;
  self->device_memory = info->memory_bytes;
  g_free (self->device_name);
  self->device_name = g_strdup (info->name);
  g_signal_emit (self, signals[CHANGED], 0);
}

static void
ask_device (RvModelStore *self)
{
  g_autoptr (GTask) task = g_task_new (self, NULL, on_device, NULL);
  g_task_set_task_data (task, g_settings_get_string (self->settings, "device"), g_free);
  g_task_run_in_thread (task, device_thread);
}

/* ---- the download ---- */

#ifdef RV_HAVE_HUB
static gboolean
deliver_progress (gpointer data)
{
  RvModelStore *self = data;
  g_mutex_lock (&self->lock);
  self->posted = FALSE;
  int stage = self->p_stage;
  guint64 done = self->p_done, total = self->p_total;
  double eta = self->p_eta;
  g_mutex_unlock (&self->lock);
  RvModelSet *s = find (self->sets, self->pulling);
  if (s != NULL)
    {
      s->pulling = TRUE;
      s->stage = stage;
      s->done = done;
      s->total = total;
      s->eta = eta;
      g_signal_emit (self, signals[CHANGED], 0);
    }
  return G_SOURCE_REMOVE;
}

/* worker thread */
static void
on_pull_progress (const RvHubProgress *p, gpointer data)
{
  RvModelStore *self = data;
  g_mutex_lock (&self->lock);
  self->p_stage = p->stage;
  self->p_done = p->done;
  self->p_total = p->total;
  self->p_eta = p->eta;
  gboolean post = !self->posted;
  self->posted = TRUE;
  g_mutex_unlock (&self->lock);
  if (post)
    g_idle_add_full (G_PRIORITY_DEFAULT, deliver_progress, g_object_ref (self), g_object_unref);
}

static void
pull_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  RvModelStore *self = source;
  const char *name = data;
  GError *error = NULL;
  g_autoptr (RvCatalogue) cat = rv_catalogue_load_default (&error);
  const RvCatalogueEntry *e = cat ? rv_catalogue_lookup (cat, name) : NULL;
  if (cat != NULL && e == NULL)
    g_set_error (&error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, _("The catalogue no longer lists %s."), name);
  if (e == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_autoptr (RvHubPull) pull = rv_hub_pull_new (e, NULL);
  rv_hub_pull_set_progress (pull, on_pull_progress, self);
  if (!rv_hub_pull (pull, cancellable, &error))
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, g_strdup (rv_hub_pull_installed_dir (pull)), g_free);
}
#endif

G_GNUC_UNUSED static void
on_pulled (GObject *source, GAsyncResult *result, gpointer data)
{
  RvModelStore *self = RV_MODEL_STORE (source);
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_task_propagate_pointer (G_TASK (result), &error);
  g_autofree char *name = g_steal_pointer (&self->pulling);
  g_clear_object (&self->cancellable);
  RvModelSet *s = find (self->sets, name);
  if (s != NULL)
    {
      s->pulling = FALSE;
      g_clear_pointer (&s->error, g_free);
      if (dir == NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        s->error = g_strdup (error->message);
    }
  g_signal_emit (self, signals[PULLED], 0, name, dir, error ? error->message : NULL,
                 g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
  /* installed, or staged for a resume: read the store again */
  rv_model_store_refresh (self);
}

/* ---- GObject ---- */

static void
rv_model_store_dispose (GObject *object)
{
  RvModelStore *self = RV_MODEL_STORE (object);
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->settings);
  G_OBJECT_CLASS (rv_model_store_parent_class)->dispose (object);
}

static void
rv_model_store_finalize (GObject *object)
{
  RvModelStore *self = RV_MODEL_STORE (object);
  g_clear_pointer (&self->sets, g_ptr_array_unref);
  g_free (self->error);
  g_free (self->device_name);
  g_free (self->pulling);
  g_clear_object (&self->cancellable);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (rv_model_store_parent_class)->finalize (object);
}

static void
rv_model_store_class_init (RvModelStoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->dispose = rv_model_store_dispose;
  object_class->finalize = rv_model_store_finalize;
  /* the list, a set's state or the download's progress changed */
  signals[CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                   NULL, NULL, NULL, G_TYPE_NONE, 0);
  /* a download ended: name, installed folder (NULL unless installed), error
   * message (NULL on success), cancelled */
  signals[PULLED] = g_signal_new ("pulled", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                  NULL, NULL, NULL, G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING,
                                  G_TYPE_STRING, G_TYPE_BOOLEAN);
}

static void
rv_model_store_init (RvModelStore *self)
{
  g_mutex_init (&self->lock);
  self->settings = g_settings_new (APP_ID);
}

/* ---- API ---- */

RvModelStore *
rv_model_store_new (void)
{
  return g_object_new (RV_TYPE_MODEL_STORE, NULL);
}

gboolean
rv_model_store_available (RvModelStore *self)
{
#ifdef RV_HAVE_HUB
  return TRUE;
#else
  return FALSE;
#endif
}

void
rv_model_store_refresh (RvModelStore *self)
{
  g_return_if_fail (RV_IS_MODEL_STORE (self));
  if (!self->device_asked)
    {
      self->device_asked = TRUE;
      ask_device (self);
    }
#ifdef RV_HAVE_HUB
  if (self->refreshing)
    {
      self->refresh_again = TRUE;
      return;
    }
  self->refreshing = TRUE;
  g_autoptr (GTask) task = g_task_new (self, NULL, on_listed, NULL);
  g_task_run_in_thread (task, list_thread);
#endif
}

GPtrArray *
rv_model_store_get_sets (RvModelStore *self)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), NULL);
  return self->sets;
}

const RvModelSet *
rv_model_store_lookup (RvModelStore *self, const char *name)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), NULL);
  return find (self->sets, name);
}

const char *
rv_model_store_get_error (RvModelStore *self)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), NULL);
  return self->error;
}

guint64
rv_model_store_get_device_memory (RvModelStore *self)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), 0);
  return self->device_memory;
}

const char *
rv_model_store_get_device_name (RvModelStore *self)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), NULL);
  return self->device_name;
}

int
rv_model_store_fits (RvModelStore *self, const RvModelSet *set)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), -1);
  if (set->memory_bytes == 0 || self->device_memory == 0)
    return -1;
  return set->memory_bytes <= self->device_memory;
}

gboolean
rv_model_store_pull (RvModelStore *self, const char *name)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), FALSE);
#ifdef RV_HAVE_HUB
  if (self->pulling != NULL)
    return FALSE;
  self->pulling = g_strdup (name);
  self->cancellable = g_cancellable_new ();
  self->p_stage = RV_HUB_STAGE_LISTING;
  self->p_done = self->p_total = 0;
  self->p_eta = -1;
  RvModelSet *s = find (self->sets, name);
  if (s != NULL)
    {
      s->pulling = TRUE;
      s->stage = RV_HUB_STAGE_LISTING;
      s->done = s->staged_done;
      s->total = s->staged_total;
      s->eta = -1;
      g_clear_pointer (&s->error, g_free);
    }
  g_autoptr (GTask) task = g_task_new (self, self->cancellable, on_pulled, NULL);
  g_task_set_task_data (task, g_strdup (name), g_free);
  g_task_run_in_thread (task, pull_thread);
  g_signal_emit (self, signals[CHANGED], 0);
  return TRUE;
#else
  return FALSE;
#endif
}

void
rv_model_store_cancel (RvModelStore *self)
{
  g_return_if_fail (RV_IS_MODEL_STORE (self));
  g_cancellable_cancel (self->cancellable);
}

const char *
rv_model_store_get_pulling (RvModelStore *self)
{
  g_return_val_if_fail (RV_IS_MODEL_STORE (self), NULL);
  return self->pulling;
}
