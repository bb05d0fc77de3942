/* rv-gallery.c: every picture made, newest first, across restarts: search by
 * prompt, reuse a recipe, open, variations, upscale (also from a thumbnail's
 * context menu), copy, save as, drag out, delete
 * to the trash with undo. */
#include "config.h"

#include <adwaita.h>
#include <glib/gi18n.h>

#include "rv-gallery.h"
#include "rv-prompt-panel.h"
#include "rv-util.h"

struct _RvGallery
{
  GtkWidget           parent_instance;

  /* template widgets */
  AdwToastOverlay    *toast_overlay;
  GtkSearchEntry     *search_entry;
  GtkStack           *stack;
  GtkGridView        *grid_view;
  GtkRevealer        *details_revealer;
  GtkPicture         *detail_picture;
  GtkLabel           *detail_title;
  GtkLabel           *detail_info;
  GMenuModel         *item_menu;

  /* owned */
  GListStore         *store;          /* RvGalleryItem */
  GtkCustomFilter    *filter;
  GtkSingleSelection *selection;
  char               *folder;
  char               *query;          /* case-folded */
  GCancellable       *cancellable;
  GPtrArray          *deleted;        /* RvGalleryItem waiting for their toast to go */
  RvGalleryItem      *shown;          /* in the details pane */
};

G_DEFINE_FINAL_TYPE (RvGallery, rv_gallery, GTK_TYPE_WIDGET)

enum {
  OPEN,
  REUSE,
  VARIATIONS,
  UPSCALE,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static RvGalleryItem *
selected_item (RvGallery *self)
{
  return gtk_single_selection_get_selected_item (self->selection);
}

static void
update_empty (RvGallery *self)
{
  gboolean any = g_list_model_get_n_items (G_LIST_MODEL (self->store)) > 0;
  gtk_stack_set_visible_child_name (self->stack, any ? "grid" : "empty");
}

/* ---- details ---- */

static void
on_detail_thumbnail (RvGalleryItem *item, GParamSpec *pspec, RvGallery *self)
{
  gtk_picture_set_paintable (self->detail_picture, GDK_PAINTABLE (rv_gallery_item_get_thumbnail (item)));
}

static char *
recipe_summary (RvGalleryItem *item)
{
  const RvRecipe *r = rv_gallery_item_get_recipe (item);
  GString *s = g_string_new (NULL);
  if (r->negative_prompt != NULL)
    {
      g_string_append_printf (s, _("Not: %s"), r->negative_prompt);
      g_string_append_c (s, '\n');
    }
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, r->seed);
  g_string_append_printf (s, _("Seed %s"), seed);
  g_string_append_printf (s, "\n%d × %d", r->width, r->height);
  if (r->decoder_steps > 0)
    {
      g_string_append (s, " · ");
      g_string_append_printf (s, ngettext ("%d step", "%d steps", r->decoder_steps), r->decoder_steps);
    }
  if (r->decoder_guidance >= 0)
    g_string_append_printf (s, _(" · guidance %.1f"), r->decoder_guidance);
  if (r->scheduler != NULL)
    g_string_append_printf (s, " · %s", r->scheduler);
  if (r->model != NULL)
    g_string_append_printf (s, "\n%s %s", _("Model"), r->model);
  if (r->upscaler != NULL && r->upscale > 0)
    {
      g_string_append_c (s, '\n');
      /* Translators: "Enlarged ×4 by srvgg_x4" */
      g_string_append_printf (s, _("Enlarged ×%d by %s"), r->upscale, r->upscaler);
    }
  else if (r->upscaler != NULL)
    {
      g_string_append_c (s, '\n');
      g_string_append_printf (s, _("Enlarged by %s"), r->upscaler);
    }
  g_autoptr (GDateTime) when = g_date_time_new_from_unix_local (rv_gallery_item_get_created (item));
  if (when != NULL)
    {
      g_autofree char *date = g_date_time_format (when, "%x %X");
      g_string_append_printf (s, "\n%s", date);
    }
  return g_string_free (s, FALSE);
}

static void
update_actions (RvGallery *self)
{
  RvGalleryItem *item = selected_item (self);
  const char *const names[] = {
    "gallery.open", "gallery.reuse-prompt", "gallery.reuse-seed", "gallery.reuse-all",
    "gallery.variations", "gallery.upscale", "gallery.copy", "gallery.save-as", "gallery.delete",
  };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    gtk_widget_action_set_enabled (GTK_WIDGET (self), names[i], item != NULL);
  if (item != NULL)
    gtk_widget_action_set_enabled (GTK_WIDGET (self), "gallery.reuse-prompt",
                                   rv_gallery_item_get_recipe (item)->prompt != NULL);
}

static void
on_selection_changed (RvGallery *self)
{
  RvGalleryItem *item = selected_item (self);
  if (self->shown != NULL)
    g_signal_handlers_disconnect_by_func (self->shown, on_detail_thumbnail, self);
  g_set_object (&self->shown, item);
  update_actions (self);
  gtk_revealer_set_reveal_child (self->details_revealer, item != NULL);
  if (item == NULL)
    return;
  g_signal_connect (item, "notify::thumbnail", G_CALLBACK (on_detail_thumbnail), self);
  on_detail_thumbnail (item, NULL, self);
  gtk_label_set_label (self->detail_title, rv_gallery_item_get_title (item));
  g_autofree char *info = recipe_summary (item);
  gtk_label_set_label (self->detail_info, info);
}

/* ---- the grid ---- */

static GdkContentProvider *
on_drag_prepare (GtkDragSource *source, double x, double y, GtkListItem *list_item)
{
  RvGalleryItem *item = gtk_list_item_get_item (list_item);
  if (item == NULL)
    return NULL;
  GdkTexture *thumbnail = rv_gallery_item_get_thumbnail (item);
  if (thumbnail != NULL)
    gtk_drag_source_set_icon (source, GDK_PAINTABLE (thumbnail), 0, 0);
  g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (item));
  GdkFileList *files = gdk_file_list_new_from_array (&file, 1);
  g_autoptr (GPtrArray) providers = g_ptr_array_new ();
  g_ptr_array_add (providers, gdk_content_provider_new_typed (GDK_TYPE_FILE_LIST, files));
  g_boxed_free (GDK_TYPE_FILE_LIST, files);   /* the provider holds a copy */
  g_ptr_array_add (providers, gdk_content_provider_new_typed (G_TYPE_FILE, file));
  /* the PNG itself, for apps that take image data rather than files; mapped,
   * so nothing is read unless asked for */
  g_autoptr (GMappedFile) mapped = g_mapped_file_new (rv_gallery_item_get_path (item), FALSE, NULL);
  if (mapped != NULL)
    {
      g_autoptr (GBytes) bytes = g_mapped_file_get_bytes (mapped);
      g_ptr_array_add (providers, gdk_content_provider_new_for_bytes ("image/png", bytes));
    }
  return gdk_content_provider_new_union ((GdkContentProvider **) providers->pdata, providers->len);
}

/* A right click on a thumbnail: it is selected, and its menu opens there. */
static void
on_item_menu_pressed (GtkGestureClick *gesture, int n_press, double x, double y, GtkListItem *list_item)
{
  GtkWidget *picture = gtk_event_controller_get_widget (GTK_EVENT_CONTROLLER (gesture));
  RvGallery *self = RV_GALLERY (gtk_widget_get_ancestor (picture, RV_TYPE_GALLERY));
  guint position = gtk_list_item_get_position (list_item);
  if (self == NULL || position == GTK_INVALID_LIST_POSITION)
    return;
  gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
  gtk_single_selection_set_selected (self->selection, position);
  GtkPopover *menu = g_object_get_data (G_OBJECT (picture), "rv-menu");
  gtk_popover_set_pointing_to (menu, &(GdkRectangle) { (int) x, (int) y, 1, 1 });
  gtk_popover_popup (menu);
}

static void
on_picture_destroy (GtkWidget *picture, gpointer data)
{
  GtkWidget *menu = g_object_steal_data (G_OBJECT (picture), "rv-menu");
  if (menu != NULL)
    gtk_widget_unparent (menu);
}

static void
on_factory_setup (GtkSignalListItemFactory *factory, GtkListItem *list_item, RvGallery *self)
{
  GtkWidget *picture = gtk_picture_new ();
  gtk_picture_set_content_fit (GTK_PICTURE (picture), GTK_CONTENT_FIT_COVER);
  gtk_widget_set_size_request (picture, 136, 136);
  gtk_widget_add_css_class (picture, "thumbnail");
  GtkDragSource *drag = gtk_drag_source_new ();
  gtk_drag_source_set_actions (drag, GDK_ACTION_COPY);
  g_signal_connect (drag, "prepare", G_CALLBACK (on_drag_prepare), list_item);
  gtk_widget_add_controller (picture, GTK_EVENT_CONTROLLER (drag));
  GtkWidget *menu = gtk_popover_menu_new_from_model (self->item_menu);
  gtk_popover_set_has_arrow (GTK_POPOVER (menu), FALSE);
  gtk_widget_set_halign (menu, GTK_ALIGN_START);
  gtk_widget_set_parent (menu, picture);
  g_object_set_data (G_OBJECT (picture), "rv-menu", menu);
  g_signal_connect (picture, "destroy", G_CALLBACK (on_picture_destroy), NULL);
  GtkGesture *click = gtk_gesture_click_new ();
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), GDK_BUTTON_SECONDARY);
  g_signal_connect (click, "pressed", G_CALLBACK (on_item_menu_pressed), list_item);
  gtk_widget_add_controller (picture, GTK_EVENT_CONTROLLER (click));
  gtk_list_item_set_child (list_item, picture);
}

static void
on_item_thumbnail (RvGalleryItem *item, GParamSpec *pspec, GtkPicture *picture)
{
  gtk_picture_set_paintable (picture, GDK_PAINTABLE (rv_gallery_item_get_thumbnail (item)));
}

static void
on_factory_bind (GtkSignalListItemFactory *factory, GtkListItem *list_item, RvGallery *self)
{
  RvGalleryItem *item = gtk_list_item_get_item (list_item);
  GtkWidget *picture = gtk_list_item_get_child (list_item);
  g_signal_connect (item, "notify::thumbnail", G_CALLBACK (on_item_thumbnail), picture);
  on_item_thumbnail (item, NULL, GTK_PICTURE (picture));
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, rv_gallery_item_get_recipe (item)->seed);
  g_autofree char *name = g_strdup_printf (_("Picture: %s, seed %s"), rv_gallery_item_get_title (item), seed);
  gtk_widget_set_tooltip_text (picture, rv_gallery_item_get_title (item));
  gtk_accessible_update_property (GTK_ACCESSIBLE (picture), GTK_ACCESSIBLE_PROPERTY_LABEL, name, -1);
}

static void
on_factory_unbind (GtkSignalListItemFactory *factory, GtkListItem *list_item, RvGallery *self)
{
  RvGalleryItem *item = gtk_list_item_get_item (list_item);
  GtkWidget *picture = gtk_list_item_get_child (list_item);
  g_signal_handlers_disconnect_by_func (item, on_item_thumbnail, picture);
  gtk_picture_set_paintable (GTK_PICTURE (picture), NULL);
}

static int
compare_newest_first (gconstpointer a, gconstpointer b, gpointer data)
{
  RvGalleryItem *x = (RvGalleryItem *) a, *y = (RvGalleryItem *) b;
  gint64 cx = rv_gallery_item_get_created (x), cy = rv_gallery_item_get_created (y);
  if (cx != cy)
    return cx > cy ? -1 : 1;
  /* names carry the time and the seed; the later name first */
  return -g_strcmp0 (rv_gallery_item_get_path (x), rv_gallery_item_get_path (y));
}

static gboolean
filter_item (gpointer object, gpointer data)
{
  RvGallery *self = data;
  return self->query == NULL || rv_gallery_item_matches (object, self->query);
}

static void
on_search_changed (GtkSearchEntry *entry, RvGallery *self)
{
  const char *text = gtk_editable_get_text (GTK_EDITABLE (entry));
  g_free (self->query);
  self->query = text[0] ? g_utf8_casefold (text, -1) : NULL;
  gtk_filter_changed (GTK_FILTER (self->filter), GTK_FILTER_CHANGE_DIFFERENT);
}

/* ---- loading a folder ---- */

static void
load_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  const char *folder = data;
  GPtrArray *items = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GDir) dir = g_dir_open (folder, 0, NULL);
  const char *name;
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL &&
         !g_cancellable_is_cancelled (cancellable))
    {
      if (!g_str_has_suffix (name, ".png"))
        continue;
      g_autofree char *path = g_build_filename (folder, name, NULL);
      /* the text chunks only: pixels are read when a thumbnail is shown */
      RvRecipe *recipe = rv_recipe_from_file (path, NULL);
      if (recipe != NULL)
        g_ptr_array_add (items, rv_gallery_item_new (path, recipe));
    }
  g_task_return_pointer (task, items, (GDestroyNotify) g_ptr_array_unref);
}

static void
on_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GPtrArray) items = g_task_propagate_pointer (G_TASK (result), NULL);
  if (items == NULL)
    return;   /* cancelled: the gallery moved on */
  RvGallery *self = data;
  /* pictures made while the folder was read are in the store already */
  g_autoptr (GHashTable) known = g_hash_table_new (g_str_hash, g_str_equal);
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->store));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr (RvGalleryItem) item = g_list_model_get_item (G_LIST_MODEL (self->store), i);
      g_hash_table_add (known, (gpointer) rv_gallery_item_get_path (item));
    }
  g_autoptr (GPtrArray) fresh = g_ptr_array_new ();
  for (guint i = 0; i < items->len; i++)
    {
      RvGalleryItem *item = g_ptr_array_index (items, i);
      if (!g_hash_table_contains (known, rv_gallery_item_get_path (item)))
        g_ptr_array_add (fresh, item);
    }
  g_list_store_splice (self->store, n, 0, fresh->pdata, fresh->len);
  update_empty (self);
}

/* ---- actions ---- */

static void
emit_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvGallery *self = RV_GALLERY (widget);
  RvGalleryItem *item = selected_item (self);
  if (item == NULL)
    return;
  if (g_str_equal (name, "gallery.open"))
    g_signal_emit (self, signals[OPEN], 0, item);
  else if (g_str_equal (name, "gallery.variations"))
    g_signal_emit (self, signals[VARIATIONS], 0, item);
  else if (g_str_equal (name, "gallery.upscale"))
    g_signal_emit (self, signals[UPSCALE], 0, item);
  else if (g_str_equal (name, "gallery.reuse-prompt"))
    g_signal_emit (self, signals[REUSE], 0, item, (guint) RV_REUSE_PROMPT);
  else if (g_str_equal (name, "gallery.reuse-seed"))
    g_signal_emit (self, signals[REUSE], 0, item, (guint) RV_REUSE_SEED);
  else if (g_str_equal (name, "gallery.reuse-all"))
    g_signal_emit (self, signals[REUSE], 0, item, (guint) RV_REUSE_ALL);
}

static void
search_action (GtkWidget *widget, const char *name, GVariant *param)
{
  gtk_widget_grab_focus (GTK_WIDGET (RV_GALLERY (widget)->search_entry));
}

static void
toast (RvGallery *self, const char *title)
{
  adw_toast_overlay_add_toast (self->toast_overlay, adw_toast_new (title));
}

static void
on_copy_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvGallery) self = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) image = _rv_load_image_finish (result, &error);
  if (image == NULL)
    {
      g_autofree char *title = g_strdup_printf (_("Could not copy: %s"), error->message);
      toast (self, title);
      return;
    }
  g_autoptr (GdkTexture) texture = _rv_texture_new_for_image (image);
  gdk_clipboard_set_texture (gtk_widget_get_clipboard (GTK_WIDGET (self)), texture);
  toast (self, _("Picture copied"));
}

static void
copy_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvGallery *self = RV_GALLERY (widget);
  RvGalleryItem *item = selected_item (self);
  if (item == NULL)
    return;
  g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (item));
  _rv_load_image_async (file, self->cancellable, on_copy_loaded, g_object_ref (self));
}

static void
on_saved (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvGallery) self = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *name = g_file_get_basename (G_FILE (g_task_get_task_data (G_TASK (result))));
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
      g_autofree char *title = g_strdup_printf (_("Could not save: %s. Choose another folder."), error->message);
      toast (self, title);
      return;
    }
  g_autofree char *title = g_strdup_printf (_("Saved as %s"), name);
  toast (self, title);
}

static void
on_copied (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GTask) task = data;
  GError *error = NULL;
  if (!g_file_copy_finish (G_FILE (source), result, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_save_chosen (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvGallery) self = data;
  g_autoptr (GFile) dest = _rv_choose_file_finish (result, NULL);
  RvGalleryItem *item = selected_item (self);
  if (dest == NULL || item == NULL)
    return;
  /* a copy of the file keeps the recipe in its text chunks */
  g_autoptr (GFile) src = g_file_new_for_path (rv_gallery_item_get_path (item));
  GTask *task = g_task_new (NULL, self->cancellable, on_saved, g_object_ref (self));
  g_task_set_task_data (task, g_object_ref (dest), g_object_unref);
  g_file_copy_async (src, dest, G_FILE_COPY_OVERWRITE | G_FILE_COPY_TARGET_DEFAULT_PERMS,
                     G_PRIORITY_DEFAULT, self->cancellable, NULL, NULL, on_copied, task);
}

static void
save_as_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvGallery *self = RV_GALLERY (widget);
  RvGalleryItem *item = selected_item (self);
  if (item == NULL)
    return;
  g_autofree char *base = g_path_get_basename (rv_gallery_item_get_path (item));
  _rv_choose_file_async (widget, RV_CHOOSE_SAVE, _("Save Picture As"), base, self->cancellable,
                         on_save_chosen, g_object_ref (self));
}

/* ---- delete, with undo ---- */

static void
on_trashed (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  if (!g_file_trash_finish (G_FILE (source), result, &error))
    g_warning ("Could not move %s to the trash: %s", g_file_peek_path (G_FILE (source)), error->message);
}

/* The file goes to the trash when its toast goes without Undo (or when the
 * gallery closes), so that Undo needs nothing from the trash. */
static void
on_delete_toast_dismissed (AdwToast *toast, RvGallery *self)
{
  RvGalleryItem *item = g_object_get_data (G_OBJECT (toast), "rv-item");
  if (item == NULL || !g_ptr_array_remove (self->deleted, item))
    return;
  g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (item));
  g_file_trash_async (file, G_PRIORITY_DEFAULT, NULL, on_trashed, NULL);
}

static void
on_delete_undo (AdwToast *toast, RvGallery *self)
{
  RvGalleryItem *item = g_object_get_data (G_OBJECT (toast), "rv-item");
  guint index;
  if (item == NULL || !g_ptr_array_find (self->deleted, item, &index))
    return;
  g_list_store_append (self->store, item);
  g_ptr_array_remove_index (self->deleted, index);
  update_empty (self);
}

static void
delete_action (GtkWidget *widget, const char *name, GVariant *param)
{
  RvGallery *self = RV_GALLERY (widget);
  RvGalleryItem *item = selected_item (self);
  guint position;
  if (item == NULL || !g_list_store_find (self->store, item, &position))
    return;
  g_ptr_array_add (self->deleted, g_object_ref (item));
  g_autofree char *title = g_strdup_printf (_("“%s” moved to the trash"), rv_gallery_item_get_title (item));
  AdwToast *t = adw_toast_new (title);
  adw_toast_set_button_label (t, _("_Undo"));
  adw_toast_set_priority (t, ADW_TOAST_PRIORITY_HIGH);
  g_object_set_data_full (G_OBJECT (t), "rv-item", g_object_ref (item), g_object_unref);
  g_signal_connect_object (t, "button-clicked", G_CALLBACK (on_delete_undo), self, 0);
  g_signal_connect_object (t, "dismissed", G_CALLBACK (on_delete_toast_dismissed), self, 0);
  g_list_store_remove (self->store, position);
  update_empty (self);
  adw_toast_overlay_add_toast (self->toast_overlay, t);
}

/* ---- GObject ---- */

static void
rv_gallery_dispose (GObject *object)
{
  RvGallery *self = RV_GALLERY (object);
  rv_gallery_flush (self);
  g_cancellable_cancel (self->cancellable);
  if (self->shown != NULL)
    g_signal_handlers_disconnect_by_func (self->shown, on_detail_thumbnail, self);
  g_clear_object (&self->shown);
  gtk_widget_dispose_template (GTK_WIDGET (self), RV_TYPE_GALLERY);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
    gtk_widget_unparent (child);
  g_clear_object (&self->selection);
  g_clear_object (&self->filter);
  g_clear_object (&self->store);
  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->deleted, g_ptr_array_unref);
  G_OBJECT_CLASS (rv_gallery_parent_class)->dispose (object);
}

static void
rv_gallery_finalize (GObject *object)
{
  RvGallery *self = RV_GALLERY (object);
  g_free (self->folder);
  g_free (self->query);
  G_OBJECT_CLASS (rv_gallery_parent_class)->finalize (object);
}

static void
rv_gallery_class_init (RvGalleryClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = rv_gallery_dispose;
  object_class->finalize = rv_gallery_finalize;

  signals[OPEN] = g_signal_new ("open", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                NULL, G_TYPE_NONE, 1, RV_TYPE_GALLERY_ITEM);
  /* item, what (RvReuse) */
  signals[REUSE] = g_signal_new ("reuse", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                                 NULL, G_TYPE_NONE, 2, RV_TYPE_GALLERY_ITEM, G_TYPE_UINT);
  signals[VARIATIONS] = g_signal_new ("variations", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                      NULL, NULL, NULL, G_TYPE_NONE, 1, RV_TYPE_GALLERY_ITEM);
  signals[UPSCALE] = g_signal_new ("upscale", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                   NULL, NULL, NULL, G_TYPE_NONE, 1, RV_TYPE_GALLERY_ITEM);

  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/reverie/Reverie/rv-gallery.ui");
  gtk_widget_class_bind_template_child (widget_class, RvGallery, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, search_entry);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, stack);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, grid_view);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, details_revealer);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, detail_picture);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, detail_title);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, detail_info);
  gtk_widget_class_bind_template_child (widget_class, RvGallery, item_menu);
  gtk_widget_class_bind_template_callback (widget_class, on_search_changed);

  gtk_widget_class_install_action (widget_class, "gallery.open", NULL, emit_action);
  gtk_widget_class_install_action (widget_class, "gallery.variations", NULL, emit_action);
  gtk_widget_class_install_action (widget_class, "gallery.upscale", NULL, emit_action);
  gtk_widget_class_install_action (widget_class, "gallery.reuse-prompt", NULL, emit_action);
  gtk_widget_class_install_action (widget_class, "gallery.reuse-seed", NULL, emit_action);
  gtk_widget_class_install_action (widget_class, "gallery.reuse-all", NULL, emit_action);
  gtk_widget_class_install_action (widget_class, "gallery.copy", NULL, copy_action);
  gtk_widget_class_install_action (widget_class, "gallery.save-as", NULL, save_as_action);
  gtk_widget_class_install_action (widget_class, "gallery.delete", NULL, delete_action);
  gtk_widget_class_install_action (widget_class, "gallery.search", NULL, search_action);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Delete, 0, "gallery.delete", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_f, GDK_CONTROL_MASK, "gallery.search", NULL);

  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "gallery");
}

static void
on_activate (GtkGridView *view, guint position, RvGallery *self)
{
  gtk_widget_activate_action (GTK_WIDGET (self), "gallery.open", NULL);
}

static void
rv_gallery_init (RvGallery *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->cancellable = g_cancellable_new ();
  self->deleted = g_ptr_array_new_with_free_func (g_object_unref);
  self->store = g_list_store_new (RV_TYPE_GALLERY_ITEM);

  GtkCustomSorter *sorter = gtk_custom_sorter_new (compare_newest_first, NULL, NULL);
  GtkSortListModel *sorted = gtk_sort_list_model_new (G_LIST_MODEL (g_object_ref (self->store)),
                                                      GTK_SORTER (sorter));
  self->filter = gtk_custom_filter_new (filter_item, self, NULL);
  GtkFilterListModel *filtered = gtk_filter_list_model_new (G_LIST_MODEL (sorted),
                                                            GTK_FILTER (g_object_ref (self->filter)));
  self->selection = gtk_single_selection_new (G_LIST_MODEL (filtered));
  gtk_single_selection_set_autoselect (self->selection, FALSE);
  gtk_single_selection_set_can_unselect (self->selection, TRUE);
  gtk_single_selection_set_selected (self->selection, GTK_INVALID_LIST_POSITION);
  g_signal_connect_swapped (self->selection, "selection-changed", G_CALLBACK (on_selection_changed), self);
  g_signal_connect_swapped (self->selection, "items-changed", G_CALLBACK (on_selection_changed), self);

  GtkListItemFactory *factory = gtk_signal_list_item_factory_new ();
  g_signal_connect (factory, "setup", G_CALLBACK (on_factory_setup), self);
  g_signal_connect (factory, "bind", G_CALLBACK (on_factory_bind), self);
  g_signal_connect (factory, "unbind", G_CALLBACK (on_factory_unbind), self);
  gtk_grid_view_set_factory (self->grid_view, factory);
  g_object_unref (factory);
  gtk_grid_view_set_model (self->grid_view, GTK_SELECTION_MODEL (self->selection));
  g_signal_connect (self->grid_view, "activate", G_CALLBACK (on_activate), self);

  update_actions (self);
  update_empty (self);
}

/* ---- API ---- */

/* Shows the pictures of folder (read in a worker thread). */
void
rv_gallery_set_folder (RvGallery *self, const char *folder)
{
  g_return_if_fail (RV_IS_GALLERY (self));
  g_return_if_fail (folder != NULL);
  if (g_strcmp0 (self->folder, folder) == 0)
    return;
  g_free (self->folder);
  self->folder = g_strdup (folder);
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();
  g_list_store_remove_all (self->store);
  update_empty (self);
  g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, on_loaded, self);
  g_task_set_task_data (task, g_strdup (folder), g_free);
  g_task_run_in_thread (task, load_thread);
}

/* A picture just made (and saved at path). */
void
rv_gallery_add (RvGallery *self, const char *path, const RvRecipe *recipe, GdkTexture *thumbnail)
{
  g_return_if_fail (RV_IS_GALLERY (self));
  g_autoptr (RvGalleryItem) item = rv_gallery_item_new (path, rv_recipe_copy (recipe));
  if (thumbnail != NULL)
    rv_gallery_item_set_thumbnail (item, thumbnail);
  g_list_store_append (self->store, item);
  update_empty (self);
}

/* Deletions waiting for their toast go to the trash now. */
void
rv_gallery_flush (RvGallery *self)
{
  g_return_if_fail (RV_IS_GALLERY (self));
  if (self->deleted == NULL)
    return;
  for (guint i = 0; i < self->deleted->len; i++)
    {
      g_autoptr (GFile) file = g_file_new_for_path (rv_gallery_item_get_path (g_ptr_array_index (self->deleted, i)));
      g_autoptr (GError) error = NULL;
      if (!g_file_trash (file, NULL, &error))
        g_warning ("Could not move %s to the trash: %s", g_file_peek_path (file), error->message);
    }
  g_ptr_array_set_size (self->deleted, 0);
}

guint
rv_gallery_get_count (RvGallery *self)
{
  g_return_val_if_fail (RV_IS_GALLERY (self), 0);
  return g_list_model_get_n_items (G_LIST_MODEL (self->store));
}
