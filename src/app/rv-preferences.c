/* rv-preferences.c: the preferences window: device, default steps, live
 * previews, upscaler, gallery folder, content policy. */
#include "config.h"

#include <glib/gi18n.h>
#include <unistd.h>

#include "rv-application.h"
#include "rv-content-policy.h"
#include "rv-generator.h"
#include "rv-preferences.h"
#include "rv-util.h"
#include "rv-window.h"

struct _RvPreferences
{
  AdwPreferencesWindow  parent_instance;

  /* template widgets */
  AdwComboRow          *device_row;
  GtkStringList        *device_list;
  GtkSpinButton        *default_steps_spin;
  GtkAdjustment        *default_steps_adjustment;
  GtkSwitch            *previews_switch;
  AdwActionRow         *gallery_row;
  AdwActionRow         *upscaler_row;
  AdwActionRow         *policy_row;
  AdwPreferencesGroup  *models_group;

  /* owned */
  GSettings            *settings;
  RvGenerator          *generator;     /* the window's, for the upscaler */
  gboolean              checking;      /* an upscaler folder is being tried */
  char                 *checking_path;
  GCancellable         *cancellable;
  GPtrArray            *devices;       /* names, in the order of the row after "Automatic" */
  gboolean              updating;
  gboolean              reading_policy;
  RvModelStore         *models;
  GPtrArray            *model_rows;    /* ModelRow*, in the group's order */
};

typedef struct {
  char       *name;
  AdwActionRow *row;
  GtkWidget  *use;
  GtkWidget  *download;
  GtkWidget  *cancel;
  GtkWidget  *bar;
} ModelRow;

static void
model_row_free (ModelRow *r)
{
  g_free (r->name);
  g_free (r);
}

G_DEFINE_FINAL_TYPE (RvPreferences, rv_preferences, ADW_TYPE_PREFERENCES_WINDOW)

/* ---- devices ---- */

static void
list_devices_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  GError *error = NULL;
  GPtrArray *names = rv_engine_list_devices (&error);
  if (names == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, names, (GDestroyNotify) g_ptr_array_unref);
}

static void
fill_devices (RvPreferences *self)
{
  g_autofree char *current = g_settings_get_string (self->settings, "device");
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  g_strv_builder_add (b, _("Automatic (the fastest)"));
  guint selected = 0;
  for (guint i = 0; i < self->devices->len; i++)
    {
      g_strv_builder_add (b, g_ptr_array_index (self->devices, i));
      if (g_str_equal (current, g_ptr_array_index (self->devices, i)))
        selected = i + 1;
    }
  if (current[0] != '\0' && selected == 0)
    {
      /* a device that is not here now (unplugged, another driver) stays chosen */
      g_ptr_array_add (self->devices, g_strdup (current));
      g_strv_builder_add (b, current);
      selected = self->devices->len;
    }
  g_auto (GStrv) items = g_strv_builder_end (b);
  self->updating = TRUE;
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->device_list));
  gtk_string_list_splice (self->device_list, 0, n, (const char *const *) items);
  adw_combo_row_set_selected (self->device_row, selected);
  self->updating = FALSE;
}

static void
on_devices_listed (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = g_task_propagate_pointer (G_TASK (result), &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  RvPreferences *self = data;
  if (names == NULL)
    {
      adw_action_row_set_subtitle (ADW_ACTION_ROW (self->device_row), error->message);
      return;
    }
  g_ptr_array_extend_and_steal (self->devices, g_steal_pointer (&names));
  fill_devices (self);
}

static void
on_device_selected (AdwComboRow *row, GParamSpec *pspec, RvPreferences *self)
{
  if (self->updating)
    return;
  guint selected = adw_combo_row_get_selected (row);
  const char *name = selected > 0 && selected <= self->devices->len
    ? g_ptr_array_index (self->devices, selected - 1) : "";
  g_settings_set_string (self->settings, "device", name);
}

/* ---- upscaler ---- */

static void
show_upscaler (RvPreferences *self)
{
  g_autofree char *folder = g_settings_get_string (self->settings, "upscaler");
  const RvEngineInfo *info = self->generator ? rv_generator_get_info (self->generator) : NULL;
  g_autofree char *subtitle = NULL;
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "prefs.reset-upscaler", folder[0] != '\0');
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "prefs.choose-upscaler", !self->checking);
  /* what the engine reports, once it matches the setting */
  gboolean current = info != NULL &&
                     (info->upscaler_error != NULL || info->upscaler_own == (folder[0] == '\0'));
  if (self->checking || !current)
    subtitle = g_strdup (_("Checking…"));
  else if (info->upscaler_error != NULL)
    subtitle = g_strdup_printf (_("Not in use: %s"), info->upscaler_error);
  else if (info->upscaler_name == NULL)
    subtitle = g_strdup_printf (_("None: the model set %s has no upscaler. Sizes beyond %d px are "
                                  "generated at full size."), info->model_name, info->native_size);
  else if (info->upscaler_own)
    /* Translators: "reverie-tiny/upscaler · ×4 · the model set’s own" */
    subtitle = g_strdup_printf (_("%s · ×%d · the model set’s own"), info->upscaler_name,
                                info->upscaler_scale);
  else
    subtitle = g_strdup_printf (_("%s · ×%d · %s"), info->upscaler_name, info->upscaler_scale, folder);
  adw_action_row_set_subtitle (self->upscaler_row, subtitle);
}

static void
on_upscaler_info_changed (RvPreferences *self)
{
  show_upscaler (self);
}

static void
on_upscaler_setting_changed (GSettings *settings, const char *key, RvPreferences *self)
{
  show_upscaler (self);
}

static void
on_upscaler_checked (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPreferences) self = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_steal_pointer (&self->checking_path);
  g_autoptr (RvEngineInfo) info = rv_generator_check_upscaler_finish (RV_GENERATOR (source), result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  self->checking = FALSE;
  if (info == NULL)
    {
      show_upscaler (self);
      g_autofree char *body = g_strdup_printf (
        _("%s\n\nChoose a folder that holds config.json and model.safetensors of a Real-ESRGAN "
          "model (RRDBNet or SRVGGNetCompact). tools/convert-esrgan.py makes one from a .pth file."),
        error->message);
      _rv_show_message (GTK_WIDGET (self), _("This Folder Is Not an Upscaler"), body);
      return;
    }
  g_settings_set_string (self->settings, "upscaler", path);
  show_upscaler (self);
  g_autofree char *title = g_strdup_printf (_("Upscaler “%s” (×%d) in use"), info->upscaler_name,
                                            info->upscaler_scale);
  adw_preferences_window_add_toast (ADW_PREFERENCES_WINDOW (self), adw_toast_new (title));
}

static void
on_upscaler_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPreferences) self = data;
  g_autoptr (GFile) folder = _rv_choose_file_finish (result, NULL);
  g_autofree char *path = folder ? g_file_get_path (folder) : NULL;
  if (path == NULL || self->generator == NULL)
    return;
  self->checking = TRUE;
  show_upscaler (self);
  /* the folder is kept only once the engine took it */
  rv_generator_check_upscaler_async (self->generator, path, self->cancellable, on_upscaler_checked,
                                     g_object_ref (self));
  g_free (self->checking_path);
  self->checking_path = g_steal_pointer (&path);
}

static void
choose_upscaler_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvPreferences *self = RV_PREFERENCES (widget);
  _rv_choose_file_async (widget, RV_CHOOSE_FOLDER, _("Choose an Upscaler Folder"), NULL,
                         self->cancellable, on_upscaler_chosen, g_object_ref (self));
}

static void
reset_upscaler_action (GtkWidget *widget, const char *name, GVariant *param)
{
  g_settings_reset (RV_PREFERENCES (widget)->settings, "upscaler");
}

/* ---- gallery folder ---- */

static void
show_gallery_folder (RvPreferences *self)
{
  g_autofree char *folder = g_settings_get_string (self->settings, "gallery-folder");
  g_autofree char *fallback = rv_generator_default_gallery_dir ();
  adw_action_row_set_subtitle (self->gallery_row, folder[0] ? folder : fallback);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "prefs.reset-gallery", folder[0] != '\0');
}

static void
on_gallery_folder_changed (GSettings *settings, const char *key, RvPreferences *self)
{
  show_gallery_folder (self);
}

static void
on_gallery_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPreferences) self = data;
  g_autoptr (GFile) folder = _rv_choose_file_finish (result, NULL);
  g_autofree char *path = folder ? g_file_get_path (folder) : NULL;
  if (path == NULL)
    return;
  if (access (path, W_OK) != 0)
    {
      g_autofree char *title = g_strdup_printf (_("%s cannot be written to. Choose a folder of your own."), path);
      adw_preferences_window_add_toast (ADW_PREFERENCES_WINDOW (self), adw_toast_new (title));
      return;
    }
  g_settings_set_string (self->settings, "gallery-folder", path);
}

static void
choose_gallery_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvPreferences *self = RV_PREFERENCES (widget);
  _rv_choose_file_async (widget, RV_CHOOSE_FOLDER, _("Choose the Gallery Folder"), NULL,
                         self->cancellable, on_gallery_chosen, g_object_ref (self));
}

static void
reset_gallery_action (GtkWidget *widget, const char *name, GVariant *param)
{
  g_settings_reset (RV_PREFERENCES (widget)->settings, "gallery-folder");
}

/* ---- model sets ---- */

static char *
format_size (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_DEFAULT);
}

/* The model setting for a set: "" for the embedded one, else its folder. */
static char *
set_folder (const RvModelSet *set)
{
  return g_strdup (set->embedded ? "" : set->installed_dir);
}

static char *
fit_text (RvPreferences *self, const RvModelSet *set)
{
  int fits = rv_model_store_fits (self->models, set);
  if (fits < 0)
    return NULL;
  g_autofree char *need = format_size (set->memory_bytes);
  g_autofree char *have = format_size (rv_model_store_get_device_memory (self->models));
  return fits ? g_strdup_printf (_("fits this device (%s needed, %s there)"), need, have)
              : g_strdup_printf (_("will not fit this device: it needs %s of device memory, %s has %s"),
                                 need, rv_model_store_get_device_name (self->models), have);
}

static void
update_model_row (RvPreferences *self, ModelRow *r)
{
  const RvModelSet *set = rv_model_store_lookup (self->models, r->name);
  if (set == NULL)
    return;
  g_autofree char *current = g_settings_get_string (self->settings, "model");
  g_autofree char *folder = set_folder (set);
  gboolean installed = set->embedded || set->installed_dir != NULL;
  gboolean in_use = installed && g_strcmp0 (current, folder) == 0;
  gboolean busy = rv_model_store_get_pulling (self->models) != NULL;
  g_autofree char *subtitle = NULL;
  if (set->pulling)
    {
      const char *what = set->stage == 0 ? _("Asking the Hub") : set->stage == 1 ? _("Checking what was kept")
                       : set->stage == 3 ? _("Installing") : _("Downloading");
      g_autofree char *done = format_size (set->done), *total = format_size (set->total);
      g_autofree char *eta = set->eta >= 0 ? g_strdup_printf (_(" · about %.0f s left"), set->eta) : g_strdup ("");
      subtitle = set->total > 0
        ? g_strdup_printf (_("%s · %s of %s%s"), what, done, total, eta)
        : g_strdup_printf ("%s…", what);
      gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (r->bar),
                                     set->total > 0 ? (double) set->done / set->total : 0);
    }
  else if (installed)
    {
      g_autofree char *size = set->installed_bytes ? format_size (set->installed_bytes) : NULL;
      subtitle = set->embedded ? g_strdup (in_use ? _("In use · ships with Reverie") : _("Ships with Reverie"))
               : size ? g_strdup_printf (in_use ? _("In use · installed, %s") : _("Installed, %s"), size)
               : g_strdup (in_use ? _("In use · installed") : _("Installed"));
    }
  else
    {
      g_autofree char *fit = fit_text (self, set);
      g_autoptr (GString) text = g_string_new (NULL);
      if (set->error != NULL)
        g_string_append_printf (text, _("The download failed: %s "), set->error);
      if (set->staged)
        {
          g_autofree char *done = format_size (set->staged_done), *total = format_size (set->staged_total);
          g_string_append_printf (text, _("Unfinished: %s of %s kept, Resume goes on from there"), done, total);
        }
      else
        {
          g_autofree char *size = format_size (set->download_bytes);
          g_string_append_printf (text, _("Not installed · about %s to download"), size);
          if (set->licence_name != NULL)
            g_string_append_printf (text, " · %s", set->licence_name);
        }
      if (fit != NULL)
        g_string_append_printf (text, " · %s", fit);
      subtitle = g_string_free (g_steal_pointer (&text), FALSE);
    }
  adw_action_row_set_subtitle (r->row, subtitle);
  gtk_widget_set_visible (r->use, installed && !in_use);
  gtk_widget_set_visible (r->download, !installed && !set->pulling);
  gtk_widget_set_sensitive (r->download, !busy);
  gtk_button_set_label (GTK_BUTTON (r->download), set->staged ? _("Resume") : _("Download…"));
  g_autofree char *download_name = g_strdup_printf (set->staged ? _("Resume download of %s") : _("Download %s"),
                                                    set->title);
  gtk_accessible_update_property (GTK_ACCESSIBLE (r->download), GTK_ACCESSIBLE_PROPERTY_LABEL, download_name, -1);
  gtk_widget_set_visible (r->cancel, set->pulling);
  gtk_widget_set_visible (r->bar, set->pulling);
}

/* The buttons of a row hide as its set changes state: the keyboard focus
 * stays in the row. */
static void
focus_row (RvPreferences *self, const char *name)
{
  for (guint i = 0; i < self->model_rows->len; i++)
    {
      ModelRow *r = g_ptr_array_index (self->model_rows, i);
      if (g_str_equal (r->name, name))
        gtk_widget_grab_focus (GTK_WIDGET (r->row));
    }
}

static void
on_model_use (GtkButton *button, RvPreferences *self)
{
  const char *name = g_object_get_data (G_OBJECT (button), "set");
  const RvModelSet *set = rv_model_store_lookup (self->models, name);
  if (set == NULL || (!set->embedded && set->installed_dir == NULL))
    return;
  g_autofree char *folder = set_folder (set);
  if (folder[0] != '\0')
    {
      /* the prompt panel's Model row lists it from now on */
      g_auto (GStrv) folders = g_settings_get_strv (self->settings, "model-folders");
      if (!g_strv_contains ((const char *const *) folders, folder))
        {
          g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
          g_strv_builder_addv (b, (const char **) folders);
          g_strv_builder_add (b, folder);
          g_auto (GStrv) items = g_strv_builder_end (b);
          g_settings_set_strv (self->settings, "model-folders", (const char *const *) items);
        }
    }
  focus_row (self, name);
  g_settings_set_string (self->settings, "model", folder);
  g_autofree char *title = g_strdup_printf (_("Model “%s” in use"), set->title);
  adw_preferences_window_add_toast (ADW_PREFERENCES_WINDOW (self), adw_toast_new (title));
}

static void
on_download_response (AdwMessageDialog *dialog, const char *response, RvPreferences *self)
{
  const char *name = g_object_get_data (G_OBJECT (dialog), "set");
  if (g_str_equal (response, "download"))
    {
      focus_row (self, name);
      rv_model_store_pull (self->models, name);
    }
}

static void
on_model_download (GtkButton *button, RvPreferences *self)
{
  const char *name = g_object_get_data (G_OBJECT (button), "set");
  const RvModelSet *set = rv_model_store_lookup (self->models, name);
  if (set == NULL)
    return;
  if (set->staged)
    {
      /* what to expect was said before the first part came */
      focus_row (self, name);
      rv_model_store_pull (self->models, name);
      return;
    }
  int fits = rv_model_store_fits (self->models, set);
  g_autofree char *size = format_size (set->download_bytes);
  g_autofree char *fit = fit_text (self, set);
  g_autofree char *heading = g_strdup_printf (_("Download %s?"), set->title);
  g_autofree char *body = g_strdup_printf (
    _("About %s will be downloaded from the Hugging Face Hub and checked file by file. It %s.\n\n"
      "Licence: %s\n%s"),
    size, fit ? fit : _("may or may not fit this device: its memory is not known yet"),
    set->licence_name ? set->licence_name : _("not stated"),
    set->licence_text ? set->licence_text : "");
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (self), heading, body);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"),
                                    "download", fits == 0 ? _("_Download Anyway") : _("_Download"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "download",
                                              fits == 0 ? ADW_RESPONSE_DESTRUCTIVE : ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_object_set_data_full (G_OBJECT (dialog), "set", g_strdup (name), g_free);
  g_signal_connect_object (dialog, "response", G_CALLBACK (on_download_response), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
on_model_cancel (GtkButton *button, RvPreferences *self)
{
  focus_row (self, g_object_get_data (G_OBJECT (button), "set"));
  rv_model_store_cancel (self->models);
}

static GtkWidget *
row_button (const char *label, const char *accessible, const char *name, GCallback callback, RvPreferences *self)
{
  GtkWidget *button = gtk_button_new_with_label (label);
  gtk_widget_set_valign (button, GTK_ALIGN_CENTER);
  gtk_accessible_update_property (GTK_ACCESSIBLE (button), GTK_ACCESSIBLE_PROPERTY_LABEL, accessible, -1);
  g_object_set_data_full (G_OBJECT (button), "set", g_strdup (name), g_free);
  g_signal_connect (button, "clicked", callback, self);
  return button;
}

static void
on_models_changed (RvPreferences *self)
{
  GPtrArray *sets = rv_model_store_get_sets (self->models);
  gboolean same = sets != NULL && sets->len == self->model_rows->len;
  for (guint i = 0; same && i < sets->len; i++)
    same = g_str_equal (((RvModelSet *) g_ptr_array_index (sets, i))->name,
                        ((ModelRow *) g_ptr_array_index (self->model_rows, i))->name);
  if (!same)
    {
      for (guint i = 0; i < self->model_rows->len; i++)
        adw_preferences_group_remove (self->models_group,
                                      GTK_WIDGET (((ModelRow *) g_ptr_array_index (self->model_rows, i))->row));
      g_ptr_array_set_size (self->model_rows, 0);
      for (guint i = 0; sets != NULL && i < sets->len; i++)
        {
          const RvModelSet *set = g_ptr_array_index (sets, i);
          ModelRow *r = g_new0 (ModelRow, 1);
          r->name = g_strdup (set->name);
          r->row = ADW_ACTION_ROW (adw_action_row_new ());
          adw_preferences_row_set_title (ADW_PREFERENCES_ROW (r->row), set->title);
          adw_action_row_set_subtitle_lines (r->row, 4);
          gtk_widget_set_tooltip_text (GTK_WIDGET (r->row), set->description);
          g_autofree char *use_name = g_strdup_printf (_("Use %s"), set->title);
          g_autofree char *cancel_name = g_strdup_printf (_("Cancel download of %s"), set->title);
          r->bar = gtk_progress_bar_new ();
          gtk_widget_set_valign (r->bar, GTK_ALIGN_CENTER);
          gtk_widget_set_size_request (r->bar, 90, -1);
          gtk_accessible_update_property (GTK_ACCESSIBLE (r->bar), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                          _("Download progress"), -1);
          r->use = row_button (_("Use"), use_name, set->name, G_CALLBACK (on_model_use), self);
          r->download = row_button (_("Download…"), "", set->name, G_CALLBACK (on_model_download), self);
          r->cancel = row_button (_("Cancel"), cancel_name, set->name, G_CALLBACK (on_model_cancel), self);
          adw_action_row_add_suffix (r->row, r->bar);
          adw_action_row_add_suffix (r->row, r->use);
          adw_action_row_add_suffix (r->row, r->download);
          adw_action_row_add_suffix (r->row, r->cancel);
          adw_preferences_group_add (self->models_group, GTK_WIDGET (r->row));
          g_ptr_array_add (self->model_rows, r);
        }
    }
  const char *error = rv_model_store_get_error (self->models);
  if (error != NULL)
    adw_preferences_group_set_description (self->models_group, error);
  gtk_widget_set_visible (GTK_WIDGET (self->models_group), self->model_rows->len > 0 || error != NULL);
  for (guint i = 0; i < self->model_rows->len; i++)
    update_model_row (self, g_ptr_array_index (self->model_rows, i));
}

static void
on_model_setting_changed (GSettings *settings, const char *key, RvPreferences *self)
{
  on_models_changed (self);
}

static void
on_model_pulled (RvModelStore *store, const char *name, const char *dir, const char *error,
                 gboolean cancelled, RvPreferences *self)
{
  const RvModelSet *set = rv_model_store_lookup (store, name);
  const char *title = set ? set->title : name;
  g_autofree char *text = cancelled ? g_strdup_printf (_("Download of %s paused: Resume goes on from there"), title)
                        : error ? g_strdup_printf (_("%s could not be downloaded: %s"), title, error)
                        : g_strdup_printf (_("%s is installed"), title);
  adw_preferences_window_add_toast (ADW_PREFERENCES_WINDOW (self), adw_toast_new (text));
}

/* ---- content policy ---- */

static RvApplication *
app (void)
{
  GApplication *a = g_application_get_default ();
  return RV_IS_APPLICATION (a) ? RV_APPLICATION (a) : NULL;
}

static void
show_policy (RvPreferences *self)
{
  RvApplication *a = app ();
  const char *path = a ? rv_application_get_content_policy_path (a) : "";
  const char *why = a ? rv_application_get_content_policy_error (a) : NULL;
  RvContentPolicy *policy = a ? rv_application_get_content_policy (a) : NULL;
  gboolean fixed = a && rv_application_get_content_policy_fixed (a);
  g_autofree char *subtitle = NULL;
  if (self->reading_policy)
    subtitle = g_strdup (_("Reading…"));
  else if (path[0] == '\0')
    subtitle = g_strdup (_("Off: every prompt is allowed"));
  else if (why != NULL)
    subtitle = g_strdup_printf (_("%s cannot be read: %s Nothing is made until it is fixed."), path, why);
  else if (policy != NULL)
    subtitle = g_strdup_printf (ngettext ("%s · %u category", "%s · %u categories",
                                          rv_content_policy_n_categories (policy)),
                                path, rv_content_policy_n_categories (policy));
  else
    subtitle = g_strdup (path);
  if (fixed)
    {
      g_autofree char *plain = g_steal_pointer (&subtitle);
      subtitle = g_strdup_printf (_("%s (set on the command line)"), plain);
    }
  adw_action_row_set_subtitle (self->policy_row, subtitle);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "prefs.choose-policy", a && !fixed && !self->reading_policy);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "prefs.clear-policy", a && !fixed && path[0] != '\0');
}

static void
on_policy_setting_changed (GSettings *settings, const char *key, RvPreferences *self)
{
  show_policy (self);
}

static void
on_policy_read (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPreferences) self = data;
  g_autoptr (GError) error = NULL;
  RvContentPolicy *policy = _rv_content_policy_load_finish (result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  const char *path = g_task_get_task_data (G_TASK (result));
  self->reading_policy = FALSE;
  if (policy == NULL)
    {
      /* not kept: the policy in force stays */
      show_policy (self);
      g_autofree char *body = g_strdup_printf (
        _("%s\n\nA content policy is a text file of [category] headers, each followed by phrases, "
          "one a line; lines starting with # are comments."), error->message);
      _rv_show_message (GTK_WIDGET (self), _("This File Is Not a Content Policy"), body);
      return;
    }
  guint n = rv_content_policy_n_categories (policy);
  if (app () != NULL)
    rv_application_set_content_policy (app (), policy, path);
  else
    rv_content_policy_free (policy);
  show_policy (self);
  g_autofree char *title = g_strdup_printf (ngettext ("Content policy in force: %u category",
                                                      "Content policy in force: %u categories", n), n);
  adw_preferences_window_add_toast (ADW_PREFERENCES_WINDOW (self), adw_toast_new (title));
}

static void
on_policy_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPreferences) self = data;
  g_autoptr (GFile) file = _rv_choose_file_finish (result, NULL);
  g_autofree char *path = file ? g_file_get_path (file) : NULL;
  if (path == NULL)
    return;
  self->reading_policy = TRUE;
  show_policy (self);
  _rv_content_policy_load_async (NULL, path, self->cancellable, on_policy_read, g_object_ref (self));
}

static void
choose_policy_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvPreferences *self = RV_PREFERENCES (widget);
  _rv_choose_file_async (widget, RV_CHOOSE_OPEN_ANY, _("Choose a Content Policy"), NULL,
                         self->cancellable, on_policy_chosen, g_object_ref (self));
}

static void
clear_policy_action (GtkWidget *widget, const char *name, GVariant *param)
{
  if (app () != NULL)
    rv_application_set_content_policy (app (), NULL, "");
  show_policy (RV_PREFERENCES (widget));
}

/* ---- GObject ---- */

static void
rv_preferences_dispose (GObject *object)
{
  RvPreferences *self = RV_PREFERENCES (object);
  g_cancellable_cancel (self->cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  if (self->models != NULL)
    g_signal_handlers_disconnect_by_data (self->models, self);
  gtk_widget_dispose_template (GTK_WIDGET (self), RV_TYPE_PREFERENCES);
  if (self->generator != NULL)
    g_signal_handlers_disconnect_by_data (self->generator, self);
  g_clear_object (&self->settings);
  g_clear_object (&self->generator);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->models);
  g_clear_pointer (&self->model_rows, g_ptr_array_unref);
  g_clear_pointer (&self->devices, g_ptr_array_unref);
  g_clear_pointer (&self->checking_path, g_free);
  G_OBJECT_CLASS (rv_preferences_parent_class)->dispose (object);
}

static void
rv_preferences_class_init (RvPreferencesClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = rv_preferences_dispose;

  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/reverie/Reverie/rv-preferences.ui");
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, device_row);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, device_list);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, default_steps_spin);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, default_steps_adjustment);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, previews_switch);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, gallery_row);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, upscaler_row);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, policy_row);
  gtk_widget_class_bind_template_child (widget_class, RvPreferences, models_group);
  gtk_widget_class_install_action (widget_class, "prefs.choose-policy", NULL, choose_policy_action);
  gtk_widget_class_install_action (widget_class, "prefs.clear-policy", NULL, clear_policy_action);

  gtk_widget_class_install_action (widget_class, "prefs.choose-gallery", NULL, choose_gallery_action);
  gtk_widget_class_install_action (widget_class, "prefs.reset-gallery", NULL, reset_gallery_action);
  gtk_widget_class_install_action (widget_class, "prefs.choose-upscaler", NULL, choose_upscaler_action);
  gtk_widget_class_install_action (widget_class, "prefs.reset-upscaler", NULL, reset_upscaler_action);
}

static void
rv_preferences_init (RvPreferences *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->settings = g_settings_new (APP_ID);
  self->cancellable = g_cancellable_new ();
  self->devices = g_ptr_array_new_with_free_func (g_free);

  g_settings_bind (self->settings, "default-steps", self->default_steps_adjustment, "value",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "previews", self->previews_switch, "active", G_SETTINGS_BIND_DEFAULT);
  _rv_spin_button_show_auto (self->default_steps_spin);

  fill_devices (self);
  g_signal_connect (self->device_row, "notify::selected", G_CALLBACK (on_device_selected), self);
  /* listing opens the Vulkan loader and drivers: not on the main thread */
  g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, on_devices_listed, self);
  g_task_run_in_thread (task, list_devices_thread);

  show_gallery_folder (self);
  g_signal_connect (self->settings, "changed::gallery-folder", G_CALLBACK (on_gallery_folder_changed), self);
  g_signal_connect (self->settings, "changed::upscaler", G_CALLBACK (on_upscaler_setting_changed), self);
  g_signal_connect (self->settings, "changed::content-policy", G_CALLBACK (on_policy_setting_changed), self);
  show_policy (self);

  self->model_rows = g_ptr_array_new_with_free_func ((GDestroyNotify) model_row_free);
  if (app () != NULL && rv_model_store_available (rv_application_get_model_store (app ())))
    {
      self->models = g_object_ref (rv_application_get_model_store (app ()));
      g_signal_connect_swapped (self->models, "changed", G_CALLBACK (on_models_changed), self);
      g_signal_connect (self->models, "pulled", G_CALLBACK (on_model_pulled), self);
      g_signal_connect (self->settings, "changed::model", G_CALLBACK (on_model_setting_changed), self);
      /* installed, staged: the store may have changed since */
      if (rv_model_store_get_pulling (self->models) == NULL)
        rv_model_store_refresh (self->models);
      on_models_changed (self);
    }
}

GtkWidget *
rv_preferences_new (GtkWindow *parent)
{
  RvPreferences *self = g_object_new (RV_TYPE_PREFERENCES, "transient-for", parent, "modal", TRUE, NULL);
  if (RV_IS_WINDOW (parent))
    {
      self->generator = g_object_ref (rv_window_get_generator (RV_WINDOW (parent)));
      g_signal_connect_swapped (self->generator, "info-changed", G_CALLBACK (on_upscaler_info_changed), self);
      if (rv_generator_get_info (self->generator) == NULL)
        rv_generator_refresh_info (self->generator);
    }
  show_upscaler (self);
  return GTK_WIDGET (self);
}
