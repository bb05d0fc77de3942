/* rv-clip.h: CLIP text and vision encoders with projection (docs/model-spec.md §4–5)
 * and the CLIP image processor. */
#pragma once

#include "rv-blocks.h"

G_BEGIN_DECLS

typedef struct _RvClipText RvClipText;

/* dir: the text_encoder folder (config.json + weights). */
RvClipText *rv_clip_text_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy,
                               GError **error);
void        rv_clip_text_free (RvClipText *m);
const RvClipTextConfig *rv_clip_text_config (RvClipText *m);
/* ids: (batch, L) token ids on the host, L = max_position_embeddings or less.
 * Records the forward on cmd; returns new device tensors last_hidden_state
 * (batch, L, hidden) and text_embeds (batch, projection) (either out-pointer
 * may be NULL). FALSE when recording failed (the error is on cmd). */
gboolean    rv_clip_text_forward (RvClipText *m, RvCmd *cmd, const gint32 *ids, int batch, int len,
                                  RvTensor **last_hidden_state, RvTensor **text_embeds);

typedef struct _RvClipVision RvClipVision;

/* dir: the image_encoder folder. */
RvClipVision *rv_clip_vision_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy,
                                   GError **error);
void          rv_clip_vision_free (RvClipVision *m);
const RvClipVisionConfig *rv_clip_vision_config (RvClipVision *m);
/* pixel_values: device (batch, image_size, image_size, channels), channel-last.
 * Returns image_embeds (batch, projection) and, if asked, last_hidden_state
 * (batch, 1 + patches, hidden). */
gboolean      rv_clip_vision_forward (RvClipVision *m, RvCmd *cmd, const RvTensor *pixel_values,
                                      RvTensor **image_embeds, RvTensor **last_hidden_state);

/* CLIPImageProcessor on the host: resize (PIL's filter of the config, e.g.
 * bicubic) so the short side is shortest_edge, centre crop, rescale,
 * normalize. Returns (crop_h, crop_w, 3) channel-last floats (g_free). */
float        *rv_clip_preprocess (const RvImageProcessorConfig *cfg, const RvImage *image,
                                  int *out_height, int *out_width, GError **error);

/* Pillow's Image.resize of an 8-bit image (filters by PIL's numbering; the
 * channels are resampled independently, as PIL does for RGB): separable
 * fixed-point passes with 8-bit rounding in between, bit for bit. */
RvImage      *rv_pil_resize (const RvImage *image, int width, int height, RvResample filter);

G_END_DECLS
