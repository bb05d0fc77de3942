/* rv-dev-bench-ops-gemm.c: benchmarks of the gemm op family: the figures of
 * issue 2 (linear 1024³, conv 3×3 at 64×64×128) and layer shapes of the
 * embedded model. */
#include "rv-dev-bench.h"

typedef enum {
  LINEAR,
  CONV,
  MATMUL,
} Kind;

typedef struct {
  Kind      kind;
  RvTensor *x, *w, *bias, *y;
  RvConv2d  conv;
  gboolean  trans_b;
} GemmData;

static void
run_gemm (RvCmd *cmd, gpointer data)
{
  GemmData *d = data;
  switch (d->kind)
    {
    case LINEAR:
      rv_op_linear (cmd, d->y, d->x, d->w, d->bias, RV_ACT_NONE, NULL);
      break;
    case CONV:
      rv_op_conv2d (cmd, d->y, d->x, d->w, d->bias, &d->conv, NULL);
      break;
    case MATMUL:
      rv_op_matmul (cmd, d->y, d->x, FALSE, d->w, d->trans_b, 1.0f);
      break;
    }
}

static void
clear (GemmData *d)
{
  g_clear_pointer (&d->x, rv_tensor_free);
  g_clear_pointer (&d->w, rv_tensor_free);
  g_clear_pointer (&d->bias, rv_tensor_free);
  g_clear_pointer (&d->y, rv_tensor_free);
}

/* Allocates the tensors (contents do not matter for timing) and runs the
 * bench; xs, ws, ys are shapes with their dims counts. */
static void
bench (RvBench *b, const char *op, const char *shape, GemmData *d, int xn, const gint64 *xs,
       RvDType wdt, int wn, const gint64 *ws, gint64 bias, int yn, const gint64 *ys,
       double flops)
{
  if (!rv_bench_wanted (b, op, shape))
    return;
  RvDevice *dev = rv_bench_device (b);
  g_autoptr (GError) error = NULL;
  d->x = rv_tensor_new (dev, RV_DTYPE_F32, xn, xs, &error);
  if (d->x)
    d->w = rv_tensor_new (dev, wdt, wn, ws, &error);
  if (d->w && bias > 0)
    d->bias = rv_tensor_new (dev, wdt, 1, &bias, &error);
  if (d->w && (bias == 0 || d->bias))
    d->y = rv_tensor_new (dev, RV_DTYPE_F32, yn, ys, &error);
  if (d->y)
    {
      /* zeros, so no NaN or denormal slows a CPU device down */
      RvCmd *cmd = rv_bench_cmd (b);
      rv_cmd_fill_u32 (cmd, d->x, 0);
      rv_cmd_fill_u32 (cmd, d->w, 0);
      if (d->bias)
        rv_cmd_fill_u32 (cmd, d->bias, 0);
      double bytes = rv_tensor_nbytes (d->x) + rv_tensor_nbytes (d->w) + rv_tensor_nbytes (d->y) +
                     (d->bias ? rv_tensor_nbytes (d->bias) : 0);
      rv_bench_op (b, op, shape, flops, bytes, run_gemm, d);
    }
  else
    g_printerr ("bench %s %s: %s\n", op, shape, error->message);
  clear (d);
}

static void
bench_linear (RvBench *b, gint64 m, gint64 k, gint64 n, RvDType wdt)
{
  g_autofree char *shape = g_strdup_printf ("%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "->%"
                                            G_GINT64_FORMAT " w %s", m, k, n,
                                            rv_dtype_name (wdt));
  GemmData d = { .kind = LINEAR };
  gint64 xs[2] = { m, k }, ws[2] = { k, n }, ys[2] = { m, n };
  bench (b, "linear", shape, &d, 2, xs, wdt, 2, ws, n, 2, ys, 2.0 * m * n * k);
}

static void
bench_conv (RvBench *b, gint64 batch, gint64 h, gint64 w, gint64 cin, gint64 cout, int k,
            int stride, int pad_tl, int pad_br, RvDType wdt)
{
  g_autofree char *shape = g_strdup_printf ("%dx%d/%d %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                                            "x%" G_GINT64_FORMAT "->%" G_GINT64_FORMAT " b%"
                                            G_GINT64_FORMAT " w %s", k, k, stride, h, w, cin,
                                            cout, batch, rv_dtype_name (wdt));
  GemmData d = { .kind = CONV, .conv = { k, k, stride, pad_tl, pad_tl, pad_br, pad_br } };
  gint64 ho = (h + pad_tl + pad_br - k) / stride + 1, wo = (w + pad_tl + pad_br - k) / stride + 1;
  gint64 xs[4] = { batch, h, w, cin }, ws[4] = { k, k, cin, cout }, ys[4] = { batch, ho, wo, cout };
  bench (b, "conv2d", shape, &d, 4, xs, wdt, 4, ws, cout, 4, ys,
         2.0 * batch * ho * wo * cout * cin * k * k);
}

static void
bench_matmul (RvBench *b, gint64 batch, gint64 m, gint64 k, gint64 n, gboolean trans_b)
{
  g_autofree char *shape = g_strdup_printf ("b%" G_GINT64_FORMAT " %" G_GINT64_FORMAT "x%"
                                            G_GINT64_FORMAT " @ %s%" G_GINT64_FORMAT "x%"
                                            G_GINT64_FORMAT "%s", batch, m, k,
                                            trans_b ? "(" : "", trans_b ? n : k, trans_b ? k : n,
                                            trans_b ? ")^T" : "");
  GemmData d = { .kind = MATMUL, .trans_b = trans_b };
  gint64 xs[3] = { batch, m, k }, ws[3] = { batch, trans_b ? n : k, trans_b ? k : n };
  gint64 ys[3] = { batch, m, n };
  bench (b, "matmul", shape, &d, 3, xs, RV_DTYPE_F32, 3, ws, 0, 3, ys, 2.0 * batch * m * n * k);
}

void
rv_bench_ops_gemm (RvBench *b)
{
  /* the targets of issue 2 */
  bench_linear (b, 1024, 1024, 1024, RV_DTYPE_F32);
  bench_linear (b, 1024, 1024, 1024, RV_DTYPE_F16);
  bench_conv (b, 1, 64, 64, 128, 128, 3, 1, 1, 1, RV_DTYPE_F32);
  bench_conv (b, 1, 64, 64, 128, 128, 3, 1, 1, 1, RV_DTYPE_F16);
  /* layers of the embedded model: the UNet at 16×16–32×32 latents × batch 2,
   * MoVQ at 64×64, the CLIP vision patch embedding; a conv_in, a downsampler */
  bench_linear (b, 512, 64, 256, RV_DTYPE_F16);
  bench_linear (b, 512, 256, 64, RV_DTYPE_F16);
  bench_linear (b, 2048, 128, 128, RV_DTYPE_F16);
  bench_conv (b, 2, 16, 16, 64, 64, 3, 1, 1, 1, RV_DTYPE_F16);
  bench_conv (b, 2, 32, 32, 32, 32, 3, 1, 1, 1, RV_DTYPE_F16);
  bench_conv (b, 1, 64, 64, 32, 32, 3, 1, 1, 1, RV_DTYPE_F16);
  bench_conv (b, 2, 32, 32, 4, 64, 3, 1, 1, 1, RV_DTYPE_F16);
  bench_conv (b, 1, 64, 64, 64, 64, 3, 2, 0, 1, RV_DTYPE_F16);
  bench_conv (b, 2, 64, 64, 3, 96, 8, 8, 0, 0, RV_DTYPE_F16);
  /* Kandinsky 2.2's UNet at 512×512 (batch 2): the top level, one of the
   * 16×16 ones; a 128-channel 8×8 map */
  bench_conv (b, 2, 64, 64, 320, 320, 3, 1, 1, 1, RV_DTYPE_F16);
  bench_conv (b, 2, 16, 16, 1280, 1280, 3, 1, 1, 1, RV_DTYPE_F16);
  bench_conv (b, 2, 8, 8, 128, 128, 3, 1, 1, 1, RV_DTYPE_F16);
  /* the embedded model's few-row shapes (its weights are f32): the UNet's
   * deepest level (4×4 latents × batch 2) and its attention projections
   * there, a resnet's time projection (batch 2), a prior step after the
   * first (3 tokens × batch 2) */
  bench_conv (b, 2, 4, 4, 128, 128, 3, 1, 1, 1, RV_DTYPE_F32);
  bench_linear (b, 32, 128, 128, RV_DTYPE_F32);
  bench_linear (b, 2, 128, 256, RV_DTYPE_F32);
  bench_linear (b, 6, 128, 512, RV_DTYPE_F32);
  bench_matmul (b, 8, 256, 64, 256, TRUE);
  bench_matmul (b, 8, 256, 256, 64, FALSE);
}
