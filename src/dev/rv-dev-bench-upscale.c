/* rv-dev-bench-upscale.c: `reverie-dev bench upscale` — the super-resolution
 * passes of a large generation (64→256, then 256→1024 for a ×4 net) timed
 * with the tiling the engine would choose, the tiled result against one
 * untiled forward of the same picture, and (--real) the published
 * Real-ESRGAN sizes measured with random weights. */
#include "config.h"

#include "rv-dev.h"
#include "rv-dev-upscale.h"
#include "rv-cli-common.h"
#include "rv-dev-scenes.h"
#include "rv-model-set.h"
#include "rv-upscale.h"
#include "rv-weight-files.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

double
rv_dev_upscaler_macs (const RvUpscalerConfig *c, int h, int w)
{
  double hw = (double) h * w, f = c->num_feat;
  if (c->arch == RV_UPSCALER_SRVGG)
    {
      double r2 = (double) c->upscale * c->upscale;
      /* every conv runs at the input's resolution */
      return hw * 9 * (c->num_in_ch * f + c->num_conv * f * f + f * c->num_out_ch * r2);
    }
  /* RRDBNet at scale 2 and 1 runs its trunk on the unshuffled picture */
  int u = rv_upscaler_config_size_multiple (c);
  double t = hw / (u * u), g = c->num_grow_ch;
  double rdb = 0;
  for (int j = 1; j <= 5; j++)
    rdb += 9 * (f + (j - 1) * g) * (j == 5 ? f : g);
  double trunk = 9 * c->num_in_ch * u * u * f + c->num_block * 3 * rdb + 9 * f * f;
  /* conv_up1 at twice the trunk's side, conv_up2, conv_hr and conv_last at four times */
  return t * trunk + 4 * t * 9 * f * f + 16 * t * (2 * 9 * f * f + 9 * f * c->num_out_ch);
}

char *
rv_dev_upscaler_describe (const RvUpscalerConfig *c)
{
  static const char *const acts[] = { "relu", "prelu", "leakyrelu" };
  if (c->arch == RV_UPSCALER_SRVGG)
    return g_strdup_printf ("SRVGGNetCompact, %d features, %d convs, %s, ×%d", c->num_feat,
                            c->num_conv, acts[c->act_type], c->upscale);
  return g_strdup_printf ("RRDBNet, %d features, %d blocks, growth %d, ×%d", c->num_feat,
                          c->num_block, c->num_grow_ch, rv_upscaler_config_scale (c));
}

char *
rv_dev_default_upscaler (GError **error)
{
  g_autofree char *dir = g_build_filename (rv_model_set_default_dir (), "upscaler", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  if (g_file_test (cfg, G_FILE_TEST_EXISTS))
    return g_steal_pointer (&dir);
  g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
               "The embedded model has no upscaler yet (%s): pass --model DIR, e.g. "
               "tests/reference/real-esrgan-tiny/models/srvgg_prelu_x4.", dir);
  return NULL;
}

float *
rv_dev_image_to_floats (const RvImage *img)
{
  gsize n = (gsize) img->width * img->height;
  float *x = g_new (float, n * 3);
  for (gsize p = 0; p < n; p++)
    for (int k = 0; k < 3; k++)
      x[p * 3 + k] = img->pixels[p * img->channels + k] / 255.0f;
  return x;
}

/* The synthetic picture: a scene of the grammar (two flat shapes with hard
 * edges on a flat background) drawn at w×h (squeezed from a square). */
static float *
synthetic (int w, int h)
{
  RvSceneSpec spec;
  rv_scene_random (7, RV_TEMPLATE_LEFT, &spec);
  RvSceneLayout l;
  rv_scene_layout (7, &spec, &l);
  g_autoptr (RvImage) sq = rv_scene_render (&l, MAX (w, h));
  float *x = g_new (float, (gsize) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int xx = 0; xx < w; xx++)
      for (int k = 0; k < 3; k++)
        x[((gsize) y * w + xx) * 3 + k] =
          sq->pixels[((gsize) (y * sq->height / h) * sq->width + xx * sq->width / w) * 3 + k] / 255.0f;
  return x;
}

static int
count_tiles (int w, int h, int tile)
{
  return ((w + tile - 1) / tile) * ((h + tile - 1) / tile);
}

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

typedef struct {
  double   ms, gflop, gflops;
  int      tiles, tile_px;
  guint64  peak;
} PassTime;

/* Best of `runs` wall-clock passes (uploads, tiles and downloads included),
 * after one untimed warm-up pass when warm. */
static gboolean
time_pass (RvUpscaler *net, RvCmd *cmd, const RvTiling *t, int w, int h, int runs, gboolean warm,
           PassTime *out, GError **error)
{
  RvDevice *dev = rv_cmd_device (cmd);
  const RvUpscalerConfig *c = rv_upscaler_config (net);
  g_autofree float *x = synthetic (w, h);
  if (warm)
    {
      g_autofree float *y = rv_upscale_pixels (net, cmd, x, h, w, t, NULL, error);
      if (y == NULL)
        return FALSE;
    }
  rv_device_trim (dev);
  rv_device_reset_peak (dev);
  double best = G_MAXDOUBLE;
  for (int r = 0; r < MAX (runs, 1); r++)
    {
      double t0 = now ();
      g_autofree float *y = rv_upscale_pixels (net, cmd, x, h, w, t, NULL, error);
      if (y == NULL)
        return FALSE;
      best = MIN (best, now () - t0);
    }
  rv_device_memory_stats (dev, NULL, &out->peak, NULL);
  out->ms = best * 1e3;
  out->gflop = 2 * rv_dev_upscaler_macs (c, h, w) * 1e-9;
  out->gflops = out->gflop / best;
  out->tiles = count_tiles (w, h, t->tile);
  out->tile_px = MIN (t->tile + 2 * t->overlap, MAX (w, h));
  return TRUE;
}

static void
add_pass (JsonBuilder *b, const char *name, int w, int h, int s, const PassTime *p)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "pass");
  json_builder_add_string_value (b, name);
  g_autofree char *in = g_strdup_printf ("%dx%d", w, h);
  g_autofree char *out = g_strdup_printf ("%dx%d", w * s, h * s);
  json_builder_set_member_name (b, "input");
  json_builder_add_string_value (b, in);
  json_builder_set_member_name (b, "output");
  json_builder_add_string_value (b, out);
  json_builder_set_member_name (b, "ms");
  json_builder_add_double_value (b, p->ms);
  json_builder_set_member_name (b, "gflop");
  json_builder_add_double_value (b, p->gflop);
  json_builder_set_member_name (b, "gflops");
  json_builder_add_double_value (b, p->gflops);
  json_builder_set_member_name (b, "tiles");
  json_builder_add_int_value (b, p->tiles);
  json_builder_set_member_name (b, "tile_px");
  json_builder_add_int_value (b, p->tile_px);
  json_builder_set_member_name (b, "peak_bytes");
  json_builder_add_int_value (b, (gint64) p->peak);
  json_builder_end_object (b);
}

static void
print_pass (const char *name, int w, int h, int s, const PassTime *p)
{
  /* ASCII, so that the columns line up */
  g_autofree char *io = g_strdup_printf ("%s %dx%d -> %dx%d", name, w, h, w * s, h * s);
  g_print ("%-30s %6d %8d %10.1f %9.2f %9.2f %10.1f\n", io, p->tiles, p->tile_px, p->ms, p->gflop,
           p->gflops, p->peak / 1048576.0);
}

/* ---- the published sizes, random weights ---- */

static const struct {
  const char *name, *config;
} real_nets[] = {
  { "realesr-general-x4v3",
    "{\"architecture\": \"SRVGGNetCompact\", \"num_in_ch\": 3, \"num_out_ch\": 3, \"num_feat\": 64, "
    "\"num_conv\": 32, \"upscale\": 4, \"act_type\": \"prelu\"}" },
  { "RealESRGAN_x4plus",
    "{\"architecture\": \"RRDBNet\", \"num_in_ch\": 3, \"num_out_ch\": 3, \"num_feat\": 64, "
    "\"num_block\": 23, \"num_grow_ch\": 32, \"scale\": 4}" },
};

static gboolean
bench_real (RvCmd *cmd, int side, gboolean json, JsonBuilder *b, GError **error)
{
  RvDevice *dev = rv_cmd_device (cmd);
  g_autofree char *tmp = g_dir_make_tmp ("reverie-bench-XXXXXX", error);
  if (tmp == NULL)
    return FALSE;
  g_autofree char *cfg_path = g_build_filename (tmp, "config.json", NULL);
  gboolean ok = TRUE;
  if (!json)
    g_print ("\npublished sizes, random weights, %d×%d input, one pass with the engine's tiling:\n"
             "%-22s %-12s %6s %8s %10s %9s %9s %10s\n", side, side, "net", "tiling", "tiles",
             "tile px", "ms", "GFLOP", "GFLOP/s", "peak MiB");
  for (guint i = 0; i < G_N_ELEMENTS (real_nets) && ok; i++)
    {
      if (!g_file_set_contents (cfg_path, real_nets[i].config, -1, error))
        {
          ok = FALSE;
          break;
        }
      rv_weights_use_random (0x5eed);
      g_autoptr (RvUpscaler) net = rv_upscaler_load (cmd, tmp, RV_WEIGHTS_AUTO, error);
      rv_weights_use_random (0);
      if (net == NULL)
        {
          ok = FALSE;
          break;
        }
      const RvUpscalerConfig *c = rv_upscaler_config (net);
      int m = rv_upscaler_config_size_multiple (c);
      int sd = (side + m - 1) / m * m;
      RvTiling t = rv_upscale_device_tiling (dev, c);
      /* build the kernels on one small tile first */
      RvTiling one = { m * 4, 0 };
      g_autofree float *small = synthetic (one.tile, one.tile);
      g_autofree float *warm = rv_upscale_pixels (net, cmd, small, one.tile, one.tile, &one, NULL, error);
      PassTime p;
      if (warm == NULL || !time_pass (net, cmd, &t, sd, sd, 1, FALSE, &p, error))
        {
          ok = FALSE;
          break;
        }
      g_autofree char *tiling = g_strdup_printf ("%d+2*%d", t.tile, t.overlap);
      if (json)
        {
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "net");
          json_builder_add_string_value (b, real_nets[i].name);
          json_builder_set_member_name (b, "tile");
          json_builder_add_int_value (b, t.tile);
          json_builder_set_member_name (b, "overlap");
          json_builder_add_int_value (b, t.overlap);
          json_builder_set_member_name (b, "weight_bytes");
          json_builder_add_int_value (b, (gint64) rv_upscaler_weight_bytes (net));
          json_builder_end_object (b);
          add_pass (b, real_nets[i].name, sd, sd, rv_upscaler_config_scale (c), &p);
        }
      else
        g_print ("%-22s %-12s %6d %8d %10.1f %9.1f %9.2f %10.1f\n", real_nets[i].name, tiling,
                 p.tiles, p.tile_px, p.ms, p.gflop, p.gflops, p.peak / 1048576.0);
      g_clear_pointer (&net, rv_upscaler_free);
      rv_device_trim (dev);
    }
  rv_weights_use_random (0);
  g_unlink (cfg_path);
  g_rmdir (tmp);
  return ok;
}

/* ---- the command ---- */

static double
psnr_of (double mse, double peak)
{
  return mse > 0 ? 10 * log10 (peak * peak / mse) : INFINITY;
}

static int
bench_upscale (const char *model, const char *device, const char *size, int runs, gboolean json,
               gboolean real, int real_size)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = model != NULL ? g_strdup (model) : rv_dev_default_upscaler (&error);
  if (dir == NULL)
    return rv_cli_error ("%s", error->message);
  int W = 1024, H = 1024;
  if (size != NULL && (sscanf (size, "%dx%d", &W, &H) != 2 || W < 1 || H < 1 || W > 16384 || H > 16384))
    return rv_cli_error ("--size takes WIDTHxHEIGHT, the size after the last pass (default 1024x1024)");
  g_autoptr (RvDevice) dev = rv_device_new (device, &error);
  if (dev == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvCmd) cmd = rv_cmd_new (dev, &error);
  if (cmd == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvUpscaler) net = rv_upscaler_load (cmd, dir, RV_WEIGHTS_AUTO, &error);
  if (net == NULL)
    return rv_cli_error ("%s", error->message);
  const RvUpscalerConfig *c = rv_upscaler_config (net);
  int s = rv_upscaler_config_scale (c), m = rv_upscaler_config_size_multiple (c);
  RvTiling t = rv_upscale_device_tiling (dev, c);
  g_autofree char *desc = rv_dev_upscaler_describe (c);

  /* the passes that make W×H from the model's native 64 px, as the engine
   * runs them: inputs W/s^k … W/s (sides rounded up to the net's multiple) */
  int n_pass = 0, pw[16], ph[16];
  if (s > 1)
    for (int w = W, h = H; n_pass < 16 && (n_pass == 0 || MAX (w, h) * s > 64); w /= s, h /= s)
      {
        if (w < m || h < m)
          break;
        pw[n_pass] = (w / s + m - 1) / m * m;
        ph[n_pass] = (h / s + m - 1) / m * m;
        n_pass++;
        if (MAX (w / s, h / s) <= 64)
          break;
      }
  else
    {
      pw[0] = W;
      ph[0] = H;
      n_pass = 1;
    }

  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "device");
  json_builder_add_string_value (b, rv_device_caps (dev)->name);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, dir);
  json_builder_set_member_name (b, "net");
  json_builder_add_string_value (b, desc);
  json_builder_set_member_name (b, "weight_bytes");
  json_builder_add_int_value (b, (gint64) rv_upscaler_weight_bytes (net));
  json_builder_set_member_name (b, "tile");
  json_builder_add_int_value (b, t.tile);
  json_builder_set_member_name (b, "overlap");
  json_builder_add_int_value (b, t.overlap);
  json_builder_set_member_name (b, "reach");
  json_builder_add_int_value (b, rv_upscaler_config_reach (c));
  json_builder_set_member_name (b, "passes");
  json_builder_begin_array (b);
  if (!json)
    {
      g_print ("device %s; upscaler %s (%s), weights %.2f MiB\n", rv_device_caps (dev)->name, dir,
               desc, rv_upscaler_weight_bytes (net) / 1048576.0);
      g_print ("engine tiling: tiles of %d px with %d px of context on each side (reach %d); "
               "best of %d warm runs, wall clock; peak device memory includes the weights\n\n",
               t.tile, t.overlap, rv_upscaler_config_reach (c), MAX (runs, 1));
      g_print ("%-30s %6s %8s %10s %9s %9s %10s\n", "pass", "tiles", "tile px", "ms", "GFLOP",
               "GFLOP/s", "peak MiB");
    }
  double total_ms = 0;
  for (int i = n_pass - 1; i >= 0; i--)
    {
      PassTime p;
      if (!time_pass (net, cmd, &t, pw[i], ph[i], runs, TRUE, &p, &error))
        return rv_cli_error ("%s", error->message);
      const char *name = i == n_pass - 1 ? "first" : i == 0 ? "last" : "middle";
      if (n_pass == 1)
        name = "only";
      total_ms += p.ms;
      if (json)
        add_pass (b, name, pw[i], ph[i], s, &p);
      else
        print_pass (name, pw[i], ph[i], s, &p);
    }
  json_builder_end_array (b);
  if (!json)
    g_print ("%-30s %6s %8s %10.1f\n", "all passes", "", "", total_ms);

  /* tiled against untiled, on the first pass's input */
  int tw = pw[n_pass - 1], th = ph[n_pass - 1];
  RvTiling whole = { (MAX (tw, th) + m - 1) / m * m, 0 };
  RvTiling small = { MAX (m, (16 + m - 1) / m * m), t.overlap };
  g_autofree float *x = synthetic (tw, th);
  g_autofree float *y0 = rv_upscale_pixels (net, cmd, x, th, tw, &whole, NULL, &error);
  g_autofree float *y1 = y0 ? rv_upscale_pixels (net, cmd, x, th, tw, &small, NULL, &error) : NULL;
  if (y1 == NULL)
    return rv_cli_error ("%s", error->message);
  gsize n = (gsize) tw * s * th * s * c->num_out_ch;
  double maxd = 0, se = 0;
  for (gsize i = 0; i < n; i++)
    {
      double d = fabs ((double) y0[i] - y1[i]);
      maxd = MAX (maxd, d);
      se += d * d;
    }
  double psnr = psnr_of (se / n, 1.0);
  gboolean exact = t.overlap >= rv_upscaler_config_reach (c);
  json_builder_set_member_name (b, "tiled_vs_untiled");
  json_builder_begin_object (b);
  g_autofree char *tin = g_strdup_printf ("%dx%d", tw, th);
  json_builder_set_member_name (b, "input");
  json_builder_add_string_value (b, tin);
  json_builder_set_member_name (b, "tile");
  json_builder_add_int_value (b, small.tile);
  json_builder_set_member_name (b, "overlap");
  json_builder_add_int_value (b, small.overlap);
  json_builder_set_member_name (b, "tiles");
  json_builder_add_int_value (b, count_tiles (tw, th, small.tile));
  json_builder_set_member_name (b, "overlap_covers_reach");
  json_builder_add_boolean_value (b, exact);
  json_builder_set_member_name (b, "max_abs_diff");
  json_builder_add_double_value (b, maxd);
  json_builder_set_member_name (b, "psnr");
  if (isinf (psnr))
    json_builder_add_null_value (b);
  else
    json_builder_add_double_value (b, psnr);
  json_builder_end_object (b);
  if (!json)
    {
      g_print ("\ntiled vs untiled, %d×%d synthetic picture (flat shapes, hard edges): %d tiles of "
               "%d px + %d px context against one forward of the whole: max |difference| %.3g, "
               "PSNR %.2f dB (network output before clamping, peak 1)%s\n", tw, th,
               count_tiles (tw, th, small.tile), small.tile, small.overlap, maxd, psnr,
               exact ? "; the overlap covers the reach, so tiles should be exact"
                     : "; the overlap is below the reach, so tile edges may differ");
    }
  g_clear_pointer (&net, rv_upscaler_free);
  rv_device_trim (dev);

  if (real)
    {
      json_builder_set_member_name (b, "real");
      json_builder_begin_array (b);
      if (!bench_real (cmd, real_size, json, b, &error))
        return rv_cli_error ("%s", error->message);
      json_builder_end_array (b);
    }
  json_builder_end_object (b);
  if (json)
    {
      g_autoptr (JsonNode) root = json_builder_get_root (b);
      g_autofree char *str = json_to_string (root, TRUE);
      g_print ("%s\n", str);
    }
  return 0;
}

int
rv_dev_bench_upscale (int argc, char **argv)
{
  char *model = NULL, *device = NULL, *size = NULL;
  int runs = 3, real_size = 256;
  gboolean json = FALSE, real = FALSE;
  GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &model, "Upscaler folder (default: the embedded model's upscaler)", "DIR" },
    { "size", 0, 0, G_OPTION_ARG_STRING, &size, "Size after the last pass (default 1024x1024: 64→256→1024 for a ×4 net)", "WxH" },
    { "runs", 0, 0, G_OPTION_ARG_INT, &runs, "Timed runs per pass after a warm-up; the best counts (default 3)", "N" },
    { "real", 0, 0, G_OPTION_ARG_NONE, &real, "Also time realesr-general-x4v3 and RealESRGAN_x4plus with random weights", NULL },
    { "real-size", 0, 0, G_OPTION_ARG_INT, &real_size, "Input side for --real (default 256)", "N" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device, "Device index or name", "N|NAME" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— time the super-resolution passes");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  int status;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    status = rv_cli_error ("%s", error->message);
  else if (runs < 1 || runs > 100)
    status = rv_cli_error ("--runs takes 1 to 100.");
  else if (real_size < 4 || real_size > 4096)
    status = rv_cli_error ("--real-size takes 4 to 4096.");
  else
    status = bench_upscale (model, device, size, runs, json, real, real_size);
  g_free (model);
  g_free (device);
  g_free (size);
  return status;
}
