/* rv-unet.h: the Kandinsky 2.2 decoder UNet (UNet2DConditionModel with image
 * conditioning and added-KV attention, docs/model-spec.md §7). */
#pragma once

#include "rv-net-common.h"

G_BEGIN_DECLS

typedef struct _RvUNet RvUNet;

/* dir: the unet folder. */
RvUNet      *rv_unet_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error);
void         rv_unet_free (RvUNet *m);
const RvUNetConfig *rv_unet_config (RvUNet *m);
/* sample: device (batch, h, w, in_channels) channel-last; timesteps: host,
 * one per batch row; image_embeds: device (batch, encoder_hid_dim). Returns
 * (batch, h, w, out_channels). NULL when recording failed. */
RvTensor    *rv_unet_forward (RvUNet *m, RvCmd *cmd, const RvTensor *sample,
                              const float *timesteps, const RvTensor *image_embeds);

/* What the forwards of a denoising loop share, since their image_embeds are
 * the same: the image's part of the time embedding, and every attention
 * block's keys and values of the image context; and, given the loop's
 * timesteps (n_steps rows of one per batch row, or NULL), the time embedding
 * of every step and each resnet's projection of it, in one product per
 * resnet. rv_unet_condition records them once (NULL when recording failed);
 * rv_unet_forward_cond is then rv_unet_forward with those image_embeds,
 * without computing them again, and for timesteps equal to one of those
 * rows without its time embedding. */
typedef struct _RvUNetCond RvUNetCond;

RvUNetCond  *rv_unet_condition (RvUNet *m, RvCmd *cmd, const RvTensor *image_embeds,
                                const float *timesteps, int n_steps);
/* Device memory the per-step projections of rv_unet_condition take, on top
 * of rv_unet_estimate_memory. */
guint64      rv_unet_condition_bytes (const RvUNetConfig *c, int batch, int n_steps);
void         rv_unet_cond_free (RvUNetCond *cond);
RvTensor    *rv_unet_forward_cond (RvUNet *m, RvCmd *cmd, const RvTensor *sample,
                                   const float *timesteps, const RvUNetCond *cond);
/* Bytes of device memory the weights took at load. */
guint64      rv_unet_weight_bytes (RvUNet *m);
/* Peak device memory of one forward's activations (weights excluded) for a
 * batch of height × width latents, in bytes; 0 when the config cannot run
 * that size. Lets a pipeline tell the user before a run that cannot fit. */
guint64      rv_unet_estimate_memory (const RvUNetConfig *c, int batch, int height, int width);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvUNet, rv_unet_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvUNetCond, rv_unet_cond_free)

G_END_DECLS
