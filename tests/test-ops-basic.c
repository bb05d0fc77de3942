/* test-ops-basic.c: normalization, elementwise, resampling and embedding ops
 * against double-precision CPU references. */
#include "rv-test-util.h"

#include <math.h>
#include <string.h>

static gint64
numel_of (int ndim, const gint64 *shape)
{
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  return n;
}

/* Random input in [lo, hi) of dtype; *host gets the values the device holds
 * (rounded through f16 for f16 tensors). */
static RvTensor *
input (GRand *rand, RvDType dtype, int ndim, const gint64 *shape, float lo, float hi, float **host)
{
  gint64 n = numel_of (ndim, shape);
  float *v = rv_test_random (rand, n, lo, hi);
  if (dtype == RV_DTYPE_F16)
    rv_test_round_f16 (v, n);
  *host = v;
  return rv_test_tensor (dtype, ndim, shape, v);
}

static double
act_ref (double v, RvAct act)
{
  switch (act)
    {
    case RV_ACT_SILU: return v / (1.0 + exp (-v));
    case RV_ACT_GELU: return 0.5 * v * (1.0 + erf (v / sqrt (2.0)));
    case RV_ACT_QUICK_GELU: return v / (1.0 + exp (-1.702 * v));
    case RV_ACT_NONE:
    default: return v;
    }
}

static const char *
act_name (RvAct act)
{
  static const char *names[] = { "none", "silu", "gelu", "quick_gelu" };
  return names[act];
}

/* ---- elementwise ---- */

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

/* y = alpha·x + r, also in place on r */
static void
test_axpy (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (22);
  const gint64 sizes[] = { 1, 7, 256, 70001 };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
    for (int inplace = 0; inplace < 2; inplace++)
      {
        gint64 n = sizes[s];
        g_autofree float *x = rv_test_random (rand, n, -2, 2);
        g_autofree float *r = rv_test_random (rand, n, -2, 2);
        g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 1, &n, x);
        g_autoptr (RvTensor) tr = rv_test_tensor (RV_DTYPE_F32, 1, &n, r);
        g_autoptr (RvTensor) out = inplace ? NULL : rv_test_output (1, &n);
        RvTensor *ty = inplace ? tr : out;
        rv_op_axpy (rv_test_cmd (), ty, tx, 0.2f, tr);
        g_autofree float *y = rv_test_download (ty);
        g_autofree double *ref = g_new (double, n);
        for (gint64 i = 0; i < n; i++)
          ref[i] = 0.2 * x[i] + r[i];
        rv_test_assert_close (inplace ? "axpy in place" : "axpy", y, ref, n, 1e-6);
      }
}

/* An output larger than one storage-buffer binding (128 MiB on lavapipe) is
 * written in slices. */
static void
test_affine_large (void)
{
  const RvDeviceCaps *caps = rv_device_caps (rv_test_device ());
  gint64 n = (gint64) (caps->max_storage_range / 4) + 1001;
  if (n * 4 > (gint64) caps->max_allocation || n >= G_MAXINT32 / 2)
    {
      g_test_skip ("the device binds whole tensors of this size");
      return;
    }
  g_autofree float *x = g_new (float, n);
  for (gint64 i = 0; i < n; i++)
    x[i] = (float) (i % 1000) - 500.0f;
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 1, &n, x);
  g_autoptr (RvTensor) ty = rv_test_output (1, &n);
  rv_op_affine (rv_test_cmd (), ty, tx, 2.0f, 1.0f);
  g_autofree float *y = rv_test_download (ty);
  gint64 bad = 0;
  for (gint64 i = 0; i < n; i++)
    if (y[i] != 2.0f * x[i] + 1.0f)
      bad++;
  g_assert_cmpint (bad, ==, 0);
}

static void
test_unary (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (2);
  const gint64 sizes[] = { 5, 1000, 70001 };
  for (RvAct act = RV_ACT_NONE; act <= RV_ACT_QUICK_GELU; act++)
    for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
      {
        gint64 n = sizes[s];
        g_autofree float *x = rv_test_random (rand, n, -6, 6);
        g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 1, &n, x);
        g_autoptr (RvTensor) ty = rv_test_output (1, &n);
        rv_op_unary (rv_test_cmd (), ty, tx, act);
        g_autofree float *y = rv_test_download (ty);
        g_autofree double *ref = g_new (double, n);
        for (gint64 i = 0; i < n; i++)
          ref[i] = act_ref (x[i], act);
        rv_test_assert_close (act_name (act), y, ref, n, 1e-6);
      }
}

/* GELU on a dense grid: the erf inside must be within ~1e-7 absolute, so
 * every element is held to that (plus the rounding of the result). */
static void
test_gelu_accuracy (void)
{
  gint64 n = 120001;
  g_autofree float *x = g_new (float, n);
  for (gint64 i = 0; i < n; i++)
    x[i] = -12.0f + 24.0f * (float) i / (float) (n - 1);
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 1, &n, x);
  g_autoptr (RvTensor) ty = rv_test_output (1, &n);
  rv_op_unary (rv_test_cmd (), ty, tx, RV_ACT_GELU);
  g_autofree float *y = rv_test_download (ty);
  double worst = 0;
  for (gint64 i = 0; i < n; i++)
    {
      double ref = act_ref (x[i], RV_ACT_GELU);
      /* |Δgelu| = |x|/2·|Δerf| + rounding of the product */
      double err = (fabs (y[i] - ref) - 1.2e-7 * fabs (ref)) / (0.5 * fabs (x[i]) + 1e-30);
      worst = MAX (worst, err);
    }
  g_test_message ("gelu: worst erf error %.3g", worst);
  g_assert_cmpfloat (worst, <=, 1e-7);
}

/* numpy broadcasting, written out: index of b for element i of a. */
static gint64
broadcast_index (int nd, const gint64 *ashape, int bnd, const gint64 *bshape, gint64 i)
{
  gint64 bi = 0, bstride = 1;
  for (int k = nd - 1, j = bnd - 1; k >= 0; k--, j--)
    {
      gint64 idx = i % ashape[k];
      i /= ashape[k];
      if (j < 0)
        continue;
      if (bshape[j] != 1)
        bi += idx * bstride;
      bstride *= bshape[j];
    }
  return bi;
}

typedef struct {
  int    nd, bnd;
  gint64 a[4], b[4];
} BroadcastCase;

static const BroadcastCase broadcast_cases[] = {
  { 3, 1, { 2, 5, 8 }, { 8 } },                 /* (B, L, C) + (C) */
  { 3, 1, { 2, 5, 7 }, { 7 } },
  { 3, 2, { 2, 5, 8 }, { 5, 8 } },              /* (B, L, C) + (L, C) */
  { 3, 2, { 3, 7, 6 }, { 7, 6 } },
  { 4, 4, { 2, 3, 5, 8 }, { 2, 1, 1, 8 } },     /* (B, H, W, C) · (B, 1, 1, C) */
  { 4, 4, { 2, 3, 5, 5 }, { 2, 1, 1, 5 } },
  { 3, 1, { 2, 3, 5 }, { 1 } },                 /* scalar */
  { 3, 3, { 2, 4, 8 }, { 2, 4, 8 } },           /* same shape */
  { 3, 3, { 2, 3, 5 }, { 2, 3, 5 } },
  { 3, 3, { 2, 5, 8 }, { 2, 5, 1 } },           /* per row */
  { 3, 3, { 2, 5, 6 }, { 2, 1, 6 } },           /* per batch */
  { 4, 4, { 3, 1, 4, 12 }, { 1, 1, 4, 1 } },
  { 2, 3, { 77, 32 }, { 1, 77, 32 } },          /* leading 1 in b */
  { 4, 2, { 2, 64, 64, 4 }, { 64, 1 } },
};

static void
test_binary (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (3);
  for (guint c = 0; c < G_N_ELEMENTS (broadcast_cases); c++)
    for (int op = RV_BIN_ADD; op <= RV_BIN_PRELU; op++)
      for (int f16 = 0; f16 < 2; f16++)
        for (int inplace = 0; inplace < 2; inplace++)
          {
            const BroadcastCase *bc = &broadcast_cases[c];
            gint64 n = numel_of (bc->nd, bc->a);
            g_autofree float *a = NULL, *b = NULL;
            g_autoptr (RvTensor) ta = input (rand, RV_DTYPE_F32, bc->nd, bc->a, -2, 2, &a);
            g_autoptr (RvTensor) tb = input (rand, f16 ? RV_DTYPE_F16 : RV_DTYPE_F32, bc->bnd, bc->b,
                                             -2, 2, &b);
            g_autoptr (RvTensor) out = inplace ? NULL : rv_test_output (bc->nd, bc->a);
            RvTensor *ty = inplace ? ta : out;
            rv_op_binary (rv_test_cmd (), ty, ta, tb, op);
            g_autofree float *y = rv_test_download (ty);
            g_autofree double *ref = g_new (double, n);
            for (gint64 i = 0; i < n; i++)
              {
                double bv = b[broadcast_index (bc->nd, bc->a, bc->bnd, bc->b, i)];
                ref[i] = op == RV_BIN_ADD                      ? a[i] + bv
                         : op == RV_BIN_MUL || a[i] < 0 ? (double) a[i] * bv
                                                        : a[i];
              }
            static const char *const names[] = { "add", "mul", "prelu" };
            g_autofree char *what = g_strdup_printf ("%s case %u%s%s", names[op],
                                                     c, f16 ? " f16" : "", inplace ? " in place" : "");
            rv_test_assert_close (what, y, ref, n, 1e-6);
          }
}

static void
test_scale_shift (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (4);
  for (guint c = 0; c < G_N_ELEMENTS (broadcast_cases); c++)
    for (int f16 = 0; f16 < 2; f16++)
      {
        const BroadcastCase *bc = &broadcast_cases[c];
        /* b broadcast along the last dim only (a bias), s as in the case */
        gint64 bshape[1] = { bc->a[bc->nd - 1] };
        gint64 n = numel_of (bc->nd, bc->a);
        RvDType dt = f16 ? RV_DTYPE_F16 : RV_DTYPE_F32;
        g_autofree float *x = NULL, *s = NULL, *b = NULL;
        g_autoptr (RvTensor) tx = input (rand, RV_DTYPE_F32, bc->nd, bc->a, -2, 2, &x);
        g_autoptr (RvTensor) ts = input (rand, dt, bc->bnd, bc->b, -1, 1, &s);
        g_autoptr (RvTensor) tb = input (rand, dt, 1, bshape, -1, 1, &b);
        g_autoptr (RvTensor) ty = rv_test_output (bc->nd, bc->a);
        rv_op_scale_shift (rv_test_cmd (), ty, tx, ts, tb);
        g_autofree float *y = rv_test_download (ty);
        g_autofree double *ref = g_new (double, n);
        for (gint64 i = 0; i < n; i++)
          ref[i] = x[i] * (1.0 + s[broadcast_index (bc->nd, bc->a, bc->bnd, bc->b, i)]) +
                   b[i % bshape[0]];
        g_autofree char *what = g_strdup_printf ("scale_shift case %u%s", c, f16 ? " f16" : "");
        rv_test_assert_close (what, y, ref, n, 1e-6);
      }
}

/* ---- normalization ---- */

typedef struct {
  int    nd;
  gint64 shape[4];
  int    groups;
} GroupCase;

/* affine: 0 none, 1 f32 γ and β, 2 f16; spatial: bit 0 mul, bit 1 add */
static void
group_norm_case (GRand *rand, const GroupCase *gc, int affine, gboolean ss, int spatial,
                 RvAct act, float offset, double tol)
{
  const gint64 *shape = gc->shape;
  gint64 n = numel_of (gc->nd, shape), batch = shape[0], c = shape[gc->nd - 1];
  gint64 s = n / (batch * c), cg = c / gc->groups;
  RvDType pdt = affine == 2 ? RV_DTYPE_F16 : RV_DTYPE_F32;
  gint64 ss_shape[2] = { batch, 2 * c };
  g_autofree float *x = NULL, *gamma = NULL, *beta = NULL, *sv = NULL, *mul = NULL, *add = NULL;
  g_autoptr (RvTensor) tx = input (rand, RV_DTYPE_F32, gc->nd, shape, offset - 1, offset + 1, &x);
  g_autoptr (RvTensor) tg = affine ? input (rand, pdt, 1, &c, 0.5, 1.5, &gamma) : NULL;
  g_autoptr (RvTensor) tb = affine ? input (rand, pdt, 1, &c, -0.5, 0.5, &beta) : NULL;
  g_autoptr (RvTensor) tss = ss ? input (rand, RV_DTYPE_F32, 2, ss_shape, -0.5, 0.5, &sv) : NULL;
  g_autoptr (RvTensor) tm = spatial & 1 ? input (rand, RV_DTYPE_F32, gc->nd, shape, -1, 1, &mul) : NULL;
  g_autoptr (RvTensor) ta = spatial & 2 ? input (rand, RV_DTYPE_F32, gc->nd, shape, -1, 1, &add) : NULL;
  g_autoptr (RvTensor) ty = rv_test_output (gc->nd, shape);
  RvNorm norm = { tg, tb, tss, tm, ta, act };
  rv_op_group_norm (rv_test_cmd (), ty, tx, gc->groups, 1e-5f, &norm);
  g_autofree float *y = rv_test_download (ty);

  g_autofree double *ref = g_new (double, n);
  for (gint64 b = 0; b < batch; b++)
    for (int g = 0; g < gc->groups; g++)
      {
        double sum = 0, sq = 0;
        for (gint64 r = 0; r < s; r++)
          for (gint64 k = g * cg; k < (g + 1) * cg; k++)
            sum += x[(b * s + r) * c + k];
        double mean = sum / (s * cg);
        for (gint64 r = 0; r < s; r++)
          for (gint64 k = g * cg; k < (g + 1) * cg; k++)
            {
              double d = x[(b * s + r) * c + k] - mean;
              sq += d * d;
            }
        double rstd = 1.0 / sqrt (sq / (s * cg) + 1e-5);
        for (gint64 r = 0; r < s; r++)
          for (gint64 k = g * cg; k < (g + 1) * cg; k++)
            {
              gint64 i = (b * s + r) * c + k;
              double v = (x[i] - mean) * rstd;
              if (affine)
                v = v * gamma[k] + beta[k];
              if (ss)
                v = v * (1.0 + sv[b * 2 * c + k]) + sv[b * 2 * c + c + k];
              if (spatial & 1)
                v *= mul[i];
              if (spatial & 2)
                v += add[i];
              ref[i] = act_ref (v, act);
            }
      }
  g_autofree char *what = g_strdup_printf ("group_norm (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                                           ", %" G_GINT64_FORMAT ")/%d affine %d%s%s%s %s offset %g",
                                           batch, s, c, gc->groups, affine, ss ? " scale_shift" : "",
                                           spatial & 1 ? " mul" : "", spatial & 2 ? " add" : "",
                                           act_name (act), offset);
  rv_test_assert_close (what, y, ref, n, tol);
}

static void
test_group_norm (void)
{
  static const GroupCase cases[] = {
    { 3, { 2, 256, 64 }, 32 },        /* the embedded UNet's shapes */
    { 3, { 2, 256, 128 }, 32 },
    { 4, { 1, 16, 16, 32 }, 32 },     /* one channel per group */
    { 4, { 2, 8, 8, 64 }, 8 },
    { 3, { 3, 5, 6 }, 3 },            /* C % 4 != 0 */
    { 3, { 2, 7, 5 }, 5 },
    { 3, { 2, 9, 12 }, 4 },
    { 2, { 3, 8 }, 4 },               /* S = 1 */
    { 4, { 2, 3, 5, 384 }, 32 },
    { 4, { 1, 33, 17, 40 }, 8 },
    { 3, { 1, 1000, 1540 }, 35 },     /* more than one column block */
    { 3, { 2, 4096, 64 }, 32 },       /* large enough for three passes */
    { 3, { 3, 7000, 20 }, 5 },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (5);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    group_norm_case (rand, &cases[i], 1, FALSE, 0, RV_ACT_NONE, 0, 1e-5);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    group_norm_case (rand, &cases[i], 1, FALSE, 0, RV_ACT_SILU, 3, 1e-5);
}

/* Every combination of RvNorm's operands (each activation among them) on
 * even and odd shapes, small ones (one fused dispatch) and larger ones (three
 * passes). */
static void
test_group_norm_options (void)
{
  static const GroupCase cases[] = {
    { 3, { 2, 64, 32 }, 8 },
    { 4, { 2, 3, 5, 6 }, 2 },
    { 3, { 1, 8192, 12 }, 3 },
    { 3, { 1, 20000, 6 }, 2 },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (6);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int affine = 0, combo = 0; affine < 3; affine++)
      for (int ss = 0; ss < 2; ss++)
        for (int spatial = 0; spatial < 4; spatial++, combo++)
          group_norm_case (rand, &cases[i], affine, ss, spatial, (RvAct) (combo % 4), 0.5, 1e-5);
}

/* Millions of elements per group, far from zero mean: the variance must not
 * come from E[x²] − E[x]² in f32. The last case's y exceeds one storage
 * binding on lavapipe (128 MiB), so it is written in pieces. */
static void
test_group_norm_large (void)
{
  static const GroupCase cases[] = {
    { 3, { 1, 1024 * 1024, 4 }, 2 },
    { 4, { 1, 512, 512, 32 }, 32 },
    { 3, { 2, 524288 + 32, 32 }, 8 },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (7);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    group_norm_case (rand, &cases[i], 1, FALSE, 0, RV_ACT_NONE, 20, 1e-5);
}

static void
test_layer_norm (void)
{
  static const struct { int nd; gint64 shape[3]; } cases[] = {
    { 3, { 2, 77, 32 } }, { 3, { 3, 5, 7 } }, { 2, { 1, 1280 } }, { 3, { 2, 81, 24 } },
    { 3, { 4, 257, 64 } }, { 2, { 3, 1 } }, { 2, { 5, 1001 } }, { 1, { 6 } },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (8);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int affine = 0; affine < 4; affine++)
      {
        const gint64 *shape = cases[i].shape;
        int nd = cases[i].nd;
        gint64 n = numel_of (nd, shape), c = shape[nd - 1], rows = n / c;
        RvDType pdt = affine == 3 ? RV_DTYPE_F16 : RV_DTYPE_F32;
        g_autofree float *x = NULL, *gamma = NULL, *beta = NULL;
        g_autoptr (RvTensor) tx = input (rand, RV_DTYPE_F32, nd, shape, 9, 11, &x);
        g_autoptr (RvTensor) tg = affine & 1 ? input (rand, pdt, 1, &c, 0.5, 1.5, &gamma) : NULL;
        g_autoptr (RvTensor) tb = affine & 2 ? input (rand, pdt, 1, &c, -1, 1, &beta) : NULL;
        g_autoptr (RvTensor) ty = rv_test_output (nd, shape);
        rv_op_layer_norm (rv_test_cmd (), ty, tx, tg, tb, 1e-5f);
        g_autofree float *y = rv_test_download (ty);
        g_autofree double *ref = g_new (double, n);
        for (gint64 r = 0; r < rows; r++)
          {
            const float *xr = x + r * c;
            double mean = 0, var = 0;
            for (gint64 k = 0; k < c; k++)
              mean += xr[k];
            mean /= c;
            for (gint64 k = 0; k < c; k++)
              var += (xr[k] - mean) * (xr[k] - mean);
            double rstd = 1.0 / sqrt (var / c + 1e-5);
            for (gint64 k = 0; k < c; k++)
              ref[r * c + k] = (xr[k] - mean) * rstd * (gamma ? gamma[k] : 1.0) + (beta ? beta[k] : 0.0);
          }
        g_autofree char *what = g_strdup_printf ("layer_norm case %u params %d", i, affine);
        rv_test_assert_close (what, y, ref, n, 1e-5);
      }
}

/* ---- concatenation, resampling ---- */

static void
test_concat (void)
{
  static const struct { int nd; gint64 a[4]; gint64 b_len; int dim; } cases[] = {
    { 4, { 2, 3, 4, 8 }, 4, 3 },      /* channel concat */
    { 4, { 2, 3, 4, 6 }, 3, 3 },
    { 4, { 2, 3, 4, 8 }, 5, 2 },
    { 4, { 2, 3, 5, 3 }, 2, 1 },
    { 4, { 2, 3, 4, 8 }, 1, 0 },
    { 3, { 2, 77, 32 }, 4, 1 },       /* tokens */
    { 3, { 2, 3, 5 }, 2, -1 },
    { 1, { 7 }, 9, 0 },
    { 2, { 1, 8 }, 1, 0 },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (9);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int f16 = 0; f16 < 2; f16++)
      {
        int nd = cases[i].nd, dim = cases[i].dim < 0 ? cases[i].dim + nd : cases[i].dim;
        gint64 ashape[4], bshape[4], yshape[4];
        memcpy (ashape, cases[i].a, sizeof ashape);
        memcpy (bshape, ashape, sizeof bshape);
        bshape[dim] = cases[i].b_len;
        memcpy (yshape, ashape, sizeof yshape);
        yshape[dim] = ashape[dim] + bshape[dim];
        g_autofree float *a = NULL, *b = NULL;
        g_autoptr (RvTensor) ta = input (rand, RV_DTYPE_F32, nd, ashape, -1, 1, &a);
        g_autoptr (RvTensor) tb = input (rand, f16 ? RV_DTYPE_F16 : RV_DTYPE_F32, nd, bshape, -1, 1, &b);
        g_autoptr (RvTensor) ty = rv_test_output (nd, yshape);
        rv_op_concat (rv_test_cmd (), ty, ta, tb, cases[i].dim);
        g_autofree float *y = rv_test_download (ty);
        gint64 n = numel_of (nd, yshape), inner = numel_of (nd - dim - 1, yshape + dim + 1);
        g_autofree double *ref = g_new (double, n);
        for (gint64 e = 0; e < n; e++)
          {
            gint64 o = e / (yshape[dim] * inner), r = e % (yshape[dim] * inner);
            gint64 na = ashape[dim] * inner, nb = bshape[dim] * inner;
            ref[e] = r < na ? a[o * na + r] : b[o * nb + r - na];
          }
        g_autofree char *what = g_strdup_printf ("concat case %u%s", i, f16 ? " f16" : "");
        rv_test_assert_close (what, y, ref, n, 0);
      }
}

/* torch's nearest source index: floor (dst · (float) in / out) in f32. */
static gint64
nearest_src (gint64 dst, gint64 in, gint64 out)
{
  float scale = (float) in / (float) out;
  float p = (float) dst * scale;
  return MIN ((gint64) floorf (p), in - 1);
}

static void
resample_case (GRand *rand, const gint64 xs[4], const gint64 ys[4], int mode)
{
  g_autofree float *x = NULL;
  g_autoptr (RvTensor) tx = input (rand, RV_DTYPE_F32, 4, xs, -1, 1, &x);
  g_autoptr (RvTensor) ty = rv_test_output (4, ys);
  const char *names[] = { "upsample_nearest2x", "avgpool2x2", "resize_nearest" };
  if (mode == 0)
    rv_op_upsample_nearest2x (rv_test_cmd (), ty, tx);
  else if (mode == 1)
    rv_op_avgpool2x2 (rv_test_cmd (), ty, tx);
  else
    rv_op_resize_nearest (rv_test_cmd (), ty, tx);
  g_autofree float *y = rv_test_download (ty);
  gint64 n = numel_of (4, ys), c = xs[3];
  g_autofree double *ref = g_new (double, n);
  for (gint64 b = 0; b < ys[0]; b++)
    for (gint64 oy = 0; oy < ys[1]; oy++)
      for (gint64 ox = 0; ox < ys[2]; ox++)
        for (gint64 k = 0; k < c; k++)
          {
            double v;
#define X(iy, ix) ((double) x[((b * xs[1] + (iy)) * xs[2] + (ix)) * c + k])
            if (mode == 1)
              v = (X (2 * oy, 2 * ox) + X (2 * oy, 2 * ox + 1) + X (2 * oy + 1, 2 * ox) +
                   X (2 * oy + 1, 2 * ox + 1)) / 4;
            else if (mode == 0)
              v = X (oy / 2, ox / 2);
            else
              v = X (nearest_src (oy, xs[1], ys[1]), nearest_src (ox, xs[2], ys[2]));
#undef X
            ref[((b * ys[1] + oy) * ys[2] + ox) * c + k] = v;
          }
  g_autofree char *what = g_strdup_printf ("%s (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ", %"
                                           G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") -> (%" G_GINT64_FORMAT
                                           ", %" G_GINT64_FORMAT ")", names[mode], xs[0], xs[1], xs[2],
                                           xs[3], ys[1], ys[2]);
  rv_test_assert_close (what, y, ref, n, 1e-7);
}

/* Pixel shuffle and unshuffle by r, against the index rule in NCHW terms
 * (torch's) translated to channel-last; shuffle then unshuffle is the identity. */
static void
test_pixel_shuffle (void)
{
  static const struct { gint64 b, h, w, c; int r; } cases[] = {
    { 1, 4, 3, 3, 2 }, { 2, 5, 7, 3, 4 }, { 1, 3, 3, 4, 3 }, { 1, 6, 4, 16, 2 }, { 1, 1, 1, 1, 4 },
    { 2, 2, 9, 5, 1 },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (21);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gint64 r = cases[i].r, c = cases[i].c;
      gint64 xs[4] = { cases[i].b, cases[i].h, cases[i].w, c * r * r };
      gint64 ys[4] = { cases[i].b, cases[i].h * r, cases[i].w * r, c };
      g_autofree float *x = NULL;
      g_autoptr (RvTensor) tx = input (rand, i % 2 ? RV_DTYPE_F16 : RV_DTYPE_F32, 4, xs, -1, 1, &x);
      g_autoptr (RvTensor) ty = rv_test_output (4, ys);
      g_autoptr (RvTensor) tback = rv_test_output (4, xs);
      rv_op_pixel_shuffle (rv_test_cmd (), ty, tx, (int) r);
      rv_op_pixel_unshuffle (rv_test_cmd (), tback, ty, (int) r);
      g_autofree float *y = rv_test_download (ty);
      g_autofree float *back = rv_test_download (tback);
      gint64 n = numel_of (4, ys);
      g_autofree double *ref = g_new (double, n);
      g_autofree double *xd = g_new (double, n);
      for (gint64 b = 0; b < ys[0]; b++)
        for (gint64 oy = 0; oy < ys[1]; oy++)
          for (gint64 ox = 0; ox < ys[2]; ox++)
            for (gint64 k = 0; k < c; k++)
              ref[((b * ys[1] + oy) * ys[2] + ox) * c + k] =
                x[((b * xs[1] + oy / r) * xs[2] + ox / r) * xs[3] + k * r * r + (oy % r) * r + ox % r];
      for (gint64 e = 0; e < n; e++)
        xd[e] = x[e];
      g_autofree char *what = g_strdup_printf ("pixel_shuffle case %u", i);
      rv_test_assert_close (what, y, ref, n, 0);
      g_autofree char *what2 = g_strdup_printf ("pixel_unshuffle case %u", i);
      rv_test_assert_close (what2, back, xd, n, 0);
    }

  /* shapes that do not divide are errors */
  g_autoptr (GError) error = NULL;
  gint64 xs[4] = { 1, 3, 4, 8 }, ys[4] = { 1, 1, 2, 32 };
  g_autoptr (RvTensor) tx = rv_test_output (4, xs);
  g_autoptr (RvTensor) ty = rv_test_output (4, ys);
  rv_op_pixel_unshuffle (rv_test_cmd (), ty, tx, 2);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);
  rv_op_pixel_shuffle (rv_test_cmd (), ty, tx, 3);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
}

static void
test_resample (void)
{
  static const gint64 shapes[][4] = {
    { 2, 3, 5, 8 }, { 1, 4, 4, 3 }, { 2, 6, 4, 32 }, { 1, 7, 5, 3 }, { 3, 1, 1, 4 }, { 1, 9, 2, 5 },
  };
  g_autoptr (GRand) rand = g_rand_new_with_seed (10);
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    {
      const gint64 *xs = shapes[i];
      gint64 up[4] = { xs[0], 2 * xs[1], 2 * xs[2], xs[3] };
      resample_case (rand, xs, up, 0);
      resample_case (rand, xs, up, 2);
      if (xs[1] >= 2 && xs[2] >= 2)
        {
          gint64 down[4] = { xs[0], xs[1] / 2, xs[2] / 2, xs[3] };
          resample_case (rand, xs, down, 1);
        }
    }
  static const gint64 resizes[][2][4] = {
    { { 1, 4, 4, 4 }, { 1, 8, 8, 4 } },
    { { 2, 5, 7, 3 }, { 2, 12, 9, 3 } },
    { { 1, 9, 9, 4 }, { 1, 4, 5, 4 } },
    { { 1, 26, 39, 8 }, { 1, 22, 33, 8 } },   /* where f32 and exact index math differ */
    { { 2, 3, 3, 2 }, { 2, 3, 3, 2 } },
    { { 1, 2, 3, 16 }, { 1, 16, 24, 16 } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (resizes); i++)
    resample_case (rand, resizes[i][0], resizes[i][1], 2);
}

/* ---- embeddings ---- */

/* The reference's arithmetic, step by step: f32 exponent and argument, exp of
 * the f32 exponent rounded to f32, sin and cos rounded once from double. */
static void
timestep_ref (double *out, const float *t, int batch, int dim, gboolean flip, float shift)
{
  int half = dim / 2;
  for (int b = 0; b < batch; b++)
    {
      for (int k = 0; k < half; k++)
        {
          volatile float e = (float) -log (10000.0);
          e = e * (float) k;
          e = e / ((float) half - shift);
          volatile float f = (float) exp (e);
          volatile float arg = t[b] * f;
          float sn = (float) sin (arg), cs = (float) cos (arg);
          out[b * dim + (flip ? half : 0) + k] = sn;
          out[b * dim + (flip ? 0 : half) + k] = cs;
        }
      if (dim % 2)
        out[b * dim + dim - 1] = 0;
    }
}

static void
test_timestep_embedding (void)
{
  const float t[] = { 0, 1, 999, 0.5f, 437.25f, 981 };
  const int dims[] = { 2, 7, 8, 32, 33, 320, 1536 };
  for (guint d = 0; d < G_N_ELEMENTS (dims); d++)
    for (int flip = 0; flip < 2; flip++)
      for (int shift = 0; shift < 2; shift++)
        {
          int dim = dims[d], batch = G_N_ELEMENTS (t);
          if (dim / 2 - shift <= 0)
            continue;
          gint64 shape[2] = { batch, dim };
          g_autoptr (RvTensor) ty = rv_test_output (2, shape);
          rv_op_timestep_embedding (rv_test_cmd (), ty, t, batch, flip, shift);
          g_autofree float *y = rv_test_download (ty);
          g_autofree double *ref = g_new (double, batch * dim);
          timestep_ref (ref, t, batch, dim, flip, shift);
          g_autofree char *what = g_strdup_printf ("timestep_embedding dim %d flip %d shift %d", dim, flip, shift);
          rv_test_assert_close (what, y, ref, batch * dim, 0);
        }

  /* rows from diffusers' get_timestep_embedding run by torch (CPU, f32); its
   * vectorized exp and sin differ from the exactly rounded ones by an ulp, so
   * these agree to ~1e-4 at t ≈ 1000 */
  static const struct { int dim; gboolean flip; float shift; float t; float row[10]; } golden[] = {
    { 8, TRUE, 0, 1, { 0.540302336, 0.995004177, 0.999949992, 0.999999523, 0.841470957, 0.099833414,
                       0.00999983307, 0.000999999815 } },
    { 8, TRUE, 0, 999, { 0.999649823, 0.807455063, -0.844469845, 0.541143537, -0.0264607519, -0.589929104,
                         -0.535603166, 0.840930223 } },
    { 8, TRUE, 0, 437.25, { -0.842644215, 0.967080891, -0.333382487, 0.905919611, -0.538470685,
                            -0.254469097, -0.9427917, 0.423449755 } },
    { 7, FALSE, 1, 999, { -0.0264607519, -0.535603166, 0.0997339115, 0.999649823, -0.844469845,
                          0.995014131, 0 } },
    { 10, TRUE, 1, 981, { 0.679957211, -0.757958531, -0.926715255, 0.556191802, 0.995192051, 0.73325181,
                          -0.652302742, -0.37576443, 0.831053972, 0.0979427248 } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (golden); i++)
    {
      gint64 shape[2] = { 1, golden[i].dim };
      g_autoptr (RvTensor) ty = rv_test_output (2, shape);
      rv_op_timestep_embedding (rv_test_cmd (), ty, &golden[i].t, 1, golden[i].flip, golden[i].shift);
      g_autofree float *y = rv_test_download (ty);
      for (int k = 0; k < golden[i].dim; k++)
        g_assert_cmpfloat_with_epsilon (y[k], golden[i].row[k], 1e-4);
    }
}

static void
test_embedding (void)
{
  static const gint64 tables[][2] = { { 50, 8 }, { 13, 5 }, { 49408, 32 }, { 7, 1 }, { 3, 12 } };
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);
  for (guint i = 0; i < G_N_ELEMENTS (tables); i++)
    for (int f16 = 0; f16 < 2; f16++)
      {
        gint64 v = tables[i][0], c = tables[i][1], nid = 2 * 77 + (gint64) i;
        g_autofree float *table = NULL;
        g_autoptr (RvTensor) tt = input (rand, f16 ? RV_DTYPE_F16 : RV_DTYPE_F32, 2, tables[i], -1, 1, &table);
        g_autofree float *ids = g_new (float, nid);
        for (gint64 k = 0; k < nid; k++)
          ids[k] = g_rand_int_range (rand, 0, v);
        ids[nid - 1] = v - 1;
        g_autoptr (RvTensor) tids = rv_test_tensor (RV_DTYPE_I32, 1, &nid, ids);
        gint64 yshape[2] = { nid, c };
        g_autoptr (RvTensor) ty = rv_test_output (2, yshape);
        rv_op_embedding (rv_test_cmd (), ty, tt, tids);
        g_autofree float *y = rv_test_download (ty);
        g_autofree double *ref = g_new (double, nid * c);
        for (gint64 k = 0; k < nid; k++)
          for (gint64 j = 0; j < c; j++)
            ref[k * c + j] = table[(gint64) ids[k] * c + j];
        g_autofree char *what = g_strdup_printf ("embedding (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ")%s",
                                                 v, c, f16 ? " f16" : "");
        rv_test_assert_close (what, y, ref, nid * c, 0);
      }
}

/* Shape errors are recorded on the stream and reported at submit. */
static void
test_invalid (void)
{
  gint64 s3[3] = { 2, 4, 6 }, s1[1] = { 5 };
  g_autoptr (RvTensor) x = rv_test_output (3, s3);
  g_autoptr (RvTensor) y = rv_test_output (3, s3);
  g_autoptr (RvTensor) b = rv_test_output (1, s1);
  g_autoptr (GError) error = NULL;
  rv_op_binary (rv_test_cmd (), y, x, b, RV_BIN_ADD);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);
  rv_op_group_norm (rv_test_cmd (), y, x, 4, 1e-5f, NULL);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
}

/* rv_tensor_part: each part of a (3, 4, 8) tensor, read by a kernel as a
 * (4, 8) tensor of its own, gives that part's values and no other. */
static void
test_tensor_part (void)
{
  const gint64 whole[3] = { 3, 4, 8 }, shape[2] = { 4, 8 };
  g_autofree float *v = g_new (float, 96);
  for (int i = 0; i < 96; i++)
    v[i] = (float) i;
  g_autoptr (RvTensor) t = rv_test_tensor (RV_DTYPE_F32, 3, whole, v);
  for (int p = 0; p < 3; p++)
    {
      RvTensor part = rv_tensor_part (t, p, 2, shape);
      g_assert_cmpint (rv_tensor_numel (&part), ==, 32);
      g_assert_cmpuint (part.offset, ==, t->offset + p * 32 * sizeof (float));
      g_autoptr (RvTensor) y = rv_test_output (2, shape);
      rv_op_affine (rv_test_cmd (), y, &part, 2.0f, 1.0f);
      g_autofree float *got = rv_test_download (y);
      for (int i = 0; i < 32; i++)
        g_assert_cmpfloat (got[i], ==, 2.0f * (p * 32 + i) + 1.0f);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/ops/affine", test_affine);
  rv_test_add ("/ops/tensor-part", test_tensor_part);
  rv_test_add ("/ops/affine/large", test_affine_large);
  rv_test_add ("/ops/axpy", test_axpy);
  rv_test_add ("/ops/unary", test_unary);
  rv_test_add ("/ops/unary/gelu-accuracy", test_gelu_accuracy);
  rv_test_add ("/ops/binary", test_binary);
  rv_test_add ("/ops/scale-shift", test_scale_shift);
  rv_test_add ("/ops/group-norm", test_group_norm);
  rv_test_add ("/ops/group-norm/options", test_group_norm_options);
  rv_test_add ("/ops/group-norm/large", test_group_norm_large);
  rv_test_add ("/ops/layer-norm", test_layer_norm);
  rv_test_add ("/ops/concat", test_concat);
  rv_test_add ("/ops/resample", test_resample);
  rv_test_add ("/ops/pixel-shuffle", test_pixel_shuffle);
  rv_test_add ("/ops/timestep-embedding", test_timestep_embedding);
  rv_test_add ("/ops/embedding", test_embedding);
  rv_test_add ("/ops/invalid", test_invalid);
  return g_test_run ();
}
