/* rv-engine-private.h: the engine object, shared by rv-engine.c (models and
 * lifetime), rv-jobs.c (running requests), rv-preview.c and rv-masks.c. */
#pragma once

#include "reverie.h"
#include "rv-pipeline.h"
#include "rv-model-files.h"
#include "rv-random.h"
#include "rv-upscaler.h"

G_BEGIN_DECLS

struct _RvEngine {
  gint                   ref_count;
  GMutex                 lock;           /* one job at a time */
  RvDevice              *dev;            /* replaced when it is lost */
  char                  *device_selector;
  char                  *device_name;
  RvWeightPolicy         policy;
  char                  *prior_dir, *decoder_dir, *inpaint_dir;
  char                  *model_name;
  char                  *model_hash;
  RvDefaults             defaults;

  RvSchedulerConfig      prior_sched;
  RvSchedulerConfig      decoder_sched;
  RvSchedulerConfig      inpaint_sched;
  RvImageProcessorConfig improc;
  gboolean               have_improc;
  RvVQConfig             vq;

  /* super-resolution: the model set's upscaler (reverie.json "upscaler")
   * unless one was chosen; loaded when first needed */
  char                  *set_upscaler_dir;
  char                  *upscaler_dir, *upscaler_name, *upscaler_hash;
  RvUpscalerConfig       upscaler_cfg;
  RvUpscaler            *upscaler;
  int                    native_size;    /* largest side generated directly */
  int                    extend_frame;   /* largest side an outpainting frame fills in one pass */

  /* loaded when first needed */
  RvTokenizer           *tokenizer;
  RvClipText            *text;
  RvPrior               *prior;
  RvClipVision          *vision;
  RvUNet                *unet, *unet_inpaint;
  RvMovq                *movq, *movq_inpaint;
  float                 *zero_embed;
  int                    embed_dim;

  /* previews: latent → RGB, fitted once per model */
  gboolean               have_projection;
  float                  projection[9][3];    /* C ≤ 8 latent channels + bias */
  guint64                peak;
  RvJobStats             stats;        /* of the last job */
};

/* After the device was lost: drops every loaded component and opens the
 * device again; FALSE with an error saying to restart when it cannot. */
gboolean _rv_engine_recover_device (RvEngine *e, GError **error);
gboolean _rv_engine_need_prior (RvEngine *e, RvCmd *cmd, GError **error);
gboolean _rv_engine_need_vision (RvEngine *e, RvCmd *cmd, GError **error);
gboolean _rv_engine_need_decoder (RvEngine *e, RvCmd *cmd, gboolean inpaint, GError **error);
gboolean _rv_engine_need_zero_embed (RvEngine *e, RvCmd *cmd, GError **error);
gboolean _rv_engine_need_upscaler (RvEngine *e, RvCmd *cmd, GError **error);

/* The repaint region of an inpainting request at the image's size (1 =
 * repaint), from the mask (NULL = the image's own alpha) in the given mode;
 * NULL with an error for unusable masks. Host only, for the fuzz target too. */
float   *_rv_repaint_mask (const RvImage *img, const RvImage *mask, RvMaskMode mode, GError **error);
/* The repaint region of a width × height image on the lh × lw latent grid of
 * the work_width × work_height working size; `grow`: widened by the
 * pipeline's stencil (rv_pipe_inpaint_mask_grown). */
float   *_rv_repaint_mask_latent (const float *repaint, int width, int height, int work_width,
                                  int work_height, int lh, int lw, gboolean grow);
/* The generated image over the original inside the repaint region, ramped in
 * over `feather` pixels; the original everywhere else. */
RvImage *_rv_composite (const RvImage *orig, const RvImage *gen, const float *repaint,
                        float feather);

/* ---- outpainting (rv-extend.c) ---- */

typedef struct {
  int     width, height;    /* the canvas */
  int     ox, oy;           /* where the source sits on it */
  int     fw, fh;           /* frame size */
  gint32 *owner;            /* per canvas pixel: 0 = a source pixel kept, −1 = empty */
  GArray *frames;           /* RvRect, in the order they run */
  GArray *waves;            /* int per frame: the batch it runs in (frame_waves) */
} RvExtendPlan;

/* The plan of an extend request (rv_engine_plan_extend) with frames of at
 * most native × native; NULL with RV_ERROR_INVALID. Host only. */
RvExtendPlan *_rv_extend_plan (const RvRequest *req, int native, GError **error);
void          _rv_extend_plan_free (RvExtendPlan *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvExtendPlan, _rv_extend_plan_free)
/* The source on the empty canvas (its channels; empty pixels 0). */
RvImage      *_rv_extend_canvas (const RvExtendPlan *p, const RvImage *src);
/* Frame r of the canvas as RGB with its empty pixels (owner < 0) given the
 * nearest filled colour; repaint (r.width·r.height) gets 1 for them. */
RvImage      *_rv_extend_crop (const RvImage *canvas, const gint32 *owner, RvRect r,
                               float *repaint);
/* Frame `index`'s output (RGB, r's size) into the canvas: its empty pixels,
 * and a feathered blend into pixels of earlier frames; owner is updated. */
void          _rv_extend_paste (RvImage *canvas, gint32 *owner, RvRect r, const RvImage *gen,
                                int index, float feather);
/* Frame r as the image encoder sees it for the frame's conditioning: the
 * empty pixels in the median colour of the filled ones. */
RvImage      *_rv_extend_context_crop (const RvImage *canvas, const gint32 *owner, RvRect r);
/* Once every frame is in: the seams between frames, and between a frame and
 * the source, redrawn as short ramps (the source's pixels untouched). */
void          _rv_extend_smooth_seams (RvImage *canvas, const gint32 *owner);

G_END_DECLS
