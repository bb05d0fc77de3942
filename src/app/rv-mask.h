/* rv-mask.h: the mask a user paints over a picture: strokes, clear and invert
 * as an undoable list of operations, rendered with Cairo at the picture's
 * size (alpha = repaint). No GTK: the canvas draws it, the editor sends it. */
#pragma once

#include <cairo.h>
#include <glib-object.h>

#include "reverie.h"

G_BEGIN_DECLS

#define RV_TYPE_MASK (rv_mask_get_type ())
G_DECLARE_FINAL_TYPE (RvMask, rv_mask, RV, MASK, GObject)

RvMask          *rv_mask_new          (void);
void             rv_mask_reset        (RvMask     *self,
                                       int         width,
                                       int         height);
int              rv_mask_get_width    (RvMask     *self);
int              rv_mask_get_height   (RvMask     *self);
void             rv_mask_begin_stroke (RvMask     *self,
                                       double      x,
                                       double      y,
                                       double      radius,
                                       gboolean    erase);
void             rv_mask_stroke_to    (RvMask     *self,
                                       double      x,
                                       double      y,
                                       double      radius);
void             rv_mask_end_stroke   (RvMask     *self);
void             rv_mask_clear        (RvMask     *self);
void             rv_mask_invert       (RvMask     *self);
gboolean         rv_mask_undo         (RvMask     *self);
gboolean         rv_mask_redo         (RvMask     *self);
gboolean         rv_mask_can_undo     (RvMask     *self);
gboolean         rv_mask_can_redo     (RvMask     *self);
gboolean         rv_mask_is_empty     (RvMask     *self);
cairo_surface_t *rv_mask_get_surface  (RvMask     *self);
RvImage         *rv_mask_to_image     (RvMask     *self);

G_END_DECLS
