/* rv-gallery-item.c: one picture of the gallery: its file, its recipe and a
 * thumbnail loaded off the main thread when first shown. */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#include "rv-gallery-item.h"
#include "rv-util.h"

#define THUMBNAIL_SIZE 256

struct _RvGalleryItem
{
  GObject     parent_instance;

  /* owned */
  char       *path;
  RvRecipe   *recipe;
  char       *title;
  char       *folded;        /* prompts, case-folded, for search */
  gint64      created;
  GdkTexture *thumbnail;
  gboolean    loading;
};

G_DEFINE_FINAL_TYPE (RvGalleryItem, rv_gallery_item, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_THUMBNAIL,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
rv_gallery_item_dispose (GObject *object)
{
  RvGalleryItem *self = RV_GALLERY_ITEM (object);
  g_clear_object (&self->thumbnail);
  G_OBJECT_CLASS (rv_gallery_item_parent_class)->dispose (object);
}

static void
rv_gallery_item_finalize (GObject *object)
{
  RvGalleryItem *self = RV_GALLERY_ITEM (object);
  g_free (self->path);
  g_clear_pointer (&self->recipe, rv_recipe_free);
  g_free (self->title);
  g_free (self->folded);
  G_OBJECT_CLASS (rv_gallery_item_parent_class)->finalize (object);
}

static void
rv_gallery_item_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  RvGalleryItem *self = RV_GALLERY_ITEM (object);
  switch (prop_id)
    {
    case PROP_THUMBNAIL:
      g_value_set_object (value, self->thumbnail);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rv_gallery_item_class_init (RvGalleryItemClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->dispose = rv_gallery_item_dispose;
  object_class->finalize = rv_gallery_item_finalize;
  object_class->get_property = rv_gallery_item_get_property;

  properties[PROP_THUMBNAIL] =
    g_param_spec_object ("thumbnail", NULL, NULL, GDK_TYPE_TEXTURE,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
rv_gallery_item_init (RvGalleryItem *self)
{
}

/* Takes recipe. Safe to call from a worker thread. */
RvGalleryItem *
rv_gallery_item_new (const char *path, RvRecipe *recipe)
{
  g_return_val_if_fail (path != NULL && recipe != NULL, NULL);
  RvGalleryItem *self = g_object_new (RV_TYPE_GALLERY_ITEM, NULL);
  self->path = g_strdup (path);
  self->recipe = recipe;
  self->title = _rv_recipe_title (recipe);
  g_autofree char *text = g_strjoin (" ", recipe->prompt ? recipe->prompt : "",
                                     recipe->negative_prompt ? recipe->negative_prompt : "",
                                     recipe->kind ? recipe->kind : "", NULL);
  self->folded = g_utf8_casefold (text, -1);
  self->created = recipe->created;
  if (self->created <= 0)
    {
      GStatBuf st;
      if (g_stat (path, &st) == 0)
        self->created = st.st_mtime;
    }
  return self;
}

const char *
rv_gallery_item_get_path (RvGalleryItem *self)
{
  return self->path;
}

const RvRecipe *
rv_gallery_item_get_recipe (RvGalleryItem *self)
{
  return self->recipe;
}

const char *
rv_gallery_item_get_title (RvGalleryItem *self)
{
  return self->title;
}

gint64
rv_gallery_item_get_created (RvGalleryItem *self)
{
  return self->created;
}

/* folded_query: case-folded (g_utf8_casefold); every word must occur. */
gboolean
rv_gallery_item_matches (RvGalleryItem *self, const char *folded_query)
{
  g_auto (GStrv) words = g_strsplit_set (folded_query, " \t\n", -1);
  for (guint i = 0; words[i] != NULL; i++)
    if (words[i][0] != '\0' && strstr (self->folded, words[i]) == NULL)
      return FALSE;
  return TRUE;
}

/* ---- thumbnails ---- */

static void
load_thumbnail_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  const char *path = data;
  int width = 0, height = 0;
  GError *error = NULL;
  if (gdk_pixbuf_get_file_info (path, &width, &height) == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "Not a picture");
      return;
    }
  /* small pictures stay as they are (the view scales them) */
  int size = MIN (THUMBNAIL_SIZE, MAX (width, height));
  GdkPixbuf *pixbuf = gdk_pixbuf_new_from_file_at_scale (path, size, size, TRUE, &error);
  if (pixbuf == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, pixbuf, g_object_unref);
}

static void
on_thumbnail_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (RvGalleryItem) self = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GdkPixbuf) pixbuf = g_task_propagate_pointer (G_TASK (result), &error);
  if (pixbuf == NULL)
    {
      g_debug ("No thumbnail for %s: %s", self->path, error->message);
      return;
    }
  g_autoptr (GdkTexture) texture = gdk_texture_new_for_pixbuf (pixbuf);
  rv_gallery_item_set_thumbnail (self, texture);
}

/* The thumbnail, or NULL while it loads (then notify::thumbnail). */
GdkTexture *
rv_gallery_item_get_thumbnail (RvGalleryItem *self)
{
  g_return_val_if_fail (RV_IS_GALLERY_ITEM (self), NULL);
  if (self->thumbnail == NULL && !self->loading)
    {
      self->loading = TRUE;
      g_autoptr (GTask) task = g_task_new (NULL, NULL, on_thumbnail_loaded, g_object_ref (self));
      g_task_set_task_data (task, g_strdup (self->path), g_free);
      g_task_run_in_thread (task, load_thumbnail_thread);
    }
  return self->thumbnail;
}

void
rv_gallery_item_set_thumbnail (RvGalleryItem *self, GdkTexture *thumbnail)
{
  g_return_if_fail (RV_IS_GALLERY_ITEM (self));
  if (g_set_object (&self->thumbnail, thumbnail))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THUMBNAIL]);
}
