/* rv-upscale.h: pictures through a super-resolution network in overlapping
 * tiles, so device memory stays bounded for any picture size. */
#pragma once

#include "reverie.h"
#include "rv-upscaler.h"

G_BEGIN_DECLS

/* The largest picture an upscale job makes, as the image files allow. */
#define RV_UPSCALE_MAX_SIDE   16384
#define RV_UPSCALE_MAX_PIXELS (64 * 1024 * 1024)

typedef struct {
  int tile;            /* input pixels per tile side (before the overlap) */
  int overlap;         /* input pixels of context on each side of a tile */
} RvTiling;

/* The tiling of a network for a device memory budget (bytes): the largest
 * tile whose forward fits, and an overlap of the network's reach (capped for
 * networks that see very far, whose tiles then differ slightly at edges). */
RvTiling rv_upscale_tiling (const RvUpscalerConfig *c, guint64 budget);

/* Called after each tile: tiles done, tiles in all, and the picture so far
 * (tiles not yet done are the input, nearest-upsampled), or NULL when no
 * previews were asked for. FALSE stops. */
typedef gboolean (*RvTileFunc) (int done, int total, const RvImage *partial, gpointer data);

/* The tiling a job uses on `dev`: what the device has free (90 % of its
 * memory less what is in use), capped so that tiles stay fast and a
 * 1024-pixel picture stays well inside 1 GiB of host memory on a CPU device. */
#define RV_UPSCALE_TILE_BUDGET ((guint64) 192 << 20)
RvTiling rv_upscale_device_tiling (RvDevice *dev, const RvUpscalerConfig *c);

/* One pass of the network over `in` (RGB or RGBA; alpha is resized with
 * Pillow's bicubic filter), clamped to [0, 1] and rounded to 8 bits.
 * `previews`: hand on_tile the picture so far (a copy of the whole picture
 * per tile). Cancellation is checked between tiles. */
RvImage *rv_upscale_image (RvUpscaler *net, RvCmd *cmd, const RvImage *in, const RvTiling *t,
                           RvTileFunc on_tile, gboolean previews, gpointer data,
                           GCancellable *cancellable, GError **error);

/* The same on host floats (B = 1, H, W, C) in [0, 1], unclamped output
 * (H·s, W·s, C'), for measuring tiled against untiled forwards. */
float   *rv_upscale_pixels (RvUpscaler *net, RvCmd *cmd, const float *x, int h, int w,
                            const RvTiling *t, GCancellable *cancellable, GError **error);

G_END_DECLS
