/* rv-upscaler.h: super-resolution networks of the Real-ESRGAN family
 * (docs/model-spec.md §13): SRVGGNetCompact and RRDBNet, from a config.json
 * with the class's constructor arguments and a safetensors file with the
 * PyTorch state-dict names. */
#pragma once

#include "rv-net-common.h"

G_BEGIN_DECLS

typedef enum {
  RV_UPSCALER_SRVGG,        /* SRVGGNetCompact */
  RV_UPSCALER_RRDB,         /* RRDBNet */
} RvUpscalerArch;

typedef enum {
  RV_UPSCALER_ACT_RELU,
  RV_UPSCALER_ACT_PRELU,    /* one slope per channel */
  RV_UPSCALER_ACT_LEAKY,    /* slope 0.1 */
} RvUpscalerAct;

typedef struct {
  RvUpscalerArch arch;
  int            num_in_ch, num_out_ch, num_feat;
  /* SRVGGNetCompact */
  int            num_conv;
  int            upscale;             /* output scale, any integer ≥ 1 */
  RvUpscalerAct  act_type;
  /* RRDBNet */
  int            scale;               /* 1 and 2 unshuffle the input; anything else is 4 */
  int            num_block;
  int            num_grow_ch;
} RvUpscalerConfig;

gboolean rv_upscaler_config_parse (JsonObject *o, const char *origin, RvUpscalerConfig *c,
                                   GError **error);
gboolean rv_upscaler_config_load (const char *dir, RvUpscalerConfig *c, GError **error);

/* The output scale (pixels out per pixel in). */
int      rv_upscaler_config_scale (const RvUpscalerConfig *c);
/* Input sides must be multiples of this (RRDBNet at scale 2 or 1). */
int      rv_upscaler_config_size_multiple (const RvUpscalerConfig *c);
/* How far (input pixels) an output pixel sees: tiles overlapping by this
 * much give the untiled result exactly. */
int      rv_upscaler_config_reach (const RvUpscalerConfig *c);
/* Peak device memory of a forward of (batch, h, w), weights excluded. */
guint64  rv_upscaler_estimate_memory (const RvUpscalerConfig *c, int batch, int h, int w);

typedef struct _RvUpscaler RvUpscaler;

RvUpscaler             *rv_upscaler_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy,
                                          GError **error);
void                    rv_upscaler_free (RvUpscaler *u);
const RvUpscalerConfig *rv_upscaler_config (RvUpscaler *u);
guint64                 rv_upscaler_weight_bytes (RvUpscaler *u);

/* x (B, H, W, num_in_ch) f32, RGB in [0, 1] → a new (B, H·s, W·s, num_out_ch)
 * tensor, not clamped (the network's own output). Recorded on cmd; NULL
 * with the error recorded on cmd. */
RvTensor               *rv_upscaler_forward (RvUpscaler *u, RvCmd *cmd, const RvTensor *x);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvUpscaler, rv_upscaler_free)

G_END_DECLS
