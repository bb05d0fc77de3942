/* rv-dev-bench.c: `reverie-dev bench`: timing of recorded ops, and the
 * command that runs the op benchmarks (bench ops) or hands over to the
 * pipeline benchmark (bench pipeline, rv-dev-bench-pipeline.c) or the
 * upscaler benchmark (bench upscale, rv-dev-bench-upscale.c). */
#include "rv-dev-bench.h"
#include "rv-dev.h"
#include "rv-cli-common.h"

#include <json-glib/json-glib.h>
#include <string.h>

struct _RvBench {
  RvDevice    *dev;
  RvCmd       *cmd;
  gboolean     json;
  char        *filter;
  JsonBuilder *rows;
  gboolean     header_done;
};

RvBench *
rv_bench_new (RvDevice *dev, gboolean json, const char *filter, GError **error)
{
  RvCmd *cmd = rv_cmd_new (dev, error);
  if (cmd == NULL)
    return NULL;
  RvBench *b = g_new0 (RvBench, 1);
  b->dev = rv_device_ref (dev);
  b->cmd = cmd;
  b->json = json;
  b->filter = g_strdup (filter);
  b->rows = json_builder_new ();
  json_builder_begin_array (b->rows);
  return b;
}

void
rv_bench_free (RvBench *b)
{
  rv_cmd_free (b->cmd);
  rv_device_unref (b->dev);
  g_object_unref (b->rows);
  g_free (b->filter);
  g_free (b);
}

RvDevice *
rv_bench_device (RvBench *b)
{
  return b->dev;
}

RvCmd *
rv_bench_cmd (RvBench *b)
{
  return b->cmd;
}

gboolean
rv_bench_wanted (RvBench *b, const char *op, const char *shape)
{
  if (b->filter == NULL || *b->filter == '\0')
    return TRUE;
  g_autofree char *both = g_strdup_printf ("%s %s", op, shape);
  return strstr (both, b->filter) != NULL;
}

/* Runs fn `reps` times in one submit; returns seconds per call. */
static double
timed (RvBench *b, RvBenchFn fn, gpointer data, guint reps, gboolean *failed)
{
  g_autoptr (GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  for (guint i = 0; i < reps; i++)
    fn (b->cmd, data);
  gboolean ok = rv_cmd_submit (b->cmd, &error);
  gint64 t1 = g_get_monotonic_time ();
  if (!ok)
    {
      g_printerr ("bench: %s\n", error->message);
      *failed = TRUE;
      return 0;
    }
  guint64 gpu = rv_cmd_last_gpu_ns (b->cmd);
  if (gpu > 0)
    return gpu * 1e-9 / reps;
  return (t1 - t0) * 1e-6 / reps;
}

void
rv_bench_op (RvBench *b, const char *op, const char *shape, double flops, double bytes,
             RvBenchFn fn, gpointer data)
{
  if (!rv_bench_wanted (b, op, shape))
    return;
  rv_cmd_set_profiling (b->cmd, TRUE);
  gboolean failed = FALSE;
  double first = timed (b, fn, data, 1, &failed);       /* includes kernel compilation */
  if (failed)
    return;
  double once = timed (b, fn, data, 1, &failed);
  guint reps = (guint) CLAMP (0.25 / MAX (once, 1e-6), 1, 200);
  double best = once;
  for (guint round = 0; round < 3 && !failed; round++)
    {
      double t = timed (b, fn, data, reps, &failed);
      if (!failed)
        best = MIN (best, t);
    }
  if (failed)
    return;
  double gflops = flops > 0 ? flops / best * 1e-9 : 0;
  double gbs = bytes > 0 ? bytes / best * 1e-9 : 0;
  if (b->json)
    {
      json_builder_begin_object (b->rows);
      json_builder_set_member_name (b->rows, "op");
      json_builder_add_string_value (b->rows, op);
      json_builder_set_member_name (b->rows, "shape");
      json_builder_add_string_value (b->rows, shape);
      json_builder_set_member_name (b->rows, "ms");
      json_builder_add_double_value (b->rows, best * 1e3);
      json_builder_set_member_name (b->rows, "first_ms");
      json_builder_add_double_value (b->rows, first * 1e3);
      json_builder_set_member_name (b->rows, "gflops");
      json_builder_add_double_value (b->rows, gflops);
      json_builder_set_member_name (b->rows, "gbs");
      json_builder_add_double_value (b->rows, gbs);
      json_builder_end_object (b->rows);
      return;
    }
  if (!b->header_done)
    {
      g_print ("%-22s %-34s %10s %10s %9s\n", "op", "shape", "ms", "GFLOP/s", "GB/s");
      b->header_done = TRUE;
    }
  g_print ("%-22s %-34s %10.3f %10.2f %9.2f\n", op, shape, best * 1e3, gflops, gbs);
}

void
rv_bench_finish (RvBench *b)
{
  if (!b->json)
    return;
  json_builder_end_array (b->rows);
  g_autoptr (JsonNode) root = json_builder_get_root (b->rows);
  g_autofree char *s = json_to_string (root, TRUE);
  g_print ("%s\n", s);
}

/* ---- the command ---- */

int
rv_dev_bench (int argc, char **argv)
{
  if (argc >= 2 && g_str_equal (argv[1], "pipeline"))
    return rv_dev_bench_pipeline (argc - 1, argv + 1);
  if (argc >= 2 && g_str_equal (argv[1], "upscale"))
    return rv_dev_bench_upscale (argc - 1, argv + 1);
  gboolean json = FALSE;
  char *device = NULL, *filter = NULL;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device, "Device index or name", "N|NAME" },
    { "filter", 'f', 0, G_OPTION_ARG_STRING, &filter, "Only ops whose name or shape contains TEXT", "TEXT" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("ops|pipeline|upscale — measure the engine");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc < 2 || strcmp (argv[1], "ops") != 0)
    return rv_cli_error ("usage: reverie-dev bench ops [--json] [--filter TEXT] [--device N]\n"
                         "       reverie-dev bench pipeline [--runs N] [--json] [image options]\n"
                         "       reverie-dev bench upscale [--model DIR] [--size WxH] [--runs N] [--real] [--json]");

  g_autoptr (RvDevice) dev = rv_device_new (device, &error);
  if (dev == NULL)
    return rv_cli_error ("%s", error->message);
  if (!json)
    g_print ("device: %s (%s)\n", rv_device_caps (dev)->name, rv_device_caps (dev)->driver);
  RvBench *b = rv_bench_new (dev, json, filter, &error);
  if (b == NULL)
    return rv_cli_error ("%s", error->message);
  rv_bench_ops_gemm (b);
  rv_bench_ops_attention (b);
  rv_bench_ops_basic (b);
  rv_bench_finish (b);
  rv_bench_free (b);
  g_free (device);
  g_free (filter);
  return 0;
}
