/* rv-dev-eval-upscale.c: `reverie-dev eval-upscale` — how close an upscaler
 * comes to the exact picture: held-out scenes of the grammar drawn at 64×64,
 * handed over as the decoder would (through the model's MoVQ, encode and
 * decode), enlarged ×4 (and ×16, twice) with the engine's tiling and compared
 * with the same scenes drawn exactly at 256×256 (1024×1024), beside a
 * Pillow-style bicubic enlargement of the same input. */
#include "config.h"

#include "rv-dev.h"
#include "rv-dev-upscale.h"
#include "rv-cli-common.h"
#include "rv-dev-scenes.h"
#include "rv-clip.h"
#include "rv-model-set.h"
#include "rv-movq.h"
#include "rv-pipeline.h"

#include <math.h>
#include <unistd.h>

/* Seeds from here on are not used for training (tools/train/scenes.py). */
#define HELDOUT_SEED G_GINT64_CONSTANT (1000000000)

/* PSNR (dB, peak 255) of two RGB(A) pictures of one size, colour channels. */
static double
psnr8 (const RvImage *a, const RvImage *b)
{
  double se = 0;
  gsize n = (gsize) a->width * a->height;
  for (gsize p = 0; p < n; p++)
    for (int k = 0; k < 3; k++)
      {
        double d = (double) a->pixels[p * a->channels + k] - b->pixels[p * b->channels + k];
        se += d * d;
      }
  double mse = se / (n * 3);
  return mse > 0 ? 10 * log10 (255.0 * 255.0 / mse) : 99.0;
}

/* The 64×64 render as the decoder hands a picture over: MoVQ encode, then
 * decode without the codebook (as a generation's latents are decoded). */
static RvImage *
movq_round_trip (RvCmd *cmd, RvMovq *movq, const RvImage *img, GError **error)
{
  int w = img->width, h = img->height;
  gsize plane = (gsize) w * h;
  g_autofree float *x = g_new (float, 3 * plane);
  for (gsize p = 0; p < plane; p++)
    for (int k = 0; k < 3; k++)
      x[k * plane + p] = img->pixels[p * img->channels + k] / 127.5f - 1.0f;
  int c = 0;
  g_autofree float *z = rv_pipe_movq_encode (cmd, movq, x, h, w, &c, error);
  if (z == NULL)
    return NULL;
  int f = rv_movq_scale_factor (movq);
  g_autofree float *y = rv_pipe_movq_decode (cmd, movq, z, c, h / f, w / f, error);
  return y != NULL ? rv_pipe_to_image (y, h, w) : NULL;
}

typedef struct {
  double sum_net, sum_bicubic;
  double min_gain, max_gain;
  int    n;
} Score;

static void
score_add (Score *s, double net, double bicubic)
{
  double gain = net - bicubic;
  s->min_gain = s->n ? MIN (s->min_gain, gain) : gain;
  s->max_gain = s->n ? MAX (s->max_gain, gain) : gain;
  s->sum_net += net;
  s->sum_bicubic += bicubic;
  s->n++;
}

static void
score_json (const char *name, const Score *s, gboolean last)
{
  if (s->n == 0)
    {
      g_print ("\"%s\": null%s", name, last ? "" : ", ");
      return;
    }
  g_print ("\"%s\": {\"scenes\": %d, \"upscaler_psnr\": %.3f, \"bicubic_psnr\": %.3f, "
           "\"gain_db\": %.3f, \"min_gain_db\": %.3f, \"max_gain_db\": %.3f}%s", name, s->n,
           s->sum_net / s->n, s->sum_bicubic / s->n, (s->sum_net - s->sum_bicubic) / s->n,
           s->min_gain, s->max_gain, last ? "" : ", ");
}

static void
score_print (const char *name, const Score *s)
{
  if (s->n == 0)
    return;
  g_print ("%-20s %6d %10.2f %10.2f %+9.2f   %+.2f … %+.2f\n", name, s->n, s->sum_net / s->n,
           s->sum_bicubic / s->n, (s->sum_net - s->sum_bicubic) / s->n, s->min_gain, s->max_gain);
}

static int
eval_upscale (const char *model, const char *movq_dir_opt, const char *device, int n, int n_twice,
              gint64 seed, gboolean exact_input, gboolean json, const char *save_dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = model != NULL ? g_strdup (model) : rv_dev_default_upscaler (&error);
  if (dir == NULL)
    return rv_cli_error ("%s", error->message);
  g_autofree char *movq_dir = movq_dir_opt != NULL
    ? g_strdup (movq_dir_opt)
    : g_build_filename (rv_model_set_default_dir (), "decoder", "movq", NULL);
  if (save_dir != NULL)
    g_mkdir_with_parents (save_dir, 0755);
  g_autoptr (RvDevice) dev = rv_device_new (device, &error);
  if (dev == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvCmd) cmd = rv_cmd_new (dev, &error);
  if (cmd == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvUpscaler) net = rv_upscaler_load (cmd, dir, RV_WEIGHTS_AUTO, &error);
  if (net == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvMovq) movq = NULL;
  if (!exact_input && (movq = rv_movq_load (cmd, movq_dir, RV_WEIGHTS_AUTO, TRUE, &error)) == NULL)
    return rv_cli_error ("%s (pass --exact-input to upscale the exact 64×64 renders instead)",
                         error->message);
  const RvUpscalerConfig *c = rv_upscaler_config (net);
  int s = rv_upscaler_config_scale (c);
  if (s != 4)
    return rv_cli_error ("eval-upscale measures ×4 upscalers (64→256→1024); %s enlarges ×%d.", dir, s);
  RvTiling t = rv_upscale_device_tiling (dev, c);

  Score once = { 0 }, twice = { 0 }, codec = { 0 };
  int drawn_ok = 0;
  gint64 t0 = g_get_monotonic_time ();
  for (int i = 0; i < n; i++)
    {
      guint64 sd = (guint64) (seed + i);
      RvSceneSpec spec;
      rv_scene_random (sd, -1, &spec);
      RvSceneLayout l;
      rv_scene_layout (sd, &spec, &l);
      g_autoptr (RvImage) exact64 = rv_scene_render (&l, 64);
      drawn_ok += rv_scene_check (exact64, &spec, NULL, NULL);   /* the layout follows its prompt */
      g_autoptr (RvImage) in = exact_input ? rv_image_copy (exact64)
                                           : movq_round_trip (cmd, movq, exact64, &error);
      if (in == NULL)
        return rv_cli_error ("%s", error->message);
      if (!exact_input)
        score_add (&codec, psnr8 (in, exact64), psnr8 (in, exact64));
      g_autoptr (RvImage) up = rv_upscale_image (net, cmd, in, &t, NULL, FALSE, NULL, NULL, &error);
      if (up == NULL)
        return rv_cli_error ("%s", error->message);
      g_autoptr (RvImage) exact256 = rv_scene_render (&l, 256);
      g_autoptr (RvImage) bic256 = rv_pil_resize (in, 256, 256, RV_RESAMPLE_BICUBIC);
      score_add (&once, psnr8 (up, exact256), psnr8 (bic256, exact256));
      g_autoptr (RvImage) up2 = NULL;
      if (i < n_twice)
        {
          up2 = rv_upscale_image (net, cmd, up, &t, NULL, FALSE, NULL, NULL, &error);
          if (up2 == NULL)
            return rv_cli_error ("%s", error->message);
          g_autoptr (RvImage) exact1024 = rv_scene_render (&l, 1024);
          g_autoptr (RvImage) bic1024 = rv_pil_resize (in, 1024, 1024, RV_RESAMPLE_BICUBIC);
          score_add (&twice, psnr8 (up2, exact1024), psnr8 (bic1024, exact1024));
        }
      if (save_dir != NULL)
        {
          const RvImage *pics[] = { in, up, exact256, bic256 };
          const char *names[] = { "input64", "upscaled256", "exact256", "bicubic256" };
          for (guint k = 0; k < G_N_ELEMENTS (pics); k++)
            {
              g_autofree char *name = g_strdup_printf ("%04d-%s.png", i, names[k]);
              g_autofree char *path = g_build_filename (save_dir, name, NULL);
              rv_image_save_png (pics[k], path, NULL, NULL);
            }
        }
      if (!json && isatty (2))
        g_printerr ("\r%d/%d", i + 1, n);
    }
  if (!json && isatty (2))
    g_printerr ("\r\033[K");
  double seconds = (g_get_monotonic_time () - t0) / 1e6;
  const char *input = exact_input ? "exact 64x64 render" : "exact 64x64 render through the MoVQ (encode + decode)";
  if (json)
    {
      g_print ("{\"upscaler\": \"%s\", \"input\": \"%s\", \"first_seed\": %" G_GINT64_FORMAT
               ", \"scenes_following_prompt\": %d, \"tile\": %d, \"overlap\": %d, \"seconds\": %.1f, ",
               dir, input, seed, drawn_ok, t.tile, t.overlap, seconds);
      if (!exact_input)
        g_print ("\"movq\": \"%s\", \"movq_round_trip_psnr\": %.3f, ", movq_dir, codec.sum_net / MAX (codec.n, 1));
      score_json ("x4", &once, FALSE);
      score_json ("x16", &twice, TRUE);
      g_print ("}\n");
      return 0;
    }
  g_autofree char *desc = rv_dev_upscaler_describe (c);
  g_print ("upscaler %s (%s); engine tiling %d px + %d px context; %.1f s\n", dir, desc, t.tile,
           t.overlap, seconds);
  g_print ("input: the %s; held-out scenes from seed %" G_GINT64_FORMAT " (%d of %d drawn "
           "follow their prompt by the checker)\n", input, seed, drawn_ok, n);
  if (!exact_input)
    g_print ("MoVQ %s: the 64×64 input is %.2f dB from the exact render\n", movq_dir,
             codec.sum_net / MAX (codec.n, 1));
  g_print ("\nPSNR against the exact render (dB, mean over scenes; bicubic: Pillow's, of the same input, in one step)\n");
  g_print ("%-20s %6s %10s %10s %9s   %s\n", "", "scenes", "upscaler", "bicubic", "gain", "gain range");
  score_print ("×4  (64→256)", &once);
  score_print ("×16 (64→256→1024)", &twice);
  return 0;
}

int
rv_dev_eval_upscale (int argc, char **argv)
{
  char *model = NULL, *movq = NULL, *device = NULL, *save_dir = NULL;
  int n = 20, n_twice = -1;
  gint64 seed = HELDOUT_SEED;
  gboolean json = FALSE, exact_input = FALSE;
  GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &model, "Upscaler folder (default: the embedded model's upscaler)", "DIR" },
    { "n", 0, 0, G_OPTION_ARG_INT, &n, "Scenes (default 20)", "N" },
    { "twice", 0, 0, G_OPTION_ARG_INT, &n_twice, "Of those, scenes also enlarged twice to 1024×1024 (default N/4)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "First scene seed (default 1000000000, the first held-out one)", "S" },
    { "movq", 0, 0, G_OPTION_ARG_FILENAME, &movq, "MoVQ folder the inputs go through (default: the embedded model's decoder/movq)", "DIR" },
    { "exact-input", 0, 0, G_OPTION_ARG_NONE, &exact_input, "Enlarge the exact 64×64 renders, not their MoVQ round trip", NULL },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device, "Device index or name", "N|NAME" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "save", 0, 0, G_OPTION_ARG_FILENAME, &save_dir, "Keep the pictures of the ×4 comparison in DIR", "DIR" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— measure an upscaler against exact renders");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  int status;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    status = rv_cli_error ("%s", error->message);
  else if (n < 1 || n > 100000)
    status = rv_cli_error ("--n takes 1 to 100000.");
  else
    status = eval_upscale (model, movq, device, n, n_twice < 0 ? MAX (1, n / 4) : n_twice, seed,
                           exact_input, json, save_dir);
  g_free (model);
  g_free (movq);
  g_free (device);
  g_free (save_dir);
  return status;
}
