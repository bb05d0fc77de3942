/* test-preprocess.c: the CLIP image processor against the golden cases
 * (components image_processor.*, variation_ddpm pre.pixel_values), and
 * Pillow's resampling against a double-precision reference of the same
 * filters on random images of odd sizes. */
#include "rv-clip.h"
#include "rv-reference.h"
#include "rv-test-util.h"

#include <math.h>
#include <string.h>

static const float clip_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
static const float clip_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };

static RvImageProcessorConfig
clip_config (void)
{
  RvImageProcessorConfig c = {
    .do_resize = TRUE, .shortest_edge = 224, .resample = RV_RESAMPLE_BICUBIC,
    .do_center_crop = TRUE, .crop_height = 224, .crop_width = 224,
    .do_rescale = TRUE, .rescale_factor = 1.0 / 255, .do_normalize = TRUE,
    .do_convert_rgb = TRUE,
  };
  memcpy (c.image_mean, clip_mean, sizeof clip_mean);
  memcpy (c.image_std, clip_std, sizeof clip_std);
  return c;
}

static RvImage *
random_image (GRand *rand, int w, int h, int channels)
{
  RvImage *img = rv_image_new (w, h, channels);
  for (gsize i = 0; i < (gsize) w * h * channels; i++)
    img->pixels[i] = g_rand_int_range (rand, 0, 256);
  return img;
}

/* ---- a double-precision reference of Pillow's separable resampling ---- */

static double
ref_filter (RvResample f, double x)
{
  double ax = fabs (x);
  switch (f)
    {
    case RV_RESAMPLE_BOX:
      return x > -0.5 && x <= 0.5;
    case RV_RESAMPLE_BILINEAR:
      return ax < 1 ? 1 - ax : 0;
    case RV_RESAMPLE_HAMMING:
      return ax == 0 ? 1 : ax >= 1 ? 0 : sin (G_PI * ax) / (G_PI * ax) * (0.54 + 0.46 * cos (G_PI * ax));
    case RV_RESAMPLE_LANCZOS:
      if (ax >= 3)
        return 0;
      return ax == 0 ? 1 : 3 * sin (G_PI * ax) * sin (G_PI * ax / 3) / (G_PI * G_PI * ax * ax);
    case RV_RESAMPLE_BICUBIC:
    default:
      return ax < 1 ? (1.5 * ax - 2.5) * ax * ax + 1 : ax < 2 ? ((-0.5 * ax + 2.5) * ax - 4) * ax + 2 : 0;
    }
}

static double
ref_support (RvResample f)
{
  return f == RV_RESAMPLE_BOX ? 0.5 : f == RV_RESAMPLE_BICUBIC ? 2 : f == RV_RESAMPLE_LANCZOS ? 3 : 1;
}

/* one axis: out (lines, out_len) from in (lines, in_len) with strides, rounded to 8 bits */
static void
ref_pass (const double *in, double *out, int lines, int in_len, int out_len, gsize in_line,
          gsize in_step, gsize out_line, gsize out_step, RvResample f)
{
  double scale = (double) in_len / out_len, fs = MAX (scale, 1.0);
  double support = ref_support (f) * fs;
  for (int x = 0; x < out_len; x++)
    {
      double center = (x + 0.5) * scale;
      /* Pillow's window: round (center ± support) */
      int lo = MAX ((int) (center - support + 0.5), 0);
      int hi = MIN ((int) (center + support + 0.5), in_len);
      g_autofree double *w = g_new (double, MAX (hi - lo, 1));
      double sum = 0;
      for (int i = lo; i < hi; i++)
        sum += w[i - lo] = ref_filter (f, (i + 0.5 - center) / fs);
      for (int l = 0; l < lines; l++)
        {
          double acc = 0;
          for (int i = lo; i < hi; i++)
            acc += in[l * in_line + i * in_step] * w[i - lo] / sum;
          out[l * out_line + x * out_step] = CLAMP (floor (acc + 0.5), 0, 255);
        }
    }
}

static double *
ref_resize (const RvImage *img, int w, int h, RvResample f)
{
  int c = img->channels, w0 = img->width, h0 = img->height;
  g_autofree double *src = g_new (double, (gsize) w0 * h0 * c);
  for (gsize i = 0; i < (gsize) w0 * h0 * c; i++)
    src[i] = img->pixels[i];
  g_autofree double *mid = g_new (double, (gsize) w * h0 * c);
  double *out = g_new (double, (gsize) w * h * c);
  for (int k = 0; k < c; k++)
    {
      if (w != w0)
        ref_pass (src + k, mid + k, h0, w0, w, (gsize) w0 * c, c, (gsize) w * c, c, f);
      else
        for (gsize i = k; i < (gsize) w * h0 * c; i += c)
          mid[i] = src[i];
      if (h != h0)
        ref_pass (mid + k, out + k, w, h0, h, c, (gsize) w * c, c, (gsize) w * c, f);
      else
        for (gsize i = k; i < (gsize) w * h * c; i += c)
          out[i] = mid[i];
    }
  return out;
}

/* Every filter, up and down along each axis independently, odd sizes: within
 * one 8-bit step per pass of the double reference (the fixed-point weights
 * round differently), and mostly exact. */
static void
test_resize_reference (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);
  static const int sizes[][4] = {
    { 37, 23, 64, 11 }, { 5, 50, 17, 3 }, { 200, 3, 7, 40 }, { 31, 31, 31, 9 },
    { 12, 17, 29, 17 }, { 128, 96, 298, 224 }, { 1, 9, 4, 2 }, { 9, 1, 2, 4 },
  };
  static const RvResample filters[] = {
    RV_RESAMPLE_BICUBIC, RV_RESAMPLE_BILINEAR, RV_RESAMPLE_BOX, RV_RESAMPLE_HAMMING,
    RV_RESAMPLE_LANCZOS,
  };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
    for (guint fi = 0; fi < G_N_ELEMENTS (filters); fi++)
      {
        const int *z = sizes[s];
        g_autoptr (RvImage) img = random_image (rand, z[0], z[1], 3 + (s & 1));
        g_autoptr (RvImage) got = rv_pil_resize (img, z[2], z[3], filters[fi]);
        g_autofree double *ref = ref_resize (img, z[2], z[3], filters[fi]);
        g_assert_cmpint (got->width, ==, z[2]);
        g_assert_cmpint (got->height, ==, z[3]);
        gsize n = (gsize) z[2] * z[3] * img->channels, off = 0;
        double worst = 0;
        for (gsize i = 0; i < n; i++)
          {
            double d = fabs (got->pixels[i] - ref[i]);
            worst = MAX (worst, d);
            off += d != 0;
          }
        if (worst > 2 || off > n / 20 + 1)
          g_error ("filter %d, %d×%d → %d×%d: %zu of %zu values differ from the reference, "
                   "by up to %.0f", filters[fi], z[0], z[1], z[2], z[3], off, n, worst);
      }
}

/* NEAREST takes source pixel floor ((x + 0.5) · in / out). */
static void
test_resize_nearest (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (12);
  static const int sizes[][4] = { { 12, 5, 8, 20 }, { 7, 9, 14, 3 }, { 1, 4, 3, 1 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
    {
      const int *z = sizes[s];
      g_autoptr (RvImage) img = random_image (rand, z[0], z[1], 3);
      g_autoptr (RvImage) got = rv_pil_resize (img, z[2], z[3], RV_RESAMPLE_NEAREST);
      for (int y = 0; y < z[3]; y++)
        for (int x = 0; x < z[2]; x++)
          {
            int sx = (int) floor ((x + 0.5) * z[0] / z[2]);
            int sy = (int) floor ((y + 0.5) * z[1] / z[3]);
            g_assert_cmpmem (got->pixels + ((gsize) y * z[2] + x) * 3, 3,
                             img->pixels + ((gsize) sy * z[0] + sx) * 3, 3);
          }
    }
}

/* A constant image stays constant through every filter and size, and the
 * processor turns it into (v/255 − mean)/std. */
static void
test_constant (void)
{
  for (int f = RV_RESAMPLE_NEAREST; f <= RV_RESAMPLE_HAMMING; f++)
    {
      g_autoptr (RvImage) img = rv_image_new (53, 29, 3);
      memset (img->pixels, 77, 53 * 29 * 3);
      g_autoptr (RvImage) r = rv_pil_resize (img, 300, 13, f);
      for (gsize i = 0; i < 300 * 13 * 3; i++)
        g_assert_cmpint (r->pixels[i], ==, 77);
    }
  RvImageProcessorConfig cfg = clip_config ();
  cfg.shortest_edge = 16;
  cfg.crop_height = cfg.crop_width = 16;
  g_autoptr (RvImage) img = rv_image_new (40, 24, 4);
  for (gsize i = 0; i < 40 * 24; i++)
    memcpy (img->pixels + i * 4, (guint8[]) { 10, 128, 250, (guint8) i }, 4);
  int h, w;
  g_autoptr (GError) error = NULL;
  g_autofree float *px = rv_clip_preprocess (&cfg, img, &h, &w, &error);
  g_assert_no_error (error);
  g_assert_cmpint (h, ==, 16);
  g_assert_cmpint (w, ==, 16);
  static const guint8 v[3] = { 10, 128, 250 };
  for (int i = 0; i < h * w; i++)
    for (int c = 0; c < 3; c++)
      g_assert_cmpfloat (px[i * 3 + c], ==,
                          ((float) (v[c] * (1.0 / 255)) - clip_mean[c]) / clip_std[c]);
}

/* Resize to the short side (transformers' rounding), and centre crop offsets
 * floor ((size − crop) / 2), with zero padding when the crop is larger. */
static void
test_sizes_and_crop (void)
{
  /* an image whose pixels say where they are */
  g_autoptr (RvImage) img = rv_image_new (9, 6, 3);
  for (int y = 0; y < 6; y++)
    for (int x = 0; x < 9; x++)
      memcpy (img->pixels + (y * 9 + x) * 3, (guint8[]) { x, y, 200 }, 3);
  RvImageProcessorConfig cfg = clip_config ();
  cfg.do_resize = FALSE;
  cfg.do_rescale = cfg.do_normalize = FALSE;
  static const int crops[][4] = {
    /* crop h, w → first source row, column */
    { 4, 4, 1, 2 }, { 5, 8, 0, 0 }, { 6, 9, 0, 0 }, { 9, 12, -2, -2 }, { 7, 10, -1, -1 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (crops); i++)
    {
      cfg.crop_height = crops[i][0];
      cfg.crop_width = crops[i][1];
      int h, w;
      g_autoptr (GError) error = NULL;
      g_autofree float *px = rv_clip_preprocess (&cfg, img, &h, &w, &error);
      g_assert_no_error (error);
      g_assert_cmpint (h, ==, crops[i][0]);
      g_assert_cmpint (w, ==, crops[i][1]);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          {
            int sy = y + crops[i][2], sx = x + crops[i][3];
            gboolean inside = sy >= 0 && sy < 6 && sx >= 0 && sx < 9;
            const float *p = px + (y * w + x) * 3;
            g_assert_cmpfloat (p[0], ==, inside ? sx : 0);
            g_assert_cmpfloat (p[1], ==, inside ? sy : 0);
            g_assert_cmpfloat (p[2], ==, inside ? 200 : 0);
          }
    }

  /* short side to 224, long side int (224 · long / short) */
  cfg = clip_config ();
  cfg.do_center_crop = FALSE;
  static const int sizes[][4] = {
    { 128, 96, 298, 224 }, { 80, 112, 224, 313 }, { 224, 224, 224, 224 }, { 100, 30, 746, 224 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      g_autoptr (RvImage) src = rv_image_new (sizes[i][0], sizes[i][1], 3);
      int h, w;
      g_autoptr (GError) error = NULL;
      g_autofree float *px = rv_clip_preprocess (&cfg, src, &h, &w, &error);
      g_assert_no_error (error);
      g_assert_cmpint (w, ==, sizes[i][2]);
      g_assert_cmpint (h, ==, sizes[i][3]);
    }
}

/* ---- golden ---- */

/* The processor of the prior model on a case's uint8 image: the recorded
 * pixel values, bit for bit. */
static void
check_golden (const char *case_name, const char *image_name, const char *pixels_name)
{
  g_autofree char *dir = rv_test_reference_dir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (RvRefSet) set = rv_ref_set_open (dir, &error);
  g_assert_no_error (error);
  const RvRefCase *c = rv_ref_set_find (set, case_name);
  g_assert_nonnull (c);
  g_autoptr (RvSafetensors) st = rv_safetensors_open (c->file, &error);
  g_assert_no_error (error);
  const RvStTensor *img_t = rv_safetensors_lookup (st, image_name);
  const RvStTensor *px_t = rv_safetensors_lookup (st, pixels_name);
  g_assert_nonnull (img_t);
  g_assert_nonnull (px_t);
  g_assert_cmpint (img_t->ndim, ==, 3);

  g_autofree char *proc = rv_ref_set_resolve (set, "kandinsky-2-2-prior-tiny/image_processor");
  g_assert_nonnull (proc);
  RvImageProcessorConfig cfg;
  g_assert_true (rv_image_processor_config_load (proc, &cfg, &error));
  g_assert_no_error (error);

  g_autoptr (RvImage) img = rv_image_new (img_t->shape[1], img_t->shape[0], img_t->shape[2]);
  memcpy (img->pixels, img_t->data, img_t->nbytes);
  int h, w;
  g_autofree float *hwc = rv_clip_preprocess (&cfg, img, &h, &w, &error);
  g_assert_no_error (error);
  g_autofree float *ref = rv_st_tensor_to_f32 (px_t, &error);
  g_assert_no_error (error);
  g_assert_cmpint (px_t->shape[2], ==, h);
  g_assert_cmpint (px_t->shape[3], ==, w);

  /* the reference is (1, 3, H, W) */
  g_autofree double *ref_hwc = g_new (double, 3 * h * w);
  g_autofree float *got = g_new (float, 3 * h * w);
  gint64 differ = 0;
  for (int k = 0; k < 3; k++)
    for (int p = 0; p < h * w; p++)
      {
        ref_hwc[p * 3 + k] = ref[k * h * w + p];
        got[p * 3 + k] = hwc[p * 3 + k];
        differ += hwc[p * 3 + k] != ref[k * h * w + p];
      }
  g_test_message ("%s: %" G_GINT64_FORMAT " of %d values differ", case_name, differ, 3 * h * w);
  rv_test_assert_close (pixels_name, got, ref_hwc, 3 * h * w, 1e-7);
  g_assert_cmpint (differ, ==, 0);
}

static void
test_golden_components (void)
{
  check_golden ("components", "image_processor.in.image_uint8_hwc",
                "image_processor.out.pixel_values");
}

static void
test_golden_variation (void)
{
  check_golden ("variation_ddpm", "in.image_uint8_hwc", "pre.pixel_values");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/preprocess/resize-reference", test_resize_reference);
  rv_test_add ("/preprocess/resize-nearest", test_resize_nearest);
  rv_test_add ("/preprocess/constant", test_constant);
  rv_test_add ("/preprocess/sizes-and-crop", test_sizes_and_crop);
  rv_test_add ("/preprocess/golden-components", test_golden_components);
  rv_test_add ("/preprocess/golden-variation", test_golden_variation);
  return g_test_run ();
}
