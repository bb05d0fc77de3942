/* test-unet.c: the UNet's memory estimate (rv_unet_estimate_memory) against
 * the device memory a forward really takes at its peak, on the reference
 * set's tiny UNet and on random-weight configs at several sizes and batches;
 * and a conditioning kept for a loop of steps (rv_unet_condition) against
 * the one-shot forward. */
#include "rv-unet.h"
#include "rv-test-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <json-glib/json-glib.h>

/* The estimate must bound the peak, and stay within this factor of it. */
#define ESTIMATE_FACTOR 1.5

static char *work_dir;

/* Runs one forward of random (batch, h, w) latents; returns the bytes the
 * activations took at the peak beyond what was allocated before. */
static guint64
measure_peak (RvUNet *m, int batch, int h, int w)
{
  const RvUNetConfig *c = rv_unet_config (m);
  RvDevice *dev = rv_test_device ();
  RvCmd *cmd = rv_test_cmd ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);
  gint64 xs[4] = { batch, h, w, c->in_channels }, es[2] = { batch, c->encoder_hid_dim };
  g_autofree float *xv = rv_test_random (rand, xs[0] * xs[1] * xs[2] * xs[3], -1, 1);
  g_autofree float *ev = rv_test_random (rand, es[0] * es[1], -1, 1);
  g_autoptr (RvTensor) x = rv_test_tensor (RV_DTYPE_F32, 4, xs, xv);
  g_autoptr (RvTensor) e = rv_test_tensor (RV_DTYPE_F32, 2, es, ev);
  g_autofree float *t = g_new (float, batch);
  for (int i = 0; i < batch; i++)
    t[i] = 999.0f - 100.0f * i;
  g_autoptr (GError) error = NULL;
  rv_cmd_submit (cmd, &error);
  g_assert_no_error (error);

  guint64 before = 0, peak = 0;
  rv_device_memory_stats (dev, &before, NULL, NULL);
  rv_device_reset_peak (dev);
  g_autoptr (RvTensor) y = rv_unet_forward (m, cmd, x, t, e);
  rv_cmd_submit (cmd, &error);
  g_assert_no_error (error);
  g_assert_nonnull (y);
  g_assert_cmpint (y->shape[3], ==, c->out_channels);
  rv_device_memory_stats (dev, NULL, &peak, NULL);
  return peak - before;
}

static void
check_estimate (RvUNet *m, const char *what, int batch, int h, int w)
{
  guint64 used = measure_peak (m, batch, h, w);
  guint64 estimate = rv_unet_estimate_memory (rv_unet_config (m), batch, h, w);
  g_test_message ("%s, %d × %d×%d: %" G_GUINT64_FORMAT " bytes at the peak, estimate %"
                  G_GUINT64_FORMAT " (×%.2f)", what, batch, h, w, used, estimate,
                  used > 0 ? (double) estimate / used : 0.0);
  g_assert_cmpuint (estimate, >=, used);
  g_assert_cmpfloat ((double) estimate, <=, ESTIMATE_FACTOR * used);
}

static void
test_reference (void)
{
  g_autofree char *dir = rv_test_reference_path ("models", "kandinsky-2-2-decoder-tiny", "unet",
                                                 NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvUNet) m = rv_unet_load (rv_test_cmd (), dir, RV_WEIGHTS_F32, &error);
  g_assert_no_error (error);
  const int sizes[][3] = { { 1, 8, 8 }, { 2, 16, 12 }, { 3, 32, 32 }, { 1, 64, 48 } };
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    check_estimate (m, "reference tiny UNet", sizes[i][0], sizes[i][1], sizes[i][2]);
}

/* Variations of the tiny UNet's config, given as JSON members that replace
 * its own. */
static const struct {
  const char *what;
  const char *members;
} CONFIGS[] = {
  { "three levels, two layers, plain time embedding, out scale 2",
    "{\"block_out_channels\": [32, 64, 96], \"layers_per_block\": 2,"
    " \"down_block_types\": [\"ResnetDownsampleBlock2D\", \"SimpleCrossAttnDownBlock2D\","
    "                        \"SimpleCrossAttnDownBlock2D\"],"
    " \"up_block_types\": [\"SimpleCrossAttnUpBlock2D\", \"SimpleCrossAttnUpBlock2D\","
    "                      \"ResnetUpsampleBlock2D\"],"
    " \"resnet_time_scale_shift\": \"default\", \"resnet_out_scale_factor\": 2.0,"
    " \"attention_head_dim\": 8}" },
  { "cross-attention only, centred input, wider context",
    "{\"block_out_channels\": [32, 64], \"only_cross_attention\": true,"
    " \"center_input_sample\": true, \"cross_attention_dim\": 64, \"encoder_hid_dim\": 48,"
    " \"mid_block_scale_factor\": 1.5}" },
};

static RvUNet *
load_random (guint i)
{
  g_autofree char *base = rv_test_reference_path ("models", "kandinsky-2-2-decoder-tiny", "unet",
                                                  "config.json", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) p = json_parser_new ();
  json_parser_load_from_file (p, base, &error);
  g_assert_no_error (error);
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_autoptr (JsonParser) q = json_parser_new ();
  json_parser_load_from_data (q, CONFIGS[i].members, -1, &error);
  g_assert_no_error (error);
  JsonObject *members = json_node_get_object (json_parser_get_root (q));
  g_autoptr (GList) names = json_object_get_members (members);
  for (GList *l = names; l != NULL; l = l->next)
    json_object_set_member (o, l->data, json_node_copy (json_object_get_member (members, l->data)));

  g_autofree char *dir = g_strdup_printf ("%s/config-%u", work_dir, i);
  g_mkdir (dir, 0700);
  g_autofree char *path = g_build_filename (dir, "config.json", NULL);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, json_parser_get_root (p));
  json_generator_to_file (gen, path, &error);
  g_assert_no_error (error);

  rv_weights_use_random (1234 + i);
  RvUNet *m = rv_unet_load (rv_test_cmd (), dir, RV_WEIGHTS_F32, &error);
  rv_weights_use_random (0);
  g_assert_no_error (error);
  g_remove (path);
  g_rmdir (dir);
  return m;
}

static void
test_random_configs (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (CONFIGS); i++)
    {
      g_autoptr (RvUNet) m = load_random (i);
      int f = 1 << (rv_unet_config (m)->n_blocks - 1);
      const int sizes[][3] = { { 1, 2 * f, 2 * f }, { 2, 4 * f, 3 * f }, { 4, 8 * f, 8 * f } };
      for (guint j = 0; j < G_N_ELEMENTS (sizes); j++)
        check_estimate (m, CONFIGS[i].what, sizes[j][0], sizes[j][1], sizes[j][2]);
    }
}

/* Forwards of the same image embeddings at several steps: through one
 * conditioning recorded once and reused (with the loop's time projections,
 * or without), and each through rv_unet_forward alone. The per-row sums are
 * the same whatever the number of rows, so the outputs must be equal bit
 * for bit. The last step's timesteps are not among the loop's: that forward
 * makes its own time embedding. */
static void
check_condition (RvUNet *m, const char *what, int batch, int h, int w, gboolean loop_steps)
{
  const RvUNetConfig *c = rv_unet_config (m);
  RvCmd *cmd = rv_test_cmd ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (5);
  gint64 xs[4] = { batch, h, w, c->in_channels }, es[2] = { batch, c->encoder_hid_dim };
  g_autofree float *ev = rv_test_random (rand, es[0] * es[1], -1, 1);
  g_autoptr (RvTensor) e = rv_test_tensor (RV_DTYPE_F32, 2, es, ev);
  enum { STEPS = 4 };
  g_autofree float *ts = g_new (float, STEPS * batch);
  for (int step = 0; step < STEPS; step++)
    for (int i = 0; i < batch; i++)
      ts[step * batch + i] = 900.0f - 250.0f * step - 7.0f * i;
  guint64 before = 0, after = 0;
  rv_device_memory_stats (rv_test_device (), &before, NULL, NULL);
  g_autoptr (RvUNetCond) cond = rv_unet_condition (m, cmd, e, loop_steps ? ts : NULL,
                                                   loop_steps ? STEPS - 1 : 0);
  g_assert_nonnull (cond);
  g_autoptr (GError) error = NULL;
  rv_cmd_submit (cmd, &error);
  g_assert_no_error (error);
  rv_device_memory_stats (rv_test_device (), &after, NULL, NULL);
  if (loop_steps)
    {
      /* the projections are counted where the pipeline checks memory */
      guint64 proj = rv_unet_condition_bytes (c, batch, STEPS - 1);
      g_test_message ("%s: conditioning %" G_GUINT64_FORMAT " bytes, of which time "
                      "projections %" G_GUINT64_FORMAT, what, after - before, proj);
      g_assert_cmpuint (proj, >, 0);
      g_assert_cmpuint (after - before, >=, proj);
    }
  guint64 dispatches[STEPS];
  for (int step = 0; step < STEPS; step++)
    {
      g_autofree float *xv = rv_test_random (rand, xs[0] * xs[1] * xs[2] * xs[3], -1, 1);
      g_autoptr (RvTensor) x = rv_test_tensor (RV_DTYPE_F32, 4, xs, xv);
      const float *t = ts + step * batch;
      guint64 d0 = rv_cmd_dispatch_count (cmd);
      g_autoptr (RvTensor) kept = rv_unet_forward_cond (m, cmd, x, t, cond);
      dispatches[step] = rv_cmd_dispatch_count (cmd) - d0;
      g_autoptr (RvTensor) fresh = rv_unet_forward (m, cmd, x, t, e);
      rv_cmd_submit (cmd, &error);
      g_assert_no_error (error);
      g_assert_nonnull (kept);
      g_assert_nonnull (fresh);
      g_autofree float *a = rv_test_download (kept);
      g_autofree float *b = rv_test_download (fresh);
      gint64 n = rv_tensor_numel (kept);
      g_assert_cmpint (n, ==, rv_tensor_numel (fresh));
      gint64 differ = 0;
      for (gint64 i = 0; i < n; i++)
        differ += a[i] != b[i] || !isfinite (a[i]);
      g_test_message ("%s, %d × %d×%d, step %d: %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                      " values differ", what, batch, h, w, step, differ, n);
      g_assert_cmpint (differ, ==, 0);
    }

  /* a step of the loop records no time embedding and no projection of it */
  for (int step = 0; step < STEPS - 1; step++)
    if (loop_steps)
      g_assert_cmpuint (dispatches[step], <, dispatches[STEPS - 1]);
    else
      g_assert_cmpuint (dispatches[step], ==, dispatches[STEPS - 1]);

  /* a batch that does not match the conditioning's is refused */
  gint64 ws[4] = { batch + 1, h, w, c->in_channels };
  g_autofree float *wv = g_new0 (float, ws[0] * ws[1] * ws[2] * ws[3]);
  g_autoptr (RvTensor) wrong = rv_test_tensor (RV_DTYPE_F32, 4, ws, wv);
  g_autofree float *t = g_new0 (float, batch + 1);
  g_assert_null (rv_unet_forward_cond (m, cmd, wrong, t, cond));
  g_assert_false (rv_cmd_submit (cmd, &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);
}

static void
test_condition (void)
{
  g_autofree char *dir = rv_test_reference_path ("models", "kandinsky-2-2-decoder-tiny", "unet",
                                                 NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvUNet) m = rv_unet_load (rv_test_cmd (), dir, RV_WEIGHTS_F32, &error);
  g_assert_no_error (error);
  check_condition (m, "reference tiny UNet", 2, 16, 16, FALSE);
  check_condition (m, "reference tiny UNet, loop steps", 2, 16, 16, TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (CONFIGS); i++)
    {
      g_autoptr (RvUNet) r = load_random (i);
      int f = 1 << (rv_unet_config (r)->n_blocks - 1);
      check_condition (r, CONFIGS[i].what, 2, 2 * f, 3 * f, TRUE);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  work_dir = g_dir_make_tmp ("test-unet-XXXXXX", &error);
  g_assert_no_error (error);
  rv_test_add ("/unet/memory/reference", test_reference);
  rv_test_add ("/unet/memory/random-configs", test_random_configs);
  rv_test_add ("/unet/condition", test_condition);
  int status = g_test_run ();
  g_rmdir (work_dir);
  g_free (work_dir);
  return status;
}
