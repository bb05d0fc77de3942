/* test-upscale.c: super-resolution beyond the reference cases: tiled runs
 * against one pass (exact where the overlap covers the network's reach), the
 * memory estimate against the measured peak, pictures with alpha and odd
 * sides, and bad models and inputs as clear errors. */
#include "rv-test-util.h"
#include "rv-upscale.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static RvUpscaler *
load (const char *name)
{
  g_autofree char *dir = rv_test_reference_path ("..", "real-esrgan-tiny", "models", name, NULL);
  g_autoptr (GError) error = NULL;
  RvUpscaler *u = rv_upscaler_load (rv_test_cmd (), dir, RV_WEIGHTS_F32, &error);
  g_assert_no_error (error);
  return u;
}

/* A picture with flat shapes and ramps, (h, w, 3) in [0, 1]. */
static float *
picture (int h, int w)
{
  float *x = g_new (float, (gsize) h * w * 3);
  for (int y = 0; y < h; y++)
    for (int i = 0; i < w; i++)
      {
        float *p = x + ((gsize) y * w + i) * 3;
        gboolean disc = (y - h / 2) * (y - h / 2) + (i - w / 3) * (i - w / 3) < h * h / 10;
        p[0] = disc ? 0.9f : (float) i / w;
        p[1] = disc ? 0.2f : 0.5f + 0.4f * sinf (y * 0.3f);
        p[2] = (y / 5 + i / 7) % 2 ? 0.1f : 0.7f;
      }
  return x;
}

static double
max_diff (const float *a, const float *b, gsize n)
{
  double m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

/* Tiles with the network's reach as overlap give one pass's result exactly;
 * RRDBNet, which sees further than the overlap, only nearly. */
static void
test_tiles (void)
{
  static const struct { const char *model; gboolean exact; } nets[] = {
    { "srvgg_prelu_x4", TRUE }, { "srvgg_lrelu_x4", TRUE }, { "rrdb_x2", FALSE }, { "rrdb_x4", FALSE },
  };
  for (guint n = 0; n < G_N_ELEMENTS (nets); n++)
    {
      g_autoptr (RvUpscaler) u = load (nets[n].model);
      const RvUpscalerConfig *c = rv_upscaler_config (u);
      int h = 36, w = 52, s = rv_upscaler_config_scale (c);
      g_autofree float *x = picture (h, w);
      RvTiling whole = { 64, 0 };
      RvTiling tiled = rv_upscale_tiling (c, 1 << 20);
      tiled.tile = 16;
      g_autoptr (GError) error = NULL;
      g_autofree float *a = rv_upscale_pixels (u, rv_test_cmd (), x, h, w, &whole, NULL, &error);
      g_assert_no_error (error);
      g_autofree float *b = rv_upscale_pixels (u, rv_test_cmd (), x, h, w, &tiled, NULL, &error);
      g_assert_no_error (error);
      gsize numel = (gsize) h * s * w * s * 3;
      double d = max_diff (a, b, numel);
      g_test_message ("%s: tiles of %d with overlap %d (reach %d): max |difference| %.3g",
                      nets[n].model, tiled.tile, tiled.overlap, rv_upscaler_config_reach (c), d);
      if (nets[n].exact)
        g_assert_cmpfloat (d, <=, 1e-6);
      else
        g_assert_cmpfloat (d, <, 0.05);
    }
}

/* What a forward allocates at its peak stays under the estimate, and not
 * far under it. */
static void
test_memory_estimate (void)
{
  static const char *const models[] = { "srvgg_prelu_x4", "rrdb_x4", "rrdb_x2" };
  static const int sizes[][3] = { { 1, 32, 48 }, { 2, 16, 16 }, { 1, 64, 64 } };
  RvDevice *dev = rv_test_device ();
  for (guint n = 0; n < G_N_ELEMENTS (models); n++)
    for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
      {
        g_autoptr (RvUpscaler) u = load (models[n]);
        g_autoptr (GError) error = NULL;
        g_assert_true (rv_cmd_submit (rv_test_cmd (), &error));
        const int *sz = sizes[k];
        gint64 shape[4] = { sz[0], sz[1], sz[2], 3 };
        g_autofree float *x = g_new0 (float, (gsize) sz[0] * sz[1] * sz[2] * 3);
        g_autoptr (RvTensor) t = rv_test_tensor (RV_DTYPE_F32, 4, shape, x);
        g_assert_true (rv_cmd_submit (rv_test_cmd (), &error));
        guint64 before = 0, peak = 0;
        rv_device_memory_stats (dev, &before, NULL, NULL);
        rv_device_reset_peak (dev);
        g_autoptr (RvTensor) y = rv_upscaler_forward (u, rv_test_cmd (), t);
        g_assert_true (rv_cmd_submit (rv_test_cmd (), &error));
        g_assert_no_error (error);
        rv_device_memory_stats (dev, NULL, &peak, NULL);
        guint64 used = peak - before;
        guint64 est = rv_upscaler_estimate_memory (rv_upscaler_config (u), sz[0], sz[1], sz[2]);
        g_test_message ("%s (%d, %d, %d): peak %" G_GUINT64_FORMAT " B, estimate %"
                        G_GUINT64_FORMAT " B", models[n], sz[0], sz[1], sz[2], used, est);
        g_assert_cmpuint (used, <=, est);
        g_assert_cmpuint (est, <=, 3 * used + (2u << 20));
      }
}

/* Alpha is carried over, odd sides are padded for networks that need even
 * ones, and the result has exactly s times the picture's size. */
static void
test_pictures (void)
{
  g_autoptr (RvUpscaler) u = load ("rrdb_x2");
  g_autoptr (RvImage) img = rv_image_new (13, 7, 4);
  for (gsize p = 0; p < 13 * 7; p++)
    {
      img->pixels[p * 4] = (guint8) (p * 7);
      img->pixels[p * 4 + 1] = 128;
      img->pixels[p * 4 + 2] = (guint8) (255 - p);
      img->pixels[p * 4 + 3] = p < 40 ? 0 : 255;
    }
  RvTiling t = rv_upscale_tiling (rv_upscaler_config (u), 64 << 20);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) out = rv_upscale_image (u, rv_test_cmd (), img, &t, NULL, FALSE, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (out->width, ==, 26);
  g_assert_cmpint (out->height, ==, 14);
  g_assert_cmpint (out->channels, ==, 4);
  /* the transparent top rows stay transparent, the bottom stays opaque */
  g_assert_cmpint (out->pixels[3], ==, 0);
  g_assert_cmpint (out->pixels[((gsize) 13 * 26 + 25) * 4 + 3], ==, 255);
}

static void
test_bad_input (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("rv-upscale-XXXXXX", NULL);
  g_autofree char *src = rv_test_reference_path ("..", "real-esrgan-tiny", "models", "srvgg_prelu_x4",
                                                 NULL);
  g_autofree char *weights = g_build_filename (src, "model.safetensors", NULL);
  g_autofree char *cfg = g_build_filename (tmp, "config.json", NULL);
  g_autofree char *wcopy = g_build_filename (tmp, "model.safetensors", NULL);
  gchar *data;
  gsize len;
  g_assert_true (g_file_get_contents (weights, &data, &len, NULL));
  g_assert_true (g_file_set_contents (wcopy, data, (gssize) len, NULL));
  g_free (data);
  static const struct { const char *json, *expect; } cases[] = {
    { "{\"architecture\": \"SwinIR\"}", "unknown architecture “SwinIR”" },
    { "{\"num_feat\": 16}", "no “architecture”" },
    { "{\"architecture\": \"SRVGGNetCompact\", \"num_feat\": 16, \"num_conv\": 4, \"act_type\": \"gelu\"}",
      "act_type" },
    { "{\"architecture\": \"SRVGGNetCompact\", \"num_feat\": 16, \"num_conv\": 4, \"upscale\": -2}",
      "“upscale” must be an integer" },
    /* sizes the weights do not have: the tensors are named */
    { "{\"architecture\": \"SRVGGNetCompact\", \"num_feat\": 16, \"num_conv\": 5, \"upscale\": 4}",
      "body.12.weight" },
    { "{\"architecture\": \"SRVGGNetCompact\", \"num_feat\": 16, \"num_conv\": 4, \"upscale\": 2}",
      "body.10.weight" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_true (g_file_set_contents (cfg, cases[i].json, -1, NULL));
      g_autoptr (GError) error = NULL;
      g_autoptr (RvUpscaler) u = rv_upscaler_load (rv_test_cmd (), tmp, RV_WEIGHTS_F32, &error);
      g_assert_null (u);
      g_assert_error (error, RV_ERROR, RV_ERROR_MODEL);
      if (strstr (error->message, cases[i].expect) == NULL)
        g_error ("case %u: “%s” does not say “%s”", i, error->message, cases[i].expect);
    }
  g_unlink (cfg);
  g_unlink (wcopy);
  g_rmdir (tmp);

  /* an input of the wrong channel count is an error at submit */
  g_autoptr (RvUpscaler) u = load ("srvgg_prelu_x4");
  gint64 shape[4] = { 1, 8, 8, 4 };
  g_autofree float *x = g_new0 (float, 8 * 8 * 4);
  g_autoptr (RvTensor) t = rv_test_tensor (RV_DTYPE_F32, 4, shape, x);
  g_autoptr (RvTensor) y = rv_upscaler_forward (u, rv_test_cmd (), t);
  g_assert_null (y);
  g_autoptr (GError) error = NULL;
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/upscale/tiles", test_tiles);
  rv_test_add ("/upscale/memory-estimate", test_memory_estimate);
  rv_test_add ("/upscale/pictures", test_pictures);
  rv_test_add ("/upscale/bad-input", test_bad_input);
  return g_test_run ();
}
