/* rv-util.c: small helpers the studio's widgets share: images ↔ textures,
 * loading pictures off the main thread, file dialogs across GTK versions. */
#include "config.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "rv-util.h"

/* ---- images and textures ---- */

GdkTexture *
_rv_texture_new_for_image (const RvImage *img)
{
  g_return_val_if_fail (img != NULL, NULL);
  gsize stride = (gsize) img->width * img->channels;
  g_autoptr (GBytes) bytes = g_bytes_new (img->pixels, stride * img->height);
  return gdk_memory_texture_new (img->width, img->height,
                                 img->channels == 4 ? GDK_MEMORY_R8G8B8A8 : GDK_MEMORY_R8G8B8,
                                 bytes, stride);
}

/* gdk_texture_download() gives premultiplied ARGB in native byte order
 * (Cairo's ARGB32); the engine wants straight RGB, or RGBA where any pixel is
 * not opaque. */
RvImage *
_rv_image_new_from_texture (GdkTexture *texture)
{
  g_return_val_if_fail (GDK_IS_TEXTURE (texture), NULL);
  int w = gdk_texture_get_width (texture), h = gdk_texture_get_height (texture);
  gsize stride = (gsize) w * 4;
  g_autofree guint32 *argb = g_malloc (stride * h);
  gdk_texture_download (texture, (guchar *) argb, stride);
  gboolean opaque = TRUE;
  for (gsize p = 0; p < (gsize) w * h && opaque; p++)
    opaque = (argb[p] >> 24) == 0xff;
  RvImage *img = rv_image_new (w, h, opaque ? 3 : 4);
  for (gsize p = 0; p < (gsize) w * h; p++)
    {
      guint32 v = argb[p];
      guint a = v >> 24;
      guint rgb[3] = { (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff };
      guint8 *out = img->pixels + p * img->channels;
      for (int c = 0; c < 3; c++)
        out[c] = a == 0 ? 0 : (guint8) MIN (255u, (rgb[c] * 255 + a / 2) / a);
      if (!opaque)
        out[3] = (guint8) a;
    }
  return img;
}

static void
load_image_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  GFile *file = data;
  g_autofree char *path = g_file_get_path (file);
  GError *error = NULL;
  RvImage *img = NULL;
  if (path != NULL)
    img = rv_image_load_file (path, &error);
  else
    {
      /* not a local file (e.g. from a portal or a remote location) */
      g_autoptr (GBytes) bytes = g_file_load_bytes (file, cancellable, NULL, &error);
      g_autofree char *name = g_file_get_parse_name (file);
      if (bytes != NULL)
        img = rv_image_load_bytes (bytes, name, &error);
    }
  if (img == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, img, (GDestroyNotify) rv_image_free);
}

void
_rv_load_image_async (GFile *file, GCancellable *cancellable, GAsyncReadyCallback callback,
                      gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, _rv_load_image_async);
  g_task_set_task_data (task, g_object_ref (file), g_object_unref);
  g_task_run_in_thread (task, load_image_thread);
}

RvImage *
_rv_load_image_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- file dialogs ---- */

static GtkFileFilter *
image_filter (void)
{
  GtkFileFilter *filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, _("Pictures"));
  gtk_file_filter_add_pixbuf_formats (filter);
  return filter;
}

#if GTK_CHECK_VERSION (4, 10, 0)

static void
on_file_dialog_done (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GTask) task = data;
  GtkFileDialog *dialog = GTK_FILE_DIALOG (source);
  GError *error = NULL;
  GFile *file = NULL;
  switch (GPOINTER_TO_INT (g_task_get_task_data (task)))
    {
    case RV_CHOOSE_OPEN:
    case RV_CHOOSE_OPEN_ANY: file = gtk_file_dialog_open_finish (dialog, result, &error); break;
    case RV_CHOOSE_SAVE: file = gtk_file_dialog_save_finish (dialog, result, &error); break;
    case RV_CHOOSE_FOLDER: file = gtk_file_dialog_select_folder_finish (dialog, result, &error); break;
    default: g_assert_not_reached ();
    }
  if (file == NULL)
    {
      if (g_error_matches (error, GTK_DIALOG_ERROR, GTK_DIALOG_ERROR_DISMISSED))
        {
          g_clear_error (&error);
          g_set_error_literal (&error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Dismissed");
        }
      g_task_return_error (task, error);
    }
  else
    g_task_return_pointer (task, file, g_object_unref);
}

void
_rv_choose_file_async (GtkWidget *parent, RvChooseMode mode, const char *title,
                       const char *suggested_name, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, _rv_choose_file_async);
  g_task_set_task_data (task, GINT_TO_POINTER (mode), NULL);
  g_autoptr (GtkFileDialog) dialog = gtk_file_dialog_new ();
  gtk_file_dialog_set_title (dialog, title);
  GtkWindow *window = GTK_WINDOW (gtk_widget_get_root (parent));
  switch (mode)
    {
    case RV_CHOOSE_OPEN:
      {
        g_autoptr (GtkFileFilter) filter = image_filter ();
        gtk_file_dialog_set_default_filter (dialog, filter);
        gtk_file_dialog_open (dialog, window, cancellable, on_file_dialog_done, task);
      }
      break;
    case RV_CHOOSE_OPEN_ANY:
      gtk_file_dialog_open (dialog, window, cancellable, on_file_dialog_done, task);
      break;
    case RV_CHOOSE_SAVE:
      gtk_file_dialog_set_initial_name (dialog, suggested_name);
      gtk_file_dialog_save (dialog, window, cancellable, on_file_dialog_done, task);
      break;
    case RV_CHOOSE_FOLDER:
      gtk_file_dialog_select_folder (dialog, window, cancellable, on_file_dialog_done, task);
      break;
    default:
      g_assert_not_reached ();
    }
}

#else

static void
on_native_response (GtkNativeDialog *native, int response, gpointer data)
{
  g_autoptr (GTask) task = data;
  GFile *file = response == GTK_RESPONSE_ACCEPT ? gtk_file_chooser_get_file (GTK_FILE_CHOOSER (native)) : NULL;
  if (file == NULL)
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Dismissed");
  else
    g_task_return_pointer (task, file, g_object_unref);
  gtk_native_dialog_destroy (native);
  g_object_unref (native);
}

void
_rv_choose_file_async (GtkWidget *parent, RvChooseMode mode, const char *title,
                       const char *suggested_name, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data)
{
  static const GtkFileChooserAction actions[] = {
    [RV_CHOOSE_OPEN] = GTK_FILE_CHOOSER_ACTION_OPEN,
    [RV_CHOOSE_SAVE] = GTK_FILE_CHOOSER_ACTION_SAVE,
    [RV_CHOOSE_FOLDER] = GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
    [RV_CHOOSE_OPEN_ANY] = GTK_FILE_CHOOSER_ACTION_OPEN,
  };
  static const char *const accept[] = {
    [RV_CHOOSE_OPEN] = N_("_Open"),
    [RV_CHOOSE_SAVE] = N_("_Save"),
    [RV_CHOOSE_FOLDER] = N_("_Select"),
    [RV_CHOOSE_OPEN_ANY] = N_("_Open"),
  };
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, _rv_choose_file_async);
  GtkFileChooserNative *native =
    gtk_file_chooser_native_new (title, GTK_WINDOW (gtk_widget_get_root (parent)), actions[mode],
                                 _(accept[mode]), _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (native), TRUE);
  if (mode == RV_CHOOSE_OPEN)
    {
      g_autoptr (GtkFileFilter) filter = image_filter ();
      gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (native), filter);
    }
  if (mode == RV_CHOOSE_SAVE && suggested_name != NULL)
    gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (native), suggested_name);
  g_signal_connect (native, "response", G_CALLBACK (on_native_response), task);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (native));
}

#endif

GFile *
_rv_choose_file_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- small things ---- */

/* 0 in these spin buttons means "what the model recommends". */
static gboolean
on_spin_output (GtkSpinButton *spin, gpointer data)
{
  if (gtk_spin_button_get_value (spin) != 0)
    return FALSE;
  gtk_editable_set_text (GTK_EDITABLE (spin), C_("model default", "Auto"));
  return TRUE;
}

static int
on_spin_input (GtkSpinButton *spin, double *value, gpointer data)
{
  const char *text = gtk_editable_get_text (GTK_EDITABLE (spin));
  if (g_utf8_collate (text, C_("model default", "Auto")) == 0 || g_ascii_strcasecmp (text, "auto") == 0)
    {
      *value = 0;
      return TRUE;
    }
  return FALSE;
}

void
_rv_spin_button_show_auto (GtkSpinButton *spin)
{
  g_signal_connect (spin, "output", G_CALLBACK (on_spin_output), NULL);
  g_signal_connect (spin, "input", G_CALLBACK (on_spin_input), NULL);
  gtk_spin_button_update (spin);
}

char *
_rv_format_eta (double seconds)
{
  if (seconds < 0)
    return g_strdup ("");
  int s = (int) ceil (seconds);
  if (s < 60)
    /* Translators: time left in a generation */
    return g_strdup_printf (ngettext ("About %d second left", "About %d seconds left", s), s);
  int m = (s + 30) / 60;
  return g_strdup_printf (ngettext ("About %d minute left", "About %d minutes left", m), m);
}

char *
_rv_recipe_title (const RvRecipe *r)
{
  if (r != NULL && r->prompt != NULL && r->prompt[0] != '\0')
    return g_strdup (r->prompt);
  if (r != NULL && g_strcmp0 (r->kind, "variation") == 0)
    return g_strdup (_("Variation"));
  if (r != NULL && g_strcmp0 (r->kind, "upscale") == 0)
    return g_strdup (_("Upscaled picture"));
  return g_strdup (_("Untitled picture"));
}

/* On the nearest toast overlay above widget: the gallery has its own, the
 * window one for everything else. Takes toast. */
void
_rv_show_toast (GtkWidget *widget, AdwToast *toast)
{
  g_autoptr (AdwToast) owned = toast;
  GtkWidget *overlay = gtk_widget_get_ancestor (widget, ADW_TYPE_TOAST_OVERLAY);
  if (overlay == NULL)
    {
      g_warning ("%s", adw_toast_get_title (toast));
      return;
    }
  adw_toast_overlay_add_toast (ADW_TOAST_OVERLAY (overlay), g_steal_pointer (&owned));
}

/* A dialog for what needs more than a toast: what happened, what to do. */
void
_rv_show_message (GtkWidget *widget, const char *heading, const char *body)
{
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (gtk_widget_get_root (widget)), heading, body);
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (dialog), "close", _("_Close"));
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
load_policy_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  GError *error = NULL;
  RvContentPolicy *policy = rv_content_policy_load (data, &error);
  if (policy == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, policy, (GDestroyNotify) rv_content_policy_free);
}

void
_rv_content_policy_load_async (gpointer source, const char *path, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer data)
{
  g_autoptr (GTask) task = g_task_new (source, cancellable, callback, data);
  g_task_set_task_data (task, g_strdup (path), g_free);
  g_task_run_in_thread (task, load_policy_thread);
}

RvContentPolicy *
_rv_content_policy_load_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}
