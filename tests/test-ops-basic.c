/* test-ops-basic.c: normalization, elementwise and resampling ops against
 * double-precision CPU references. */
#include "rv-test-util.h"

static void
test_affine (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (1);
  const gint64 sizes[] = { 1, 7, 256, 1000, 70001 };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
    {
      gint64 n = sizes[s];
      g_autofree float *x = rv_test_random (rand, n, -2, 2);
      g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 1, &n, x);
      g_autoptr (RvTensor) ty = rv_test_output (1, &n);
      rv_op_affine (rv_test_cmd (), ty, tx, 0.5f, -1.25f);
      g_autofree float *y = rv_test_download (ty);
      g_autofree double *ref = g_new (double, n);
      for (gint64 i = 0; i < n; i++)
        ref[i] = 0.5 * x[i] - 1.25;
      rv_test_assert_close ("affine", y, ref, n, 1e-6);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/ops/affine", test_affine);
  return g_test_run ();
}
