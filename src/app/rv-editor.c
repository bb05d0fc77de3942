/* rv-editor.c: the canvas page: the picture with its mask brush tools and
 * its extend mode (borders dragged out, the frames that will fill them, undo
 * back to the picture before), the live progress of a job (step, progress
 * bar, ETA, previews) and a batch of results to pick from. */
#include "config.h"

#include <adwaita.h>
#include <glib/gi18n.h>

#include "rv-canvas.h"
#include "rv-editor.h"
#include "rv-util.h"

struct _RvEditor
{
  GtkWidget        parent_instance;

  /* template widgets */
  GtkStack        *stack;
  RvCanvas        *canvas;
  GtkToggleButton *brush_button;
  GtkToggleButton *eraser_button;
  GtkAdjustment   *brush_size;
  GtkAdjustment   *feather;
  GtkBox          *progress_box;
  GtkLabel        *status_label;
  GtkProgressBar  *progress_bar;
  GtkLabel        *eta_label;
  GtkRevealer     *batch_revealer;
  GtkFlowBox      *batch_box;
  GtkToggleButton *extend_button;
  GtkWidget       *extend_bar;
  GtkLabel        *extend_info;
  GtkAdjustment   *extend_left;
  GtkAdjustment   *extend_right;
  GtkAdjustment   *extend_top;
  GtkAdjustment   *extend_bottom;

  /* owned */
  GSettings       *settings;
  RvImage         *image;
  GdkTexture      *texture;
  RvRecipe        *recipe;
  char            *path;
  GPtrArray       *batch;           /* RvOutput* of the last job */
  guint            hide_status_id;
  RvJobKind        job_kind;
  gint64           job_started;
  int              previews_shown;
  RvGenerator     *generator;       /* the window's, to plan extensions */
  GPtrArray       *undo;            /* Picture*: what extensions replaced, oldest first */
  int              job_borders[4];  /* an extend job's, back if it fails */
};

/* a picture an extension replaced, to go back to */
typedef struct {
  RvImage  *image;
  RvRecipe *recipe;
  char     *path;
} Picture;

static void
picture_free (Picture *p)
{
  rv_image_free (p->image);
  rv_recipe_free (p->recipe);
  g_free (p->path);
  g_free (p);
}

G_DEFINE_FINAL_TYPE (RvEditor, rv_editor, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_HAS_PICTURE,
  PROP_HAS_MASK,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* ---- the picture ---- */

/* What a screen reader (or a test) learns of what the canvas shows. */
static void
describe_picture (RvEditor *self)
{
  g_autofree char *title = self->recipe ? _rv_recipe_title (self->recipe)
                         : self->path ? g_path_get_basename (self->path) : NULL;
  gtk_accessible_update_property (GTK_ACCESSIBLE (self->canvas), GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                  title ? title : _("A dropped picture"), -1);
}

/* ---- extend mode ---- */

static void fill_batch (RvEditor *self, GPtrArray *outputs);
static void update_mask_actions (RvEditor *self);
static void show_picture (RvEditor *self, RvImage *image, GdkTexture *texture,
                          const RvRecipe *recipe, const char *path, gboolean new_picture);

/* The frames the engine will fill for the borders set, drawn on the canvas,
 * and what the extension makes, said beside the borders. */
static void
update_extension (RvEditor *self)
{
  int l, r, t, b;
  rv_canvas_get_borders (self->canvas, &l, &r, &t, &b);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "extend.undo", self->undo->len > 0);
  if (self->image == NULL || !rv_canvas_get_extending (self->canvas))
    {
      rv_canvas_set_frames (self->canvas, NULL);
      return;
    }
  int w = self->image->width + l + r, h = self->image->height + t + b;
  g_autoptr (GArray) frames = NULL;
  if (self->generator != NULL && l + r + t + b > 0)
    frames = rv_generator_plan_extend (self->generator, self->image, l, r, t, b, &w, &h);
  rv_canvas_set_frames (self->canvas, frames);
  g_autofree char *info = NULL;
  if (l + r + t + b == 0)
    info = g_strdup_printf (_("%d × %d · drag an edge outward"), w, h);
  else if (frames != NULL)
    info = g_strdup_printf (ngettext ("%d × %d · %u frame", "%d × %d · %u frames", frames->len),
                            w, h, frames->len);
  else
    info = g_strdup_printf ("%d × %d", w, h);
  gtk_label_set_label (self->extend_info, info);
}

static void
on_borders_changed (RvEditor *self)
{
  update_extension (self);
}

/* the mask brush and extend mode both drag on the canvas: one at a time */
static void
on_tool_toggled (GtkToggleButton *button, RvEditor *self)
{
  if (!gtk_toggle_button_get_active (button))
    return;
  gtk_toggle_button_set_active (button == self->brush_button ? self->extend_button : self->brush_button, FALSE);
}

static void
extend_undo_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvEditor *self = RV_EDITOR (widget);
  if (self->undo->len == 0)
    return;
  Picture *p = g_ptr_array_steal_index (self->undo, self->undo->len - 1);
  fill_batch (self, NULL);
  rv_canvas_set_borders (self->canvas, 0, 0, 0, 0);
  show_picture (self, g_steal_pointer (&p->image), NULL, p->recipe, p->path, TRUE);
  picture_free (p);
  update_mask_actions (self);
  update_extension (self);
}

static void
extend_toggle_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvEditor *self = RV_EDITOR (widget);
  gtk_toggle_button_set_active (self->extend_button, !gtk_toggle_button_get_active (self->extend_button));
}

static void
show_picture (RvEditor *self, RvImage *image, GdkTexture *texture, const RvRecipe *recipe,
              const char *path, gboolean new_picture)
{
  gboolean had = self->image != NULL;
  g_clear_pointer (&self->image, rv_image_free);
  self->image = image;
  g_autoptr (GdkTexture) owned = texture ? g_object_ref (texture) : _rv_texture_new_for_image (image);
  g_set_object (&self->texture, owned);
  g_clear_pointer (&self->recipe, rv_recipe_free);
  self->recipe = recipe ? rv_recipe_copy (recipe) : NULL;
  g_free (self->path);
  self->path = g_strdup (path);
  rv_canvas_set_texture (self->canvas, self->texture, new_picture);
  describe_picture (self);
  gtk_stack_set_visible_child_name (self->stack, "canvas");
  gtk_widget_grab_focus (GTK_WIDGET (self->canvas));
  update_extension (self);
  if (!had)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HAS_PICTURE]);
}

static void
update_mask_actions (RvEditor *self)
{
  RvMask *mask = rv_canvas_get_mask (self->canvas);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "mask.undo", rv_mask_can_undo (mask));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "mask.redo", rv_mask_can_redo (mask));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "mask.clear", !rv_mask_is_empty (mask));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "mask.invert", self->image != NULL);
}

static void
on_mask_changed (RvMask *mask, RvEditor *self)
{
  update_mask_actions (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HAS_MASK]);
}

/* ---- the batch grid ---- */

static GdkContentProvider *
on_batch_drag_prepare (GtkDragSource *source, double x, double y, RvEditor *self)
{
  GtkWidget *child = gtk_event_controller_get_widget (GTK_EVENT_CONTROLLER (source));
  int index = gtk_flow_box_child_get_index (GTK_FLOW_BOX_CHILD (child));
  if (self->batch == NULL || index < 0 || (guint) index >= self->batch->len)
    return NULL;
  RvOutput *out = g_ptr_array_index (self->batch, index);
  GtkPicture *picture = GTK_PICTURE (gtk_flow_box_child_get_child (GTK_FLOW_BOX_CHILD (child)));
  GdkPaintable *paintable = gtk_picture_get_paintable (picture);
  gtk_drag_source_set_icon (source, paintable, 0, 0);
  GdkContentProvider *texture = gdk_content_provider_new_typed (GDK_TYPE_TEXTURE, paintable);
  if (out->path == NULL)
    return texture;
  g_autoptr (GFile) file = g_file_new_for_path (out->path);
  GdkFileList *files = gdk_file_list_new_from_array (&file, 1);
  GdkContentProvider *providers[] = {
    gdk_content_provider_new_typed (GDK_TYPE_FILE_LIST, files),
    gdk_content_provider_new_typed (G_TYPE_FILE, file),
    texture,
  };
  g_boxed_free (GDK_TYPE_FILE_LIST, files);   /* the provider holds a copy */
  return gdk_content_provider_new_union (providers, G_N_ELEMENTS (providers));
}

static void
on_batch_child_activated (GtkFlowBox *box, GtkFlowBoxChild *child, RvEditor *self)
{
  int index = gtk_flow_box_child_get_index (child);
  if (self->batch == NULL || index < 0 || (guint) index >= self->batch->len)
    return;
  RvOutput *out = g_ptr_array_index (self->batch, index);
  GtkPicture *picture = GTK_PICTURE (gtk_flow_box_child_get_child (child));
  show_picture (self, rv_image_copy (out->image), GDK_TEXTURE (gtk_picture_get_paintable (picture)),
                out->recipe, out->path, FALSE);
}

static void
fill_batch (RvEditor *self, GPtrArray *outputs)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->batch_box))) != NULL)
    gtk_flow_box_remove (self->batch_box, child);
  g_clear_pointer (&self->batch, g_ptr_array_unref);
  if (outputs == NULL || outputs->len == 0)
    {
      gtk_revealer_set_reveal_child (self->batch_revealer, FALSE);
      return;
    }
  self->batch = g_ptr_array_ref (outputs);
  for (guint i = 0; i < outputs->len; i++)
    {
      RvOutput *out = g_ptr_array_index (outputs, i);
      g_autoptr (GdkTexture) texture = _rv_texture_new_for_image (out->image);
      GtkWidget *picture = gtk_picture_new_for_paintable (GDK_PAINTABLE (texture));
      gtk_picture_set_can_shrink (GTK_PICTURE (picture), TRUE);
      gtk_widget_set_size_request (picture, 88, 88);
      g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, out->recipe->seed);
      g_autofree char *name = g_strdup_printf (_("Result %u of %u, seed %s"), i + 1, outputs->len, seed);
      gtk_widget_set_tooltip_text (picture, name);
      gtk_accessible_update_property (GTK_ACCESSIBLE (picture), GTK_ACCESSIBLE_PROPERTY_LABEL, name, -1);
      gtk_flow_box_append (self->batch_box, picture);
      GtkWidget *box_child = gtk_widget_get_parent (picture);
      GtkDragSource *drag = gtk_drag_source_new ();
      gtk_drag_source_set_actions (drag, GDK_ACTION_COPY);
      g_signal_connect (drag, "prepare", G_CALLBACK (on_batch_drag_prepare), self);
      gtk_widget_add_controller (box_child, GTK_EVENT_CONTROLLER (drag));
      if (i == 0)
        gtk_flow_box_select_child (self->batch_box, GTK_FLOW_BOX_CHILD (box_child));
    }
  gtk_revealer_set_reveal_child (self->batch_revealer, outputs->len > 1);
}

/* ---- actions ---- */

static void
mask_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvEditor *self = RV_EDITOR (widget);
  RvMask *mask = rv_canvas_get_mask (self->canvas);
  if (g_str_equal (name, "mask.undo"))
    rv_mask_undo (mask);
  else if (g_str_equal (name, "mask.redo"))
    rv_mask_redo (mask);
  else if (g_str_equal (name, "mask.clear"))
    rv_mask_clear (mask);
  else if (g_str_equal (name, "mask.invert"))
    rv_mask_invert (mask);
}

static void
zoom_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvEditor *self = RV_EDITOR (widget);
  if (g_str_equal (name, "canvas.zoom-in"))
    rv_canvas_zoom_by (self->canvas, 1.25);
  else if (g_str_equal (name, "canvas.zoom-out"))
    rv_canvas_zoom_by (self->canvas, 0.8);
  else
    rv_canvas_zoom_to_fit (self->canvas);
}

static void
brush_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvEditor *self = RV_EDITOR (widget);
  gtk_toggle_button_set_active (self->brush_button, !gtk_toggle_button_get_active (self->brush_button));
}

/* ---- GObject ---- */

static void
rv_editor_dispose (GObject *object)
{
  RvEditor *self = RV_EDITOR (object);
  if (self->canvas != NULL)
    g_signal_handlers_disconnect_by_data (rv_canvas_get_mask (self->canvas), self);
  g_clear_handle_id (&self->hide_status_id, g_source_remove);
  gtk_widget_dispose_template (GTK_WIDGET (self), RV_TYPE_EDITOR);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
    gtk_widget_unparent (child);
  g_clear_object (&self->settings);
  g_clear_object (&self->texture);
  g_clear_pointer (&self->batch, g_ptr_array_unref);
  g_clear_object (&self->generator);
  G_OBJECT_CLASS (rv_editor_parent_class)->dispose (object);
}

static void
rv_editor_finalize (GObject *object)
{
  RvEditor *self = RV_EDITOR (object);
  g_clear_pointer (&self->image, rv_image_free);
  g_clear_pointer (&self->recipe, rv_recipe_free);
  g_free (self->path);
  g_clear_pointer (&self->undo, g_ptr_array_unref);
  G_OBJECT_CLASS (rv_editor_parent_class)->finalize (object);
}

static void
rv_editor_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  RvEditor *self = RV_EDITOR (object);
  switch (prop_id)
    {
    case PROP_HAS_PICTURE:
      g_value_set_boolean (value, self->image != NULL);
      break;
    case PROP_HAS_MASK:
      g_value_set_boolean (value, !rv_mask_is_empty (rv_canvas_get_mask (self->canvas)));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rv_editor_class_init (RvEditorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = rv_editor_dispose;
  object_class->finalize = rv_editor_finalize;
  object_class->get_property = rv_editor_get_property;

  properties[PROP_HAS_PICTURE] =
    g_param_spec_boolean ("has-picture", NULL, NULL, FALSE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_HAS_MASK] =
    g_param_spec_boolean ("has-mask", NULL, NULL, FALSE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (RV_TYPE_CANVAS);
  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/reverie/Reverie/rv-editor.ui");
  gtk_widget_class_bind_template_child (widget_class, RvEditor, stack);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, canvas);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, brush_button);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, eraser_button);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, brush_size);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, feather);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, progress_box);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, status_label);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, eta_label);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, batch_revealer);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, batch_box);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_button);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_bar);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_info);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_left);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_right);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_top);
  gtk_widget_class_bind_template_child (widget_class, RvEditor, extend_bottom);
  gtk_widget_class_bind_template_callback (widget_class, on_batch_child_activated);
  gtk_widget_class_install_action (widget_class, "extend.undo", NULL, extend_undo_action);
  gtk_widget_class_install_action (widget_class, "extend.toggle", NULL, extend_toggle_action);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_x, 0, "extend.toggle", NULL);

  gtk_widget_class_install_action (widget_class, "mask.undo", NULL, mask_action);
  gtk_widget_class_install_action (widget_class, "mask.redo", NULL, mask_action);
  gtk_widget_class_install_action (widget_class, "mask.clear", NULL, mask_action);
  gtk_widget_class_install_action (widget_class, "mask.invert", NULL, mask_action);
  gtk_widget_class_install_action (widget_class, "mask.brush", NULL, brush_action);
  gtk_widget_class_install_action (widget_class, "canvas.zoom-in", NULL, zoom_action);
  gtk_widget_class_install_action (widget_class, "canvas.zoom-out", NULL, zoom_action);
  gtk_widget_class_install_action (widget_class, "canvas.zoom-fit", NULL, zoom_action);

  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_z, GDK_CONTROL_MASK, "mask.undo", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_z, GDK_CONTROL_MASK | GDK_SHIFT_MASK, "mask.redo", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_b, 0, "mask.brush", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_i, GDK_CONTROL_MASK, "mask.invert", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_plus, GDK_CONTROL_MASK, "canvas.zoom-in", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_equal, GDK_CONTROL_MASK, "canvas.zoom-in", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_minus, GDK_CONTROL_MASK, "canvas.zoom-out", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_0, GDK_CONTROL_MASK, "canvas.zoom-fit", NULL);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "editor");
}

static void
rv_editor_init (RvEditor *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->settings = g_settings_new (APP_ID);
  g_settings_bind (self->settings, "brush-size", self->brush_size, "value", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (self->settings, "feather", self->feather, "value", G_SETTINGS_BIND_DEFAULT);
  g_object_bind_property (self->brush_size, "value", self->canvas, "brush-size", G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->brush_button, "active", self->canvas, "painting", G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->eraser_button, "active", self->canvas, "erasing", G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->brush_button, "active", self->eraser_button, "sensitive", G_BINDING_SYNC_CREATE);
  g_signal_connect (rv_canvas_get_mask (self->canvas), "changed", G_CALLBACK (on_mask_changed), self);
  self->undo = g_ptr_array_new_with_free_func ((GDestroyNotify) picture_free);
  g_object_bind_property (self->extend_button, "active", self->canvas, "extending", G_BINDING_SYNC_CREATE);
  g_signal_connect (self->brush_button, "toggled", G_CALLBACK (on_tool_toggled), self);
  g_signal_connect (self->extend_button, "toggled", G_CALLBACK (on_tool_toggled), self);
  g_object_bind_property (self->extend_button, "active", self->extend_bar, "visible", G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->extend_left, "value", self->canvas, "extend-left",
                          G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->extend_right, "value", self->canvas, "extend-right",
                          G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->extend_top, "value", self->canvas, "extend-top",
                          G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  g_object_bind_property (self->extend_bottom, "value", self->canvas, "extend-bottom",
                          G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  const char *notify[] = { "notify::extend-left", "notify::extend-right", "notify::extend-top",
                           "notify::extend-bottom", "notify::extending" };
  for (guint i = 0; i < G_N_ELEMENTS (notify); i++)
    g_signal_connect_swapped (self->canvas, notify[i], G_CALLBACK (on_borders_changed), self);
  update_mask_actions (self);
  update_extension (self);
}

/* The generator whose engine plans the frames of an extension. */
void
rv_editor_set_generator (RvEditor *self, RvGenerator *generator)
{
  g_return_if_fail (RV_IS_EDITOR (self));
  if (self->generator != NULL)
    g_signal_handlers_disconnect_by_data (self->generator, self);
  g_set_object (&self->generator, generator);
  if (generator != NULL)
    g_signal_connect_object (generator, "info-changed", G_CALLBACK (on_borders_changed), self,
                             G_CONNECT_SWAPPED);
  update_extension (self);
}

/* The borders to add in extend mode (all 0 when it is off). */
void
rv_editor_get_borders (RvEditor *self, int *left, int *right, int *top, int *bottom)
{
  g_return_if_fail (RV_IS_EDITOR (self));
  *left = *right = *top = *bottom = 0;
  if (rv_canvas_get_extending (self->canvas))
    rv_canvas_get_borders (self->canvas, left, right, top, bottom);
}

/* ---- API ---- */

/* A picture to look at and edit (opened, dropped, or from the gallery).
 * Takes image; texture may be NULL. */
void
rv_editor_set_picture (RvEditor *self, RvImage *image, GdkTexture *texture,
                       const RvRecipe *recipe, const char *path)
{
  g_return_if_fail (RV_IS_EDITOR (self));
  g_return_if_fail (image != NULL);
  fill_batch (self, NULL);
  /* another picture: the extensions of the one before are not its past */
  g_ptr_array_set_size (self->undo, 0);
  rv_canvas_set_borders (self->canvas, 0, 0, 0, 0);
  show_picture (self, image, texture, recipe, path, TRUE);
  update_mask_actions (self);
}

const RvImage *
rv_editor_get_image (RvEditor *self)
{
  g_return_val_if_fail (RV_IS_EDITOR (self), NULL);
  return self->image;
}

const char *
rv_editor_get_path (RvEditor *self)
{
  g_return_val_if_fail (RV_IS_EDITOR (self), NULL);
  return self->path;
}

/* The painted mask, grey at the picture's size (white = repaint), or NULL
 * when nothing is painted. */
RvImage *
rv_editor_get_mask_image (RvEditor *self)
{
  g_return_val_if_fail (RV_IS_EDITOR (self), NULL);
  RvMask *mask = rv_canvas_get_mask (self->canvas);
  if (self->image == NULL || rv_mask_is_empty (mask))
    return NULL;
  return rv_mask_to_image (mask);
}

/* The recipe of the picture shown, NULL when it has none (opened, dropped). */
const RvRecipe *
rv_editor_get_recipe (RvEditor *self)
{
  g_return_val_if_fail (RV_IS_EDITOR (self), NULL);
  return self->recipe;
}

double
rv_editor_get_feather (RvEditor *self)
{
  g_return_val_if_fail (RV_IS_EDITOR (self), 0);
  return gtk_adjustment_get_value (self->feather);
}

static gboolean
hide_status (gpointer data)
{
  RvEditor *self = data;
  self->hide_status_id = 0;
  gtk_widget_set_visible (GTK_WIDGET (self->progress_box), FALSE);
  return G_SOURCE_REMOVE;
}

static void
set_status (RvEditor *self, const char *status, const char *eta)
{
  g_clear_handle_id (&self->hide_status_id, g_source_remove);
  gtk_label_set_label (self->status_label, status);
  gtk_label_set_label (self->eta_label, eta);
  gtk_widget_set_visible (GTK_WIDGET (self->eta_label), eta != NULL && eta[0] != '\0');
  gtk_widget_set_visible (GTK_WIDGET (self->progress_box), TRUE);
}

void
rv_editor_job_started (RvEditor *self, RvJobKind kind, int n_images)
{
  g_return_if_fail (RV_IS_EDITOR (self));
  self->job_kind = kind;
  self->job_started = g_get_monotonic_time ();
  self->previews_shown = 0;
  if (kind == RV_JOB_EXTEND)
    {
      /* the previews show the whole grown canvas */
      int *b = self->job_borders;
      rv_canvas_get_borders (self->canvas, &b[0], &b[1], &b[2], &b[3]);
      rv_canvas_set_borders (self->canvas, 0, 0, 0, 0);
    }
  gtk_progress_bar_set_fraction (self->progress_bar, 0);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  set_status (self, _("Starting…"), NULL);
}

void
rv_editor_job_progress (RvEditor *self, int stage, int image, int n_images, int step, int steps,
                        double fraction, double eta, GdkTexture *preview, int frame, int n_frames,
                        int frames_at_once)
{
  g_return_if_fail (RV_IS_EDITOR (self));
  g_autofree char *what = NULL;
  switch (stage)
    {
    case RV_STAGE_LOAD:
      what = g_strdup (self->job_kind == RV_JOB_UPSCALE ? _("Loading the upscaler") : _("Loading the model"));
      break;
    case RV_STAGE_ENCODE:
      what = g_strdup (self->job_kind == RV_JOB_VARIATION ? _("Reading the picture") : _("Reading the prompt"));
      break;
    case RV_STAGE_PRIOR:
      /* Translators: the prior turns the prompt into an image embedding */
      what = g_strdup_printf (_("Imagining · step %d of %d"), step, steps);
      break;
    case RV_STAGE_DECODER:
      what = g_strdup_printf (_("Painting · step %d of %d"), step, steps);
      break;
    case RV_STAGE_UPSCALE:
      /* Translators: the upscaler enlarges the picture piece by piece */
      what = step > 0 ? g_strdup_printf (_("Enlarging · tile %d of %d"), step, steps)
                      : g_strdup (_("Enlarging"));
      break;
    case RV_STAGE_DECODE:
    default:
      what = g_strdup (_("Finishing"));
      break;
    }
  /* the prior's embedding serves every frame of a picture: frames are told from the decoder on */
  if (n_frames > 1 && stage != RV_STAGE_LOAD && stage != RV_STAGE_PRIOR)
    {
      g_autofree char *in_frame =
        frames_at_once > 1
          ? g_strdup_printf (_("Frames %d–%d of %d · %s"), frame + 1, frame + frames_at_once, n_frames, what)
          : g_strdup_printf (_("Frame %d of %d · %s"), frame + 1, n_frames, what);
      g_free (what);
      what = g_steal_pointer (&in_frame);
    }
  g_autofree char *status = n_images > 1
    ? g_strdup_printf (_("Picture %d of %d · %s"), image + 1, n_images, what)
    : g_steal_pointer (&what);
  g_autofree char *eta_text = _rv_format_eta (eta);
  set_status (self, status, eta_text);
  gtk_progress_bar_set_fraction (self->progress_bar, CLAMP (fraction, 0, 1));
  if (preview != NULL)
    {
      g_autofree char *description = stage == RV_STAGE_UPSCALE
        ? g_strdup_printf (_("Preview after tile %d of %d"), step, steps)
        : g_strdup_printf (_("Preview at step %d of %d"), step, steps);
      gtk_accessible_update_property (GTK_ACCESSIBLE (self->canvas), GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                      description, -1);
      rv_canvas_set_texture (self->canvas, preview, FALSE);
      gtk_stack_set_visible_child_name (self->stack, "canvas");
      self->previews_shown++;
    }
}

/* outputs: RvOutput* (NULL when the job failed or was cancelled; then the
 * picture from before the job comes back) */
void
rv_editor_job_finished (RvEditor *self, GPtrArray *outputs, const char *status)
{
  g_return_if_fail (RV_IS_EDITOR (self));
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), FALSE);
  set_status (self, status, NULL);
  /* the outcome stays a moment, then the picture is whole again */
  self->hide_status_id = g_timeout_add_seconds (4, hide_status, self);
  if (self->job_kind == RV_JOB_EXTEND && (outputs == NULL || outputs->len == 0))
    {
      /* the borders come back for another try */
      int *b = self->job_borders;
      rv_canvas_set_borders (self->canvas, b[0], b[1], b[2], b[3]);
    }
  if (self->job_kind == RV_JOB_EXTEND && outputs != NULL && outputs->len > 0 && self->image != NULL)
    {
      /* the picture before, to go back to */
      Picture *p = g_new0 (Picture, 1);
      p->image = rv_image_copy (self->image);
      p->recipe = self->recipe ? rv_recipe_copy (self->recipe) : NULL;
      p->path = g_strdup (self->path);
      g_ptr_array_add (self->undo, p);
    }
  if (outputs == NULL || outputs->len == 0)
    {
      if (self->texture != NULL)
        {
          rv_canvas_set_texture (self->canvas, self->texture, FALSE);
          describe_picture (self);
        }
      else if (rv_canvas_get_texture (self->canvas) != NULL)
        {
          rv_canvas_set_texture (self->canvas, NULL, FALSE);
          gtk_stack_set_visible_child_name (self->stack, "empty");
        }
      return;
    }
  fill_batch (self, outputs);
  RvOutput *first = g_ptr_array_index (outputs, 0);
  GtkFlowBoxChild *child = gtk_flow_box_get_child_at_index (self->batch_box, 0);
  GtkPicture *picture = GTK_PICTURE (gtk_flow_box_child_get_child (child));
  /* an edit keeps its mask, for another try; anything else starts clean */
  show_picture (self, rv_image_copy (first->image), GDK_TEXTURE (gtk_picture_get_paintable (picture)),
                first->recipe, first->path, self->job_kind != RV_JOB_INPAINT);
  update_mask_actions (self);
}
