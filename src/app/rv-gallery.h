/* rv-gallery.h: every picture made, newest first, across restarts: search by
 * prompt, reuse a recipe, open, variations, upscale, copy, save as, drag out, delete
 * to the trash with undo. */
#pragma once

#include <gtk/gtk.h>

#include "rv-gallery-item.h"

G_BEGIN_DECLS

#define RV_TYPE_GALLERY (rv_gallery_get_type ())
G_DECLARE_FINAL_TYPE (RvGallery, rv_gallery, RV, GALLERY, GtkWidget)

void     rv_gallery_set_folder (RvGallery      *self,
                                const char     *folder);
void     rv_gallery_add        (RvGallery      *self,
                                const char     *path,
                                const RvRecipe *recipe,
                                GdkTexture     *thumbnail);
void     rv_gallery_flush      (RvGallery      *self);
guint    rv_gallery_get_count  (RvGallery      *self);

G_END_DECLS
