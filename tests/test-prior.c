/* test-prior.c: the prior's forward in two parts (the text prefix once, then
 * each step: rv_prior_prefix_new, rv_prior_forward_prefixed) against the
 * whole forward (rv_prior_forward), on random-weight configs with and without
 * the optional parts, with and without text padding. */
#include "rv-prior.h"
#include "rv-test-util.h"

#include <glib/gstdio.h>
#include <string.h>

#define TOKENS 12
#define DIM 32

static const struct {
  const char *what;
  const char *config;
} CONFIGS[] = {
  { "Kandinsky 2.2's parts (prd, norm_in, embedding_proj_norm, text projection)",
    "{\"_class_name\": \"PriorTransformer\", \"num_attention_heads\": 2, \"attention_head_dim\": 16,"
    " \"num_layers\": 3, \"embedding_dim\": 32, \"num_embeddings\": 12, \"additional_embeddings\": 4,"
    " \"dropout\": 0.0, \"time_embed_act_fn\": \"gelu\", \"norm_in_type\": \"layer\","
    " \"embedding_proj_norm_type\": \"layer\", \"encoder_hid_proj_type\": \"linear\","
    " \"added_emb_type\": \"prd\", \"time_embed_dim\": 48, \"embedding_proj_dim\": 24,"
    " \"clip_embed_dim\": 40}" },
  { "no prd token, no norms, no text projection",
    "{\"_class_name\": \"PriorTransformer\", \"num_attention_heads\": 2, \"attention_head_dim\": 16,"
    " \"num_layers\": 2, \"embedding_dim\": 32, \"num_embeddings\": 12, \"additional_embeddings\": 3,"
    " \"dropout\": 0.0, \"time_embed_act_fn\": \"silu\", \"norm_in_type\": null,"
    " \"embedding_proj_norm_type\": null, \"encoder_hid_proj_type\": null,"
    " \"added_emb_type\": null, \"time_embed_dim\": null, \"embedding_proj_dim\": null,"
    " \"clip_embed_dim\": null}" },
};

static RvPrior *
load_random (guint i)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("reverie-prior-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (path, CONFIGS[i].config, -1, NULL));
  rv_weights_use_random (77 + i);
  RvPrior *m = rv_prior_load (rv_test_cmd (), dir, RV_WEIGHTS_F32, &error);
  rv_weights_use_random (0);
  g_assert_no_error (error);
  g_remove (path);
  g_rmdir (dir);
  return m;
}

static float *
run (RvPrior *m, RvTensor *out)
{
  g_assert_nonnull (out);
  float *v = rv_test_download (out);
  rv_tensor_free (out);
  return v;
}

/* mask_kind: 0 none, 1 padding after a few tokens in one row, 2 a row whose
 * first token is padding (no prefix: the whole forward is needed) */
static void
check (guint config, int mask_kind)
{
  RvPrior *m = load_random (config);
  const RvPriorConfig *c = rv_prior_config (m);
  int ehs_dim = c->encoder_hid_proj ? c->embedding_dim : c->num_attention_heads * c->attention_head_dim;
  int batch = 2;
  g_autoptr (GRand) rand = g_rand_new_with_seed (5 + config * 3 + mask_kind);
  gint64 hs_shape[2] = { batch, c->embedding_dim };
  gint64 pe_shape[2] = { batch, c->embedding_proj_dim };
  gint64 ehs_shape[3] = { batch, TOKENS, ehs_dim };
  g_autofree float *pe_v = rv_test_random (rand, batch * c->embedding_proj_dim, -1, 1);
  g_autofree float *ehs_v = rv_test_random (rand, batch * TOKENS * ehs_dim, -1, 1);
  g_autoptr (RvTensor) pe = rv_test_tensor (RV_DTYPE_F32, 2, pe_shape, pe_v);
  g_autoptr (RvTensor) ehs = rv_test_tensor (RV_DTYPE_F32, 3, ehs_shape, ehs_v);
  guint8 mask[2 * TOKENS];
  for (int t = 0; t < 2 * TOKENS; t++)
    mask[t] = 1;
  if (mask_kind == 1)
    for (int t = 5; t < TOKENS; t++)
      mask[t] = 0;
  if (mask_kind == 2)
    mask[TOKENS] = 0;
  const guint8 *mask_p = mask_kind == 0 ? NULL : mask;

  RvCmd *cmd = rv_test_cmd ();
  g_autoptr (RvPriorPrefix) pre = rv_prior_prefix_new (m, cmd, pe, ehs, mask_p);
  g_assert_false (rv_cmd_failed (cmd));
  if (mask_kind == 2)
    {
      g_assert_null (pre);
      rv_prior_free (m);
      return;
    }
  g_assert_nonnull (pre);

  /* three steps on one prefix, each against the whole forward */
  for (int step = 0; step < 3; step++)
    {
      g_autofree float *hs_v = rv_test_random (rand, batch * c->embedding_dim, -2, 2);
      g_autoptr (RvTensor) hs = rv_test_tensor (RV_DTYPE_F32, 2, hs_shape, hs_v);
      float t = 900.0f - 350.0f * step;
      g_autofree float *whole = run (m, rv_prior_forward (m, cmd, hs, t, pe, ehs, mask_p));
      g_autofree float *split = run (m, rv_prior_forward_prefixed (m, cmd, pre, hs, t));
      gint64 n = (gint64) batch * c->clip_embed_dim;
      g_autofree double *ref = g_new (double, n);
      for (gint64 i = 0; i < n; i++)
        ref[i] = whole[i];
      g_autofree char *what = g_strdup_printf ("%s, mask %d, step %d", CONFIGS[config].what,
                                               mask_kind, step);
      rv_test_assert_close (what, split, ref, n, 1e-5);
    }

  /* hidden states of the wrong shape: an error that says so */
  gint64 bad_shape[2] = { batch + 1, c->embedding_dim };
  g_autofree float *bad_v = g_new0 (float, (batch + 1) * c->embedding_dim);
  g_autoptr (RvTensor) bad = rv_test_tensor (RV_DTYPE_F32, 2, bad_shape, bad_v);
  g_autoptr (GError) error = NULL;
  rv_cmd_submit (cmd, &error);
  g_assert_no_error (error);
  g_assert_null (rv_prior_forward_prefixed (m, cmd, pre, bad, 10.0f));
  g_assert_false (rv_cmd_submit (cmd, &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "hidden states"));
  g_clear_pointer (&pre, rv_prior_prefix_free);
  rv_prior_free (m);
}

static void
test_full_config (void)
{
  for (int mask = 0; mask < 3; mask++)
    check (0, mask);
}

static void
test_plain_config (void)
{
  for (int mask = 0; mask < 3; mask++)
    check (1, mask);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/prior/prefix/kandinsky-parts", test_full_config);
  rv_test_add ("/prior/prefix/plain", test_plain_config);
  return g_test_run ();
}
