/* rv-prompt-panel.c: what to make: prompt and negative prompt with history,
 * size (with the time to expect, and whether it goes through the upscaler),
 * count, steps, guidance, scheduler, seed and model. */
#include "config.h"

#include <adwaita.h>
#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "rv-prompt-panel.h"
#include "rv-util.h"

#define HISTORY_MAX 50
#define SEED_MAX G_GUINT64_CONSTANT (9007199254740991)   /* 2⁵³ - 1 */

struct _RvPromptPanel
{
  GtkWidget         parent_instance;

  /* template widgets */
  GtkTextView      *prompt_view;
  GtkTextView      *negative_view;
  GtkMenuButton    *prompt_history_button;
  GtkMenuButton    *negative_history_button;
  GtkListBox       *prompt_history_list;
  GtkListBox       *negative_history_list;
  AdwComboRow      *size_row;
  AdwActionRow     *custom_size_row;
  AdwActionRow     *estimate_row;
  GtkAdjustment    *width_adjustment;
  GtkAdjustment    *height_adjustment;
  GtkAdjustment    *n_adjustment;
  GtkAdjustment    *steps_adjustment;
  GtkAdjustment    *guidance_adjustment;
  GtkSpinButton    *steps_spin;
  GtkSpinButton    *guidance_spin;
  AdwComboRow      *scheduler_row;
  GtkEntry         *seed_entry;
  GtkToggleButton  *seed_lock;
  AdwComboRow      *model_row;
  GtkStringList    *model_list;

  /* owned */
  GSettings        *settings;
  RvGenerator      *generator;
  GCancellable     *cancellable;
  char             *checking_dir;     /* the model folder being checked */
  gboolean          updating;
};

G_DEFINE_FINAL_TYPE (RvPromptPanel, rv_prompt_panel, GTK_TYPE_WIDGET)

/* the size presets, in the order of the size row; 0 × 0 = the model's;
 * 256, 512 and 1024 are DALL·E 2's sizes: beyond the model's own size they
 * go through its upscaler */
static const struct { int width, height; } presets[] = {
  { 0, 0 }, { 64, 64 }, { 128, 128 }, { 256, 256 }, { 512, 512 }, { 1024, 1024 }, { 768, 768 },
  { 512, 768 }, { 768, 512 },
};
#define PRESET_CUSTOM G_N_ELEMENTS (presets)

static const char *const schedulers[] = { "", "ddpm", "ddim", "dpmpp" };

static char *
buffer_text (GtkTextView *view)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (view);
  GtkTextIter start, end;
  gtk_text_buffer_get_bounds (buffer, &start, &end);
  char *text = gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
  return g_strstrip (text);
}

/* ---- history ---- */

static const char *
history_key (RvPromptPanel *self, GtkListBox *list)
{
  return list == self->prompt_history_list ? "prompt-history" : "negative-history";
}

static void
rebuild_history (RvPromptPanel *self, GtkListBox *list)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (list))) != NULL)
    gtk_list_box_remove (list, child);
  g_auto (GStrv) items = g_settings_get_strv (self->settings, history_key (self, list));
  for (guint i = 0; items[i] != NULL; i++)
    {
      GtkWidget *label = gtk_label_new (items[i]);
      gtk_label_set_xalign (GTK_LABEL (label), 0);
      gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_END);
      gtk_label_set_max_width_chars (GTK_LABEL (label), 40);
      gtk_widget_set_tooltip_text (label, items[i]);
      gtk_list_box_append (list, label);
    }
  if (items[0] == NULL)
    {
      GtkWidget *label = gtk_label_new (_("No earlier prompts yet"));
      gtk_widget_add_css_class (label, "dim-label");
      gtk_list_box_append (list, label);
      gtk_widget_set_sensitive (gtk_widget_get_parent (label), FALSE);
    }
}

static void
on_history_changed (GSettings *settings, const char *key, RvPromptPanel *self)
{
  rebuild_history (self, g_str_equal (key, "prompt-history") ? self->prompt_history_list
                                                             : self->negative_history_list);
}

static void
on_history_row_activated (GtkListBox *list, GtkListBoxRow *row, RvPromptPanel *self)
{
  gboolean prompt = list == self->prompt_history_list;
  g_auto (GStrv) items = g_settings_get_strv (self->settings, history_key (self, list));
  int index = gtk_list_box_row_get_index (row);
  if (index < 0 || (guint) index >= g_strv_length (items))
    return;
  GtkTextView *view = prompt ? self->prompt_view : self->negative_view;
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (view), items[index], -1);
  gtk_menu_button_popdown (prompt ? self->prompt_history_button : self->negative_history_button);
  gtk_widget_grab_focus (GTK_WIDGET (view));
}

static void
push_history (RvPromptPanel *self, const char *key, const char *text)
{
  if (text == NULL || text[0] == '\0')
    return;
  g_auto (GStrv) old = g_settings_get_strv (self->settings, key);
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  g_strv_builder_add (b, text);
  guint n = 1;
  for (guint i = 0; old[i] != NULL && n < HISTORY_MAX; i++)
    if (!g_str_equal (old[i], text))
      {
        g_strv_builder_add (b, old[i]);
        n++;
      }
  g_auto (GStrv) items = g_strv_builder_end (b);
  g_settings_set_strv (self->settings, key, (const char *const *) items);
}

/* ---- size ---- */

static char *
format_seconds (double seconds)
{
  if (seconds < 90)
    {
      int s = MAX (1, (int) lround (seconds));
      /* Translators: an estimate of the time a job takes */
      return g_strdup_printf (ngettext ("about %d s", "about %d s", s), s);
    }
  int m = (int) lround (seconds / 60);
  return g_strdup_printf (ngettext ("about %d min", "about %d min", m), m);
}

static char *
format_size (int width, int height)
{
  return width == height ? g_strdup_printf (_("%d px"), width)
                         : g_strdup_printf ("%d × %d", width, height);
}

/* Below the size: the time to expect, and whether the size goes through
 * the upscaler. */
static void
update_estimate (RvPromptPanel *self)
{
  int width, height;
  g_settings_get (self->settings, "size", "(ii)", &width, &height);
  int n = (int) gtk_adjustment_get_value (self->n_adjustment);
  int steps = (int) gtk_adjustment_get_value (self->steps_adjustment);
  RvEstimate est;
  const RvEngineInfo *info = self->generator ? rv_generator_get_info (self->generator) : NULL;
  if (info == NULL ||
      !rv_generator_estimate (self->generator, RV_JOB_GENERATE, width, height, n, steps, &est))
    {
      gtk_widget_set_visible (GTK_WIDGET (self->estimate_row), FALSE);
      return;
    }
  g_autofree char *duration = format_seconds (est.seconds);
  g_autofree char *text = NULL;
  int w = width > 0 ? width : info->default_width, h = height > 0 ? height : info->default_height;
  if (est.upscaled)
    {
      g_autofree char *at = format_size (est.gen_width, est.gen_height);
      /* Translators: "about 3 s · generated at 64 px, then enlarged ×4" */
      text = g_strdup_printf (_("%s · generated at %s, then enlarged ×%d"), duration, at, est.factor);
    }
  else if (MAX (w, h) > info->native_size)
    text = g_strdup_printf (_("%s · generated at full size: the model set has no upscaler"), duration);
  else
    text = g_steal_pointer (&duration);
  /* a capital first letter, as a subtitle starts */
  g_autofree char *first = g_utf8_strup (text, g_utf8_next_char (text) - text);
  g_autofree char *subtitle = g_strconcat (first, g_utf8_next_char (text), NULL);
  adw_action_row_set_subtitle (self->estimate_row, subtitle);
  gtk_widget_set_visible (GTK_WIDGET (self->estimate_row), TRUE);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->estimate_row),
                               est.measured ? _("Estimated from the last pictures made")
                                            : _("A first guess from the number of pixels; "
                                                "the estimate follows what pictures take once "
                                                "one is made"));
}

static void
on_estimate_input_changed (RvPromptPanel *self)
{
  update_estimate (self);
}

static void
select_size (RvPromptPanel *self, int width, int height)
{
  guint preset = PRESET_CUSTOM;
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    if (presets[i].width == width && presets[i].height == height)
      preset = i;
  self->updating = TRUE;
  if (preset == PRESET_CUSTOM)
    {
      gtk_adjustment_set_value (self->width_adjustment, width);
      gtk_adjustment_set_value (self->height_adjustment, height);
    }
  adw_combo_row_set_selected (self->size_row, preset);
  gtk_widget_set_visible (GTK_WIDGET (self->custom_size_row), preset == PRESET_CUSTOM);
  self->updating = FALSE;
}

static void
store_size (RvPromptPanel *self)
{
  if (self->updating)
    return;
  guint preset = adw_combo_row_get_selected (self->size_row);
  int width, height;
  if (preset < G_N_ELEMENTS (presets))
    {
      width = presets[preset].width;
      height = presets[preset].height;
    }
  else
    {
      width = (int) gtk_adjustment_get_value (self->width_adjustment);
      height = (int) gtk_adjustment_get_value (self->height_adjustment);
    }
  gtk_widget_set_visible (GTK_WIDGET (self->custom_size_row), preset == PRESET_CUSTOM);
  g_settings_set (self->settings, "size", "(ii)", width, height);
  update_estimate (self);
}

static void
on_size_selected (AdwComboRow *row, GParamSpec *pspec, RvPromptPanel *self)
{
  store_size (self);
}

static void
on_custom_size_changed (GtkAdjustment *adjustment, RvPromptPanel *self)
{
  store_size (self);
}

/* ---- seed ---- */

static void
show_seed (RvPromptPanel *self, guint64 seed)
{
  g_autofree char *text = g_strdup_printf ("%" G_GUINT64_FORMAT, seed);
  gtk_editable_set_text (GTK_EDITABLE (self->seed_entry), text);
}

static void
on_seed_lock_toggled (GtkToggleButton *button, RvPromptPanel *self)
{
  gboolean locked = gtk_toggle_button_get_active (button);
  gtk_button_set_icon_name (GTK_BUTTON (button), locked ? "changes-prevent-symbolic" : "changes-allow-symbolic");
}

static void
randomize_seed_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvPromptPanel *self = RV_PROMPT_PANEL (widget);
  show_seed (self, rv_random_seed ());
}

/* ---- models ---- */

static void
rebuild_models (RvPromptPanel *self)
{
  g_auto (GStrv) folders = g_settings_get_strv (self->settings, "model-folders");
  g_autofree char *current = g_settings_get_string (self->settings, "model");
  guint selected = 0;
  g_autoptr (GStrvBuilder) names = g_strv_builder_new ();
  g_strv_builder_add (names, _("Built-in model"));
  for (guint i = 0; folders[i] != NULL; i++)
    {
      g_autofree char *base = g_path_get_basename (folders[i]);
      g_strv_builder_add (names, base);
      if (g_str_equal (folders[i], current))
        selected = i + 1;
    }
  g_auto (GStrv) items = g_strv_builder_end (names);
  self->updating = TRUE;
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->model_list));
  gtk_string_list_splice (self->model_list, 0, n, (const char *const *) items);
  adw_combo_row_set_selected (self->model_row, selected);
  self->updating = FALSE;
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->model_row), selected ? current : "");
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "panel.remove-model", selected > 0);
}

static void
on_model_selected (AdwComboRow *row, GParamSpec *pspec, RvPromptPanel *self)
{
  if (self->updating)
    return;
  guint selected = adw_combo_row_get_selected (row);
  g_auto (GStrv) folders = g_settings_get_strv (self->settings, "model-folders");
  const char *path = selected > 0 && selected <= g_strv_length (folders) ? folders[selected - 1] : "";
  g_settings_set_string (self->settings, "model", path);
}

static void
on_model_settings_changed (GSettings *settings, const char *key, RvPromptPanel *self)
{
  rebuild_models (self);
}

static void
on_model_checked (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPromptPanel) self = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *name = rv_generator_check_model_finish (RV_GENERATOR (source), result, &error);
  g_autofree char *path = g_steal_pointer (&self->checking_dir);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "panel.add-model", TRUE);
  /* the status of the check ends with it, whatever the outcome: the model
   * row shows the model again */
  rebuild_models (self);
  if (name == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
      g_autofree char *body = g_strdup_printf (
        _("%s\n\nChoose a folder that holds prior/, decoder/ and, for editing, decoder-inpaint/ — "
          "Kandinsky 2.2 as downloaded in the diffusers layout, or a model set made like the built-in one."),
        error->message);
      _rv_show_message (GTK_WIDGET (self), _("This Folder Is Not a Model Set"), body);
      return;
    }
  g_auto (GStrv) folders = g_settings_get_strv (self->settings, "model-folders");
  if (!g_strv_contains ((const char *const *) folders, path))
    {
      g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
      g_strv_builder_addv (b, (const char **) folders);
      g_strv_builder_add (b, path);
      g_auto (GStrv) items = g_strv_builder_end (b);
      g_settings_set_strv (self->settings, "model-folders", (const char *const *) items);
    }
  g_settings_set_string (self->settings, "model", path);
  g_autofree char *title = g_strdup_printf (_("Model “%s” added"), name);
  _rv_show_toast (GTK_WIDGET (self), adw_toast_new (title));
}

static void
on_model_folder_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvPromptPanel) self = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) folder = _rv_choose_file_finish (result, &error);
  g_autofree char *path = folder ? g_file_get_path (folder) : NULL;
  if (path == NULL || self->generator == NULL)
    return;
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "panel.add-model", FALSE);
  /* shown on the model row until the check ends (the answer follows in a
   * toast or a dialog); not a toast of its own: libadwaita 1.2 can crash
   * when a toast is dismissed during its animations */
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->model_row), _("Checking the model folder…"));
  g_free (self->checking_dir);
  self->checking_dir = g_strdup (path);
  rv_generator_check_model_async (self->generator, path, self->cancellable, on_model_checked,
                                  g_object_ref (self));
}

static void
add_model_action (GtkWidget *widget, const char *name, GVariant *param)
{
  _rv_choose_file_async (widget, RV_CHOOSE_FOLDER, _("Choose a Model Folder"), NULL, NULL,
                         on_model_folder_chosen, g_object_ref (widget));
}

static void
remove_model_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvPromptPanel *self = RV_PROMPT_PANEL (widget);
  g_autofree char *current = g_settings_get_string (self->settings, "model");
  g_auto (GStrv) folders = g_settings_get_strv (self->settings, "model-folders");
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();
  for (guint i = 0; folders[i] != NULL; i++)
    if (!g_str_equal (folders[i], current))
      g_strv_builder_add (b, folders[i]);
  g_auto (GStrv) items = g_strv_builder_end (b);
  g_settings_set_string (self->settings, "model", "");
  g_settings_set_strv (self->settings, "model-folders", (const char *const *) items);
}

/* ---- mappings ---- */

static gboolean
scheduler_get (GValue *value, GVariant *variant, gpointer data)
{
  const char *s = g_variant_get_string (variant, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (schedulers); i++)
    if (g_str_equal (s, schedulers[i]))
      {
        g_value_set_uint (value, i);
        return TRUE;
      }
  g_value_set_uint (value, 0);
  return TRUE;
}

static GVariant *
scheduler_set (const GValue *value, const GVariantType *type, gpointer data)
{
  guint i = g_value_get_uint (value);
  return g_variant_new_string (i < G_N_ELEMENTS (schedulers) ? schedulers[i] : "");
}

static void
on_default_steps_changed (GSettings *settings, const char *key, RvPromptPanel *self)
{
  gtk_adjustment_set_value (self->steps_adjustment, g_settings_get_int (settings, "default-steps"));
}

/* ---- GObject ---- */

static void
rv_prompt_panel_dispose (GObject *object)
{
  RvPromptPanel *self = RV_PROMPT_PANEL (object);
  g_cancellable_cancel (self->cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  if (self->generator != NULL)
    g_signal_handlers_disconnect_by_data (self->generator, self);
  gtk_widget_dispose_template (GTK_WIDGET (self), RV_TYPE_PROMPT_PANEL);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
    gtk_widget_unparent (child);
  g_clear_object (&self->settings);
  g_clear_object (&self->generator);
  g_clear_object (&self->cancellable);
  G_OBJECT_CLASS (rv_prompt_panel_parent_class)->dispose (object);
}

static void
rv_prompt_panel_finalize (GObject *object)
{
  RvPromptPanel *self = RV_PROMPT_PANEL (object);
  g_free (self->checking_dir);
  G_OBJECT_CLASS (rv_prompt_panel_parent_class)->finalize (object);
}

static void
rv_prompt_panel_class_init (RvPromptPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = rv_prompt_panel_dispose;
  object_class->finalize = rv_prompt_panel_finalize;

  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/reverie/Reverie/rv-prompt-panel.ui");
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, prompt_view);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, negative_view);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, prompt_history_button);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, negative_history_button);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, prompt_history_list);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, negative_history_list);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, size_row);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, custom_size_row);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, estimate_row);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, width_adjustment);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, height_adjustment);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, n_adjustment);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, steps_adjustment);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, guidance_adjustment);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, steps_spin);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, guidance_spin);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, scheduler_row);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, seed_entry);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, seed_lock);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, model_row);
  gtk_widget_class_bind_template_child (widget_class, RvPromptPanel, model_list);

  gtk_widget_class_install_action (widget_class, "panel.randomize-seed", NULL, randomize_seed_action);
  gtk_widget_class_install_action (widget_class, "panel.add-model", NULL, add_model_action);
  gtk_widget_class_install_action (widget_class, "panel.remove-model", NULL, remove_model_action);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "promptpanel");
}

static void
rv_prompt_panel_init (RvPromptPanel *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->settings = g_settings_new (APP_ID);
  self->cancellable = g_cancellable_new ();

  g_settings_bind (self->settings, "prompt", gtk_text_view_get_buffer (self->prompt_view), "text",
                   G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "negative-prompt", gtk_text_view_get_buffer (self->negative_view),
                   "text", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "n-images", self->n_adjustment, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "guidance", self->guidance_adjustment, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "seed-locked", self->seed_lock, "active", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind_with_mapping (self->settings, "scheduler", self->scheduler_row, "selected",
                                G_SETTINGS_BIND_DEFAULT, scheduler_get, scheduler_set, NULL, NULL);
  _rv_spin_button_show_auto (self->steps_spin);
  _rv_spin_button_show_auto (self->guidance_spin);

  on_default_steps_changed (self->settings, "default-steps", self);
  g_signal_connect (self->settings, "changed::default-steps", G_CALLBACK (on_default_steps_changed), self);

  int width, height;
  g_settings_get (self->settings, "size", "(ii)", &width, &height);
  select_size (self, width, height);
  g_signal_connect (self->size_row, "notify::selected", G_CALLBACK (on_size_selected), self);
  g_signal_connect (self->width_adjustment, "value-changed", G_CALLBACK (on_custom_size_changed), self);
  g_signal_connect (self->height_adjustment, "value-changed", G_CALLBACK (on_custom_size_changed), self);

  show_seed (self, g_settings_get_uint64 (self->settings, "seed"));
  g_signal_connect (self->seed_lock, "toggled", G_CALLBACK (on_seed_lock_toggled), self);
  on_seed_lock_toggled (self->seed_lock, self);

  rebuild_history (self, self->prompt_history_list);
  rebuild_history (self, self->negative_history_list);
  g_signal_connect (self->settings, "changed::prompt-history", G_CALLBACK (on_history_changed), self);
  g_signal_connect (self->settings, "changed::negative-history", G_CALLBACK (on_history_changed), self);
  g_signal_connect (self->prompt_history_list, "row-activated", G_CALLBACK (on_history_row_activated), self);
  g_signal_connect (self->negative_history_list, "row-activated", G_CALLBACK (on_history_row_activated), self);

  rebuild_models (self);
  g_signal_connect (self->model_row, "notify::selected", G_CALLBACK (on_model_selected), self);
  g_signal_connect (self->settings, "changed::model", G_CALLBACK (on_model_settings_changed), self);
  g_signal_connect (self->settings, "changed::model-folders", G_CALLBACK (on_model_settings_changed), self);

  g_signal_connect_swapped (self->n_adjustment, "value-changed", G_CALLBACK (on_estimate_input_changed), self);
  g_signal_connect_swapped (self->steps_adjustment, "value-changed", G_CALLBACK (on_estimate_input_changed), self);
}

/* ---- API ---- */

void
rv_prompt_panel_set_generator (RvPromptPanel *self, RvGenerator *generator)
{
  g_return_if_fail (RV_IS_PROMPT_PANEL (self));
  if (self->generator != NULL)
    g_signal_handlers_disconnect_by_data (self->generator, self);
  g_set_object (&self->generator, generator);
  if (generator != NULL)
    g_signal_connect_swapped (generator, "info-changed", G_CALLBACK (on_estimate_input_changed), self);
  update_estimate (self);
}

/* The panel's settings into spec (whose kind is set); picks a new seed unless
 * the seed is locked. */
gboolean
rv_prompt_panel_fill_spec (RvPromptPanel *self, RvJobSpec *spec, GError **error)
{
  g_return_val_if_fail (RV_IS_PROMPT_PANEL (self), FALSE);
  g_autofree char *prompt = buffer_text (self->prompt_view);
  g_autofree char *negative = buffer_text (self->negative_view);
  if (spec->kind != RV_JOB_VARIATION && prompt[0] == '\0')
    {
      g_set_error_literal (error, RV_ERROR, RV_ERROR_INVALID,
                           spec->kind == RV_JOB_INPAINT
                           ? _("Write a prompt that says what to paint in the masked part.")
                           : _("Write a prompt first: say what the picture should show."));
      return FALSE;
    }
  guint64 seed;
  if (gtk_toggle_button_get_active (self->seed_lock))
    {
      const char *text = gtk_editable_get_text (GTK_EDITABLE (self->seed_entry));
      char *end = NULL;
      seed = g_ascii_strtoull (text, &end, 10);
      if (text[0] == '\0' || end == text || *end != '\0' || text[0] == '-' || seed > SEED_MAX)
        {
          g_autofree char *max = g_strdup_printf ("%" G_GUINT64_FORMAT, SEED_MAX);
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       _("The seed must be a whole number from 0 to %s, or unlock it for a random one."),
                       max);
          return FALSE;
        }
    }
  else
    {
      seed = rv_random_seed ();
      show_seed (self, seed);
    }
  g_settings_set_uint64 (self->settings, "seed", seed);

  if (spec->kind != RV_JOB_VARIATION)
    {
      g_free (spec->prompt);
      spec->prompt = g_steal_pointer (&prompt);
      g_free (spec->negative_prompt);
      spec->negative_prompt = negative[0] ? g_steal_pointer (&negative) : NULL;
    }
  if (spec->kind != RV_JOB_INPAINT)
    g_settings_get (self->settings, "size", "(ii)", &spec->width, &spec->height);
  spec->n = (int) gtk_adjustment_get_value (self->n_adjustment);
  spec->seed = seed;
  spec->steps = (int) gtk_adjustment_get_value (self->steps_adjustment);
  spec->guidance = gtk_adjustment_get_value (self->guidance_adjustment);
  guint sched = adw_combo_row_get_selected (self->scheduler_row);
  g_free (spec->scheduler);
  spec->scheduler = sched > 0 && sched < G_N_ELEMENTS (schedulers) ? g_strdup (schedulers[sched]) : NULL;
  spec->previews = g_settings_get_boolean (self->settings, "previews");
  return TRUE;
}

/* The prompts as they are now go to the top of their histories. */
void
rv_prompt_panel_remember (RvPromptPanel *self)
{
  g_return_if_fail (RV_IS_PROMPT_PANEL (self));
  g_autofree char *prompt = buffer_text (self->prompt_view);
  g_autofree char *negative = buffer_text (self->negative_view);
  push_history (self, "prompt-history", prompt);
  push_history (self, "negative-history", negative);
}

/* A result's recipe back into the panel. */
void
rv_prompt_panel_apply_recipe (RvPromptPanel *self, const RvRecipe *recipe, RvReuse what)
{
  g_return_if_fail (RV_IS_PROMPT_PANEL (self));
  g_return_if_fail (recipe != NULL);
  if (what & RV_REUSE_PROMPT)
    {
      gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->prompt_view),
                                recipe->prompt ? recipe->prompt : "", -1);
      gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->negative_view),
                                recipe->negative_prompt ? recipe->negative_prompt : "", -1);
    }
  if (what & RV_REUSE_SEED)
    {
      show_seed (self, recipe->seed);
      gtk_toggle_button_set_active (self->seed_lock, TRUE);
    }
  if ((what & RV_REUSE_ALL) == RV_REUSE_ALL)
    {
      if (recipe->width > 0 && recipe->height > 0)
        {
          select_size (self, recipe->width, recipe->height);
          g_settings_set (self->settings, "size", "(ii)", recipe->width, recipe->height);
        }
      if (recipe->decoder_steps > 0)
        gtk_adjustment_set_value (self->steps_adjustment, recipe->decoder_steps);
      if (recipe->decoder_guidance >= 0)
        gtk_adjustment_set_value (self->guidance_adjustment, recipe->decoder_guidance);
      guint sched = 0;
      for (guint i = 1; i < G_N_ELEMENTS (schedulers); i++)
        if (g_strcmp0 (recipe->scheduler, schedulers[i]) == 0)
          sched = i;
      adw_combo_row_set_selected (self->scheduler_row, sched);
    }
}

void
rv_prompt_panel_focus_prompt (RvPromptPanel *self)
{
  g_return_if_fail (RV_IS_PROMPT_PANEL (self));
  gtk_widget_grab_focus (GTK_WIDGET (self->prompt_view));
}
