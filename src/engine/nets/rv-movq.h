/* rv-movq.h: the MoVQ image codec (VQModel with SpatialNorm, docs/model-spec.md §8). */
#pragma once

#include "rv-net-common.h"

G_BEGIN_DECLS

typedef struct _RvMovq RvMovq;

/* dir: the movq folder. The encoder is loaded only when with_encoder. */
RvMovq      *rv_movq_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy,
                           gboolean with_encoder, GError **error);
void         rv_movq_free (RvMovq *m);
const RvVQConfig *rv_movq_config (RvMovq *m);
/* 2^(levels − 1): pixels per latent pixel a side. */
int          rv_movq_scale_factor (RvMovq *m);
/* latents (batch, h, w, vq_embed_dim) → pixels (batch, h·f, w·f, out_channels)
 * in about [−1, 1], without codebook lookup (force_not_quantize).
 *
 * Work that would exceed the device's limits is split exactly: the result
 * is that of one whole decode. Not into tiles of the image, which could not
 * be exact: every GroupNorm and SpatialNorm takes its statistics over the
 * whole feature map, and the mid attention is global over the latent. Instead
 *   - a batch is decoded image by image (or in smaller groups) when the
 *     whole batch's activations (rv_movq_decode_peak_bytes) would not fit
 *     the device memory left beside what is allocated already;
 *   - an op whose output exceeds one storage binding (maxStorageBufferRange:
 *     128 MiB on lavapipe, which a 512² decode's 128-channel maps just fill)
 *     runs in bands of output rows, each a dispatch reading its input rows
 *     (plus the kernel's halo) in place; normalization, resampling and
 *     elementwise ops handle any size themselves.
 * A single image too large for the device memory fails with an
 * out-of-memory error. */
RvTensor    *rv_movq_decode (RvMovq *m, RvCmd *cmd, const RvTensor *latents);
/* pixels (batch, H, W, in_channels) in [−1, 1] → latents (batch, H/f, W/f, vq_embed_dim)
 * = quant_conv (encoder (x)), no quantization. Split as the decode is. */
RvTensor    *rv_movq_encode (RvMovq *m, RvCmd *cmd, const RvTensor *pixels);
/* Nearest codebook entries of latents on the host: (n, dim) → quant (n, dim),
 * indices (n). For reference checks. */
void         rv_movq_quantize (RvMovq *m, const float *latents, gsize n, float *quant,
                               gint64 *indices);

/* Estimated device memory (bytes) the activations of one decode of (batch,
 * height, width) latents, or one encode of (batch, height, width) pixels,
 * take at their peak; the weights are not included. For the published
 * MoVQ at batch 1: decode 1.1 GiB at 512², 2.5 GiB at 768²; encode 0.44 and
 * 0.99 GiB. */
guint64      rv_movq_decode_peak_bytes (RvMovq *m, int batch, int height, int width);
guint64      rv_movq_encode_peak_bytes (RvMovq *m, int batch, int height, int width);

/* Tests: pretend a storage binding holds at most binding_bytes and the
 * activations may take memory_bytes (0: the device's limits), so the split
 * paths run on small images. */
void         _rv_movq_set_limits (gsize binding_bytes, guint64 memory_bytes);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvMovq, rv_movq_free)

G_END_DECLS
