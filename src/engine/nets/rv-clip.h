/* rv-clip.h: CLIP text and vision encoders with projection (MODEL_SPEC §4–5),
 * the CLIP image processor, and the pre-LN transformer layer stack that the
 * CLIP towers and the prior (rv-prior.c) share. */
#pragma once

#include "rv-net-common.h"

G_BEGIN_DECLS

/* One pre-LN transformer layer:
 *   x += out (attention (ln1 (x)));  x += fc2 (act (fc1 (ln2 (x))))
 * with biases everywhere. CLIP calls the parts layer_norm1, self_attn.q_proj,
 * …, mlp.fc2; the prior norm1, attn1.to_q, …, ff.net.2. */
typedef struct {
  RvTensor *ln1_w, *ln1_b;
  RvTensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
  RvTensor *ln2_w, *ln2_b;
  RvTensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} RvPreLNLayer;

/* Checkpoint names of a layer's parts, after "<prefix>.<i>.". */
typedef struct {
  const char *ln1, *q, *k, *v, *o, *ln2, *fc1, *fc2;
} RvPreLNNames;

typedef struct {
  const char         *prefix;      /* "text_model.encoder.layers" */
  const RvPreLNNames *names;
  int                 layers, hidden, heads, mlp;
  RvAct               act;
  float               eps;
} RvPreLNStack;

/* Adds every tensor of the stack, PyTorch shapes, to a manifest. */
void          rv_pre_ln_manifest (RvManifest *m, const RvPreLNStack *s);
/* Uploads the stack's layers (errors stay on the loader). */
RvPreLNLayer *rv_pre_ln_load (RvLoader *l, const RvPreLNStack *s);
void          rv_pre_ln_free (RvPreLNLayer *layers, int n_layers);
/* x (B, L, hidden) through the stack, attention scaled by head_dim^−½ with an
 * optional additive mask and causal exclusion as rv_op_attention. Consumes
 * x; returns the result, or NULL with the error on cmd. */
RvTensor     *rv_pre_ln_forward (RvCmd *cmd, const RvPreLNStack *s, const RvPreLNLayer *layers,
                                 RvTensor *x, const RvTensor *mask, gboolean causal);
/* rows (B, C) = x[b, index[b], :] of tokens x (B, L, C), by copies. */
void          rv_token_rows (RvCmd *cmd, RvTensor *rows, const RvTensor *x, const gint64 *index);

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
