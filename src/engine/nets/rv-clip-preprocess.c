/* rv-clip-preprocess.c: transformers' CLIPImageProcessor on the host, with
 * Pillow's resampling (separable 8-bit passes in fixed point, as
 * libImaging/Resample.c) so pixel values match the reference. */
#include "rv-clip.h"

#include <math.h>
#include <string.h>

/* ---- Pillow's filters and its two-pass resampler ---- */

typedef struct {
  double (*fn) (double x);
  double support;
} Filter;

static double
box_filter (double x)
{
  return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
}

static double
bilinear_filter (double x)
{
  x = fabs (x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

static double
hamming_filter (double x)
{
  x = fabs (x);
  if (x == 0.0)
    return 1.0;
  if (x >= 1.0)
    return 0.0;
  x = x * G_PI;
  return sin (x) / x * (0.54f + 0.46f * cos (x));
}

static double
bicubic_filter (double x)
{
  const double a = -0.5;
  x = fabs (x);
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0)
    return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

static double
sinc_filter (double x)
{
  if (x == 0.0)
    return 1.0;
  x = x * G_PI;
  return sin (x) / x;
}

static double
lanczos_filter (double x)
{
  return -3.0 <= x && x < 3.0 ? sinc_filter (x) * sinc_filter (x / 3) : 0.0;
}

/* Fixed-point coefficients with 22 fractional bits, as Pillow's 8-bit path. */
#define PRECISION_BITS (32 - 8 - 2)

/* Per output pixel: the first input pixel, the count and `ksize` fixed-point
 * weights (Pillow's precompute_coeffs + normalize_coeffs_8bpc). */
static int
precompute_coeffs (int in_size, int out_size, const Filter *f, int **bounds_out,
                   gint32 **kk_out)
{
  double scale = (double) in_size / out_size;
  double filterscale = MAX (scale, 1.0);
  double support = f->support * filterscale;
  int ksize = (int) ceil (support) * 2 + 1;
  int *bounds = g_new (int, out_size * 2);
  gint32 *kk = g_new0 (gint32, (gsize) out_size * ksize);
  g_autofree double *k = g_new (double, ksize);
  for (int xx = 0; xx < out_size; xx++)
    {
      double center = (xx + 0.5) * scale;
      double ww = 0.0, ss = 1.0 / filterscale;
      int xmin = (int) (center - support + 0.5);
      if (xmin < 0)
        xmin = 0;
      int xmax = (int) (center + support + 0.5);
      if (xmax > in_size)
        xmax = in_size;
      xmax -= xmin;
      for (int x = 0; x < xmax; x++)
        {
          double w = f->fn ((x + xmin - center + 0.5) * ss);
          k[x] = w;
          ww += w;
        }
      for (int x = 0; x < xmax; x++)
        {
          if (ww != 0.0)
            k[x] /= ww;
          kk[(gsize) xx * ksize + x] = k[x] < 0 ? (gint32) (-0.5 + k[x] * (1 << PRECISION_BITS))
                                                : (gint32) (0.5 + k[x] * (1 << PRECISION_BITS));
        }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
  *bounds_out = bounds;
  *kk_out = kk;
  return ksize;
}

static guint8
clip8 (gint64 v)
{
  v >>= PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : (guint8) v;
}

/* One pass along an axis: `lines` lines (in_line / out_line bytes apart) of
 * in_len pixels (in_step bytes apart) resampled to out_len pixels (out_step
 * bytes apart), rounded and clipped to 8 bits. */
static void
resample_pass (const guint8 *in, guint8 *out, int channels, int lines, gsize in_line,
               gsize in_step, gsize out_line, gsize out_step, int in_len, int out_len,
               const Filter *f)
{
  g_autofree int *bounds = NULL;
  g_autofree gint32 *kk = NULL;
  int ksize = precompute_coeffs (in_len, out_len, f, &bounds, &kk);
  for (int l = 0; l < lines; l++)
    for (int xx = 0; xx < out_len; xx++)
      {
        int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
        const gint32 *k = kk + (gsize) xx * ksize;
        for (int c = 0; c < channels; c++)
          {
            gint64 ss = 1 << (PRECISION_BITS - 1);
            for (int x = 0; x < xmax; x++)
              ss += (gint64) in[l * in_line + (gsize) (x + xmin) * in_step + c] * k[x];
            out[l * out_line + (gsize) xx * out_step + c] = clip8 (ss);
          }
      }
}

/* Pillow's NEAREST: an affine scale with the source position accumulated in
 * double and truncated (ImagingScaleAffine). */
static int *
nearest_table (int in_len, int out_len)
{
  int *tab = g_new (int, out_len);
  double a = (double) in_len / out_len, o = a * 0.5;
  for (int x = 0; x < out_len; x++)
    {
      tab[x] = MIN (o < 0.0 ? 0 : (int) o, in_len - 1);
      o += a;
    }
  return tab;
}

RvImage *
rv_pil_resize (const RvImage *image, int width, int height, RvResample filter)
{
  g_return_val_if_fail (image != NULL && width > 0 && height > 0, NULL);
  int ch = image->channels, w0 = image->width, h0 = image->height;
  RvImage *out = rv_image_new (width, height, ch);
  if (width == w0 && height == h0)
    {
      memcpy (out->pixels, image->pixels, (gsize) w0 * h0 * ch);
      return out;
    }
  if (filter == RV_RESAMPLE_NEAREST)
    {
      g_autofree int *xt = nearest_table (w0, width);
      g_autofree int *yt = nearest_table (h0, height);
      for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
          memcpy (out->pixels + ((gsize) y * width + x) * ch,
                  image->pixels + ((gsize) yt[y] * w0 + xt[x]) * ch, ch);
      return out;
    }
  static const Filter filters[] = {
    [RV_RESAMPLE_LANCZOS] = { lanczos_filter, 3.0 },
    [RV_RESAMPLE_BILINEAR] = { bilinear_filter, 1.0 },
    [RV_RESAMPLE_BICUBIC] = { bicubic_filter, 2.0 },
    [RV_RESAMPLE_BOX] = { box_filter, 0.5 },
    [RV_RESAMPLE_HAMMING] = { hamming_filter, 1.0 },
  };
  const Filter *f = &filters[filter <= RV_RESAMPLE_HAMMING ? filter : RV_RESAMPLE_BICUBIC];

  /* horizontal pass (skipped when the width stays), 8-bit result, then the
   * vertical pass */
  const guint8 *src = image->pixels;
  g_autofree guint8 *mid = NULL;
  if (width != w0)
    {
      mid = g_malloc ((gsize) width * h0 * ch);
      resample_pass (src, mid, ch, h0, (gsize) w0 * ch, ch, (gsize) width * ch, ch, w0, width, f);
      src = mid;
    }
  if (height != h0)
    resample_pass (src, out->pixels, ch, width, ch, (gsize) width * ch, ch, (gsize) width * ch,
                   h0, height, f);
  else
    memcpy (out->pixels, src, (gsize) width * height * ch);
  return out;
}

/* ---- the processor ---- */

/* Python's d // 2 */
static int
floor_half (int d)
{
  return d >= 0 ? d / 2 : -((-d + 1) / 2);
}

float *
rv_clip_preprocess (const RvImageProcessorConfig *cfg, const RvImage *image, int *out_height,
                    int *out_width, GError **error)
{
  if (image == NULL || image->width < 1 || image->height < 1 ||
      (image->channels != 3 && image->channels != 4))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "The image for the CLIP image encoder must be RGB or RGBA with pixels");
      return NULL;
    }

  /* convert to RGB: PIL's convert drops alpha without compositing */
  g_autoptr (RvImage) img = rv_image_new (image->width, image->height, 3);
  gsize npx = (gsize) image->width * image->height;
  for (gsize i = 0; i < npx; i++)
    memcpy (img->pixels + i * 3, image->pixels + i * image->channels, 3);

  if (cfg->do_resize)
    {
      int w = cfg->resize_width, h = cfg->resize_height;
      if (cfg->shortest_edge > 0)
        {
          /* transformers' get_resize_output_image_size (default_to_square False) */
          int s = cfg->shortest_edge;
          int shorter = MIN (img->width, img->height), longer = MAX (img->width, img->height);
          int new_long = (int) ((double) s * longer / shorter);
          w = img->width <= img->height ? s : new_long;
          h = img->width <= img->height ? new_long : s;
        }
      if (w < 1 || h < 1)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                       "The image (%d × %d) is too narrow to resize for the CLIP image encoder",
                       image->width, image->height);
          return NULL;
        }
      RvImage *r = rv_pil_resize (img, w, h, cfg->resample);
      rv_image_free (img);
      img = r;
    }

  /* centre crop with transformers' offsets, floor ((size − crop) / 2); a crop
   * larger than the image pads it with zeros (before rescaling, as
   * transformers does) */
  int oh = img->height, ow = img->width, top = 0, left = 0;
  if (cfg->do_center_crop)
    {
      oh = cfg->crop_height;
      ow = cfg->crop_width;
      top = floor_half (img->height - oh);
      left = floor_half (img->width - ow);
    }

  float *out = g_new (float, (gsize) oh * ow * 3);
  for (int y = 0; y < oh; y++)
    for (int x = 0; x < ow; x++)
      for (int c = 0; c < 3; c++)
        {
          int sy = y + top, sx = x + left;
          guint8 u = sy >= 0 && sy < img->height && sx >= 0 && sx < img->width
                       ? img->pixels[((gsize) sy * img->width + sx) * 3 + c] : 0;
          /* rescale in double then float32; normalize in float32 */
          float v = cfg->do_rescale ? (float) ((double) u * cfg->rescale_factor) : (float) u;
          if (cfg->do_normalize)
            v = (v - cfg->image_mean[c]) / cfg->image_std[c];
          out[((gsize) y * ow + x) * 3 + c] = v;
        }
  *out_height = oh;
  *out_width = ow;
  return out;
}
