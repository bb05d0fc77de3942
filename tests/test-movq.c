/* test-movq.c: the MoVQ codec beyond the golden cases. On random models of
 * several configs written here with diffusers' tensor names: work split into
 * row bands and batch groups gives the whole forward's result, the memory
 * estimate bounds what a forward allocates, f16 weights stay close to f32
 * ones; bad configs and inputs are clear errors. With the golden data, f16
 * weights against the diffusers reference. */
#include "rv-movq.h"
#include "rv-test-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ---- random models ---- */

/* Writes tensors with random values, named and shaped as diffusers' VQModel
 * names them: an independent statement of the layout rv-movq.c loads. */
typedef struct {
  GRand     *rand;
  GPtrArray *names;
  GPtrArray *data;
  GArray    *tensors;       /* RvStTensor */
} Writer;

static void
put (Writer *w, float lo, float hi, int ndim, const gint64 *shape, const char *fmt, ...)
  G_GNUC_PRINTF (6, 7);

static void
put (Writer *w, float lo, float hi, int ndim, const gint64 *shape, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  RvStTensor t = { .name = name, .dtype = RV_ST_F32, .ndim = ndim };
  gint64 numel = 1;
  for (int i = 0; i < ndim; i++)
    numel *= t.shape[i] = shape[i];
  float *v = rv_test_random (w->rand, numel, lo, hi);
  t.data = (const guint8 *) v;
  t.nbytes = numel * sizeof (float);
  g_ptr_array_add (w->names, name);
  g_ptr_array_add (w->data, v);
  g_array_append_val (w->tensors, t);
}

#define PUT(w, lo, hi, shape, ...) put ((w), (lo), (hi), RV_SHAPE shape, __VA_ARGS__)

/* A conv (or, with kernel 0, linear) module: weight scaled to its fan-in, bias. */
static void
put_conv (Writer *w, gint64 cout, gint64 cin, int k, const char *fmt, ...) G_GNUC_PRINTF (5, 6);

static void
put_conv (Writer *w, gint64 cout, gint64 cin, int k, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *module = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  float a = 1.0f / sqrtf ((float) (cin * MAX (k, 1) * MAX (k, 1)));
  if (k == 0)
    PUT (w, -a, a, (cout, cin), "%s.weight", module);
  else
    PUT (w, -a, a, (cout, cin, k, k), "%s.weight", module);
  PUT (w, -0.1f, 0.1f, (cout), "%s.bias", module);
}

static void
put_norm (Writer *w, gint64 c, gint64 zc, gboolean spatial, const char *p)
{
  const char *gn = spatial ? ".norm_layer" : "";
  PUT (w, 0.8f, 1.2f, (c), "%s%s.weight", p, gn);
  PUT (w, -0.2f, 0.2f, (c), "%s%s.bias", p, gn);
  if (spatial)
    {
      put_conv (w, c, zc, 1, "%s.conv_y", p);
      put_conv (w, c, zc, 1, "%s.conv_b", p);
    }
}

static void
put_resnet (Writer *w, gint64 cin, gint64 cout, gint64 zc, gboolean spatial, const char *p)
{
  g_autofree char *n1 = g_strconcat (p, ".norm1", NULL);
  g_autofree char *n2 = g_strconcat (p, ".norm2", NULL);
  put_norm (w, cin, zc, spatial, n1);
  put_conv (w, cout, cin, 3, "%s.conv1", p);
  put_norm (w, cout, zc, spatial, n2);
  put_conv (w, cout, cout, 3, "%s.conv2", p);
  if (cin != cout)
    put_conv (w, cout, cin, 1, "%s.conv_shortcut", p);
}

static void
put_attn (Writer *w, gint64 c, gint64 zc, gboolean spatial, const char *p)
{
  g_autofree char *n = g_strconcat (p, spatial ? ".spatial_norm" : ".group_norm", NULL);
  put_norm (w, c, zc, spatial, n);
  put_conv (w, c, c, 0, "%s.to_q", p);
  put_conv (w, c, c, 0, "%s.to_k", p);
  put_conv (w, c, c, 0, "%s.to_v", p);
  put_conv (w, c, c, 0, "%s.to_out.0", p);
}

typedef struct {
  const char *name;
  int         n;
  int         channels[4];
  gboolean    attention[4];     /* encoder level i, decoder level n − 1 − i */
  int         layers;
  int         groups;
  gboolean    spatial;
  gboolean    mid_attention;
  int         latent;
} ModelSpec;

/* Kandinsky's layout at three levels, and a plain VQ-GAN decoder (GroupNorm,
 * no mid attention) with 3 latent channels. */
static const ModelSpec MODELS[] = {
  { "spatial", 3, { 32, 32, 64 }, { FALSE, FALSE, TRUE }, 2, 8, TRUE, TRUE, 4 },
  { "group", 2, { 16, 32 }, { TRUE, TRUE }, 1, 16, FALSE, FALSE, 3 },
};

/* The test's folder and what it wrote there, removed at the end one by one
 * (no recursive delete). */
static char *work_dir;
static GPtrArray *written;

static char *
work_path (const char *name, const char *file)
{
  g_autofree char *dir = g_build_filename (work_dir, name, NULL);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
      g_ptr_array_insert (written, 0, g_strdup (dir));
    }
  char *path = g_build_filename (dir, file, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    g_ptr_array_insert (written, 0, g_strdup (path));
  return path;
}

/* A movq folder for the spec in the test's folder. */
static char *
write_model (const ModelSpec *s)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_build_filename (work_dir, s->name, NULL);

  g_autoptr (GString) cfg = g_string_new ("{\"_class_name\": \"VQModel\", \"block_out_channels\": [");
  g_autoptr (GString) down = g_string_new ("");
  g_autoptr (GString) up = g_string_new ("");
  for (int i = 0; i < s->n; i++)
    {
      const char *sep = i > 0 ? ", " : "";
      g_string_append_printf (cfg, "%s%d", sep, s->channels[i]);
      g_string_append_printf (down, "%s\"%sDownEncoderBlock2D\"", sep, s->attention[i] ? "Attn" : "");
      g_string_append_printf (up, "%s\"%sUpDecoderBlock2D\"", sep,
                              s->attention[s->n - 1 - i] ? "Attn" : "");
    }
  g_string_append_printf (cfg, "], \"down_block_types\": [%s], \"up_block_types\": [%s], "
                          "\"layers_per_block\": %d, \"norm_num_groups\": %d, "
                          "\"norm_type\": \"%s\", \"mid_block_add_attention\": %s, "
                          "\"latent_channels\": %d, \"num_vq_embeddings\": 16}",
                          down->str, up->str, s->layers, s->groups,
                          s->spatial ? "spatial" : "group", s->mid_attention ? "true" : "false",
                          s->latent);
  g_autofree char *cfg_path = work_path (s->name, "config.json");
  g_file_set_contents (cfg_path, cfg->str, -1, &error);
  g_assert_no_error (error);

  Writer w = { g_rand_new_with_seed (s->n * 7 + s->latent), g_ptr_array_new_with_free_func (g_free),
               g_ptr_array_new_with_free_func (g_free), g_array_new (FALSE, TRUE, sizeof (RvStTensor)) };
  gint64 z = s->latent, top = s->channels[s->n - 1];
  /* encoder */
  put_conv (&w, s->channels[0], 3, 3, "encoder.conv_in");
  for (int i = 0; i < s->n; i++)
    {
      gint64 cin = s->channels[MAX (i - 1, 0)], cout = s->channels[i];
      for (int j = 0; j < s->layers; j++)
        {
          g_autofree char *p = g_strdup_printf ("encoder.down_blocks.%d.resnets.%d", i, j);
          put_resnet (&w, j == 0 ? cin : cout, cout, z, FALSE, p);
          g_autofree char *a = g_strdup_printf ("encoder.down_blocks.%d.attentions.%d", i, j);
          if (s->attention[i])
            put_attn (&w, cout, z, FALSE, a);
        }
      if (i < s->n - 1)
        put_conv (&w, cout, cout, 3, "encoder.down_blocks.%d.downsamplers.0.conv", i);
    }
  /* decoder */
  put_conv (&w, top, z, 3, "decoder.conv_in");
  for (int i = 0; i < s->n; i++)
    {
      gint64 cin = s->channels[MIN (s->n - i, s->n - 1)], cout = s->channels[s->n - 1 - i];
      for (int j = 0; j < s->layers + 1; j++)
        {
          g_autofree char *p = g_strdup_printf ("decoder.up_blocks.%d.resnets.%d", i, j);
          put_resnet (&w, j == 0 ? cin : cout, cout, z, s->spatial, p);
          g_autofree char *a = g_strdup_printf ("decoder.up_blocks.%d.attentions.%d", i, j);
          if (s->attention[s->n - 1 - i])
            put_attn (&w, cout, z, s->spatial, a);
        }
      if (i < s->n - 1)
        put_conv (&w, cout, cout, 3, "decoder.up_blocks.%d.upsamplers.0.conv", i);
    }
  for (int e = 0; e < 2; e++)
    {
      const char *coder = e == 0 ? "encoder" : "decoder";
      gboolean spatial = e == 1 && s->spatial;
      for (int j = 0; j < 2; j++)
        {
          g_autofree char *p = g_strdup_printf ("%s.mid_block.resnets.%d", coder, j);
          put_resnet (&w, top, top, z, spatial, p);
        }
      g_autofree char *a = g_strdup_printf ("%s.mid_block.attentions.0", coder);
      if (s->mid_attention)
        put_attn (&w, top, z, spatial, a);
    }
  put_norm (&w, top, z, FALSE, "encoder.conv_norm_out");
  put_conv (&w, z, top, 3, "encoder.conv_out");
  put_norm (&w, s->channels[0], z, s->spatial, "decoder.conv_norm_out");
  put_conv (&w, 3, s->channels[0], 3, "decoder.conv_out");
  put_conv (&w, z, z, 1, "quant_conv");
  put_conv (&w, z, z, 1, "post_quant_conv");
  PUT (&w, -1, 1, (16, z), "quantize.embedding.weight");

  g_autofree char *path = work_path (s->name, "diffusion_pytorch_model.safetensors");
  g_assert_true (rv_safetensors_save (path, (RvStTensor *) w.tensors->data, w.tensors->len, NULL,
                                      &error));
  g_assert_no_error (error);
  g_rand_free (w.rand);
  g_ptr_array_unref (w.names);
  g_ptr_array_unref (w.data);
  g_array_unref (w.tensors);
  return dir;
}

static RvMovq *
load_model (const ModelSpec *s, RvWeightPolicy policy)
{
  g_autofree char *dir = write_model (s);
  g_autoptr (GError) error = NULL;
  RvMovq *m = rv_movq_load (rv_test_cmd (), dir, policy, TRUE, &error);
  g_assert_no_error (error);
  return m;
}

typedef enum { DECODE, ENCODE } Direction;

/* The codec on host data x (B, H, W, C); the result's values (g_free) and shape. */
static float *
run (RvMovq *m, Direction dir, const float *x, const gint64 shape[4], gint64 out_shape[4])
{
  RvCmd *cmd = rv_test_cmd ();
  g_autoptr (RvTensor) t = rv_test_tensor (RV_DTYPE_F32, 4, shape, x);
  g_autoptr (RvTensor) y = dir == DECODE ? rv_movq_decode (m, cmd, t) : rv_movq_encode (m, cmd, t);
  g_autoptr (GError) error = NULL;
  if (y == NULL)
    {
      rv_cmd_submit (cmd, &error);
      g_assert_no_error (error);
      g_assert_not_reached ();
    }
  memcpy (out_shape, y->shape, 4 * sizeof (gint64));
  return rv_test_download (y);
}

static double *
to_double (const float *x, gint64 n)
{
  double *d = g_new (double, n);
  for (gint64 i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}

/* The forward under split limits equals the whole one. */
static void
check_split (RvMovq *m, Direction dir, const gint64 shape[4])
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (shape[1] * 131 + shape[2]);
  gint64 n = shape[0] * shape[1] * shape[2] * shape[3];
  g_autofree float *x = rv_test_random (rand, n, -2, 2);
  gint64 ref_shape[4], got_shape[4];
  g_autofree float *ref = run (m, dir, x, shape, ref_shape);
  gint64 numel = ref_shape[0] * ref_shape[1] * ref_shape[2] * ref_shape[3];
  g_autofree double *ref_d = to_double (ref, numel);

  /* bands of 4 KiB (rows that are not multiples of 256 bytes, inputs that
   * do not start on a texel), one image at a time, and both */
  static const struct { gsize binding; guint64 memory; const char *what; } limits[] = {
    { 4096, 0, "bands" }, { 0, 1, "one image at a time" }, { 4096, 1, "both" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (limits); i++)
    {
      _rv_movq_set_limits (limits[i].binding, limits[i].memory);
      g_autofree float *got = run (m, dir, x, shape, got_shape);
      _rv_movq_set_limits (0, 0);
      g_assert_cmpmem (got_shape, sizeof got_shape, ref_shape, sizeof ref_shape);
      g_autofree char *what = g_strdup_printf ("%s of %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                                               "×%" G_GINT64_FORMAT "×%" G_GINT64_FORMAT ", %s",
                                               dir == DECODE ? "decode" : "encode", shape[0],
                                               shape[1], shape[2], shape[3], limits[i].what);
      /* bands compute the same sums; other batch sizes may pick other GEMM
       * tiles, so round differently */
      rv_test_assert_close (what, got, ref_d, numel, 1e-5);
    }
}

static void
test_split (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (MODELS); i++)
    {
      const ModelSpec *s = &MODELS[i];
      g_autoptr (RvMovq) m = load_model (s, RV_WEIGHTS_F32);
      check_split (m, DECODE, (const gint64[]) { 3, 5, 7, s->latent });
      check_split (m, ENCODE, (const gint64[]) { 2, 13, 11, 3 });
    }
}

/* What a forward allocates at its peak stays under the estimate, and not
 * far under it. */
static void
check_memory (RvMovq *m, Direction dir, const gint64 shape[4])
{
  RvDevice *dev = rv_test_device ();
  RvCmd *cmd = rv_test_cmd ();
  g_autoptr (GRand) rand = g_rand_new_with_seed (7);
  g_autofree float *x = rv_test_random (rand, shape[0] * shape[1] * shape[2] * shape[3], -1, 1);
  g_autoptr (RvTensor) t = rv_test_tensor (RV_DTYPE_F32, 4, shape, x);
  g_autoptr (GError) error = NULL;
  rv_cmd_submit (cmd, &error);
  g_assert_no_error (error);
  guint64 before = 0, peak = 0;
  rv_device_memory_stats (dev, &before, NULL, NULL);
  rv_device_reset_peak (dev);
  g_autoptr (RvTensor) y = dir == DECODE ? rv_movq_decode (m, cmd, t) : rv_movq_encode (m, cmd, t);
  rv_cmd_submit (cmd, &error);
  g_assert_no_error (error);
  rv_device_memory_stats (dev, NULL, &peak, NULL);
  guint64 used = peak - before;
  guint64 estimate = dir == DECODE
                     ? rv_movq_decode_peak_bytes (m, shape[0], shape[1], shape[2])
                     : rv_movq_encode_peak_bytes (m, shape[0], shape[1], shape[2]);
  g_test_message ("%s of (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "): "
                  "%" G_GUINT64_FORMAT " bytes at the peak, estimate %" G_GUINT64_FORMAT,
                  dir == DECODE ? "decode" : "encode", shape[0], shape[1], shape[2], used,
                  estimate);
  g_assert_cmpuint (used, <=, estimate);
  g_assert_cmpuint (used, >=, estimate / 2);
}

static void
test_memory (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (MODELS); i++)
    {
      const ModelSpec *s = &MODELS[i];
      g_autoptr (RvMovq) m = load_model (s, RV_WEIGHTS_F32);
      check_memory (m, DECODE, (const gint64[]) { 2, 24, 16, s->latent });
      check_memory (m, ENCODE, (const gint64[]) { 2, 48, 32, 3 });
    }
}

/* A recorded NCHW tensor of the components case as NHWC, with its shape. */
static float *
case_tensor (RvSafetensors *st, const char *name, gint64 shape[4])
{
  const RvStTensor *t = rv_safetensors_lookup (st, name);
  g_assert_nonnull (t);
  g_assert_cmpint (t->ndim, ==, 4);
  g_autoptr (GError) error = NULL;
  g_autofree float *x = rv_st_tensor_to_f32 (t, &error);
  g_assert_no_error (error);
  gint64 b = t->shape[0], c = t->shape[1], hw = t->shape[2] * t->shape[3];
  float *y = g_new (float, b * c * hw);
  for (gint64 n = 0; n < b; n++)
    for (gint64 k = 0; k < c; k++)
      for (gint64 i = 0; i < hw; i++)
        y[(n * hw + i) * c + k] = x[(n * c + k) * hw + i];
  shape[0] = b;
  shape[1] = t->shape[2];
  shape[2] = t->shape[3];
  shape[3] = c;
  return y;
}

static void
check_f16 (RvMovq *m, Direction dir, const float *x, const gint64 shape[4], const float *ref,
           const gint64 ref_shape[4], const char *what)
{
  gint64 out_shape[4];
  g_autofree float *got = run (m, dir, x, shape, out_shape);
  g_assert_cmpmem (out_shape, 4 * sizeof (gint64), ref_shape, 4 * sizeof (gint64));
  gint64 n = ref_shape[0] * ref_shape[1] * ref_shape[2] * ref_shape[3];
  g_autofree double *ref_d = to_double (ref, n);
  g_test_message ("%s with f16 weights: rel L2 %.2e", what, rv_test_rel_err (got, ref_d, n));
  rv_test_assert_close (what, got, ref_d, n, 1e-2);
}

/* f16 weights (where the device stores them) against f32 ones and, with the
 * golden data, against diffusers: rounding the weights costs about 1e-3. */
static void
test_f16_weights (void)
{
  if (!rv_device_caps (rv_test_device ())->storage16)
    {
      g_test_skip ("the device has no 16-bit storage");
      return;
    }
  const ModelSpec *s = &MODELS[0];
  g_autoptr (RvMovq) m32 = load_model (s, RV_WEIGHTS_F32);
  g_autoptr (RvMovq) m16 = load_model (s, RV_WEIGHTS_AUTO);
  g_autoptr (GRand) rand = g_rand_new_with_seed (16);
  const gint64 lat[4] = { 1, 12, 10, s->latent }, img[4] = { 1, 40, 36, 3 };
  for (int dir = DECODE; dir <= ENCODE; dir++)
    {
      const gint64 *shape = dir == DECODE ? lat : img;
      g_autofree float *x = rv_test_random (rand, shape[0] * shape[1] * shape[2] * shape[3], -1, 1);
      gint64 ref_shape[4];
      g_autofree float *ref = run (m32, dir, x, shape, ref_shape);
      check_f16 (m16, dir, x, shape, ref, ref_shape, dir == DECODE ? "decode" : "encode");
    }

  g_autofree char *path = rv_test_reference_path ("cases", "components.safetensors", NULL);
  g_autofree char *dir = rv_test_reference_path ("models", "kandinsky-2-2-decoder-tiny", "movq",
                                                 "config.json", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *movq_dir = g_path_get_dirname (dir);
  g_autoptr (RvMovq) golden16 = rv_movq_load (rv_test_cmd (), movq_dir, RV_WEIGHTS_AUTO, TRUE,
                                              &error);
  g_assert_no_error (error);
  g_autoptr (RvSafetensors) st = rv_safetensors_open (path, &error);
  g_assert_no_error (error);
  static const struct { const char *in, *out; Direction dir; } cases[] = {
    { "movq.decode.in.latents", "movq.decode.out.sample_force_not_quantize", DECODE },
    { "movq.encode.in.image", "movq.encode.out.latents", ENCODE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gint64 shape[4], ref_shape[4];
      g_autofree float *x = case_tensor (st, cases[i].in, shape);
      g_autofree float *ref = case_tensor (st, cases[i].out, ref_shape);
      check_f16 (golden16, cases[i].dir, x, shape, ref, ref_shape, cases[i].out);
    }
}

/* the keys a one-level config needs besides the one under test */
#define ONE_LEVEL "\"down_block_types\": [\"DownEncoderBlock2D\"], " \
                  "\"up_block_types\": [\"UpDecoderBlock2D\"], \"latent_channels\": 4, "

/* Configs the codec cannot run fail at load, before the weights are read;
 * inputs of the wrong shape are errors on the stream. */
static void
test_errors (void)
{
  RvCmd *cmd = rv_test_cmd ();
  g_autoptr (GError) error = NULL;
  g_autofree char *cfg_path = work_path ("bad-config", "config.json");
  g_autofree char *dir = g_path_get_dirname (cfg_path);
  static const struct { const char *config, *words[3]; } bad[] = {
    { "{\"latent_channels\": 4, \"block_out_channels\": [32, 64], \"norm_type\": \"spatial\","
      " \"down_block_types\": [\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"],"
      " \"up_block_types\": [\"AttnUpDecoderBlock2D\", \"UpBlock2D\"]}", { "UpBlock2D", NULL } },
    { "{" ONE_LEVEL "\"block_out_channels\": [48], \"norm_type\": \"spatial\"}",
      { "block_out_channels[0] = 48", "32 normalization groups", NULL } },
    { "{" ONE_LEVEL "\"vq_embed_dim\": 3, \"block_out_channels\": [32], \"norm_type\": \"spatial\"}",
      { "vq_embed_dim", NULL } },
    { "{" ONE_LEVEL "\"block_out_channels\": [32], \"lookup_from_codebook\": true}",
      { "lookup_from_codebook", NULL } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_file_set_contents (cfg_path, bad[i].config, -1, &error);
      g_assert_no_error (error);
      g_autoptr (RvMovq) m = rv_movq_load (cmd, dir, RV_WEIGHTS_F32, FALSE, &error);
      g_assert_null (m);
      g_assert_nonnull (error);
      g_test_message ("%s", error->message);
      for (guint k = 0; bad[i].words[k] != NULL; k++)
        g_assert_nonnull (strstr (error->message, bad[i].words[k]));
      g_clear_error (&error);
    }

  /* a weight of the wrong shape: one error before anything is uploaded */
  const ModelSpec *s = &MODELS[1];
  g_autofree char *model = write_model (s);
  g_autofree char *model_cfg = g_build_filename (model, "config.json", NULL);
  g_autofree char *text = NULL;
  g_file_get_contents (model_cfg, &text, NULL, &error);
  g_assert_no_error (error);
  g_auto (GStrv) parts = g_strsplit (text, "\"layers_per_block\": 1", 2);
  g_autofree char *wrong = g_strjoinv ("\"layers_per_block\": 2", parts);
  g_file_set_contents (model_cfg, wrong, -1, &error);
  g_assert_no_error (error);
  g_autoptr (RvMovq) missing = rv_movq_load (cmd, model, RV_WEIGHTS_F32, TRUE, &error);
  g_assert_null (missing);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "decoder.up_blocks.0.resnets.2.conv1.weight"));
  g_clear_error (&error);

  g_autoptr (RvMovq) m = load_model (&MODELS[0], RV_WEIGHTS_F32);
  g_autoptr (RvTensor) x = rv_test_output (4, (const gint64[]) { 1, 4, 4, 3 });
  g_autoptr (RvTensor) y = rv_movq_decode (m, cmd, x);
  g_assert_null (y);
  g_assert_false (rv_cmd_submit (cmd, &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);
  g_autoptr (RvTensor) tiny = rv_test_output (4, (const gint64[]) { 1, 3, 3, 3 });
  g_autoptr (RvTensor) z = rv_movq_encode (m, cmd, tiny);
  g_assert_null (z);
  g_assert_false (rv_cmd_submit (cmd, &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  work_dir = g_dir_make_tmp ("test-movq-XXXXXX", &error);
  g_assert_no_error (error);
  written = g_ptr_array_new_with_free_func (g_free);
  rv_test_add ("/movq/split", test_split);
  rv_test_add ("/movq/memory", test_memory);
  rv_test_add ("/movq/f16-weights", test_f16_weights);
  rv_test_add ("/movq/errors", test_errors);
  int status = g_test_run ();
  for (guint i = 0; i < written->len; i++)
    g_remove (g_ptr_array_index (written, i));
  g_rmdir (work_dir);
  return status;
}
