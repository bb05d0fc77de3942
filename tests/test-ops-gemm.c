/* test-ops-gemm.c: the gemm op family (linear, matmul, conv2d) against
 * double-precision CPU references, through every kernel variant the device
 * can run (on lavapipe: the CPU kernel and the tiled GPU kernel; the
 * cooperative-matrix kernel where the device has it). */
#include "rv-test-util.h"
#include "rv-ops-private.h"

#include <math.h>

#define TOL 1e-5
/* the cooperative-matrix kernel rounds activations to fp16 */
#define TOL_COOPMAT 3e-3

typedef struct {
  RvGemmVariant variant;
  int           cpu_tile;   /* RV_GEMM_CPU: the register tile, -1 by shape */
  const char   *name;
  RvWinogradMode winograd;  /* conv2d: Winograd F(4×4, 3×3) forced on or off */
  gsize         chunk;      /* with it: the scratch cap (0: default) */
} Variant;

#define MAX_VARIANTS 18

/* The variants to test on this device: the tiled GPU kernel, the CPU kernel
 * with each of its register tiles, and the cooperative-matrix one only where
 * it exists and only with f16 weights. */
static guint
variants (gboolean f16_weights, Variant out[MAX_VARIANTS])
{
  const RvDeviceCaps *caps = rv_device_caps (rv_test_device ());
  guint n = 0;
  out[n++] = (Variant) { RV_GEMM_TILED, -1, "tiled" };
  out[n++] = (Variant) { RV_GEMM_CPU, -1, "cpu" };
  for (guint t = 0; t < _rv_gemm_cpu_tile_count () && n < MAX_VARIANTS - 1; t++)
    out[n++] = (Variant) { RV_GEMM_CPU, (int) t, _rv_gemm_cpu_tile_name (t) };
  if (f16_weights && caps->coopmat_nv && caps->subgroup_size == 32)
    out[n++] = (Variant) { RV_GEMM_COOPMAT, -1, "coopmat" };
  return n;
}

static void
use_variant (const Variant *v)
{
  _rv_gemm_force_variant (v->variant);
  _rv_gemm_force_cpu_tile (v->cpu_tile);
  _rv_winograd_force (v->winograd, v->chunk);
}

static void
use_auto (void)
{
  _rv_gemm_force_variant (RV_GEMM_AUTO);
  _rv_gemm_force_cpu_tile (-1);
  _rv_winograd_force (RV_WINOGRAD_AUTO, 0);
}

static double
act_ref (double v, RvAct act)
{
  switch (act)
    {
    case RV_ACT_SILU:
      return v / (1 + exp (-v));
    case RV_ACT_GELU:
      return 0.5 * v * (1 + erf (v / sqrt (2.0)));
    case RV_ACT_QUICK_GELU:
      return v / (1 + exp (-1.702 * v));
    case RV_ACT_NONE:
    default:
      return v;
    }
}

static const char *
act_name (RvAct act)
{
  const char *names[] = { "none", "silu", "gelu", "quick_gelu" };
  return names[act];
}

/* Host data of a test: inputs rounded as the device will see them. */
typedef struct {
  float *x, *w, *bias, *res;
} Inputs;

static void
inputs_clear (Inputs *in)
{
  g_free (in->x);
  g_free (in->w);
  g_free (in->bias);
  g_free (in->res);
}

static void
inputs_random (GRand *rand, Inputs *in, gint64 nx, gint64 nw, gint64 nbias, gint64 nres,
               RvDType wdt)
{
  in->x = rv_test_random (rand, nx, -1, 1);
  in->w = rv_test_random (rand, nw, -1, 1);
  in->bias = nbias ? rv_test_random (rand, nbias, -1, 1) : NULL;
  in->res = nres ? rv_test_random (rand, nres, -1, 1) : NULL;
  if (wdt == RV_DTYPE_F16)
    {
      rv_test_round_f16 (in->w, nw);
      if (in->bias)
        rv_test_round_f16 (in->bias, nbias);
    }
}

/* ---- linear ---- */

static void
check_linear (GRand *rand, const Variant *v, gint64 m, gint64 k, gint64 n, RvDType wdt,
              gboolean bias, RvAct act, gboolean residual)
{
  Inputs in;
  inputs_random (rand, &in, m * k, k * n, bias ? n : 0, residual ? m * n : 0, wdt);
  gint64 xs[2] = { m, k }, ws[2] = { k, n }, ys[2] = { m, n };
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 2, xs, in.x);
  g_autoptr (RvTensor) tw = rv_test_tensor (wdt, 2, ws, in.w);
  g_autoptr (RvTensor) tb = bias ? rv_test_tensor (wdt, 1, &n, in.bias) : NULL;
  g_autoptr (RvTensor) tr = residual ? rv_test_tensor (RV_DTYPE_F32, 2, ys, in.res) : NULL;
  g_autoptr (RvTensor) ty = rv_test_output (2, ys);
  use_variant (v);
  rv_op_linear (rv_test_cmd (), ty, tx, tw, tb, act, tr);
  use_auto ();
  g_autofree float *got = rv_test_download (ty);

  g_autofree double *ref = g_new (double, m * n);
  for (gint64 i = 0; i < m; i++)
    for (gint64 j = 0; j < n; j++)
      {
        double s = bias ? in.bias[j] : 0;
        for (gint64 l = 0; l < k; l++)
          s += (double) in.x[i * k + l] * in.w[l * n + j];
        ref[i * n + j] = act_ref (s, act) + (residual ? in.res[i * n + j] : 0);
      }
  g_autofree char *what = g_strdup_printf ("linear %s (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                                           ") → %" G_GINT64_FORMAT " w %s%s %s%s", v->name, m,
                                           k, n, rv_dtype_name (wdt), bias ? " +bias" : "",
                                           act_name (act), residual ? " +res" : "");
  rv_test_assert_close (what, got, ref, m * n,
                        v->variant == RV_GEMM_COOPMAT ? TOL_COOPMAT : TOL);
  inputs_clear (&in);
}

static void
test_linear (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);
  /* (M, K, N): degenerate, odd, partial tiles, every alignment of K and N */
  const gint64 shapes[][3] = {
    { 1, 1, 1 }, { 3, 5, 7 }, { 77, 32, 37 }, { 130, 67, 33 }, { 256, 64, 576 },
    { 256, 576, 64 }, { 513, 129, 260 }, { 40, 36, 96 }, { 9, 300, 20 },
  };
  /* every activation is in test_linear_epilogue: each is a pipeline of the
   * CPU kernel per addressing mode, which lavapipe takes ~1 s to compile */
  for (guint w = 0; w < 2; w++)
    {
      RvDType wdt = w ? RV_DTYPE_F16 : RV_DTYPE_F32;
      Variant vs[MAX_VARIANTS];
      guint nv = variants (wdt == RV_DTYPE_F16, vs);
      for (guint v = 0; v < nv; v++)
        for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
          {
            const gint64 *sh = shapes[s];
            check_linear (rand, &vs[v], sh[0], sh[1], sh[2], wdt, FALSE, RV_ACT_NONE, FALSE);
            check_linear (rand, &vs[v], sh[0], sh[1], sh[2], wdt, TRUE, RV_ACT_GELU, s % 2 == 0);
          }
    }
}

/* Every activation, bias and residual on their own, at one shape. */
static void
test_linear_epilogue (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (12);
  Variant vs[MAX_VARIANTS];
  guint nv = variants (FALSE, vs);
  for (guint v = 0; v < nv; v++)
    for (RvAct act = RV_ACT_NONE; act <= RV_ACT_QUICK_GELU; act++)
      for (guint opt = 0; opt < 4; opt++)
        check_linear (rand, &vs[v], 45, 24, 28, RV_DTYPE_F32, opt & 1, act, opt & 2);
}

/* x with leading dims (B, L, K) is viewed as (B·L, K). */
static void
test_linear_batched_input (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (13);
  const gint64 xs[3] = { 2, 7, 24 }, ws[2] = { 24, 40 }, ys[3] = { 2, 7, 40 };
  g_autofree float *x = rv_test_random (rand, 2 * 7 * 24, -1, 1);
  g_autofree float *w = rv_test_random (rand, 24 * 40, -1, 1);
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 3, xs, x);
  g_autoptr (RvTensor) tw = rv_test_tensor (RV_DTYPE_F32, 2, ws, w);
  g_autoptr (RvTensor) ty = rv_test_output (3, ys);
  rv_op_linear (rv_test_cmd (), ty, tx, tw, NULL, RV_ACT_NONE, NULL);
  g_autofree float *got = rv_test_download (ty);
  g_autofree double *ref = g_new0 (double, 14 * 40);
  for (gint64 i = 0; i < 14; i++)
    for (gint64 j = 0; j < 40; j++)
      for (gint64 l = 0; l < 24; l++)
        ref[i * 40 + j] += (double) x[i * 24 + l] * w[l * 40 + j];
  rv_test_assert_close ("linear (2, 7, 24) → 40", got, ref, 14 * 40, TOL);
}

/* One input through n weights at once (rv_op_linear_group): in one
 * dispatch, and each part on its own as when the weights lie apart. */
static void
check_linear_group (GRand *rand, const Variant *v, gint64 m, gint64 k, gint64 n, int parts,
                    RvDType wdt, gboolean bias, gboolean split)
{
  gint64 xs[2] = { m, k }, ws[2] = { k, n }, ys[3] = { parts, m, n };
  g_autofree float *x = rv_test_random (rand, m * k, -1, 1);
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 2, xs, x);
  float *w[3] = { NULL }, *b[3] = { NULL };
  RvTensor *tw[3] = { NULL }, *tb[3] = { NULL };
  for (int i = 0; i < parts; i++)
    {
      w[i] = rv_test_random (rand, k * n, -1, 1);
      b[i] = rv_test_random (rand, n, -1, 1);
      if (wdt == RV_DTYPE_F16)
        {
          rv_test_round_f16 (w[i], k * n);
          rv_test_round_f16 (b[i], n);
        }
      tw[i] = rv_test_tensor (wdt, 2, ws, w[i]);
      tb[i] = rv_test_tensor (wdt, 1, &n, b[i]);
    }
  g_autoptr (RvTensor) ty = rv_test_output (3, ys);
  use_variant (v);
  _rv_gemm_force_group_split (split);
  rv_op_linear_group (rv_test_cmd (), ty, tx, parts, (const RvTensor *const *) tw,
                      bias ? (const RvTensor *const *) tb : NULL);
  _rv_gemm_force_group_split (FALSE);
  use_auto ();
  g_autofree float *got = rv_test_download (ty);

  g_autofree double *ref = g_new (double, parts * m * n);
  for (int p = 0; p < parts; p++)
    for (gint64 i = 0; i < m; i++)
      for (gint64 j = 0; j < n; j++)
        {
          double s = bias ? b[p][j] : 0;
          for (gint64 l = 0; l < k; l++)
            s += (double) x[i * k + l] * w[p][l * n + j];
          ref[(p * m + i) * n + j] = s;
        }
  g_autofree char *what = g_strdup_printf ("linear group %s %d × (%" G_GINT64_FORMAT ", %"
                                           G_GINT64_FORMAT ") → %" G_GINT64_FORMAT " w %s%s%s",
                                           v->name, parts, m, k, n, rv_dtype_name (wdt),
                                           bias ? " +bias" : "", split ? " split" : "");
  rv_test_assert_close (what, got, ref, parts * m * n,
                        v->variant == RV_GEMM_COOPMAT ? TOL_COOPMAT : TOL);
  for (int i = 0; i < parts; i++)
    {
      rv_tensor_free (tw[i]);
      rv_tensor_free (tb[i]);
      g_free (w[i]);
      g_free (b[i]);
    }
}

static void
test_linear_group (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (14);
  /* (M, K, N): few rows (the column-block tiles), partial tiles, odd K and N */
  const gint64 shapes[][3] = { { 6, 32, 64 }, { 77, 24, 36 }, { 130, 67, 33 }, { 2, 5, 7 } };
  for (guint w = 0; w < 2; w++)
    {
      RvDType wdt = w ? RV_DTYPE_F16 : RV_DTYPE_F32;
      Variant vs[MAX_VARIANTS];
      guint nv = variants (wdt == RV_DTYPE_F16, vs);
      for (guint v = 0; v < nv; v++)
        for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
          {
            const gint64 *sh = shapes[s];
            check_linear_group (rand, &vs[v], sh[0], sh[1], sh[2], 3, wdt, TRUE, FALSE);
            check_linear_group (rand, &vs[v], sh[0], sh[1], sh[2], 2, wdt, s % 2 == 0, FALSE);
          }
      check_linear_group (rand, &vs[1], 77, 24, 36, 3, wdt, TRUE, TRUE);
      check_linear_group (rand, &vs[1], 6, 32, 64, 1, wdt, FALSE, FALSE);
    }

  /* weights that differ in shape are refused */
  const gint64 xs[2] = { 4, 8 }, ws[2] = { 8, 5 }, ws2[2] = { 8, 6 }, ys[3] = { 2, 4, 5 };
  g_autofree float *zeros = g_new0 (float, 64);
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 2, xs, zeros);
  g_autoptr (RvTensor) tw = rv_test_tensor (RV_DTYPE_F32, 2, ws, zeros);
  g_autoptr (RvTensor) tw2 = rv_test_tensor (RV_DTYPE_F32, 2, ws2, zeros);
  g_autoptr (RvTensor) ty = rv_test_output (3, ys);
  const RvTensor *pair[2] = { tw, tw2 };
  g_autoptr (GError) error = NULL;
  rv_op_linear_group (rv_test_cmd (), ty, tx, 2, pair, NULL);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
}

/* ---- matmul ---- */

static void
check_matmul (GRand *rand, const Variant *v, gint64 ba, gint64 bb, gint64 m, gint64 k, gint64 n,
              gboolean ta, gboolean tb)
{
  gint64 batch = MAX (ba, bb);
  float alpha = 0.37f;
  g_autofree float *a = rv_test_random (rand, ba * m * k, -1, 1);
  g_autofree float *b = rv_test_random (rand, bb * k * n, -1, 1);
  /* 2-d where the batch is 1, to cover both forms */
  gint64 as[3] = { ba, ta ? k : m, ta ? m : k }, bs[3] = { bb, tb ? n : k, tb ? k : n };
  gint64 ys[3] = { batch, m, n };
  g_autoptr (RvTensor) t_a = ba == 1 ? rv_test_tensor (RV_DTYPE_F32, 2, as + 1, a)
                                     : rv_test_tensor (RV_DTYPE_F32, 3, as, a);
  g_autoptr (RvTensor) t_b = bb == 1 && batch == 1 ? rv_test_tensor (RV_DTYPE_F32, 2, bs + 1, b)
                                                   : rv_test_tensor (RV_DTYPE_F32, 3, bs, b);
  g_autoptr (RvTensor) ty = rv_test_output (3, ys);
  use_variant (v);
  rv_op_matmul (rv_test_cmd (), ty, t_a, ta, t_b, tb, alpha);
  use_auto ();
  g_autofree float *got = rv_test_download (ty);

  g_autofree double *ref = g_new (double, batch * m * n);
  for (gint64 z = 0; z < batch; z++)
    {
      const float *az = a + (ba == 1 ? 0 : z * m * k), *bz = b + (bb == 1 ? 0 : z * k * n);
      for (gint64 i = 0; i < m; i++)
        for (gint64 j = 0; j < n; j++)
          {
            double s = 0;
            for (gint64 l = 0; l < k; l++)
              s += (double) (ta ? az[l * m + i] : az[i * k + l]) *
                   (tb ? bz[j * k + l] : bz[l * n + j]);
            ref[(z * m + i) * n + j] = alpha * s;
          }
    }
  g_autofree char *what = g_strdup_printf ("matmul %s a (%" G_GINT64_FORMAT ")%s b (%"
                                           G_GINT64_FORMAT ")%s M %" G_GINT64_FORMAT " K %"
                                           G_GINT64_FORMAT " N %" G_GINT64_FORMAT, v->name,
                                           ba, ta ? "ᵀ" : "", bb, tb ? "ᵀ" : "", m, k, n);
  rv_test_assert_close (what, got, ref, batch * m * n, TOL);
}

static void
test_matmul (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (21);
  /* (M, K, N): odd, and multiples of 4 for the vectorized paths */
  const gint64 shapes[][3] = { { 33, 20, 17 }, { 40, 64, 48 }, { 1, 9, 5 } };
  /* batches of a and b: both, a broadcast, b broadcast, none */
  const gint64 batches[][2] = { { 3, 3 }, { 1, 3 }, { 3, 1 }, { 1, 1 } };
  Variant vs[MAX_VARIANTS];
  guint nv = variants (FALSE, vs);
  for (guint v = 0; v < nv; v++)
    for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
      for (guint bt = 0; bt < G_N_ELEMENTS (batches); bt++)
        for (guint t = 0; t < 4; t++)
          check_matmul (rand, &vs[v], batches[bt][0], batches[bt][1], shapes[s][0],
                        shapes[s][1], shapes[s][2], t & 1, t & 2);
}

/* ---- conv2d ---- */

typedef struct {
  gint64   batch, h, w, cin, cout;
  RvConv2d p;
  gboolean bias, residual;
} ConvCase;

static void
check_conv (GRand *rand, const Variant *v, const ConvCase *c, RvDType wdt)
{
  const RvConv2d *p = &c->p;
  gint64 ho = (c->h + p->pad_top + p->pad_bottom - p->kh) / p->stride + 1;
  gint64 wo = (c->w + p->pad_left + p->pad_right - p->kw) / p->stride + 1;
  gint64 nx = c->batch * c->h * c->w * c->cin, nw = (gint64) p->kh * p->kw * c->cin * c->cout;
  gint64 ny = c->batch * ho * wo * c->cout;
  Inputs in;
  inputs_random (rand, &in, nx, nw, c->bias ? c->cout : 0, c->residual ? ny : 0, wdt);
  gint64 xs[4] = { c->batch, c->h, c->w, c->cin }, ws[4] = { p->kh, p->kw, c->cin, c->cout };
  gint64 ys[4] = { c->batch, ho, wo, c->cout };
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 4, xs, in.x);
  g_autoptr (RvTensor) tw = rv_test_tensor (wdt, 4, ws, in.w);
  g_autoptr (RvTensor) tb = c->bias ? rv_test_tensor (wdt, 1, &c->cout, in.bias) : NULL;
  g_autoptr (RvTensor) tr = c->residual ? rv_test_tensor (RV_DTYPE_F32, 4, ys, in.res) : NULL;
  g_autoptr (RvTensor) ty = rv_test_output (4, ys);
  use_variant (v);
  rv_op_conv2d (rv_test_cmd (), ty, tx, tw, tb, p, tr);
  use_auto ();
  g_autofree float *got = rv_test_download (ty);

  g_autofree double *ref = g_new (double, ny);
  for (gint64 b = 0; b < c->batch; b++)
    for (gint64 oy = 0; oy < ho; oy++)
      for (gint64 ox = 0; ox < wo; ox++)
        for (gint64 co = 0; co < c->cout; co++)
          {
            double s = c->bias ? in.bias[co] : 0;
            for (int ky = 0; ky < p->kh; ky++)
              for (int kx = 0; kx < p->kw; kx++)
                {
                  gint64 iy = oy * p->stride + ky - p->pad_top;
                  gint64 ix = ox * p->stride + kx - p->pad_left;
                  if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
                    continue;
                  const float *xp = in.x + ((b * c->h + iy) * c->w + ix) * c->cin;
                  const float *wp = in.w + (((gint64) ky * p->kw + kx) * c->cin) * c->cout + co;
                  for (gint64 ci = 0; ci < c->cin; ci++)
                    s += (double) xp[ci] * wp[ci * c->cout];
                }
            gint64 e = ((b * ho + oy) * wo + ox) * c->cout + co;
            ref[e] = s + (c->residual ? in.res[e] : 0);
          }
  g_autofree char *what = g_strdup_printf ("conv2d %s %d×%d/%d pad (%d,%d,%d,%d) (%"
                                           G_GINT64_FORMAT ", %" G_GINT64_FORMAT ", %"
                                           G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") → %"
                                           G_GINT64_FORMAT " w %s%s%s", v->name, p->kh, p->kw,
                                           p->stride, p->pad_top, p->pad_left, p->pad_bottom,
                                           p->pad_right, c->batch, c->h, c->w, c->cin, c->cout,
                                           rv_dtype_name (wdt), c->bias ? " +bias" : "",
                                           c->residual ? " +res" : "");
  rv_test_assert_close (what, got, ref, ny, v->variant == RV_GEMM_COOPMAT ? TOL_COOPMAT : TOL);
  inputs_clear (&in);
}

static void
test_conv2d (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (31);
  const RvConv2d k1 = { 1, 1, 1, 0, 0, 0, 0 }, k3 = { 3, 3, 1, 1, 1, 1, 1 };
  const RvConv2d k3s2 = { 3, 3, 2, 0, 0, 1, 1 }, k3s2sym = { 3, 3, 2, 1, 1, 1, 1 };
  const RvConv2d patch8 = { 8, 8, 8, 0, 0, 0, 0 }, patch14 = { 14, 14, 14, 0, 0, 0, 0 };
  const RvConv2d k1s2 = { 1, 1, 2, 0, 0, 0, 0 }, k3valid = { 3, 3, 1, 0, 0, 0, 0 };
  const RvConv2d k3odd = { 3, 3, 1, 2, 0, 1, 2 };
  const ConvCase cases[] = {
    { 2, 5, 7, 37, 19, k1, TRUE, FALSE },
    { 1, 6, 6, 32, 64, k1, FALSE, TRUE },
    { 2, 7, 9, 3, 16, k3, TRUE, FALSE },
    { 1, 8, 8, 4, 32, k3, TRUE, TRUE },
    { 2, 5, 5, 9, 8, k3, FALSE, FALSE },
    { 1, 9, 7, 32, 33, k3, TRUE, TRUE },
    { 2, 6, 5, 37, 20, k3, TRUE, FALSE },
    { 2, 16, 16, 64, 64, k3, TRUE, TRUE },
    { 1, 8, 8, 32, 32, k3s2, TRUE, FALSE },
    { 2, 9, 11, 4, 12, k3s2, FALSE, TRUE },
    { 1, 7, 7, 8, 8, k3s2sym, TRUE, FALSE },
    { 2, 16, 24, 3, 32, patch8, TRUE, FALSE },
    { 1, 28, 28, 3, 40, patch14, FALSE, FALSE },
    { 1, 9, 9, 12, 20, k1s2, TRUE, FALSE },
    { 1, 5, 6, 8, 5, k3valid, TRUE, TRUE },
    { 2, 6, 7, 4, 16, k3valid, FALSE, TRUE },   /* kernel rows as runs of texels */
    { 3, 16, 8, 3, 12, patch8, TRUE, TRUE },
    /* Winograd: partial tiles, no padding, uneven padding */
    { 2, 13, 10, 8, 20, k3, TRUE, TRUE },
    { 1, 6, 9, 16, 8, k3valid, TRUE, FALSE },
    { 1, 11, 5, 12, 16, k3odd, FALSE, TRUE },
    { 1, 32, 32, 32, 32, k3, TRUE, FALSE },
  };
  for (guint w = 0; w < 2; w++)
    {
      RvDType wdt = w ? RV_DTYPE_F16 : RV_DTYPE_F32;
      Variant vs[MAX_VARIANTS];
      guint nv = variants (wdt == RV_DTYPE_F16, vs);
      /* the direct kernels, then Winograd where the shape allows it (3×3,
       * stride 1, channels in fours): F(4×4, 3×3) whole, in runs of a few
       * tiles and slices of a few channels, and with the tiled GEMM;
       * F(2×2, 3×3) whole and in runs and slices */
      for (guint v = 0; v < nv; v++)
        vs[v].winograd = RV_WINOGRAD_OFF;
      vs[nv++] = (Variant) { RV_GEMM_CPU, -1, "winograd", RV_WINOGRAD_ON, 0 };
      vs[nv++] = (Variant) { RV_GEMM_CPU, -1, "winograd-runs", RV_WINOGRAD_ON, 40000 };
      vs[nv++] = (Variant) { RV_GEMM_TILED, -1, "winograd-tiled", RV_WINOGRAD_ON, 0 };
      vs[nv++] = (Variant) { RV_GEMM_CPU, -1, "winograd-f2", RV_WINOGRAD_ON_F2, 0 };
      vs[nv++] = (Variant) { RV_GEMM_CPU, -1, "winograd-f2-runs", RV_WINOGRAD_ON_F2, 20000 };
      for (guint v = 0; v < nv; v++)
        for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
          check_conv (rand, &vs[v], &cases[c], wdt);
    }
}

/* ---- errors and the self-check ---- */

static void
test_invalid_shapes (void)
{
  const gint64 xs[2] = { 4, 8 }, ws[2] = { 6, 5 }, ys[2] = { 4, 5 };
  g_autofree float *zeros = g_new0 (float, 256);
  g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, 2, xs, zeros);
  g_autoptr (RvTensor) tw = rv_test_tensor (RV_DTYPE_F32, 2, ws, zeros);
  g_autoptr (RvTensor) ty = rv_test_output (2, ys);
  g_autoptr (GError) error = NULL;
  rv_op_linear (rv_test_cmd (), ty, tx, tw, NULL, RV_ACT_NONE, NULL);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);

  /* y aliasing the residual */
  const gint64 ws2[2] = { 8, 5 };
  g_autoptr (RvTensor) tw2 = rv_test_tensor (RV_DTYPE_F32, 2, ws2, zeros);
  rv_op_linear (rv_test_cmd (), ty, tx, tw2, NULL, RV_ACT_NONE, ty);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);

  /* a kernel larger than the padded input */
  const gint64 cxs[4] = { 1, 2, 2, 4 }, cws[4] = { 3, 3, 4, 4 }, cys[4] = { 1, 1, 1, 4 };
  const RvConv2d p = { 3, 3, 1, 0, 0, 0, 0 };
  g_autoptr (RvTensor) cx = rv_test_tensor (RV_DTYPE_F32, 4, cxs, zeros);
  g_autoptr (RvTensor) cw = rv_test_tensor (RV_DTYPE_F32, 4, cws, zeros);
  g_autoptr (RvTensor) cy = rv_test_output (4, cys);
  rv_op_conv2d (rv_test_cmd (), cy, cx, cw, NULL, &p, NULL);
  g_assert_false (rv_cmd_submit (rv_test_cmd (), &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
}

/* The harness that guards the cooperative-matrix kernel, run on the
 * variants this device has: they agree, and a variant the device lacks
 * fails the check instead of being trusted. */
static void
test_self_check (void)
{
  RvDevice *dev = rv_test_device ();
  const RvDeviceCaps *caps = rv_device_caps (dev);
  g_autoptr (GError) error = NULL;
  Variant vs[MAX_VARIANTS];
  guint nv = variants (TRUE, vs);
  for (guint v = 0; v < nv; v++)
    {
      g_assert_true (_rv_gemm_self_check (dev, vs[v].variant, &error));
      g_assert_no_error (error);
    }
  if (!caps->coopmat_nv)
    {
      g_assert_false (_rv_gemm_self_check (dev, RV_GEMM_COOPMAT, &error));
      g_assert_error (error, RV_ERROR, RV_ERROR_UNSUPPORTED);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/ops/linear", test_linear);
  rv_test_add ("/ops/linear/epilogue", test_linear_epilogue);
  rv_test_add ("/ops/linear/batched-input", test_linear_batched_input);
  rv_test_add ("/ops/linear/group", test_linear_group);
  rv_test_add ("/ops/matmul", test_matmul);
  rv_test_add ("/ops/conv2d", test_conv2d);
  rv_test_add ("/ops/gemm/invalid", test_invalid_shapes);
  rv_test_add ("/ops/gemm/self-check", test_self_check);
  return g_test_run ();
}
