/* rv-dev-bench-pipeline.c: `reverie-dev bench pipeline` — the time of a
 * whole text-to-image run and of each stage, cold and warm. */
#include "config.h"

#include "rv-dev.h"
#include "rv-cli-common.h"
#include "rv-pipeline.h"
#include "rv-random.h"

#include <stdio.h>
#include <string.h>

/* The process's peak resident memory so far (VmHWM), bytes; 0 where
 * /proc has none. */
static guint64
peak_rss (void)
{
  g_autofree char *status = NULL;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return 0;
  const char *line = strstr (status, "VmHWM:");
  return line != NULL ? g_ascii_strtoull (line + 6, NULL, 10) * 1024 : 0;
}

/* The upscale stage appears only for runs that went through the upscaler;
 * the peak RSS comes last. */
static void
print_stats (const char *label, const RvJobStats *s, guint64 rss)
{
  g_autofree char *upscale = s->upscale > 0 ? g_strdup_printf (" | upscale %6.3f", s->upscale)
                                            : g_strdup ("");
  g_print ("%-6s total %7.3f s | load %6.3f | text %6.3f | prior %6.3f (%d steps, %.2f ms/step) | "
           "decoder %6.3f (%d steps, %.1f ms/step) | decode %6.3f%s | peak %.1f MiB | %" G_GUINT64_FORMAT
           " dispatches | RSS peak %.1f MiB\n", label, s->total, s->load, s->text, s->prior, s->prior_steps,
           s->prior_steps ? 1e3 * s->prior / s->prior_steps : 0, s->decoder, s->decoder_steps,
           s->decoder_steps ? 1e3 * s->decoder / s->decoder_steps : 0, s->decode, upscale,
           s->peak_bytes / 1048576.0, s->dispatches, rss / 1048576.0);
}

static void
print_json (const char *label, const RvJobStats *s, guint64 rss, gboolean last)
{
  g_print ("  \"%s\": {\"total\": %.4f, \"load\": %.4f, \"text\": %.4f, \"prior\": %.4f, "
           "\"prior_steps\": %d, \"decoder\": %.4f, \"decoder_steps\": %d, \"decode\": %.4f, "
           "\"upscale\": %.4f, \"peak_bytes\": %" G_GUINT64_FORMAT ", \"dispatches\": %" G_GUINT64_FORMAT
           ", \"peak_rss_bytes\": %" G_GUINT64_FORMAT "}%s\n",
           label, s->total, s->load, s->text, s->prior, s->prior_steps, s->decoder,
           s->decoder_steps, s->decode, s->upscale, s->peak_bytes, s->dispatches, rss,
           last ? "" : ",");
}

static int
bench_pipeline (RvCliOptions *o, int runs, gboolean json, const char *prompt)
{
  g_autoptr (GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (RvEngine) e = rv_cli_engine (o, &error);
  if (e == NULL)
    return rv_cli_error ("%s", error->message);
  double open_s = (g_get_monotonic_time () - t0) / 1e6;
  RvRequest req;
  rv_request_init (&req, RV_JOB_GENERATE);
  req.prompt = prompt;
  o->seed_given = TRUE;
  if (!rv_cli_options_to_request (o, &req, NULL, &error))
    return rv_cli_error ("%s", error->message);
  if (!json)
    g_print ("device %s, model %s, prompt “%s”\n", rv_engine_device_name (e),
             rv_engine_model_name (e), prompt);
  int gen_w = 0, gen_h = 0;
  gboolean upscaled = rv_engine_plan_upscale (e, &req, &gen_w, &gen_h);
  if (!json && upscaled)
    g_print ("%dx%d: generated at %dx%d and enlarged by the upscaler %s\n", req.width, req.height,
             gen_w, gen_h, rv_engine_upscaler_name (e));

  RvJobStats cold = { 0 }, warm = { 0 };
  guint64 cold_rss = 0, warm_rss = 0;
  for (int i = 0; i < runs + 1; i++)
    {
      req.seed = (guint64) i + 1;
      g_autoptr (GPtrArray) r = rv_engine_run (e, &req, NULL, NULL, NULL, &error);
      if (r == NULL)
        return rv_cli_error ("%s", error->message);
      RvJobStats s;
      rv_engine_last_stats (e, &s);
      guint64 rss = peak_rss ();     /* the peak so far: it only grows */
      if (i == 0)
        {
          cold = s;
          cold_rss = rss;
        }
      else
        {
          /* keep the fastest warm run, stage by stage from that run */
          if (warm.total == 0 || s.total < warm.total)
            {
              warm = s;
              warm_rss = rss;
            }
        }
      if (!json)
        print_stats (i == 0 ? "cold" : "warm", &s, rss);
    }
  if (json)
    {
      g_print ("{\n  \"device\": \"%s\",\n  \"model\": \"%s\",\n  \"engine_open\": %.4f,\n",
               rv_engine_device_name (e), rv_engine_model_name (e), open_s);
      if (upscaled)
        g_print ("  \"size\": \"%dx%d\",\n  \"generated_at\": \"%dx%d\",\n  \"upscaler\": \"%s\",\n",
                 req.width, req.height, gen_w, gen_h, rv_engine_upscaler_name (e));
      print_json ("cold", &cold, cold_rss, runs == 0);
      if (runs > 0)
        print_json ("warm_best", &warm, warm_rss, TRUE);
      g_print ("}\n");
      return 0;
    }
  g_print ("\nengine open (configs, device) %.3f s; cold run %.3f s (first run: loads weights and "
           "builds kernels); best warm run %.3f s\n", open_s, cold.total, warm.total);
  return 0;
}


/* ---- full-size costs from configs alone ---- */

typedef struct {
  RvDevice *dev;
  RvCmd    *cmd;
  gboolean  json;
  gboolean  first;
  guint64   mark;       /* device memory in use when the stage's load began */
  guint64   resident;   /* … and when its timed calls began (its weights on top) */
  guint64   weights;    /* every measured stage's weights, together */
  guint64   act_max;    /* the most any stage's calls took on top of its weights */
} Probe;

static guint64
in_use (Probe *p)
{
  guint64 v;
  rv_device_memory_stats (p->dev, &v, NULL, NULL);
  return v;
}

/* Before a stage's loads; then before its timed calls (the peak counts from
 * there). */
static void
stage_begin (Probe *p)
{
  p->mark = in_use (p);
}

static void
stage_loaded (Probe *p)
{
  p->resident = in_use (p);
  rv_device_reset_peak (p->dev);
}

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

static void
report_stage_extra (Probe *p, const char *stage, double load_s, double run_s, int reps,
                    const char *shape, const char *extra_json, const char *extra_text);

static void
report_stage (Probe *p, const char *stage, double load_s, double run_s, int reps, const char *shape)
{
  report_stage_extra (p, stage, load_s, run_s, reps, shape, NULL, NULL);
}

/* extra_json: more members for the stage's object (", \"a\": 1"); extra_text:
 * a line printed below the stage's */
static void
report_stage_extra (Probe *p, const char *stage, double load_s, double run_s, int reps,
                    const char *shape, const char *extra_json, const char *extra_text)
{
  guint64 peak;
  rv_device_memory_stats (p->dev, NULL, &peak, NULL);
  guint64 weights = p->resident > p->mark ? p->resident - p->mark : 0;
  guint64 act = peak > p->resident ? peak - p->resident : 0;
  p->weights += weights;
  p->act_max = MAX (p->act_max, act);
  if (p->json)
    g_print ("%s  {\"stage\": \"%s\", \"shape\": \"%s\", \"load\": %.4f, \"seconds\": %.5f, "
             "\"peak_bytes\": %" G_GUINT64_FORMAT ", \"weight_bytes\": %" G_GUINT64_FORMAT
             ", \"activation_bytes\": %" G_GUINT64_FORMAT "%s}", p->first ? "" : ",\n", stage, shape,
             load_s, run_s, peak, weights, act, extra_json ? extra_json : "");
  else
    g_print ("%-14s %-26s load %8.2f s   per call %10.4f s (best of %d)   peak %8.1f MiB "
             "(weights %.1f, work %.1f)\n%s", stage, shape, load_s, run_s, reps, peak / 1048576.0,
             weights / 1048576.0, act / 1048576.0, extra_text ? extra_text : "");
  p->first = FALSE;
}

/* Runs `record` reps times (each submitted alone) and returns the best time. */
#define TIMED(p, reps, best, body)                                   \
  do {                                                              \
    best = G_MAXDOUBLE;                                             \
    for (int r_ = 0; r_ < (reps); r_++)                             \
      {                                                             \
        double t_ = now ();                                         \
        body;                                                       \
        if (!rv_cmd_submit ((p)->cmd, &error))                      \
          return rv_cli_error ("%s", error->message);               \
        best = MIN (best, now () - t_);                             \
      }                                                             \
  } while (0)

/* Whether `stage` is in the comma-separated list (NULL: every stage). */
static gboolean
stage_wanted (const char *stages, const char *stage)
{
  if (stages == NULL || *stages == '\0')
    return TRUE;
  g_auto (GStrv) list = g_strsplit (stages, ",", -1);
  return g_strv_contains ((const char *const *) list, stage);
}

static int
bench_random (RvCliOptions *o, const char *dir, gboolean json, int reps, const char *stages,
              int unet_batch)
{
  g_autoptr (GError) error = NULL;
  RvWeightPolicy policy = RV_WEIGHTS_AUTO;
  if (o->weights && g_str_equal (o->weights, "f32"))
    policy = RV_WEIGHTS_F32;
  int width = 512, height = 512;
  if (o->size && sscanf (o->size, "%dx%d", &width, &height) != 2)
    return rv_cli_error ("--size takes WIDTHxHEIGHT");
  rv_weights_use_random (0x5eed);
  g_autoptr (RvDevice) dev = rv_device_new (o->device, &error);
  if (dev == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvCmd) cmd = rv_cmd_new (dev, &error);
  if (cmd == NULL)
    return rv_cli_error ("%s", error->message);
  Probe p = { dev, cmd, json, TRUE };
  g_autofree char *text_dir = g_build_filename (dir, "prior", "text_encoder", NULL);
  g_autofree char *prior_dir = g_build_filename (dir, "prior", "prior", NULL);
  g_autofree char *unet_dir = g_build_filename (dir, "decoder", "unet", NULL);
  g_autofree char *movq_dir = g_build_filename (dir, "decoder", "movq", NULL);
  if (json)
    g_print ("{\"device\": \"%s\", \"size\": \"%dx%d\", \"stages\": [\n", rv_device_caps (dev)->name,
             width, height);
  else
    g_print ("device %s; random weights from the configs in %s; %d×%d\n\n",
             rv_device_caps (dev)->name, dir, width, height);
  double best, t;
  char shape[64];

  /* text encoder: batch 2 ([""; prompt]), full length */
  stage_begin (&p);
  t = now ();
  RvClipText *text = rv_clip_text_load (cmd, text_dir, policy, &error);
  if (text == NULL)
    return rv_cli_error ("%s", error->message);
  double load_text = now () - t;
  stage_loaded (&p);
  const RvClipTextConfig *tc = rv_clip_text_config (text);
  int L = tc->max_position_embeddings;
  g_autofree gint32 *ids = g_new0 (gint32, 2 * L);
  for (int i = 0; i < 2 * L; i++)
    ids[i] = i % L == 0 ? 0 : (i * 7919) % MAX (tc->vocab_size - 1, 1);
  RvTensor *hidden = NULL, *embeds = NULL;
  gboolean want_text = stage_wanted (stages, "text");
  TIMED (&p, want_text ? reps : 1, best, {
    g_clear_pointer (&hidden, rv_tensor_free);
    g_clear_pointer (&embeds, rv_tensor_free);
    rv_clip_text_forward (text, cmd, ids, 2, L, &hidden, &embeds);
  });
  g_snprintf (shape, sizeof shape, "batch 2 × %d tokens", L);
  if (want_text)
    report_stage (&p, "text encoder", load_text, best, reps, shape);
  rv_clip_text_free (text);

  /* prior: batch 2, one step */
  int E = tc->projection_dim;
  if (stage_wanted (stages, "prior"))
  {
  stage_begin (&p);
  t = now ();
  RvPrior *prior = rv_prior_load (cmd, prior_dir, policy, &error);
  if (prior == NULL)
    return rv_cli_error ("%s", error->message);
  double load_prior = now () - t;
  E = rv_prior_config (prior)->embedding_dim;
  gint64 hs_shape[2] = { 2, E };
  g_autoptr (RvTensor) hs = rv_tensor_new (dev, RV_DTYPE_F32, 2, hs_shape, &error);
  if (hs == NULL)
    return rv_cli_error ("%s", error->message);
  rv_cmd_fill_u32 (cmd, hs, 0);
  if (!rv_cmd_submit (cmd, &error))
    return rv_cli_error ("%s", error->message);
  stage_loaded (&p);
  g_autofree guint8 *mask = g_malloc (2 * L);
  memset (mask, 1, 2 * L);
  TIMED (&p, reps, best, {
    RvTensor *out = rv_prior_forward (prior, cmd, hs, 500, embeds, hidden, mask);
    if (out)
      rv_tensor_free (out);
  });
  /* as a sampling loop runs it: the text prefix once, then each step */
  double best_prefix, best_step;
  RvPriorPrefix *prefix = NULL;
  TIMED (&p, reps, best_prefix, {
    g_clear_pointer (&prefix, rv_prior_prefix_free);
    prefix = rv_prior_prefix_new (prior, cmd, embeds, hidden, mask);
  });
  if (prefix == NULL)
    return rv_cli_error ("the prior's text prefix could not be computed");
  TIMED (&p, reps, best_step, {
    RvTensor *out = rv_prior_forward_prefixed (prior, cmd, prefix, hs, 500);
    if (out)
      rv_tensor_free (out);
  });
  rv_prior_prefix_free (prefix);
  g_autofree char *extra_json = g_strdup_printf (", \"prefix_seconds\": %.5f, \"cached_step_seconds\": %.5f",
                                                 best_prefix, best_step);
  g_autofree char *extra_text = g_strdup_printf ("%-14s %-26s text prefix once %.4f s, then per step %.4f s\n",
                                                 "", "(sampling loop)", best_prefix, best_step);
  report_stage_extra (&p, "prior step", load_prior, best, reps, "batch 2", extra_json, extra_text);
  rv_prior_free (prior);
  }
  g_clear_pointer (&hidden, rv_tensor_free);
  g_clear_pointer (&embeds, rv_tensor_free);
  rv_device_trim (dev);

  /* decoder UNet: batch 2 (guidance; --unet-batch: another) at the latent size */
  stage_begin (&p);
  t = now ();
  RvMovq *movq = rv_movq_load (cmd, movq_dir, policy, FALSE, &error);
  RvUNet *unet = movq ? rv_unet_load (cmd, unet_dir, policy, &error) : NULL;
  if (unet == NULL)
    return rv_cli_error ("%s", error->message);
  double load_dec = now () - t;
  stage_loaded (&p);
  int f = rv_movq_scale_factor (movq);
  int lh = (height + f * f - 1) / (f * f) * f, lw = (width + f * f - 1) / (f * f) * f;
  const RvUNetConfig *uc = rv_unet_config (unet);
  gint64 s_shape[4] = { unet_batch, lh, lw, uc->in_channels };
  g_autoptr (RvTensor) sample = rv_tensor_new (dev, RV_DTYPE_F32, 4, s_shape, &error);
  gint64 e_shape[2] = { unet_batch, uc->encoder_hid_dim > 0 ? uc->encoder_hid_dim : E };
  g_autoptr (RvTensor) emb = sample ? rv_tensor_new (dev, RV_DTYPE_F32, 2, e_shape, &error) : NULL;
  if (emb == NULL)
    return rv_cli_error ("%s", error->message);
  rv_cmd_fill_u32 (cmd, sample, 0x3dcccccd);   /* 0.1 */
  rv_cmd_fill_u32 (cmd, emb, 0x3dcccccd);
  g_autofree float *ts = g_new (float, unet_batch);
  for (int i = 0; i < unet_batch; i++)
    ts[i] = 500;
  if (stage_wanted (stages, "unet"))
  {
  TIMED (&p, reps, best, {
    RvTensor *out = rv_unet_forward (unet, cmd, sample, ts, emb);
    if (out)
      rv_tensor_free (out);
  });
  g_snprintf (shape, sizeof shape, "batch %d, latents %d×%d", unet_batch, lh, lw);
  report_stage (&p, "UNet step", load_dec, best, reps, shape);
  }
  rv_unet_free (unet);
  rv_device_trim (dev);

  /* MoVQ decode: one image */
  if (stage_wanted (stages, "movq"))
  {
  const RvVQConfig *vc = rv_movq_config (movq);
  gint64 z_shape[4] = { 1, lh, lw, vc->vq_embed_dim > 0 ? vc->vq_embed_dim : vc->latent_channels };
  g_autoptr (RvTensor) z = rv_tensor_new (dev, RV_DTYPE_F32, 4, z_shape, &error);
  if (z == NULL)
    return rv_cli_error ("%s", error->message);
  rv_cmd_fill_u32 (cmd, z, 0x3dcccccd);
  if (!rv_cmd_submit (cmd, &error))
    return rv_cli_error ("%s", error->message);
  /* its weights were loaded (and counted) with the UNet's */
  stage_begin (&p);
  stage_loaded (&p);
  TIMED (&p, MIN (reps, 2), best, {
    RvTensor *out = rv_movq_decode (movq, cmd, z);
    if (out)
      rv_tensor_free (out);
  });
  g_snprintf (shape, sizeof shape, "%d×%d pixels", lh * f, lw * f);
  report_stage (&p, "MoVQ decode", 0, best, MIN (reps, 2), shape);
  }
  rv_movq_free (movq);
  /* The engine keeps every stage's weights while a job runs (unless the
   * device is short of memory), and the stages run one after another. */
  guint64 whole = p.weights + p.act_max;
  if (json)
    g_print ("%s  {\"stage\": \"whole run\", \"weight_bytes\": %" G_GUINT64_FORMAT
             ", \"activation_bytes\": %" G_GUINT64_FORMAT ", \"peak_bytes\": %" G_GUINT64_FORMAT
             "}\n]}\n", p.first ? "" : ",\n", p.weights, p.act_max, whole);
  else
    g_print ("\nA run costs text + the prior's text prefix + prior_steps × its step after the prefix\n"
             "+ decoder_steps × UNet step + decode (PyTorch pipelines: prior_steps × the whole prior step).\n"
             "A whole run with the measured stages' weights resident together: weights %.1f MiB + "
             "the largest stage's work %.1f MiB = %.1f MiB (%.2f GiB)\n", p.weights / 1048576.0,
             p.act_max / 1048576.0, whole / 1048576.0, whole / 1073741824.0);
  return 0;
}

int
rv_dev_bench_pipeline (int argc, char **argv)
{
  RvCliOptions o;
  rv_cli_options_init (&o);
  int runs = 3;
  gboolean json = FALSE;
  char *prompt = NULL, *random_dir = NULL, *stages = NULL;
  int unet_batch = 2;
  GOptionEntry entries[] = {
    { "runs", 0, 0, G_OPTION_ARG_INT, &runs, "Warm runs after the first (default 3)", "N" },
    { "random-weights", 0, 0, G_OPTION_ARG_FILENAME, &random_dir,
      "Measure each stage of the model whose config.json files are in DIR (prior/…, decoder/…) with random weights", "DIR" },
    { "stages", 0, 0, G_OPTION_ARG_STRING, &stages,
      "With --random-weights: only these stages (comma-separated: text, prior, unet, movq)", "LIST" },
    { "unet-batch", 0, 0, G_OPTION_ARG_INT, &unet_batch,
      "With --random-weights: rows of the UNet's batch (default 2: one image with guidance)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "The prompt", "TEXT" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— time a whole text-to-image run");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, rv_cli_options_group (&o));
  g_autoptr (GError) error = NULL;
  int status;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    status = rv_cli_error ("%s", error->message);
  else if (runs < 0 || runs > 100)
    status = rv_cli_error ("--runs takes 0 to 100.");
  else if (unet_batch < 1 || unet_batch > 64)
    status = rv_cli_error ("--unet-batch takes 1 to 64.");
  else if (random_dir != NULL)
    status = bench_random (&o, random_dir, json, MAX (runs, 1), stages, unet_batch);
  else
    status = bench_pipeline (&o, runs, json, prompt ? prompt : "a small red circle at the left on a blue background");
  g_free (prompt);
  g_free (random_dir);
  g_free (stages);
  rv_cli_options_clear (&o);
  return status;
}
