/* rv-editor.h: the canvas page: the picture with its mask brush tools, the
 * live progress of a job (step, progress bar, ETA, previews) and a batch of
 * results to pick from. */
#pragma once

#include <gtk/gtk.h>

#include "rv-generator.h"

G_BEGIN_DECLS

#define RV_TYPE_EDITOR (rv_editor_get_type ())
G_DECLARE_FINAL_TYPE (RvEditor, rv_editor, RV, EDITOR, GtkWidget)

void            rv_editor_set_picture    (RvEditor       *self,
                                          RvImage        *image,
                                          GdkTexture     *texture,
                                          const RvRecipe *recipe,
                                          const char     *path);
const RvImage  *rv_editor_get_image      (RvEditor       *self);
const char     *rv_editor_get_path       (RvEditor       *self);
const RvRecipe *rv_editor_get_recipe     (RvEditor       *self);
RvImage        *rv_editor_get_mask_image (RvEditor       *self);
double          rv_editor_get_feather    (RvEditor       *self);
void            rv_editor_job_started    (RvEditor       *self,
                                          RvJobKind       kind,
                                          int             n_images);
void            rv_editor_job_progress   (RvEditor       *self,
                                          int             stage,
                                          int             image,
                                          int             n_images,
                                          int             step,
                                          int             steps,
                                          double          fraction,
                                          double          eta,
                                          GdkTexture     *preview,
                                          int             frame,
                                          int             n_frames,
                                          int             frames_at_once);
void            rv_editor_set_generator  (RvEditor       *self,
                                          RvGenerator    *generator);
void            rv_editor_get_borders    (RvEditor       *self,
                                          int            *left,
                                          int            *right,
                                          int            *top,
                                          int            *bottom);
void            rv_editor_job_finished   (RvEditor       *self,
                                          GPtrArray      *outputs,
                                          const char     *status);

G_END_DECLS
