/* rv-window.c: the studio window: prompt panel, canvas and gallery, the jobs
 * they ask for (one at a time, in a worker: generate, edit, variations,
 * upscale, extend; prompts checked against the content policy when one is
 * set), drag and drop of pictures, and frame times while a job runs. */
#include "config.h"

#include <glib/gi18n.h>

#include "rv-application.h"
#include "rv-content-policy.h"
#include "rv-editor.h"
#include "rv-gallery.h"
#include "rv-generator.h"
#include "rv-prompt-panel.h"
#include "rv-util.h"
#include "rv-window.h"

struct _RvWindow
{
  AdwApplicationWindow  parent_instance;

  /* template widgets */
  AdwToastOverlay      *toast_overlay;
  AdwViewStack         *view_stack;
  RvPromptPanel        *prompt_panel;
  RvEditor             *editor;
  RvGallery            *gallery;

  /* owned */
  GSettings            *settings;
  RvGenerator          *generator;
  GCancellable         *job_cancellable;    /* the running job's */
  GCancellable         *cancellable;        /* loading and saving; the window's lifetime */
  gint64                job_started;
  RvJobKind             job_kind;
  gboolean              closing;

  /* frame times while a job runs: the main loop must keep its pace */
  guint                 tick_id;
  gint64                last_frame;
  GArray               *frame_intervals;   /* gint64, µs */
};

G_DEFINE_FINAL_TYPE (RvWindow, rv_window, ADW_TYPE_APPLICATION_WINDOW)

static void
toast (RvWindow *self, const char *title)
{
  adw_toast_overlay_add_toast (self->toast_overlay, adw_toast_new (title));
}

static void
update_actions (RvWindow *self)
{
  gboolean busy = rv_generator_get_busy (self->generator);
  gboolean picture = rv_editor_get_image (self->editor) != NULL;
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.generate", !busy);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.cancel", busy);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.edit", !busy && picture);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.variations", !busy && picture);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.upscale", !busy && picture);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.extend", !busy && picture);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.save-as", picture);
}

/* ---- frame times ---- */

static gboolean
on_tick (GtkWidget *widget, GdkFrameClock *clock, gpointer data)
{
  RvWindow *self = RV_WINDOW (widget);
  gint64 now = gdk_frame_clock_get_frame_time (clock);
  if (self->last_frame > 0)
    {
      gint64 interval = now - self->last_frame;
      g_array_append_val (self->frame_intervals, interval);
    }
  self->last_frame = now;
  return G_SOURCE_CONTINUE;
}

static int
compare_gint64 (gconstpointer a, gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
  return x < y ? -1 : x > y;
}

static void
start_frame_timing (RvWindow *self)
{
  g_array_set_size (self->frame_intervals, 0);
  self->last_frame = 0;
  if (self->tick_id == 0)
    self->tick_id = gtk_widget_add_tick_callback (GTK_WIDGET (self), on_tick, NULL, NULL);
}

/* Logs the frame intervals seen during the job (G_MESSAGES_DEBUG=Reverie). */
static void
stop_frame_timing (RvWindow *self)
{
  if (self->tick_id != 0)
    gtk_widget_remove_tick_callback (GTK_WIDGET (self), self->tick_id);
  self->tick_id = 0;
  GArray *a = self->frame_intervals;
  if (a->len == 0)
    return;
  g_array_sort (a, compare_gint64);
  double sum = 0;
  for (guint i = 0; i < a->len; i++)
    sum += g_array_index (a, gint64, i);
  g_debug ("frame times during the job: %u frames, mean %.1f ms, median %.1f ms, 95th percentile "
           "%.1f ms, longest %.1f ms", a->len, sum / a->len / 1000.0,
           g_array_index (a, gint64, a->len / 2) / 1000.0,
           g_array_index (a, gint64, MIN (a->len - 1, a->len * 95 / 100)) / 1000.0,
           g_array_index (a, gint64, a->len - 1) / 1000.0);
}

/* ---- jobs ---- */

static void
show_job_error (RvWindow *self, const GError *error)
{
  if (g_error_matches (error, RV_GENERATOR_ERROR, RV_GENERATOR_ERROR_UPSCALER) ||
      (self->job_kind == RV_JOB_UPSCALE && g_error_matches (error, RV_ERROR, RV_ERROR_MODEL)))
    {
      g_autofree char *body = g_strdup_printf (
        "%s\n\n%s", error->message,
        _("Choose an upscaler in Preferences: a Real-ESRGAN model folder with config.json and "
          "model.safetensors (tools/convert-esrgan.py converts a .pth file), or go back to the "
          "model set’s own."));
      _rv_show_message (GTK_WIDGET (self), self->job_kind == RV_JOB_UPSCALE
                                           ? _("The Picture Could Not Be Enlarged")
                                           : _("The Picture Could Not Be Made"), body);
      return;
    }
  if (error->domain == RV_ERROR &&
      (error->code == RV_ERROR_MODEL || error->code == RV_ERROR_NO_VULKAN ||
       error->code == RV_ERROR_NO_DEVICE || error->code == RV_ERROR_DEVICE_LOST))
    {
      const char *what;
      if (error->code == RV_ERROR_MODEL)
        what = _("Choose another model in the Model row, or add a model folder with the + button.");
      else if (error->code == RV_ERROR_DEVICE_LOST)
        what = _("The graphics device stopped responding. Try again; if it happens again, choose "
                 "another device in Preferences.");
      else
        what = _("Reverie needs a Vulkan driver (for example Mesa’s lavapipe, package "
                 "mesa-vulkan-drivers). Choose another device in Preferences if you have one.");
      g_autofree char *body = g_strdup_printf ("%s\n\n%s", error->message, what);
      _rv_show_message (GTK_WIDGET (self), _("The Picture Could Not Be Made"), body);
      return;
    }
  if (error->domain == RV_ERROR && error->code == RV_ERROR_OUT_OF_MEMORY)
    {
      g_autofree char *title = g_strdup_printf (_("%s Try a smaller size or fewer pictures."), error->message);
      toast (self, title);
      return;
    }
  toast (self, error->message);
}

static void
on_job_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvWindow) self = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) outputs = rv_generator_run_finish (RV_GENERATOR (source), result, &error);
  stop_frame_timing (self);
  g_clear_object (&self->job_cancellable);
  if (self->closing)
    {
      gtk_window_destroy (GTK_WINDOW (self));
      return;
    }
  double seconds = (g_get_monotonic_time () - self->job_started) / 1e6;
  if (outputs == NULL)
    {
      gboolean cancelled = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
                           g_error_matches (error, RV_ERROR, RV_ERROR_CANCELLED);
      rv_editor_job_finished (self->editor, NULL, cancelled ? _("Cancelled") : _("Failed"));
      if (!cancelled)
        show_job_error (self, error);
      update_actions (self);
      return;
    }
  for (guint i = 0; i < outputs->len; i++)
    {
      RvOutput *out = g_ptr_array_index (outputs, i);
      if (out->path != NULL)
        {
          g_autoptr (GdkTexture) thumbnail = _rv_texture_new_for_image (out->image);
          rv_gallery_add (self->gallery, out->path, out->recipe, thumbnail);
        }
      else
        {
          g_autofree char *title = g_strdup_printf (_("Not saved to the gallery: %s Choose another "
                                                      "gallery folder in Preferences, or save it with "
                                                      "Save Picture As."), out->save_error);
          toast (self, title);
        }
    }
  g_autofree char *status = outputs->len == 1
    ? g_strdup_printf (_("Done in %.1f s"), seconds)
    : g_strdup_printf (ngettext ("%u picture in %.1f s", "%u pictures in %.1f s", outputs->len),
                       outputs->len, seconds);
  rv_editor_job_finished (self->editor, outputs, status);
  update_actions (self);
}

static void
on_progress (RvGenerator *generator, int stage, int image, int n_images, int step, int steps,
             double fraction, double eta, GdkTexture *preview, int frame, int n_frames,
             int frames_at_once, RvWindow *self)
{
  if (self->job_cancellable == NULL)
    return;   /* a late report of a job already finished */
  rv_editor_job_progress (self->editor, stage, image, n_images, step, steps, fraction, eta, preview,
                          frame, n_frames, frames_at_once);
}

/* The content policy, when one is set: a prompt in one of its categories
 * starts nothing, and the message names the category (never the phrases). */
static gboolean
allowed_by_policy (RvWindow *self, const RvJobSpec *spec)
{
  GApplication *app = g_application_get_default ();
  if (!RV_IS_APPLICATION (app))
    return TRUE;
  RvContentPolicy *policy = rv_application_get_content_policy (RV_APPLICATION (app));
  const char *why = rv_application_get_content_policy_error (RV_APPLICATION (app));
  if (why != NULL)
    {
      /* a policy is set: what it would refuse is not known, so nothing passes */
      g_autofree char *body = g_strdup_printf (
        _("The content policy of this computer, %s, cannot be read: %s\n\nNothing is made until "
          "it is fixed, or another is chosen in Preferences."),
        rv_application_get_content_policy_path (RV_APPLICATION (app)), why);
      _rv_show_message (GTK_WIDGET (self), _("The Content Policy Cannot Be Read"), body);
      return FALSE;
    }
  if (policy == NULL)
    return TRUE;
  const char *texts[] = { spec->prompt, spec->negative_prompt };
  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      const char *category = texts[i] && texts[i][0] ? rv_content_policy_check (policy, texts[i]) : NULL;
      if (category == NULL)
        continue;
      g_autofree char *body = g_strdup_printf (
        i == 0 ? _("The prompt falls under “%s” in the content policy of this computer, so nothing "
                   "was made. Change the prompt and try again.")
               : _("The negative prompt falls under “%s” in the content policy of this computer, so "
                   "nothing was made. Change it and try again."),
        category);
      _rv_show_message (GTK_WIDGET (self), _("This Prompt Is Not Allowed Here"), body);
      return FALSE;
    }
  return TRUE;
}

/* Takes spec. */
static void
start_job (RvWindow *self, RvJobSpec *spec)
{
  g_autoptr (RvJobSpec) owned = spec;
  if (rv_generator_get_busy (self->generator))
    {
      toast (self, _("A picture is being made. Wait for it, or cancel it with Escape."));
      return;
    }
  if (!allowed_by_policy (self, spec))
    return;
  self->job_cancellable = g_cancellable_new ();
  self->job_started = g_get_monotonic_time ();
  self->job_kind = spec->kind;
  rv_editor_job_started (self->editor, spec->kind, spec->n);
  adw_view_stack_set_visible_child_name (self->view_stack, "canvas");
  start_frame_timing (self);
  rv_generator_run_async (self->generator, g_steal_pointer (&owned), self->job_cancellable,
                          on_job_done, g_object_ref (self));
}

static gboolean
fill_spec (RvWindow *self, RvJobSpec *spec)
{
  g_autoptr (GError) error = NULL;
  if (!rv_prompt_panel_fill_spec (self->prompt_panel, spec, &error))
    {
      toast (self, error->message);
      rv_prompt_panel_focus_prompt (self->prompt_panel);
      return FALSE;
    }
  rv_prompt_panel_remember (self->prompt_panel);
  return TRUE;
}

static void
generate_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  g_autoptr (RvJobSpec) spec = rv_job_spec_new (RV_JOB_GENERATE);
  if (fill_spec (self, spec))
    start_job (self, g_steal_pointer (&spec));
}

static void
cancel_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  if (self->job_cancellable != NULL)
    g_cancellable_cancel (self->job_cancellable);
}

static void
edit_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  const RvImage *image = rv_editor_get_image (self->editor);
  if (image == NULL)
    {
      toast (self, _("Open or make a picture first."));
      return;
    }
  g_autoptr (RvImage) mask = rv_editor_get_mask_image (self->editor);
  if (mask == NULL)
    {
      toast (self, _("Paint over the part to repaint first: turn on the mask brush (B) and paint on the picture."));
      return;
    }
  g_autoptr (RvJobSpec) spec = rv_job_spec_new (RV_JOB_INPAINT);
  spec->image = rv_image_copy (image);
  spec->mask = g_steal_pointer (&mask);
  spec->feather = rv_editor_get_feather (self->editor);
  if (fill_spec (self, spec))
    start_job (self, g_steal_pointer (&spec));
}

static void
start_variations (RvWindow *self, const RvImage *image)
{
  g_autoptr (RvJobSpec) spec = rv_job_spec_new (RV_JOB_VARIATION);
  spec->image = rv_image_copy (image);
  if (fill_spec (self, spec))
    start_job (self, g_steal_pointer (&spec));
}

/* The picture enlarged by the upscaler (its own scale), as a new gallery
 * picture that keeps what the source's recipe says it was. */
static void
start_upscale (RvWindow *self, const RvImage *image, const RvRecipe *recipe)
{
  g_autoptr (RvJobSpec) spec = rv_job_spec_new (RV_JOB_UPSCALE);
  spec->image = rv_image_copy (image);
  spec->source_recipe = recipe ? rv_recipe_copy (recipe) : NULL;
  spec->seed = recipe ? recipe->seed : 0;
  g_autoptr (GSettings) settings = g_settings_new (APP_ID);
  spec->previews = g_settings_get_boolean (settings, "previews");
  start_job (self, g_steal_pointer (&spec));
}

static void
upscale_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  const RvImage *image = rv_editor_get_image (self->editor);
  if (image == NULL)
    toast (self, _("Open, drop or make a picture first."));
  else
    start_upscale (self, image, rv_editor_get_recipe (self->editor));
}

/* Outpainting: the picture on a canvas grown by the borders set in extend
 * mode, the new area painted following the prompt, as many candidates as
 * the panel asks for. */
static void
extend_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  const RvImage *image = rv_editor_get_image (self->editor);
  if (image == NULL)
    {
      toast (self, _("Open, drop or make a picture first."));
      return;
    }
  g_autoptr (RvJobSpec) spec = rv_job_spec_new (RV_JOB_EXTEND);
  rv_editor_get_borders (self->editor, &spec->extend_left, &spec->extend_right, &spec->extend_top,
                         &spec->extend_bottom);
  gboolean transparent = FALSE;
  for (gsize i = 3; image->channels == 4 && i < (gsize) image->width * image->height * 4 && !transparent; i += 4)
    transparent = image->pixels[i] < 128;
  if (spec->extend_left + spec->extend_right + spec->extend_top + spec->extend_bottom == 0 && !transparent)
    {
      toast (self, _("Turn on Extend canvas (X) and drag an edge of the picture outward, or set the borders."));
      return;
    }
  spec->image = rv_image_copy (image);
  if (!fill_spec (self, spec))
    return;
  spec->width = spec->height = 0;   /* the canvas decides */
  start_job (self, g_steal_pointer (&spec));
}

static void
variations_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  const RvImage *image = rv_editor_get_image (self->editor);
  if (image == NULL)
    toast (self, _("Open, drop or make a picture first."));
  else
    start_variations (self, image);
}

/* ---- pictures in ---- */

/* what follows when a picture is on the canvas */
typedef enum {
  THEN_SHOW,
  THEN_VARIATIONS,
  THEN_UPSCALE,
} Then;

typedef struct {
  RvWindow *window;
  RvRecipe *recipe;
  char     *path;
  Then      then;
} Load;

static void
load_free (Load *load)
{
  g_clear_object (&load->window);
  g_clear_pointer (&load->recipe, rv_recipe_free);
  g_free (load->path);
  g_free (load);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Load, load_free)

static void
show_loaded (RvWindow *self, RvImage *image, const RvRecipe *recipe, const char *path, Then then)
{
  rv_editor_set_picture (self->editor, image, NULL, recipe, path);
  adw_view_stack_set_visible_child_name (self->view_stack, "canvas");
  update_actions (self);
  if (then == THEN_VARIATIONS)
    start_variations (self, rv_editor_get_image (self->editor));
  else if (then == THEN_UPSCALE)
    start_upscale (self, rv_editor_get_image (self->editor), recipe);
}

static void
on_picture_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (Load) load = data;
  g_autoptr (GError) error = NULL;
  RvImage *image = _rv_load_image_finish (result, &error);
  if (image == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_autofree char *title = g_strdup_printf (_("%s Try a PNG, JPEG or WebP picture."), error->message);
          toast (load->window, title);
        }
      return;
    }
  show_loaded (load->window, image, load->recipe, load->path, load->then);
}

static void
load_picture (RvWindow *self, GFile *file, const RvRecipe *recipe, Then then)
{
  Load *load = g_new0 (Load, 1);
  load->window = g_object_ref (self);
  load->recipe = recipe ? rv_recipe_copy (recipe) : NULL;
  load->path = g_file_get_path (file);
  load->then = then;
  _rv_load_image_async (file, self->cancellable, on_picture_loaded, load);
}

void
rv_window_open_file (RvWindow *self, GFile *file)
{
  g_return_if_fail (RV_IS_WINDOW (self));
  load_picture (self, file, NULL, THEN_SHOW);
}

static void
on_open_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvWindow) self = data;
  g_autoptr (GFile) file = _rv_choose_file_finish (result, NULL);
  if (file != NULL)
    rv_window_open_file (self, file);
}

static void
open_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  _rv_choose_file_async (widget, RV_CHOOSE_OPEN, _("Open a Picture"), NULL, self->cancellable,
                         on_open_chosen, g_object_ref (self));
}

/* A dropped file or picture: on the canvas, and variations of it at once. */
static gboolean
on_drop (GtkDropTarget *target, const GValue *value, double x, double y, RvWindow *self)
{
  if (G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    {
      GSList *files = gdk_file_list_get_files (g_value_get_boxed (value));
      gboolean any = files != NULL;
      if (any)
        load_picture (self, files->data, NULL, THEN_VARIATIONS);
      g_slist_free (files);
      return any;
    }
  if (G_VALUE_HOLDS (value, G_TYPE_FILE))
    {
      load_picture (self, g_value_get_object (value), NULL, THEN_VARIATIONS);
      return TRUE;
    }
  if (G_VALUE_HOLDS (value, GDK_TYPE_TEXTURE))
    {
      RvImage *image = _rv_image_new_from_texture (g_value_get_object (value));
      show_loaded (self, image, NULL, NULL, THEN_VARIATIONS);
      return TRUE;
    }
  return FALSE;
}

/* ---- pictures out ---- */

typedef struct {
  RvImage    *image;
  GHashTable *text;
  char       *path;
} Save;

static void
save_free (Save *save)
{
  rv_image_free (save->image);
  g_clear_pointer (&save->text, g_hash_table_unref);
  g_free (save->path);
  g_free (save);
}

static void
save_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  Save *save = data;
  GError *error = NULL;
  if (rv_image_save_png (save->image, save->path, save->text, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
on_saved (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvWindow) self = data;
  g_autoptr (GError) error = NULL;
  Save *save = g_task_get_task_data (G_TASK (result));
  g_autofree char *name = g_path_get_basename (save->path);
  g_autofree char *title = g_task_propagate_boolean (G_TASK (result), &error)
    ? g_strdup_printf (_("Saved as %s"), name)
    : g_strdup_printf (_("Could not save: %s Choose another folder."), error->message);
  toast (self, title);
}

static void
on_save_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvWindow) self = data;
  g_autoptr (GFile) file = _rv_choose_file_finish (result, NULL);
  const RvImage *image = rv_editor_get_image (self->editor);
  g_autofree char *path = file ? g_file_get_path (file) : NULL;
  if (path == NULL || image == NULL)
    return;
  Save *save = g_new0 (Save, 1);
  save->image = rv_image_copy (image);
  save->path = g_steal_pointer (&path);
  /* a gallery picture keeps its recipe */
  const char *from = rv_editor_get_path (self->editor);
  g_autoptr (RvRecipe) recipe = from ? rv_recipe_from_file (from, NULL) : NULL;
  save->text = recipe ? rv_recipe_to_text (recipe) : NULL;
  g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, on_saved, g_object_ref (self));
  g_task_set_task_data (task, save, (GDestroyNotify) save_free);
  g_task_run_in_thread (task, save_thread);
}

static void
save_as_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  const char *from = rv_editor_get_path (self->editor);
  g_autofree char *base = from ? g_path_get_basename (from) : g_strdup ("reverie.png");
  _rv_choose_file_async (widget, RV_CHOOSE_SAVE, _("Save Picture As"), base, self->cancellable,
                         on_save_chosen, g_object_ref (self));
}

/* ---- gallery ---- */

static void
on_gallery_open (RvGallery *gallery, RvGalleryItem *item, RvWindow *self)
{
  g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (item));
  load_picture (self, file, rv_gallery_item_get_recipe (item), THEN_SHOW);
}

static void
on_gallery_variations (RvGallery *gallery, RvGalleryItem *item, RvWindow *self)
{
  g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (item));
  load_picture (self, file, rv_gallery_item_get_recipe (item), THEN_VARIATIONS);
}

static void
on_gallery_upscale (RvGallery *gallery, RvGalleryItem *item, RvWindow *self)
{
  if (rv_generator_get_busy (self->generator))
    {
      toast (self, _("A picture is being made. Wait for it, or cancel it with Escape."));
      return;
    }
  g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (item));
  load_picture (self, file, rv_gallery_item_get_recipe (item), THEN_UPSCALE);
}

static void
on_gallery_reuse (RvGallery *gallery, RvGalleryItem *item, guint what, RvWindow *self)
{
  const RvRecipe *recipe = rv_gallery_item_get_recipe (item);
  rv_prompt_panel_apply_recipe (self->prompt_panel, recipe, what);
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, recipe->seed);
  g_autofree char *title = NULL;
  if (what == RV_REUSE_SEED)
    title = g_strdup_printf (_("Seed %s is locked for the next pictures"), seed);
  else if (what == RV_REUSE_PROMPT)
    title = g_strdup (_("Prompt reused"));
  else
    title = g_strdup_printf (_("Recipe reused, seed %s locked"), seed);
  toast (self, title);
}

/* ---- settings ---- */

static void
configure (RvWindow *self)
{
  g_autofree char *device = g_settings_get_string (self->settings, "device");
  g_autofree char *model = g_settings_get_string (self->settings, "model");
  g_autofree char *gallery = g_settings_get_string (self->settings, "gallery-folder");
  g_autofree char *upscaler = g_settings_get_string (self->settings, "upscaler");
  rv_generator_configure (self->generator, device, model, gallery, upscaler);
  rv_gallery_set_folder (self->gallery, rv_generator_get_gallery_dir (self->generator));
}

static void
on_setting_changed (GSettings *settings, const char *key, RvWindow *self)
{
  configure (self);
  /* the engine, its native size and its upscaler, for the estimates */
  if (!g_str_equal (key, "gallery-folder"))
    rv_generator_refresh_info (self->generator);
}

/* A download from the catalogue ended (it may have begun in a window since closed). */
static void
on_model_pulled (RvModelStore *store, const char *name, const char *dir, const char *error,
                 gboolean cancelled, RvWindow *self)
{
  if (cancelled || gtk_widget_get_visible (GTK_WIDGET (self)) == FALSE)
    return;
  const RvModelSet *set = rv_model_store_lookup (store, name);
  g_autofree char *title = error
    ? g_strdup_printf (_("%s could not be downloaded: %s"), set ? set->title : name, error)
    : g_strdup_printf (_("%s is installed: choose it in Preferences, Model Sets"), set ? set->title : name);
  toast (self, title);
}

static void
view_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvWindow *self = RV_WINDOW (widget);
  adw_view_stack_set_visible_child_name (self->view_stack,
                                         g_str_equal (name, "win.show-gallery") ? "gallery" : "canvas");
}

/* ---- GObject ---- */

/* Ctrl+Enter generates even from inside the prompt, whose text view would
 * otherwise take it as a new line: it is caught before the focus sees it. */
static gboolean
on_generate_shortcut (GtkWidget *widget, GVariant *args, gpointer data)
{
  gtk_widget_activate_action (widget, "win.generate", NULL);
  return TRUE;
}

static void
add_generate_shortcut (RvWindow *self)
{
  GtkEventController *controller = gtk_shortcut_controller_new ();
  gtk_event_controller_set_propagation_phase (controller, GTK_PHASE_CAPTURE);
  GtkShortcut *shortcut =
    gtk_shortcut_new (gtk_shortcut_trigger_parse_string ("<Control>Return|<Control>KP_Enter"),
                      gtk_callback_action_new (on_generate_shortcut, NULL, NULL));
  gtk_shortcut_controller_add_shortcut (GTK_SHORTCUT_CONTROLLER (controller), shortcut);
  gtk_widget_add_controller (GTK_WIDGET (self), controller);
}

static gboolean
rv_window_close_request (GtkWindow *window)
{
  RvWindow *self = RV_WINDOW (window);
  rv_gallery_flush (self->gallery);
  if (rv_generator_get_busy (self->generator))
    {
      /* the worker finishes its step first; the window goes when it has */
      self->closing = TRUE;
      g_cancellable_cancel (self->job_cancellable);
      gtk_widget_set_visible (GTK_WIDGET (self), FALSE);
      return TRUE;
    }
  return GTK_WINDOW_CLASS (rv_window_parent_class)->close_request (window);
}

static void
rv_window_dispose (GObject *object)
{
  RvWindow *self = RV_WINDOW (object);
  g_cancellable_cancel (self->cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  if (self->generator != NULL)
    g_signal_handlers_disconnect_by_data (self->generator, self);
  gtk_widget_dispose_template (GTK_WIDGET (self), RV_TYPE_WINDOW);
  g_clear_object (&self->settings);
  g_clear_object (&self->generator);
  g_clear_object (&self->job_cancellable);
  g_clear_object (&self->cancellable);
  G_OBJECT_CLASS (rv_window_parent_class)->dispose (object);
}

static void
rv_window_finalize (GObject *object)
{
  RvWindow *self = RV_WINDOW (object);
  g_clear_pointer (&self->frame_intervals, g_array_unref);
  G_OBJECT_CLASS (rv_window_parent_class)->finalize (object);
}

static void
rv_window_class_init (RvWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);

  object_class->dispose = rv_window_dispose;
  object_class->finalize = rv_window_finalize;
  window_class->close_request = rv_window_close_request;

  g_type_ensure (RV_TYPE_PROMPT_PANEL);
  g_type_ensure (RV_TYPE_EDITOR);
  g_type_ensure (RV_TYPE_GALLERY);
  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/reverie/Reverie/rv-window.ui");
  gtk_widget_class_bind_template_child (widget_class, RvWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, RvWindow, view_stack);
  gtk_widget_class_bind_template_child (widget_class, RvWindow, prompt_panel);
  gtk_widget_class_bind_template_child (widget_class, RvWindow, editor);
  gtk_widget_class_bind_template_child (widget_class, RvWindow, gallery);

  gtk_widget_class_install_action (widget_class, "win.generate", NULL, generate_action);
  gtk_widget_class_install_action (widget_class, "win.cancel", NULL, cancel_action);
  gtk_widget_class_install_action (widget_class, "win.edit", NULL, edit_action);
  gtk_widget_class_install_action (widget_class, "win.variations", NULL, variations_action);
  gtk_widget_class_install_action (widget_class, "win.upscale", NULL, upscale_action);
  gtk_widget_class_install_action (widget_class, "win.extend", NULL, extend_action);
  gtk_widget_class_install_action (widget_class, "win.open", NULL, open_action);
  gtk_widget_class_install_action (widget_class, "win.save-as", NULL, save_as_action);
  gtk_widget_class_install_action (widget_class, "win.show-canvas", NULL, view_action);
  gtk_widget_class_install_action (widget_class, "win.show-gallery", NULL, view_action);

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "win.cancel", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_e, GDK_CONTROL_MASK, "win.edit", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_v, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "win.variations", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_u, GDK_CONTROL_MASK, "win.upscale", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_o, GDK_CONTROL_MASK, "win.open", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_s, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "win.save-as", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_1, GDK_ALT_MASK, "win.show-canvas", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_2, GDK_ALT_MASK, "win.show-gallery", NULL);
}

static void
rv_window_init (RvWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->settings = g_settings_new (APP_ID);
  self->generator = rv_generator_new ();
  self->cancellable = g_cancellable_new ();
  self->frame_intervals = g_array_new (FALSE, FALSE, sizeof (gint64));

  g_settings_bind (self->settings, "window-width", self, "default-width", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "window-height", self, "default-height", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "window-maximized", self, "maximized", G_SETTINGS_BIND_DEFAULT);

  configure (self);
  g_signal_connect (self->settings, "changed::device", G_CALLBACK (on_setting_changed), self);
  g_signal_connect (self->settings, "changed::model", G_CALLBACK (on_setting_changed), self);
  g_signal_connect (self->settings, "changed::gallery-folder", G_CALLBACK (on_setting_changed), self);
  g_signal_connect (self->settings, "changed::upscaler", G_CALLBACK (on_setting_changed), self);

  rv_prompt_panel_set_generator (self->prompt_panel, self->generator);
  rv_editor_set_generator (self->editor, self->generator);
  g_signal_connect (self->generator, "progress", G_CALLBACK (on_progress), self);
  g_signal_connect_swapped (self->generator, "notify::busy", G_CALLBACK (update_actions), self);
  g_signal_connect_swapped (self->editor, "notify::has-picture", G_CALLBACK (update_actions), self);
  g_signal_connect (self->gallery, "open", G_CALLBACK (on_gallery_open), self);
  g_signal_connect (self->gallery, "variations", G_CALLBACK (on_gallery_variations), self);
  g_signal_connect (self->gallery, "upscale", G_CALLBACK (on_gallery_upscale), self);
  g_signal_connect (self->gallery, "reuse", G_CALLBACK (on_gallery_reuse), self);

  GtkDropTarget *drop = gtk_drop_target_new (G_TYPE_INVALID, GDK_ACTION_COPY);
  GType types[] = { GDK_TYPE_FILE_LIST, G_TYPE_FILE, GDK_TYPE_TEXTURE };
  gtk_drop_target_set_gtypes (drop, types, G_N_ELEMENTS (types));
  g_signal_connect (drop, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop));

  GApplication *app = g_application_get_default ();
  if (RV_IS_APPLICATION (app))
    g_signal_connect_object (rv_application_get_model_store (RV_APPLICATION (app)), "pulled",
                             G_CALLBACK (on_model_pulled), self, 0);

  add_generate_shortcut (self);
  update_actions (self);
  /* the engine opens in a worker now, so that the panel can tell what a
   * size will take (weights load with the first picture) */
  rv_generator_refresh_info (self->generator);
  rv_prompt_panel_focus_prompt (self->prompt_panel);
}

RvGenerator *
rv_window_get_generator (RvWindow *self)
{
  g_return_val_if_fail (RV_IS_WINDOW (self), NULL);
  return self->generator;
}

RvWindow *
rv_window_new (GtkApplication *application)
{
  return g_object_new (RV_TYPE_WINDOW, "application", application, NULL);
}
