/* rv-dev-upscale.h: helpers shared by `bench upscale` and `eval-upscale`
 * (rv-dev-bench-upscale.c). */
#pragma once

#include "rv-upscale.h"

G_BEGIN_DECLS

/* Multiply-adds of the convolutions of one forward of an h×w input. */
double   rv_dev_upscaler_macs (const RvUpscalerConfig *c, int h, int w);
/* "SRVGGNetCompact, 16 features, 4 convs, prelu, ×4" (g_free). */
char    *rv_dev_upscaler_describe (const RvUpscalerConfig *c);
/* The embedded model's upscaler folder, or NULL and an error saying to pass
 * --model when it has none yet. */
char    *rv_dev_default_upscaler (GError **error);
/* 8-bit RGB(A) → (h, w, 3) floats in [0, 1] (g_free). */
float   *rv_dev_image_to_floats (const RvImage *img);

G_END_DECLS
