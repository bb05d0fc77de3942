/* rv-gallery-item.h: one picture of the gallery: its file, its recipe and a
 * thumbnail loaded off the main thread when first shown. */
#pragma once

#include <gtk/gtk.h>

#include "rv-image-io.h"

G_BEGIN_DECLS

#define RV_TYPE_GALLERY_ITEM (rv_gallery_item_get_type ())
G_DECLARE_FINAL_TYPE (RvGalleryItem, rv_gallery_item, RV, GALLERY_ITEM, GObject)

RvGalleryItem  *rv_gallery_item_new           (const char    *path,
                                               RvRecipe      *recipe);
const char     *rv_gallery_item_get_path      (RvGalleryItem *self);
const RvRecipe *rv_gallery_item_get_recipe    (RvGalleryItem *self);
const char     *rv_gallery_item_get_title     (RvGalleryItem *self);
gint64          rv_gallery_item_get_created   (RvGalleryItem *self);
gboolean        rv_gallery_item_matches       (RvGalleryItem *self,
                                               const char    *folded_query);
GdkTexture     *rv_gallery_item_get_thumbnail (RvGalleryItem *self);
void            rv_gallery_item_set_thumbnail (RvGalleryItem *self,
                                               GdkTexture    *thumbnail);

G_END_DECLS
