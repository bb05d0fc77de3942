/* test-ops-attention.c: the attention op family against double-precision CPU references.
 * Every attention case runs with each kernel variant forced, so the GPU kernel
 * is checked on lavapipe too. */
#include "rv-test-util.h"
#include "rv-ops-private.h"

#include <math.h>
#include <string.h>

typedef enum {
  MASK_NONE,
  MASK_KEYS,          /* (B, Lk) */
  MASK_FULL,          /* (B, Lq, Lk) */
} MaskKind;

typedef struct {
  gint64   batch, lq, lk;
  int      heads;
  gint64   head_dim;
  MaskKind mask;
  gboolean causal;
  float    range;     /* q and k uniform in [−range, range); 0 means 1 */
  float    scale;     /* 0 means 1/√D */
} Case;

static const RvAttentionVariant variants[] = { RV_ATTENTION_SUBGROUP, RV_ATTENTION_TILED };
static const char *const variant_names[] = { "subgroup", "tiled" };

/* o (B, Lq, H·D) in double from the f32 inputs. full_masked (B·Lq), if not
 * NULL, flags the query rows whose every visible key has a −10000 mask. */
static double *
attention_ref (const Case *c, float scale, const float *q, const float *k, const float *v,
               const float *mask, gboolean *full_masked)
{
  gint64 hd = c->heads * c->head_dim, dim = c->head_dim;
  double *o = g_new0 (double, c->batch * c->lq * hd);
  g_autofree double *s = g_new (double, c->lk);
  for (gint64 b = 0; b < c->batch; b++)
    for (int h = 0; h < c->heads; h++)
      for (gint64 i = 0; i < c->lq; i++)
        {
          const float *qi = q + (b * c->lq + i) * hd + h * dim;
          double mx = -INFINITY;
          gboolean all_masked = c->mask != MASK_NONE;
          for (gint64 j = 0; j < c->lk; j++)
            {
              s[j] = -INFINITY;
              if (c->causal && j > i)
                continue;
              const float *kj = k + (b * c->lk + j) * hd + h * dim;
              double dot = 0;
              for (gint64 d = 0; d < dim; d++)
                dot += (double) qi[d] * kj[d];
              s[j] = dot * scale;
              if (c->mask == MASK_KEYS)
                s[j] += mask[b * c->lk + j];
              else if (c->mask == MASK_FULL)
                s[j] += mask[(b * c->lq + i) * c->lk + j];
              all_masked = all_masked && s[j] < -5000;
              mx = MAX (mx, s[j]);
            }
          if (full_masked != NULL)
            full_masked[b * c->lq + i] = all_masked;
          double sum = 0;
          for (gint64 j = 0; j < c->lk; j++)
            {
              s[j] = exp (s[j] - mx);
              sum += s[j];
            }
          double *oi = o + (b * c->lq + i) * hd + h * dim;
          for (gint64 j = 0; j < c->lk; j++)
            {
              const float *vj = v + (b * c->lk + j) * hd + h * dim;
              for (gint64 d = 0; d < dim; d++)
                oi[d] += s[j] / sum * vj[d];
            }
        }
  return o;
}

/* Mask values: mostly small, some −10000 (padding), and for every third
 * batch or query row the whole row at −10000, as a fully padded row is. */
static float *
make_mask (GRand *rand, const Case *c)
{
  gint64 rows = c->mask == MASK_KEYS ? c->batch : c->batch * c->lq;
  float *m = rv_test_random (rand, rows * c->lk, -2, 2);
  for (gint64 r = 0; r < rows; r++)
    for (gint64 j = 0; j < c->lk; j++)
      if (r % 3 == 2 || g_rand_int_range (rand, 0, 4) == 0)
        m[r * c->lk + j] = -10000.0f;
  return m;
}

/* Compares rows of `width` values. Rows whose visible keys are all masked by
 * −10000 get a tolerance of their own: in f32, score + mask keeps only about
 * 1e-3 of the score (as in the reference frameworks), so the softmax over such
 * a row is right to that much. */
static void
assert_rows (const char *what, const float *got, const double *ref, const gboolean *full_masked,
             gint64 rows, gint64 width, double tol)
{
  gint64 n = rows * width, n_open = 0, n_masked = 0;
  g_autofree float *got_open = g_new (float, n), *got_masked = g_new (float, n);
  g_autofree double *ref_open = g_new (double, n), *ref_masked = g_new (double, n);
  for (gint64 row = 0; row < rows; row++)
    {
      gint64 *count = full_masked[row] ? &n_masked : &n_open;
      float *g = (full_masked[row] ? got_masked : got_open) + *count;
      double *r = (full_masked[row] ? ref_masked : ref_open) + *count;
      memcpy (g, got + row * width, width * sizeof (float));
      memcpy (r, ref + row * width, width * sizeof (double));
      *count += width;
    }
  rv_test_assert_close (what, got_open, ref_open, n_open, tol);
  if (n_masked > 0)
    {
      g_autofree char *masked = g_strdup_printf ("%s (rows fully masked)", what);
      rv_test_assert_close (masked, got_masked, ref_masked, n_masked, 3e-3);
    }
}

static void
run_case (GRand *rand, const Case *c, double tol)
{
  gint64 hd = c->heads * c->head_dim;
  gint64 qshape[3] = { c->batch, c->lq, hd }, kshape[3] = { c->batch, c->lk, hd };
  float range = c->range > 0 ? c->range : 1.0f;
  float scale = c->scale > 0 ? c->scale : (float) (1.0 / sqrt ((double) c->head_dim));
  g_autofree float *q = rv_test_random (rand, c->batch * c->lq * hd, -range, range);
  g_autofree float *k = rv_test_random (rand, c->batch * c->lk * hd, -range, range);
  g_autofree float *v = rv_test_random (rand, c->batch * c->lk * hd, -1, 1);
  g_autofree float *m = NULL;
  g_autoptr (RvTensor) tm = NULL;
  if (c->mask != MASK_NONE)
    {
      m = make_mask (rand, c);
      gint64 mshape[3] = { c->batch, c->mask == MASK_KEYS ? c->lk : c->lq, c->lk };
      tm = rv_test_tensor (RV_DTYPE_F32, c->mask == MASK_KEYS ? 2 : 3, mshape, m);
    }
  g_autoptr (RvTensor) tq = rv_test_tensor (RV_DTYPE_F32, 3, qshape, q);
  g_autoptr (RvTensor) tk = rv_test_tensor (RV_DTYPE_F32, 3, kshape, k);
  g_autoptr (RvTensor) tv = rv_test_tensor (RV_DTYPE_F32, 3, kshape, v);
  g_autofree gboolean *full_masked = g_new (gboolean, c->batch * c->lq);
  g_autofree double *ref = attention_ref (c, scale, q, k, v, m, full_masked);

  for (guint vi = 0; vi < G_N_ELEMENTS (variants); vi++)
    {
      g_autoptr (RvTensor) to = rv_test_output (3, qshape);
      _rv_attention_force_variant (variants[vi]);
      rv_op_attention (rv_test_cmd (), to, tq, tk, tv, c->heads, scale, tm, c->causal);
      _rv_attention_force_variant (RV_ATTENTION_AUTO);
      g_autofree float *o = rv_test_download (to);
      g_autofree char *what = g_strdup_printf (
        "attention %s B%" G_GINT64_FORMAT " Lq%" G_GINT64_FORMAT " Lk%" G_GINT64_FORMAT
        " H%d D%" G_GINT64_FORMAT " mask %d%s", variant_names[vi], c->batch, c->lq, c->lk,
        c->heads, c->head_dim, c->mask, c->causal ? " causal" : "");
      assert_rows (what, o, ref, full_masked, c->batch * c->lq, hd, tol);
    }
}

static void
run_cases (const Case *cases, guint n, guint32 seed, double tol)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  for (guint i = 0; i < n; i++)
    run_case (rand, &cases[i], tol);
}

/* Head dims 4…512 (multiples of 32, of 4 with a remainder, and odd; 132 and
 * 512 take several output chunks in the tiled kernel), 1–8 heads, odd
 * lengths, Lq ≠ Lk both ways. */
static void
test_attention_shapes (void)
{
  const Case cases[] = {
    { 1, 1, 1, 1, 4 },
    { 2, 5, 7, 3, 12 },
    { 1, 7, 5, 8, 16 },
    { 2, 13, 33, 1, 37 },
    { 1, 33, 1, 2, 64 },
    { 2, 1, 77, 4, 104 },
    { 1, 70, 131, 5, 40 },
    { 2, 37, 19, 6, 4 },
    { 1, 5, 9, 1, 512 },
    { 1, 17, 40, 2, 132 },
  };
  run_cases (cases, G_N_ELEMENTS (cases), 11, 1e-5);
}

/* The sizes the networks use (config-driven; small head counts here). */
static void
test_attention_models (void)
{
  const Case cases[] = {
    { 2, 77, 77, 2, 64, MASK_NONE, TRUE },     /* CLIP text */
    { 1, 257, 257, 2, 104 },                   /* CLIP vision */
    { 2, 81, 81, 2, 64, MASK_KEYS, TRUE },     /* prior: padding + causal */
    { 2, 256, 288, 2, 32 },                    /* UNet added-KV, embedded model */
    { 1, 64, 96, 4, 16 },                      /* UNet added-KV, 8×8 latent */
    { 1, 64, 64, 1, 512 },                     /* MoVQ single head */
    { 1, 1024, 1024, 1, 64 },                  /* MoVQ single head, embedded model */
  };
  run_cases (cases, G_N_ELEMENTS (cases), 12, 1e-5);
}

/* Every mask kind, with and without causal, including rows that are all −10000. */
static void
test_attention_masks (void)
{
  const Case cases[] = {
    { 2, 9, 21, 2, 16, MASK_KEYS },
    { 3, 21, 9, 3, 12, MASK_FULL },
    { 1, 50, 50, 2, 64, MASK_NONE, TRUE },
    { 2, 17, 40, 1, 12, MASK_KEYS, TRUE },
    { 2, 40, 17, 2, 4, MASK_FULL, TRUE },
    { 1, 100, 130, 1, 104, MASK_FULL, TRUE },
    { 2, 45, 45, 3, 37, MASK_FULL, TRUE },
    { 3, 33, 70, 2, 64, MASK_KEYS },
  };
  run_cases (cases, G_N_ELEMENTS (cases), 13, 1e-5);
}

/* Logits of several hundred: a softmax without the running max overflows. */
static void
test_attention_stability (void)
{
  const Case cases[] = {
    { 2, 33, 47, 2, 64, MASK_NONE, FALSE, 4.0f, 1.0f },
    { 1, 40, 40, 1, 16, MASK_KEYS, TRUE, 8.0f, 1.0f },
    { 1, 19, 70, 3, 104, MASK_FULL, FALSE, 3.0f, 1.0f },
  };
  run_cases (cases, G_N_ELEMENTS (cases), 14, 1e-5);
}

/* q as a 4-d image (B, H, W, C), as the UNet and MoVQ pass it. */
static void
test_attention_image (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (15);
  Case c = { 2, 24, 32 + 24, 2, 16 };
  gint64 hd = c.heads * c.head_dim;
  gint64 qshape[4] = { c.batch, 4, 6, hd }, kshape[3] = { c.batch, c.lk, hd };
  float scale = 0.25f;
  g_autofree float *q = rv_test_random (rand, c.batch * c.lq * hd, -1, 1);
  g_autofree float *k = rv_test_random (rand, c.batch * c.lk * hd, -1, 1);
  g_autofree float *v = rv_test_random (rand, c.batch * c.lk * hd, -1, 1);
  g_autoptr (RvTensor) tq = rv_test_tensor (RV_DTYPE_F32, 4, qshape, q);
  g_autoptr (RvTensor) tk = rv_test_tensor (RV_DTYPE_F32, 3, kshape, k);
  g_autoptr (RvTensor) tv = rv_test_tensor (RV_DTYPE_F32, 3, kshape, v);
  g_autoptr (RvTensor) to = rv_test_output (4, qshape);
  g_autofree double *ref = attention_ref (&c, scale, q, k, v, NULL, NULL);
  rv_op_attention (rv_test_cmd (), to, tq, tk, tv, c.heads, scale, NULL, FALSE);
  g_autofree float *o = rv_test_download (to);
  rv_test_assert_close ("attention (B, H, W, C)", o, ref, c.batch * c.lq * hd, 1e-5);
}

/* Bad shapes are reported at submit and leave the output alone. */
static void
test_attention_invalid (void)
{
  RvCmd *cmd = rv_test_cmd ();
  gint64 qshape[3] = { 1, 4, 8 }, kshape[3] = { 1, 5, 8 }, wrong[3] = { 1, 5, 6 };
  gint64 mshape[2] = { 1, 4 };
  g_autoptr (RvTensor) q = rv_test_output (3, qshape);
  g_autoptr (RvTensor) k = rv_test_output (3, kshape);
  g_autoptr (RvTensor) bad = rv_test_output (3, wrong);
  g_autoptr (RvTensor) mask = rv_test_output (2, mshape);
  g_autoptr (RvTensor) o = rv_test_output (3, qshape);
  struct {
    const RvTensor *k, *v, *mask;
    int heads;
  } calls[] = {
    { k, bad, NULL, 2 },     /* v does not match k */
    { k, k, NULL, 3 },       /* 8 channels in 3 heads */
    { k, k, mask, 2 },       /* mask (B, Lq) instead of (B, Lk) */
  };
  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    {
      g_autoptr (GError) error = NULL;
      rv_op_attention (cmd, o, q, calls[i].k, calls[i].v, calls[i].heads, 1.0f, calls[i].mask,
                       FALSE);
      g_assert_false (rv_cmd_submit (cmd, &error));
      g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
    }
}

static void
softmax_ref (double *y, const float *x, gint64 rows, gint64 n)
{
  for (gint64 r = 0; r < rows; r++)
    {
      double mx = -INFINITY, sum = 0;
      for (gint64 i = 0; i < n; i++)
        mx = MAX (mx, x[r * n + i]);
      for (gint64 i = 0; i < n; i++)
        sum += exp (x[r * n + i] - mx);
      for (gint64 i = 0; i < n; i++)
        y[r * n + i] = exp (x[r * n + i] - mx) / sum;
    }
}

/* Odd and long rows, large magnitudes, −10000 entries; in place and not. */
static void
test_softmax (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (16);
  const struct {
    int    ndim;
    gint64 shape[3];
    float  range;
  } cases[] = {
    { 1, { 1 }, 1 },
    { 2, { 3, 5 }, 1 },
    { 3, { 2, 7, 77 }, 4 },
    { 2, { 67, 257 }, 100 },
    { 2, { 4, 1000 }, 30 },
    { 2, { 3, 40001 }, 10 },
    { 3, { 2, 3, 9216 }, 1000 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int in_place = 0; in_place < 2; in_place++)
      {
        gint64 n = cases[i].shape[cases[i].ndim - 1], total = 1;
        for (int d = 0; d < cases[i].ndim; d++)
          total *= cases[i].shape[d];
        g_autofree float *x = rv_test_random (rand, total, -cases[i].range, cases[i].range);
        for (gint64 e = 0; e < total; e += 5)
          x[e] = -10000.0f;
        g_autofree double *ref = g_new (double, total);
        softmax_ref (ref, x, total / n, n);
        g_autoptr (RvTensor) tx = rv_test_tensor (RV_DTYPE_F32, cases[i].ndim, cases[i].shape, x);
        g_autoptr (RvTensor) ty = in_place ? NULL : rv_test_output (cases[i].ndim, cases[i].shape);
        RvTensor *out = in_place ? tx : ty;
        rv_op_softmax (rv_test_cmd (), out, tx);
        g_autofree float *y = rv_test_download (out);
        g_autofree char *what = g_strdup_printf ("softmax rows %" G_GINT64_FORMAT " x %"
                                                 G_GINT64_FORMAT "%s", total / n, n,
                                                 in_place ? " in place" : "");
        rv_test_assert_close (what, y, ref, total, 1e-5);
      }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/ops/attention/shapes", test_attention_shapes);
  rv_test_add ("/ops/attention/models", test_attention_models);
  rv_test_add ("/ops/attention/masks", test_attention_masks);
  rv_test_add ("/ops/attention/stability", test_attention_stability);
  rv_test_add ("/ops/attention/image", test_attention_image);
  rv_test_add ("/ops/attention/invalid", test_attention_invalid);
  rv_test_add ("/ops/softmax", test_softmax);
  return g_test_run ();
}
