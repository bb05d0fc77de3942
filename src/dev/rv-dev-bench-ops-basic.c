/* rv-dev-bench-ops-basic.c: benchmarks of the basic op family (normalization,
 * elementwise, resampling, embeddings) at the embedded and the real model's
 * shapes. GB/s counts each tensor read or written once. */
#include "rv-dev-bench.h"

#include <string.h>

typedef struct {
  RvTensor *x, *y, *a, *b, *c, *d, *e;
  int       groups, dim;
  RvAct     act;
  RvNorm    norm;
  float     t[2];
} Data;

static void
data_clear (Data *d)
{
  g_clear_pointer (&d->x, rv_tensor_free);
  g_clear_pointer (&d->y, rv_tensor_free);
  g_clear_pointer (&d->a, rv_tensor_free);
  g_clear_pointer (&d->b, rv_tensor_free);
  g_clear_pointer (&d->c, rv_tensor_free);
  g_clear_pointer (&d->d, rv_tensor_free);
  g_clear_pointer (&d->e, rv_tensor_free);
}

/* A device tensor filled with a small constant (contents do not matter for
 * timing; NaNs might). NULL after printing the error. */
static RvTensor *
tensor (RvBench *b, RvDType dtype, int ndim, const gint64 *shape)
{
  g_autoptr (GError) error = NULL;
  RvTensor *t = rv_tensor_new (rv_bench_device (b), dtype, ndim, shape, &error);
  if (t == NULL)
    {
      g_printerr ("bench: %s\n", error->message);
      return NULL;
    }
  rv_cmd_fill_u32 (rv_bench_cmd (b), t, dtype == RV_DTYPE_F16 ? 0x3c003c00u : 0x3f800000u);
  return t;
}

static char *
shape_str (int ndim, const gint64 *shape)
{
  GString *s = g_string_new ("(");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append (s, ")");
  return g_string_free (s, FALSE);
}

static gint64
numel (int ndim, const gint64 *shape)
{
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  return n;
}

static void
run_affine (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_affine (cmd, d->y, d->x, 2.0f, 1.0f);
}

static void
run_unary (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_unary (cmd, d->y, d->x, d->act);
}

static void
run_add (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_binary (cmd, d->y, d->x, d->a, RV_BIN_ADD);
}

static void
run_scale_shift (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_scale_shift (cmd, d->y, d->x, d->a, d->b);
}

static void
run_group_norm (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_group_norm (cmd, d->y, d->x, d->groups, 1e-5f, &d->norm);
}

static void
run_layer_norm (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_layer_norm (cmd, d->y, d->x, d->a, d->b, 1e-5f);
}

static void
run_concat (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_concat (cmd, d->y, d->x, d->a, d->dim);
}

static void
run_upsample (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_upsample_nearest2x (cmd, d->y, d->x);
}

static void
run_avgpool (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_avgpool2x2 (cmd, d->y, d->x);
}

static void
run_resize (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_resize_nearest (cmd, d->y, d->x);
}

static void
run_embedding (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_embedding (cmd, d->y, d->a, d->b);
}

static void
run_timestep (RvCmd *cmd, gpointer p)
{
  Data *d = p;
  rv_op_timestep_embedding (cmd, d->y, d->t, 2, TRUE, 0);
}

/* y = op (x) over one shape: affine and the activations. */
static void
bench_unary (RvBench *b, const char *op, RvAct act, int ndim, const gint64 *shape, double flops_each,
             RvBenchFn fn)
{
  g_autofree char *s = shape_str (ndim, shape);
  if (!rv_bench_wanted (b, op, s))
    return;
  Data d = { 0 };
  d.act = act;
  d.x = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.y = d.x ? tensor (b, RV_DTYPE_F32, ndim, shape) : NULL;
  gint64 n = numel (ndim, shape);
  if (d.y != NULL)
    rv_bench_op (b, op, s, flops_each * n, 8.0 * n, fn, &d);
  data_clear (&d);
}

static void
bench_group_norm (RvBench *b, int ndim, const gint64 *shape, int groups, gboolean silu, gboolean spatial,
                  gboolean scale_shift)
{
  g_autofree char *s = shape_str (ndim, shape);
  g_autofree char *full = g_strdup_printf ("%s/%d%s%s%s", s, groups, silu ? " silu" : "",
                                           spatial ? " spatial" : "", scale_shift ? " scale-shift" : "");
  if (!rv_bench_wanted (b, "group_norm", full))
    return;
  gint64 c = shape[ndim - 1], n = numel (ndim, shape);
  gint64 ss[2] = { shape[0], 2 * c };
  Data d = { 0 };
  d.groups = groups;
  d.x = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.y = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.a = tensor (b, RV_DTYPE_F16, 1, &c);
  d.b = tensor (b, RV_DTYPE_F16, 1, &c);
  if (spatial)
    {
      d.c = tensor (b, RV_DTYPE_F32, ndim, shape);
      d.d = tensor (b, RV_DTYPE_F32, ndim, shape);
    }
  if (scale_shift)
    d.e = tensor (b, RV_DTYPE_F32, 2, ss);
  RvNorm norm = { d.a, d.b, d.e, d.c, d.d, silu ? RV_ACT_SILU : RV_ACT_NONE };
  d.norm = norm;
  /* x read twice (statistics, apply), y written once, mul and add read once */
  double bytes = 4.0 * n * (3 + (spatial ? 2 : 0));
  if (d.x && d.y && d.a && d.b && (!spatial || (d.c && d.d)) && (!scale_shift || d.e))
    rv_bench_op (b, "group_norm", full, 8.0 * n, bytes, run_group_norm, &d);
  data_clear (&d);
}

static void
bench_layer_norm (RvBench *b, int ndim, const gint64 *shape)
{
  g_autofree char *s = shape_str (ndim, shape);
  if (!rv_bench_wanted (b, "layer_norm", s))
    return;
  gint64 c = shape[ndim - 1], n = numel (ndim, shape);
  Data d = { 0 };
  d.x = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.y = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.a = tensor (b, RV_DTYPE_F16, 1, &c);
  d.b = tensor (b, RV_DTYPE_F16, 1, &c);
  if (d.x && d.y && d.a && d.b)
    rv_bench_op (b, "layer_norm", s, 8.0 * n, 8.0 * n, run_layer_norm, &d);
  data_clear (&d);
}

/* x (shape) with a broadcast operand of bshape: add, or scale-shift with two. */
static void
bench_broadcast (RvBench *b, const char *op, int ndim, const gint64 *shape, int bndim,
                 const gint64 *bshape, gboolean two)
{
  g_autofree char *s = shape_str (ndim, shape);
  g_autofree char *bs = shape_str (bndim, bshape);
  g_autofree char *full = g_strdup_printf ("%s·%s", s, bs);
  if (!rv_bench_wanted (b, op, full))
    return;
  gint64 n = numel (ndim, shape), bn = numel (bndim, bshape);
  Data d = { 0 };
  d.x = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.y = tensor (b, RV_DTYPE_F32, ndim, shape);
  d.a = tensor (b, RV_DTYPE_F32, bndim, bshape);
  d.b = two ? tensor (b, RV_DTYPE_F32, bndim, bshape) : NULL;
  if (d.x && d.y && d.a && (!two || d.b))
    rv_bench_op (b, op, full, (two ? 3.0 : 1.0) * n, 8.0 * n + 4.0 * bn * (two ? 2 : 1),
                 two ? run_scale_shift : run_add, &d);
  data_clear (&d);
}

static void
bench_resample (RvBench *b, const char *op, const gint64 xs[4], const gint64 ys[4], RvBenchFn fn)
{
  g_autofree char *s1 = shape_str (4, xs);
  g_autofree char *s2 = shape_str (4, ys);
  g_autofree char *full = g_strdup_printf ("%s→%s", s1, s2);
  if (!rv_bench_wanted (b, op, full))
    return;
  Data d = { 0 };
  d.x = tensor (b, RV_DTYPE_F32, 4, xs);
  d.y = tensor (b, RV_DTYPE_F32, 4, ys);
  double bytes = 4.0 * (numel (4, xs) + numel (4, ys));
  if (d.x && d.y)
    rv_bench_op (b, op, full, fn == run_avgpool ? numel (4, xs) : 0, bytes, fn, &d);
  data_clear (&d);
}

static void
bench_concat (RvBench *b, int ndim, const gint64 *as, gint64 blen, int dim)
{
  gint64 bs[4], ys[4];
  memcpy (bs, as, ndim * sizeof (gint64));
  memcpy (ys, as, ndim * sizeof (gint64));
  bs[dim] = blen;
  ys[dim] = as[dim] + blen;
  g_autofree char *s1 = shape_str (ndim, as);
  g_autofree char *s2 = shape_str (ndim, bs);
  g_autofree char *full = g_strdup_printf ("%s+%s dim %d", s1, s2, dim);
  if (!rv_bench_wanted (b, "concat", full))
    return;
  Data d = { 0 };
  d.dim = dim;
  d.x = tensor (b, RV_DTYPE_F32, ndim, as);
  d.a = tensor (b, RV_DTYPE_F32, ndim, bs);
  d.y = tensor (b, RV_DTYPE_F32, ndim, ys);
  if (d.x && d.a && d.y)
    rv_bench_op (b, "concat", full, 0, 8.0 * numel (ndim, ys), run_concat, &d);
  data_clear (&d);
}

static void
bench_embedding (RvBench *b, gint64 vocab, gint64 c, gint64 n, RvDType dtype)
{
  g_autofree char *full = g_strdup_printf ("(%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ")[%" G_GINT64_FORMAT
                                           "] %s", vocab, c, n, rv_dtype_name (dtype));
  if (!rv_bench_wanted (b, "embedding", full))
    return;
  gint64 ts[2] = { vocab, c }, ys[2] = { n, c };
  Data d = { 0 };
  d.a = tensor (b, dtype, 2, ts);
  d.b = tensor (b, RV_DTYPE_I32, 1, &n);
  d.y = tensor (b, RV_DTYPE_F32, 2, ys);
  if (d.a && d.b)
    rv_cmd_fill_u32 (rv_bench_cmd (b), d.b, 7);
  if (d.a && d.b && d.y)
    rv_bench_op (b, "embedding", full, 0, (4.0 + rv_dtype_size (dtype)) * n * c, run_embedding, &d);
  data_clear (&d);
}

void
rv_bench_ops_basic (RvBench *b)
{
  /* elementwise */
  gint64 big[1] = { 1 << 24 };
  bench_unary (b, "affine", RV_ACT_NONE, 1, big, 2, run_affine);
  gint64 act_shapes[][4] = { { 2, 16, 16, 128 }, { 2, 64, 64, 128 } };
  for (guint i = 0; i < G_N_ELEMENTS (act_shapes); i++)
    {
      bench_unary (b, "silu", RV_ACT_SILU, 4, act_shapes[i], 4, run_unary);
      bench_unary (b, "gelu", RV_ACT_GELU, 4, act_shapes[i], 30, run_unary);
    }
  gint64 tok[3] = { 2, 4096, 128 }, bias[1] = { 128 };
  bench_broadcast (b, "add", 3, tok, 1, bias, FALSE);
  bench_broadcast (b, "add", 3, tok, 3, tok, FALSE);
  gint64 img[4] = { 2, 64, 64, 128 }, ss[4] = { 2, 1, 1, 128 };
  bench_broadcast (b, "scale_shift", 4, img, 4, ss, TRUE);

  /* normalization: the embedded model's shapes, then the real model's */
  static const struct { int ndim; gint64 shape[4]; int groups; gboolean silu, spatial, ss; } gn[] = {
    { 3, { 2, 256, 64 }, 32, TRUE, FALSE, FALSE },
    { 3, { 2, 256, 128 }, 32, FALSE, FALSE, TRUE },
    { 4, { 1, 64, 64, 32 }, 32, TRUE, TRUE, FALSE },
    { 4, { 2, 96, 96, 384 }, 32, TRUE, FALSE, FALSE },
    { 4, { 1, 768, 768, 128 }, 32, TRUE, TRUE, FALSE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (gn); i++)
    bench_group_norm (b, gn[i].ndim, gn[i].shape, gn[i].groups, gn[i].silu, gn[i].spatial, gn[i].ss);
  static const gint64 ln[][3] = { { 2, 77, 32 }, { 2, 77, 1280 }, { 2, 81, 2048 }, { 1, 257, 1664 } };
  for (guint i = 0; i < G_N_ELEMENTS (ln); i++)
    bench_layer_norm (b, 3, ln[i]);

  /* concatenation and resampling */
  gint64 skip[4] = { 2, 32, 32, 128 };
  bench_concat (b, 4, skip, 128, 3);
  gint64 seq[3] = { 2, 77, 2048 };
  bench_concat (b, 3, seq, 4, 1);
  gint64 lo[4] = { 2, 32, 32, 128 }, hi[4] = { 2, 64, 64, 128 };
  bench_resample (b, "upsample_nearest2x", lo, hi, run_upsample);
  bench_resample (b, "avgpool2x2", hi, lo, run_avgpool);
  gint64 zq[4] = { 1, 8, 8, 4 }, f[4] = { 1, 64, 64, 4 };
  bench_resample (b, "resize_nearest", zq, f, run_resize);

  /* embeddings */
  bench_embedding (b, 49408, 1280, 154, RV_DTYPE_F16);
  bench_embedding (b, 49408, 32, 154, RV_DTYPE_F32);
  if (rv_bench_wanted (b, "timestep_embedding", "(2, 1536)"))
    {
      gint64 ts[2] = { 2, 1536 };
      Data d = { 0 };
      d.t[0] = 981;
      d.t[1] = 981;
      d.y = tensor (b, RV_DTYPE_F32, 2, ts);
      if (d.y)
        rv_bench_op (b, "timestep_embedding", "(2, 1536)", 0, 4.0 * 2 * 1536, run_timestep, &d);
      data_clear (&d);
    }
}
