/* rv-upscale.c: pictures through a super-resolution network in overlapping
 * tiles (see rv-upscale.h). Each tile is cut from the picture with its
 * context, run alone, and only its core is kept, so the result does not depend
 * on where the tiles fall as long as the context covers the network's reach. */
#include "rv-upscale.h"
#include "rv-clip.h"

#include <math.h>
#include <string.h>

/* Overlap above this is not worth its cost: networks that see further get
 * tiles that differ slightly from one pass near their edges. */
#define MAX_OVERLAP 16

static int
round_up (int v, int m)
{
  return (v + m - 1) / m * m;
}

RvTiling
rv_upscale_tiling (const RvUpscalerConfig *c, guint64 budget)
{
  static const int sides[] = { 256, 192, 128, 96, 64, 48, 32, 16 };
  int m = rv_upscaler_config_size_multiple (c);
  RvTiling t = { 0, round_up (MIN (rv_upscaler_config_reach (c), MAX_OVERLAP), m) };
  for (guint i = 0; i < G_N_ELEMENTS (sides); i++)
    {
      t.tile = round_up (sides[i], m);
      int side = t.tile + 2 * t.overlap;
      if (rv_upscaler_estimate_memory (c, 1, side, side) <= budget)
        break;
    }
  return t;
}

RvTiling
rv_upscale_device_tiling (RvDevice *dev, const RvUpscalerConfig *c)
{
  guint64 in_use = 0;
  rv_device_memory_stats (dev, &in_use, NULL, NULL);
  guint64 budget = rv_device_caps (dev)->device_local_bytes / 10 * 9;
  budget = budget > in_use ? budget - in_use : 0;
  return rv_upscale_tiling (c, MIN (budget, RV_UPSCALE_TILE_BUDGET));
}

/* One tile: x rows [y0, y1) and columns [x0, x1) of the (h, w, c) picture
 * through the network; the result's rows and columns are s times as many. */
static float *
run_tile (RvUpscaler *net, RvCmd *cmd, const float *x, int w, int c, int y0, int y1, int x0,
          int x1, GError **error)
{
  int th = y1 - y0, tw = x1 - x0;
  g_autofree float *in = g_new (float, (gsize) th * tw * c);
  for (int y = 0; y < th; y++)
    memcpy (in + (gsize) y * tw * c, x + ((gsize) (y0 + y) * w + x0) * c,
            (gsize) tw * c * sizeof (float));
  gint64 shape[4] = { 1, th, tw, c };
  g_autoptr (RvTensor) t = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 4, shape, error);
  if (t == NULL)
    return NULL;
  rv_cmd_upload (cmd, t, in, rv_tensor_nbytes (t));
  g_autoptr (RvTensor) y = rv_upscaler_forward (net, cmd, t);
  float *out = y != NULL ? g_new (float, rv_tensor_numel (y)) : NULL;
  if (y != NULL)
    rv_cmd_download (cmd, y, out, rv_tensor_nbytes (y));
  if (!rv_cmd_submit (cmd, error))
    {
      g_free (out);
      return NULL;
    }
  return out;
}

/* The picture so far as 8-bit RGB(A): out floats (clamped), alpha from `alpha`. */
static RvImage *
to_image (const float *px, int h, int w, int c, const RvImage *alpha)
{
  RvImage *img = rv_image_new (w, h, alpha != NULL ? 4 : 3);
  for (gsize p = 0; p < (gsize) w * h; p++)
    {
      for (int k = 0; k < 3; k++)
        {
          float v = px[p * c + MIN (k, c - 1)];
          img->pixels[p * img->channels + k] = (guint8) lrintf (CLAMP (v, 0.0f, 1.0f) * 255.0f);
        }
      if (alpha != NULL)
        img->pixels[p * 4 + 3] = alpha->pixels[p * 3];
    }
  return img;
}

typedef struct {
  RvTileFunc     on_tile;
  gboolean       previews;
  gpointer       data;
  const RvImage *alpha;
} Progress;

static float *
upscale (RvUpscaler *net, RvCmd *cmd, const float *x, int h, int w, const RvTiling *t,
         const Progress *pr, GCancellable *cancellable, GError **error)
{
  const RvUpscalerConfig *cfg = rv_upscaler_config (net);
  int s = rv_upscaler_config_scale (cfg), c = cfg->num_in_ch, co = cfg->num_out_ch;
  int m = rv_upscaler_config_size_multiple (cfg);
  if (h % m != 0 || w % m != 0 || t->tile % m != 0 || t->overlap % m != 0 || t->tile <= 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "This upscaler needs sides that are multiples of %d (got %d×%d).", m, w, h);
      return NULL;
    }
  int ow = w * s, oh = h * s;
  g_autofree float *out = g_new (float, (gsize) ow * oh * co);
  if (pr != NULL && pr->previews)
    /* tiles not done yet show the input, nearest-upsampled */
    for (int y = 0; y < oh; y++)
      for (int xx = 0; xx < ow; xx++)
        for (int k = 0; k < co; k++)
          out[((gsize) y * ow + xx) * co + k] = x[((gsize) (y / s) * w + xx / s) * c + MIN (k, c - 1)];
  int rows = (h + t->tile - 1) / t->tile, cols = (w + t->tile - 1) / t->tile;
  for (int ty = 0; ty < rows; ty++)
    for (int tx = 0; tx < cols; tx++)
      {
        if (g_cancellable_set_error_if_cancelled (cancellable, error))
          return NULL;
        /* the core [cy0, cy1) × [cx0, cx1) and its context [y0, y1) × [x0, x1) */
        int cy0 = ty * t->tile, cy1 = MIN (h, cy0 + t->tile);
        int cx0 = tx * t->tile, cx1 = MIN (w, cx0 + t->tile);
        int y0 = MAX (0, cy0 - t->overlap), y1 = MIN (h, cy1 + t->overlap);
        int x0 = MAX (0, cx0 - t->overlap), x1 = MIN (w, cx1 + t->overlap);
        g_autofree float *tile = run_tile (net, cmd, x, w, c, y0, y1, x0, x1, error);
        if (tile == NULL)
          return NULL;
        int tw = (x1 - x0) * s;
        for (int y = cy0 * s; y < cy1 * s; y++)
          memcpy (out + ((gsize) y * ow + cx0 * s) * co,
                  tile + ((gsize) (y - y0 * s) * tw + (cx0 - x0) * s) * co,
                  (gsize) (cx1 - cx0) * s * co * sizeof (float));
        if (pr != NULL && pr->on_tile != NULL)
          {
            g_autoptr (RvImage) partial = pr->previews ? to_image (out, oh, ow, co, pr->alpha) : NULL;
            if (!pr->on_tile (ty * cols + tx + 1, rows * cols, partial, pr->data))
              {
                g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Cancelled");
                return NULL;
              }
          }
      }
  return g_steal_pointer (&out);
}

float *
rv_upscale_pixels (RvUpscaler *net, RvCmd *cmd, const float *x, int h, int w, const RvTiling *t,
                   GCancellable *cancellable, GError **error)
{
  return upscale (net, cmd, x, h, w, t, NULL, cancellable, error);
}

RvImage *
rv_upscale_image (RvUpscaler *net, RvCmd *cmd, const RvImage *in, const RvTiling *t,
                  RvTileFunc on_tile, gboolean previews, gpointer data, GCancellable *cancellable,
                  GError **error)
{
  const RvUpscalerConfig *cfg = rv_upscaler_config (net);
  if (cfg->num_in_ch != 3 || cfg->num_out_ch != 3)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "This upscaler takes %d channels and gives %d; pictures need 3 and 3.",
                   cfg->num_in_ch, cfg->num_out_ch);
      return NULL;
    }
  int s = rv_upscaler_config_scale (cfg), m = rv_upscaler_config_size_multiple (cfg);
  /* sides padded to the network's multiple by repeating the last row and
   * column; the padding is cut off the result */
  int w = round_up (in->width, m), h = round_up (in->height, m);
  g_autofree float *x = g_new (float, (gsize) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int xx = 0; xx < w; xx++)
      for (int k = 0; k < 3; k++)
        x[((gsize) y * w + xx) * 3 + k] =
          in->pixels[((gsize) MIN (y, in->height - 1) * in->width + MIN (xx, in->width - 1))
                     * in->channels + k] / 255.0f;

  /* alpha, if any, as a grey picture resized with Pillow's bicubic filter */
  g_autoptr (RvImage) alpha = NULL;
  if (in->channels == 4)
    {
      g_autoptr (RvImage) a = rv_image_new (w, h, 3);
      for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++)
          memset (a->pixels + ((gsize) y * w + xx) * 3,
                  in->pixels[((gsize) MIN (y, in->height - 1) * in->width
                              + MIN (xx, in->width - 1)) * 4 + 3], 3);
      alpha = rv_pil_resize (a, w * s, h * s, RV_RESAMPLE_BICUBIC);
    }
  Progress pr = { on_tile, previews && on_tile != NULL, data, alpha };
  g_autofree float *out = upscale (net, cmd, x, h, w, t, &pr, cancellable, error);
  if (out == NULL)
    return NULL;
  g_autoptr (RvImage) full = to_image (out, h * s, w * s, 3, alpha);
  if (w == in->width && h == in->height)
    return g_steal_pointer (&full);
  RvImage *cut = rv_image_new (in->width * s, in->height * s, full->channels);
  for (int y = 0; y < cut->height; y++)
    memcpy (cut->pixels + (gsize) y * cut->width * cut->channels,
            full->pixels + (gsize) y * full->width * full->channels,
            (gsize) cut->width * cut->channels);
  return cut;
}
