/* rv-jobs-private.h: one running job, shared by its stages (rv-jobs.c) and
 * its previews (rv-preview.c). */
#pragma once

#include "rv-engine-private.h"

G_BEGIN_DECLS

typedef struct {
  RvEngine        *e;
  const RvRequest *req;
  RvProgressFunc   progress;
  gpointer         user_data;
  RvCmd           *cmd;
  gint64           t0;
  int              image, n_images;
  int              prior_steps, decoder_steps;
  gboolean         with_prior;
  /* measured costs in seconds, for the ETA */
  double           prior_step_s, decoder_step_s, decode_s, tile_s;
  int              prior_done, decoder_done;
  gint64           step_start;
  /* previews */
  RvJobStats       stats;
  RvMovq          *movq;
  int              C, lh, lw, f;
  int              decode_every;
  RvImage         *preview;
  /* RV_JOB_EXTEND: the last frame of the wave running, the waves, the
   * canvas so far (previews show it with the running frames' estimates in
   * their empty pixels) */
  int              frame, n_frames;
  int              wave, n_waves, frames_at_once;
  const RvImage   *ext_canvas;
  const gint32    *ext_owner;
  const RvRect    *ext_rects;     /* the running wave's frames */
  int              ext_n;
  RvImage         *ext_preview;
} Job;

/* x₀ (C, h, w) → j->preview at the output size: by the linear projection
 * when there is one, else by a full MoVQ decode. */
void _rv_preview_make (Job *j, const float *x0);
/* Fits (or loads from the cache) the model's latent → RGB projection. */
void _rv_preview_ensure_projection (Job *j);

G_END_DECLS
