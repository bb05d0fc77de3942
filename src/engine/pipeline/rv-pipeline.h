/* rv-pipeline.h: the sampling loops of the Kandinsky 2.2 pipelines
 * (docs/model-spec.md §11), independent of where the models and the noise come from:
 * the engine feeds them its RNG, the reference runner feeds recorded noise.
 *
 * Latents cross this interface on the host in the reference layout (NCHW for
 * the decoder, (rows, E) for the prior); the networks run channel-last. */
#pragma once

#include "reverie.h"
#include "rv-device.h"
#include "rv-scheduler.h"
#include "rv-tokenizer.h"
#include "rv-clip.h"
#include "rv-prior.h"
#include "rv-unet.h"
#include "rv-movq.h"

G_BEGIN_DECLS

/* A source of standard-normal draws, consumed in call order. */
typedef struct {
  gboolean (*normal) (gpointer self, float *out, gsize n, GError **error);
  gpointer self;
} RvNoise;

/* Called after every step with the latents after the step and the x₀
 * estimate of the step (both host, `len` floats). Returning FALSE stops the
 * loop as cancelled. */
typedef gboolean (*RvStepFunc) (int step, int steps, const float *latents, const float *x0,
                                gsize len, gpointer data);

/* ---- text ---- */

/* Tokenizes texts (n rows) and runs the text encoder: last_hidden_state
 * (n, L, E) and text_embeds (n, E) on the device, and the attention mask on
 * the host (n·L, 1 = token). *dropped receives the most tokens cut from any
 * row. Submits cmd. */
gboolean rv_pipe_encode_text (RvCmd *cmd, RvTokenizer *tok, RvClipText *text,
                              const char *const *texts, int n, RvTensor **hidden,
                              RvTensor **embeds, guint8 **mask, int *dropped, GError **error);

/* ---- prior ---- */

typedef struct {
  RvTokenizer             *tokenizer;
  RvClipText              *text;
  RvPrior                 *prior;
  const RvSchedulerConfig *scheduler;
  const char              *prompt;
  const char              *negative;      /* NULL: no negative prompt */
  int                      steps;
  float                    guidance;      /* ≤ 1: no classifier-free guidance */
  const float             *latents;       /* (rows, E) initial latents, or NULL: drawn */
  RvNoise                 *noise;
  const float             *zero_embed;    /* (E) negative embedding without a negative prompt */
  double                  *text_seconds;  /* if not NULL, += time spent encoding the text */
} RvPriorRun;

/* image_embeds and negative_embeds receive E floats each. */
gboolean rv_pipe_prior (RvCmd *cmd, const RvPriorRun *run, float *image_embeds,
                        float *negative_embeds, RvStepFunc step, gpointer data,
                        GCancellable *cancellable, GError **error);

/* ---- decoder ---- */

typedef enum {
  RV_DECODE_TEXT,        /* from noise */
  RV_DECODE_IMG2IMG,     /* from noised image latents, part of the schedule */
  RV_DECODE_INPAINT,     /* 9-channel UNet, known region re-imposed every step */
} RvDecodeMode;

typedef struct {
  RvUNet                  *unet;
  const RvSchedulerConfig *scheduler;
  RvSchedulerKind          kind;
  int                      steps;
  float                    guidance;      /* ≤ 1: no classifier-free guidance */
  const float             *image_embeds;  /* (E) */
  const float             *negative_embeds;
  int                      embed_dim;
  int                      channels, height, width;   /* latent (1, C, h, w) */
  const float             *latents;       /* initial noise (C·h·w) — for img2img the noise
                                           * added to the image latents —, or NULL: drawn */
  RvDecodeMode             mode;
  float                    strength;      /* img2img */
  const float             *image_latents; /* img2img, inpaint: (C·h·w) */
  const float             *mask;          /* inpaint: (h·w), 1 = keep, after erosion */
  RvNoise                 *noise;
} RvDecoderRun;

/* out_latents receives C·h·w floats (NCHW). */
gboolean rv_pipe_decoder (RvCmd *cmd, const RvDecoderRun *run, float *out_latents,
                          RvStepFunc step, gpointer data, GCancellable *cancellable,
                          GError **error);
/* n runs in one UNet batch: they share the UNet, scheduler, steps, guidance,
 * latent size and mode; each has its own embeddings, image latents, mask and
 * noise, and comes out as it would alone (up to the UNet's arithmetic on a
 * larger batch). out_latents receives n·C·h·w floats; the step callback sees
 * every run's latents and x₀ one after another (n·C·h·w floats). */
gboolean rv_pipe_decoder_batch (RvCmd *cmd, const RvDecoderRun *runs, int n, float *out_latents,
                                RvStepFunc step, gpointer data, GCancellable *cancellable,
                                GError **error);

/* The img2img timesteps actually run: the last min(int(steps·strength), steps). */
int      rv_pipe_img2img_start (int steps, float strength);

/* ---- MoVQ ---- */

/* latents (1, C, h, w) host → decoded pixels (1, 3, H, W) host NCHW, before
 * the clamp (g_free). */
float   *rv_pipe_movq_decode (RvCmd *cmd, RvMovq *movq, const float *latents, int channels,
                              int height, int width, GError **error);
/* image (1, 3, H, W) host NCHW in [−1, 1] → latents (1, C, H/f, W/f) host NCHW (g_free). */
float   *rv_pipe_movq_encode (RvCmd *cmd, RvMovq *movq, const float *image, int height, int width,
                              int *latent_channels, GError **error);
/* pixels NCHW → 8-bit RGB: clamp(x·0.5 + 0.5, 0, 1)·255 rounded */
RvImage *rv_pipe_to_image (const float *pixels, int height, int width);

/* ---- inpainting masks (docs/model-spec.md §11.4) ---- */

/* mask (H·W) with 1 = repaint (≥ 0.5) → latent mask (h·w) with 1 = keep:
 * inverted, nearest-resized (floor(dst·in/out)), then the repaint region
 * grown by the asymmetric six-neighbour stencil. */
float   *rv_pipe_inpaint_mask (const float *mask, int height, int width, int lh, int lw);
/* The same with the growth of the repaint region optional: without it the
 * kept region reaches the repaint border, for callers that put the kept
 * pixels back exactly and want the decoder to continue them, not redraw them. */
float   *rv_pipe_inpaint_mask_grown (const float *mask, int height, int width, int lh, int lw,
                                     gboolean grow);

/* ---- layout helpers ---- */

void     rv_nchw_to_nhwc (const float *src, float *dst, int n, int c, int h, int w);
void     rv_nhwc_to_nchw (const float *src, float *dst, int n, int c, int h, int w);

G_END_DECLS
