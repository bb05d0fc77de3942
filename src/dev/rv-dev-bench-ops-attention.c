/* rv-dev-bench-ops-attention.c: benchmarks of the attention op family. */
#include "rv-dev-bench.h"

#include <math.h>

typedef struct {
  RvTensor *q, *k, *v, *o, *mask;
  int       heads;
  float     scale;
  gboolean  causal;
} AttentionData;

typedef struct {
  RvTensor *x, *y;
} SoftmaxData;

static void
run_attention (RvCmd *cmd, gpointer data)
{
  AttentionData *d = data;
  rv_op_attention (cmd, d->o, d->q, d->k, d->v, d->heads, d->scale, d->mask, d->causal);
}

static void
run_softmax (RvCmd *cmd, gpointer data)
{
  SoftmaxData *d = data;
  rv_op_softmax (cmd, d->y, d->x);
}

/* A tensor of values in [−1, 1), or NULL with the error printed. Timing
 * depends on the values (exp of garbage may hit slow paths), so fill it. */
static RvTensor *
bench_tensor (RvBench *b, int ndim, const gint64 *shape, GRand *rand)
{
  g_autoptr (GError) error = NULL;
  RvTensor *t = rv_tensor_new (rv_bench_device (b), RV_DTYPE_F32, ndim, shape, &error);
  if (t == NULL)
    {
      g_printerr ("bench attention: %s\n", error->message);
      return NULL;
    }
  gint64 n = rv_tensor_numel (t);
  g_autofree float *data = g_new (float, n);
  for (gint64 i = 0; i < n; i++)
    data[i] = (float) g_rand_double_range (rand, -1, 1);
  rv_tensor_upload_f32 (rv_bench_cmd (b), t, data, n);
  return t;
}

static void
bench_attention (RvBench *b, gint64 batch, int heads, gint64 lq, gint64 lk, gint64 head_dim,
                 gboolean causal, gboolean key_mask)
{
  g_autofree char *shape = g_strdup_printf ("B%" G_GINT64_FORMAT " H%d Lq%" G_GINT64_FORMAT
                                            " Lk%" G_GINT64_FORMAT " D%" G_GINT64_FORMAT "%s%s",
                                            batch, heads, lq, lk, head_dim,
                                            causal ? " causal" : "", key_mask ? " mask" : "");
  if (!rv_bench_wanted (b, "attention", shape))
    return;
  g_autoptr (GRand) rand = g_rand_new_with_seed (1);
  gint64 c = heads * head_dim;
  gint64 qshape[3] = { batch, lq, c }, kshape[3] = { batch, lk, c }, mshape[2] = { batch, lk };
  AttentionData d = { .heads = heads, .scale = 1.0f / sqrtf ((float) head_dim), .causal = causal };
  d.q = bench_tensor (b, 3, qshape, rand);
  d.k = bench_tensor (b, 3, kshape, rand);
  d.v = bench_tensor (b, 3, kshape, rand);
  d.o = bench_tensor (b, 3, qshape, rand);
  d.mask = key_mask ? bench_tensor (b, 2, mshape, rand) : NULL;
  if (d.q && d.k && d.v && d.o && (d.mask || !key_mask))
    {
      /* FLOPs of the two products, 4·D per (query, key) pair per head; causal
       * attention counts only the pairs it computes (key ≤ query) */
      double pairs = 0;
      for (gint64 i = 0; i < lq; i++)
        pairs += causal ? MIN (i + 1, lk) : lk;
      double flops = 4.0 * batch * pairs * c;
      double bytes = 4.0 * (2 * batch * lq * c + 2 * batch * lk * c);
      rv_bench_op (b, "attention", shape, flops, bytes, run_attention, &d);
    }
  g_clear_pointer (&d.q, rv_tensor_free);
  g_clear_pointer (&d.k, rv_tensor_free);
  g_clear_pointer (&d.v, rv_tensor_free);
  g_clear_pointer (&d.o, rv_tensor_free);
  g_clear_pointer (&d.mask, rv_tensor_free);
}

static void
bench_softmax (RvBench *b, gint64 rows, gint64 n)
{
  g_autofree char *shape = g_strdup_printf ("%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT, rows, n);
  if (!rv_bench_wanted (b, "softmax", shape))
    return;
  g_autoptr (GRand) rand = g_rand_new_with_seed (2);
  gint64 s[2] = { rows, n };
  SoftmaxData d = { bench_tensor (b, 2, s, rand), bench_tensor (b, 2, s, rand) };
  if (d.x && d.y)
    rv_bench_op (b, "softmax", shape, 0, 8.0 * rows * n, run_softmax, &d);
  g_clear_pointer (&d.x, rv_tensor_free);
  g_clear_pointer (&d.y, rv_tensor_free);
}

void
rv_bench_ops_attention (RvBench *b)
{
  bench_attention (b, 1, 1, 4096, 4096, 64, FALSE, FALSE);   /* the target shape */
  bench_attention (b, 2, 2, 256, 288, 32, FALSE, FALSE);     /* embedded UNet, added KV */
  bench_attention (b, 1, 1, 1024, 1024, 64, FALSE, FALSE);   /* embedded MoVQ, single head */
  bench_attention (b, 1, 1, 1024, 1024, 512, FALSE, FALSE);  /* single head, D 512 */
  bench_attention (b, 2, 12, 77, 77, 64, TRUE, FALSE);       /* CLIP text */
  bench_attention (b, 2, 16, 257, 257, 104, FALSE, FALSE);   /* CLIP vision */
  bench_attention (b, 2, 32, 81, 81, 64, TRUE, TRUE);        /* prior */
  bench_softmax (b, 4096, 4096);
  bench_softmax (b, 12 * 77, 77);
}
