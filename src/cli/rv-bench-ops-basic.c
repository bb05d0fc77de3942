/* rv-bench-ops-basic.c: benchmarks of the basic op family. */
#include "rv-bench.h"

typedef struct {
  RvTensor *x, *y;
} AffineData;

static void
run_affine (RvCmd *cmd, gpointer data)
{
  AffineData *d = data;
  rv_op_affine (cmd, d->y, d->x, 2.0f, 1.0f);
}

void
rv_bench_ops_basic (RvBench *b)
{
  gint64 n = 1 << 24;
  if (!rv_bench_wanted (b, "affine", "16M"))
    return;
  g_autoptr (GError) error = NULL;
  AffineData d = { 0 };
  d.x = rv_tensor_new (rv_bench_device (b), RV_DTYPE_F32, 1, &n, &error);
  d.y = d.x ? rv_tensor_new (rv_bench_device (b), RV_DTYPE_F32, 1, &n, &error) : NULL;
  if (d.y != NULL)
    rv_bench_op (b, "affine", "16M", 2.0 * n, 8.0 * n, run_affine, &d);
  else
    g_printerr ("bench affine: %s\n", error->message);
  g_clear_pointer (&d.x, rv_tensor_free);
  g_clear_pointer (&d.y, rv_tensor_free);
}
