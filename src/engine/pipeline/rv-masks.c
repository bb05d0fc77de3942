/* rv-masks.c: inpainting masks: grey or alpha mask modes, the repaint region
 * at the image's size and on the latent grid, and feathered compositing that
 * puts the original pixels back outside the region. */
#include "config.h"

#include "rv-engine-private.h"

#include <math.h>
#include <string.h>

RvMaskMode
rv_mask_mode_detect (const RvImage *mask)
{
  if (mask->channels == 4)
    for (gsize p = 0; p < (gsize) mask->width * mask->height; p++)
      if (mask->pixels[p * 4 + 3] < 255)
        return RV_MASK_ALPHA;
  return RV_MASK_GREY;
}

/* The repaint region at the image's size, 1 = repaint; mask NULL = the
 * image's own transparency. */
float *
_rv_repaint_mask (const RvImage *img, const RvImage *given, RvMaskMode mode, GError **error)
{
  const RvImage *mask = given ? given : img;
  if (given == NULL)
    mode = RV_MASK_ALPHA;
  gboolean has_alpha = mask->channels == 4;
  if (mode == RV_MASK_AUTO)
    mode = rv_mask_mode_detect (mask);
  if (mode == RV_MASK_ALPHA && !has_alpha)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   given ? "The mask has no transparency: with alpha masks the transparent "
                               "pixels are the ones to repaint."
                             : "No mask was given and the image has no transparent pixels to "
                               "repaint.");
      return NULL;
    }
  /* same aspect ratio (within a pixel), any size */
  double ia = (double) img->width / img->height, ma = (double) mask->width / mask->height;
  if (fabs (ia - ma) > MAX (1.0 / img->height, 1.0 / mask->height) * ia * 1.5)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "The mask is %d×%d but the image is %d×%d: they must have the same shape "
                   "(aspect ratio).", mask->width, mask->height, img->width, img->height);
      return NULL;
    }
  g_autoptr (RvImage) grey = rv_image_new (mask->width, mask->height, 3);
  for (gsize p = 0; p < (gsize) mask->width * mask->height; p++)
    {
      const guint8 *px = mask->pixels + p * mask->channels;
      guint8 v;
      if (mode == RV_MASK_ALPHA)
        v = px[3] < 128 ? 255 : 0;      /* transparent = repaint */
      else
        v = (guint8) ((px[0] * 299 + px[1] * 587 + px[2] * 114 + 500) / 1000);
      memset (grey->pixels + p * 3, v, 3);
    }
  g_autoptr (RvImage) sized = rv_pil_resize (grey, img->width, img->height, RV_RESAMPLE_NEAREST);
  gsize n = (gsize) img->width * img->height;
  float *m = g_new (float, n);
  gsize count = 0;
  for (gsize p = 0; p < n; p++)
    {
      m[p] = sized->pixels[p * 3] >= 128 ? 1.0f : 0.0f;
      count += m[p] > 0;
    }
  if (count == 0 || count == n)
    {
      g_free (m);
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   count == 0 ? "The mask marks nothing to repaint (%s)."
                              : "The mask marks the whole image (%s); use generate or variations "
                                "instead.",
                   mode == RV_MASK_ALPHA ? "transparent pixels are repainted"
                                         : "white pixels are repainted");
      return NULL;
    }
  return m;
}

/* The repaint region (1 = repaint) of a width × height image on the latent
 * grid of the working size: resized with PIL's Lanczos (as diffusers),
 * binarized, then reduced to lh × lw. */
float *
_rv_repaint_mask_latent (const float *repaint, int width, int height, int work_width,
                         int work_height, int lh, int lw, gboolean grow)
{
  g_autoptr (RvImage) mimg = rv_image_new (width, height, 3);
  for (gsize p = 0; p < (gsize) mimg->width * mimg->height; p++)
    memset (mimg->pixels + p * 3, repaint[p] > 0 ? 255 : 0, 3);
  g_autoptr (RvImage) msized = rv_pil_resize (mimg, work_width, work_height, RV_RESAMPLE_LANCZOS);
  g_autofree float *mwork = g_new (float, (gsize) work_width * work_height);
  for (gsize p = 0; p < (gsize) work_width * work_height; p++)
    mwork[p] = msized->pixels[p * 3] / 255.0f >= 0.5f ? 1.0f : 0.0f;
  return rv_pipe_inpaint_mask_grown (mwork, work_height, work_width, lh, lw, grow);
}

/* Box blur of radius r, in place, separable. */
static void
box_blur (float *m, int w, int h, int r)
{
  g_autofree float *tmp = g_new (float, (gsize) w * h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        double s = 0;
        int n = 0;
        for (int k = MAX (0, x - r); k <= MIN (w - 1, x + r); k++, n++)
          s += m[(gsize) y * w + k];
        tmp[(gsize) y * w + x] = (float) (s / n);
      }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        double s = 0;
        int n = 0;
        for (int k = MAX (0, y - r); k <= MIN (h - 1, y + r); k++, n++)
          s += tmp[(gsize) k * w + x];
        m[(gsize) y * w + x] = (float) (s / n);
      }
}

/* Puts the original pixels back outside the repaint region; with a feather
 * radius the blend ramps up inside the region, never outside it. */
RvImage *
_rv_composite (const RvImage *orig, const RvImage *gen, const float *repaint, float feather)
{
  int w = orig->width, h = orig->height;
  gsize n = (gsize) w * h;
  g_autoptr (RvImage) g = rv_pil_resize (gen, w, h, RV_RESAMPLE_BICUBIC);
  g_autofree float *alpha = g_memdup2 (repaint, n * sizeof (float));
  int r = (int) lroundf (feather);
  if (r > 0)
    {
      box_blur (alpha, w, h, r);
      for (gsize p = 0; p < n; p++)
        alpha[p] = repaint[p] > 0 ? CLAMP (2.0f * alpha[p] - 1.0f, 0.0f, 1.0f) : 0.0f;
    }
  RvImage *out = rv_image_new (w, h, orig->channels);
  for (gsize p = 0; p < n; p++)
    for (int c = 0; c < orig->channels; c++)
      {
        guint8 o = orig->pixels[p * orig->channels + c];
        if (c == 3)
          {
            out->pixels[p * 4 + 3] = repaint[p] > 0 ? 255 : o;
            continue;
          }
        float a = alpha[p];
        out->pixels[p * orig->channels + c] =
          a <= 0 ? o : (guint8) lrintf (a * g->pixels[p * 3 + c] + (1 - a) * o);
      }
  return out;
}
