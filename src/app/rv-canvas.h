/* rv-canvas.h: the picture being made or edited, drawn with zoom and pan, and
 * the mask brush over it (pointer and stylus input, translucent overlay). */
#pragma once

#include <gtk/gtk.h>

#include "rv-mask.h"

G_BEGIN_DECLS

#define RV_TYPE_CANVAS (rv_canvas_get_type ())
G_DECLARE_FINAL_TYPE (RvCanvas, rv_canvas, RV, CANVAS, GtkWidget)

GtkWidget  *rv_canvas_new         (void);
GdkTexture *rv_canvas_get_texture (RvCanvas   *self);
void        rv_canvas_set_texture (RvCanvas   *self,
                                   GdkTexture *texture,
                                   gboolean    new_picture);
RvMask     *rv_canvas_get_mask    (RvCanvas   *self);
void        rv_canvas_zoom_by     (RvCanvas   *self,
                                   double      factor);
void        rv_canvas_zoom_to_fit (RvCanvas   *self);
void        rv_canvas_set_extending (RvCanvas *self,
                                     gboolean  extending);
gboolean    rv_canvas_get_extending (RvCanvas *self);
void        rv_canvas_get_borders   (RvCanvas *self,
                                     int      *left,
                                     int      *right,
                                     int      *top,
                                     int      *bottom);
void        rv_canvas_set_borders   (RvCanvas *self,
                                     int       left,
                                     int       right,
                                     int       top,
                                     int       bottom);
void        rv_canvas_set_frames    (RvCanvas *self,
                                     GArray   *frames);

G_END_DECLS
