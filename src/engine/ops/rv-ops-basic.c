/* rv-ops-basic.c: normalization, elementwise ops, resampling and embeddings.
 * Elementwise work is one dispatch of shaders/eltwise.comp, normalization
 * uses shaders/norm.comp. Inputs are read as vec4 texel fetches (lavapipe does
 * those far faster than storage-buffer loads, and f16 needs no variant). */
#include "rv-ops-private.h"

#include <math.h>
#include <string.h>

#define ELT_LOCAL 64
#define ELT_PER 8          /* vec4s per invocation, as PER in eltwise.comp */
#define NORM_LOCAL 256     /* group norm statistics: columns × rows of invocations */
#define FINAL_LOCAL 64
#define LAYER_LOCAL 64
#define LAYER_GROUP_ROWS 8

/* ---- helpers ---- */

typedef struct {
  guint32 n4, base, numel, groups_x;
} EltHeader;

/* Magic numbers for n / d in the shaders (n, d < 2^31): q = (umulhi (n, m) + n) >> s. */
static void
fastdiv_magic (guint64 d, guint32 *m, guint32 *s)
{
  guint32 l = 0;
  while (((guint64) 1 << l) < d)
    l++;
  *s = l;
  *m = (guint32) ((((guint64) 1 << 32) * (((guint64) 1 << l) - d)) / d + 1);
}

static gboolean
is_float (const RvTensor *t)
{
  return t->dtype == RV_DTYPE_F32 || t->dtype == RV_DTYPE_F16;
}

/* Inputs are read through the block's texel view, which spans at most
 * maxTexelBufferElements texels; indices in the shaders are 32-bit. */
static gboolean
check_input (RvCmd *cmd, const char *op, const char *name, const RvTensor *t)
{
  if (!is_float (t))
    return _rv_op_invalid (cmd, op, "%s must be f32 or f16, not %s", name, rv_dtype_name (t->dtype));
  VkDeviceSize texel = 4 * rv_dtype_size (t->dtype);
  if ((t->offset + t->size) / texel > rv_device_caps (rv_cmd_device (cmd))->max_texel_elements)
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "%s: %s lies beyond what this device can read as a texel buffer; "
                    "try a smaller image size.", op, name);
      return FALSE;
    }
  if (rv_tensor_numel (t) >= G_MAXINT32)
    return _rv_op_invalid (cmd, op, "%s has too many elements", name);
  return TRUE;
}

static gboolean
check_output (RvCmd *cmd, const char *op, const RvTensor *y)
{
  if (y->dtype != RV_DTYPE_F32)
    return _rv_op_invalid (cmd, op, "y must be f32, not %s", rv_dtype_name (y->dtype));
  if (rv_tensor_numel (y) >= G_MAXINT32)
    return _rv_op_invalid (cmd, op, "y has too many elements");
  return TRUE;
}

static gboolean
check_numel (RvCmd *cmd, const char *op, const char *name, const RvTensor *t, gint64 numel)
{
  if (rv_tensor_numel (t) == numel)
    return TRUE;
  g_autofree char *d = rv_tensor_describe (t);
  return _rv_op_invalid (cmd, op, "%s is %s; %" G_GINT64_FORMAT " elements expected", name, d, numel);
}

/* A temporary f32 tensor; freed by the caller once recorded, since the command
 * stream orders any reuse of its memory after this op. */
static RvTensor *
scratch (RvCmd *cmd, gint64 numel)
{
  GError *error = NULL;
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 1, &numel, &error);
  if (t == NULL)
    rv_cmd_fail (cmd, error);
  return t;
}

/* Records an eltwise.comp kernel over all vec4s of y (binding 0). y is bound
 * in slices that fit a storage-buffer binding, so outputs larger than
 * maxStorageBufferRange work too; `push` starts with an EltHeader. */
static void
dispatch_eltwise (RvCmd *cmd, RvKernel *k, const RvTensor *y, RvBinding *b, guint nb, void *push,
                  gsize push_size)
{
  const RvDeviceCaps *caps = rv_device_caps (rv_cmd_device (cmd));
  EltHeader *h = push;
  guint64 n4 = (rv_tensor_numel (y) + 3) / 4;
  guint64 slice = (caps->max_storage_range & ~(VkDeviceSize) 255) / 16;
  for (guint64 first = 0; first < n4; first += slice)
    {
      guint64 count = MIN (slice, n4 - first);
      RvTensor view = *y;
      view.offset += first * 16;
      view.size = MIN (y->size - first * 16, slice * 16);
      b[0].tensor = &view;
      b[0].access = RV_WRITE;
      guint32 gx, gy;
      _rv_grid_1d (cmd, (count + ELT_PER - 1) / ELT_PER, ELT_LOCAL, &gx, &gy);
      h->n4 = (guint32) count;
      h->base = (guint32) first;
      h->numel = (guint32) rv_tensor_numel (y);
      h->groups_x = gx;
      rv_cmd_dispatch (cmd, k, b, nb, push, push_size, gx, gy, 1);
    }
}

/* ---- arithmetic: y = act (((x·alpha + beta)·p + q)·m + n) ---- */

enum {
  HAS_P = 1, P_PLUS_ONE = 2, HAS_Q = 4, HAS_M = 8, HAS_N = 16,
  P_ROW = 32, Q_ROW = 64, P_PRELU = 128,
};

typedef struct {
  const RvTensor *x;
  float           alpha, beta;
  const RvTensor *p, *q;        /* broadcast to x */
  gboolean        p_plus_one;
  gboolean        prelu;        /* p is a PReLU slope instead of a factor */
  const RvTensor *m, *n;        /* x's element count */
  RvAct           act;
} Arith;

typedef struct {
  EltHeader h;
  float     alpha, beta;
  guint32   xo, mo, no, po, qo, pad;
  guint32   dims[4], magic[4], ps[4], qs[4];
} ArithPush;

G_STATIC_ASSERT (sizeof (ArithPush) <= RV_PUSH_MAX);

/* Element strides of t over dims (right-aligned to 4) by numpy's broadcasting
 * rules; FALSE if t does not broadcast to dims. */
static gboolean
broadcast_strides (const RvTensor *t, const gint64 dims[4], gint64 strides[4])
{
  gint64 st = 1;
  for (int k = 0; k < 4; k++)
    strides[k] = 0;
  if (t == NULL)
    return TRUE;
  for (int i = t->ndim - 1; i >= 0; i--)
    {
      int k = 4 - (t->ndim - i);
      gint64 d = t->shape[i];
      if (k < 0)
        {
          if (d != 1)
            return FALSE;
          continue;
        }
      if (d != 1 && d != dims[k])
        return FALSE;
      strides[k] = d == 1 ? 0 : st;
      st *= d;
    }
  return TRUE;
}

/* Drops size-1 dims and merges neighbours that are contiguous for both
 * operands, then right-aligns to 4 again: the innermost dim gets as long as it
 * can (the vec4 path needs it a multiple of 4) and the index math small. */
static void
collapse (gint64 dims[4], gint64 ps[4], gint64 qs[4])
{
  gint64 d[4], p[4], q[4];
  int n = 0;
  for (int k = 0; k < 4; k++)
    {
      if (dims[k] == 1)
        continue;
      if (n > 0 && p[n - 1] == ps[k] * dims[k] && q[n - 1] == qs[k] * dims[k])
        {
          d[n - 1] *= dims[k];
          p[n - 1] = ps[k];
          q[n - 1] = qs[k];
        }
      else
        {
          d[n] = dims[k];
          p[n] = ps[k];
          q[n] = qs[k];
          n++;
        }
    }
  for (int k = 0; k < 4; k++)
    {
      int j = k - (4 - n);
      dims[k] = j >= 0 ? d[j] : 1;
      ps[k] = j >= 0 ? p[j] : 0;
      qs[k] = j >= 0 ? q[j] : 0;
    }
}

static gboolean
check_act (RvCmd *cmd, const char *op, RvAct act)
{
  if (act >= RV_ACT_NONE && act <= RV_ACT_QUICK_GELU)
    return TRUE;
  return _rv_op_invalid (cmd, op, "unknown activation %d", act);
}

static void
record_arith (RvCmd *cmd, const char *op, RvTensor *y, const Arith *a)
{
  gint64 numel = rv_tensor_numel (y);
  if (!check_output (cmd, op, y) || !check_input (cmd, op, "x", a->x) ||
      !check_numel (cmd, op, "x", a->x, numel) || !check_act (cmd, op, a->act))
    return;
  if ((a->p && !check_input (cmd, op, "s or b", a->p)) || (a->q && !check_input (cmd, op, "b", a->q)) ||
      (a->m && (!check_input (cmd, op, "b", a->m) || !check_numel (cmd, op, "b", a->m, numel))) ||
      (a->n && (!check_input (cmd, op, "b", a->n) || !check_numel (cmd, op, "b", a->n, numel))))
    return;

  /* x's dims (y may be another view of as many elements), right-aligned to 4 */
  gint64 dims[4] = { 1, 1, 1, 1 };
  for (int i = 0; i < a->x->ndim; i++)
    dims[4 - a->x->ndim + i] = a->x->shape[i];
  gint64 ps[4], qs[4];
  if (!broadcast_strides (a->p, dims, ps) || !broadcast_strides (a->q, dims, qs))
    {
      g_autofree char *xs = rv_tensor_describe (a->x);
      g_autofree char *bs = rv_tensor_describe (broadcast_strides (a->p, dims, ps) ? a->q : a->p);
      _rv_op_invalid (cmd, op, "%s does not broadcast to %s", bs, xs);
      return;
    }
  collapse (dims, ps, qs);

  guint32 flags = (a->p ? HAS_P : 0) | (a->p && a->p_plus_one ? P_PLUS_ONE : 0) |
                  (a->p && a->prelu ? P_PRELU : 0) | (a->q ? HAS_Q : 0) |
                  (a->m ? HAS_M : 0) | (a->n ? HAS_N : 0) |
                  (ps[3] == 0 ? P_ROW : 0) | (qs[3] == 0 ? Q_ROW : 0);
  /* index math only for broadcast operands (else one pipeline for all shapes) */
  gboolean bcast = a->p || a->q;
  guint32 ndims = 4;
  while (ndims > 1 && dims[4 - ndims] == 1)
    ndims--;
  guint32 spec[5] = { ELT_LOCAL, !bcast || dims[3] % 4 == 0, flags, a->act, bcast ? ndims : 1 };
  RvKernel *k = _rv_op_kernel (cmd, "eltwise", "STTTTT", spec, G_N_ELEMENTS (spec));
  if (k == NULL)
    return;

  ArithPush pc = { { 0 } };
  pc.alpha = a->alpha;
  pc.beta = a->beta;
  pc.xo = rv_tensor_texel_offset (a->x);
  pc.mo = a->m ? rv_tensor_texel_offset (a->m) : 0;
  pc.no = a->n ? rv_tensor_texel_offset (a->n) : 0;
  pc.po = a->p ? rv_tensor_texel_offset (a->p) : 0;
  pc.qo = a->q ? rv_tensor_texel_offset (a->q) : 0;
  guint32 shifts[3];
  for (int i = 0; i < 3; i++)
    fastdiv_magic (dims[3 - i], &pc.magic[i], &shifts[i]);
  pc.magic[3] = shifts[0] | shifts[1] << 8 | shifts[2] << 16;
  for (int i = 0; i < 4; i++)
    {
      pc.dims[i] = (guint32) dims[i];
      pc.ps[i] = (guint32) ps[i];
      pc.qs[i] = (guint32) qs[i];
    }
  RvBinding b[6] = {
    { y, RV_WRITE },
    { a->x, RV_READ },
    { a->p ? a->p : a->x, RV_READ },
    { a->q ? a->q : a->x, RV_READ },
    { a->m ? a->m : a->x, RV_READ },
    { a->n ? a->n : a->x, RV_READ },
  };
  dispatch_eltwise (cmd, k, y, b, G_N_ELEMENTS (b), &pc, sizeof pc);
}

void
rv_op_affine (RvCmd *cmd, RvTensor *y, const RvTensor *x, float alpha, float beta)
{
  if (!_rv_op_begin (cmd))
    return;
  Arith a = { .x = x, .alpha = alpha, .beta = beta };
  record_arith (cmd, "affine", y, &a);
}

void
rv_op_axpy (RvCmd *cmd, RvTensor *y, const RvTensor *x, float alpha, const RvTensor *r)
{
  if (!_rv_op_begin (cmd))
    return;
  Arith a = { .x = x, .alpha = alpha, .n = r };
  record_arith (cmd, "axpy", y, &a);
}

void
rv_op_unary (RvCmd *cmd, RvTensor *y, const RvTensor *x, RvAct act)
{
  if (!_rv_op_begin (cmd))
    return;
  Arith a = { .x = x, .alpha = 1, .act = act };
  record_arith (cmd, "unary", y, &a);
}

void
rv_op_binary (RvCmd *cmd, RvTensor *y, const RvTensor *a, const RvTensor *b, RvBinOp op)
{
  if (!_rv_op_begin (cmd))
    return;
  if (op != RV_BIN_ADD && op != RV_BIN_MUL && op != RV_BIN_PRELU)
    {
      _rv_op_invalid (cmd, "binary", "unknown operation %d", op);
      return;
    }
  Arith ar = { .x = a, .alpha = 1 };
  if (op == RV_BIN_PRELU)
    {
      /* the slopes always take the broadcast path (p) */
      ar.p = b;
      ar.prelu = TRUE;
      record_arith (cmd, "prelu", y, &ar);
      return;
    }
  /* b of a's shape goes through the plain vec4 path */
  gboolean full = rv_tensor_same_shape (a, b);
  if (op == RV_BIN_MUL)
    {
      if (full)
        ar.m = b;
      else
        ar.p = b;
    }
  else
    {
      if (full)
        ar.n = b;
      else
        ar.q = b;
    }
  record_arith (cmd, op == RV_BIN_MUL ? "mul" : "add", y, &ar);
}

void
rv_op_scale_shift (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *s,
                   const RvTensor *b)
{
  if (!_rv_op_begin (cmd))
    return;
  Arith a = { .x = x, .alpha = 1, .p = s, .p_plus_one = TRUE, .q = b };
  record_arith (cmd, "scale_shift", y, &a);
}

/* ---- normalization ---- */

typedef struct {
  guint32 xo, s, c, units, chunk_rows, chunks;
} StatsPush;

typedef struct {
  guint32 c, groups, cg, np, plane, pairs, po, go, bo, so;
  float   eps;
} FinalPush;

typedef struct {
  guint32 xo, so, mo, ao, s, c, units, chunk_rows, plane, batch0, chunk0, y0;
} ApplyPush;

typedef struct {
  guint32 xo, go, bo, so, mo, ao, s, c, units, cg;
  float   eps;
} FusedPush;

typedef struct {
  guint32 xo, go, bo, rows, c, units, group_rows, groups_x;
  float   eps;
} LayerPush;

/* FLAGS of norm.comp */
enum { NORM_GAMMA = 1, NORM_BETA = 2, NORM_SS = 4, NORM_MUL = 8, NORM_ADD = 16 };

static guint32
norm_flags (const RvNorm *n)
{
  return (n->gamma ? NORM_GAMMA : 0) | (n->beta ? NORM_BETA : 0) | (n->scale_shift ? NORM_SS : 0) |
         (n->mul ? NORM_MUL : 0) | (n->add ? NORM_ADD : 0);
}

#define FINAL_PAIRS 8          /* (batch, group) pairs per workgroup, as in norm.comp */
#define FUSED_LOCAL 32         /* small: lavapipe pays per invocation at each barrier */
#define FUSED_MAX_CH 256       /* channels per workgroup, as MAX_CH in norm.comp */
#define FUSED_MAX_WORK 32768   /* vec4s (or floats) per workgroup */

/* Column blocks for the fused kernel: each holds whole groups and at most
 * FUSED_MAX_CH channels; enough blocks for a few workgroups, as few as that.
 * 0 if none fits. */
static gint64
fused_blocks (gint64 batch, gint64 units, gint64 lanes, gint64 cg)
{
  gint64 best = 0;
  for (gint64 nb = 1; nb <= 8; nb *= 2)
    {
      gint64 tc = units / nb;
      if (units % nb != 0 || (tc * lanes) % cg != 0 || tc * lanes > FUSED_MAX_CH)
        continue;
      best = nb;
      if (batch * nb >= 4)
        break;
    }
  return best;
}

/* Small shapes: the three passes in one dispatch, a workgroup per (batch,
 * block of columns). */
static void
group_norm_fused (RvCmd *cmd, RvTensor *y, const RvTensor *x, int groups, float eps,
                  const RvNorm *n, gint64 blocks)
{
  gint64 batch = x->shape[0], c = x->shape[x->ndim - 1];
  gint64 s = rv_tensor_numel (x) / (batch * c);
  gboolean vec = c % 4 == 0;
  gint64 units = vec ? c / 4 : c;
  /* at least one invocation per channel of the block, for the merges */
  gint64 tc = units / blocks, tr = MAX (vec ? 4 : 1, MIN (FUSED_LOCAL / tc, s));
  guint32 spec[5] = { (guint32) (tc * tr), vec, (guint32) tc, norm_flags (n), n->act };
  RvKernel *k = _rv_op_kernel (cmd, "group-norm-fused", "STTTTTT", spec, G_N_ELEMENTS (spec));
  FusedPush pc = {
    rv_tensor_texel_offset (x),
    n->gamma ? rv_tensor_texel_offset (n->gamma) : 0,
    n->beta ? rv_tensor_texel_offset (n->beta) : 0,
    n->scale_shift ? rv_tensor_texel_offset (n->scale_shift) : 0,
    n->mul ? rv_tensor_texel_offset (n->mul) : 0,
    n->add ? rv_tensor_texel_offset (n->add) : 0,
    s, c, units, c / groups, eps,
  };
  RvBinding b[7] = {
    { y, RV_WRITE }, { x, RV_READ },
    { n->gamma ? n->gamma : x, RV_READ },
    { n->beta ? n->beta : x, RV_READ },
    { n->scale_shift ? n->scale_shift : x, RV_READ },
    { n->mul ? n->mul : x, RV_READ },
    { n->add ? n->add : x, RV_READ },
  };
  rv_cmd_dispatch (cmd, k, b, 7, &pc, sizeof pc, blocks, batch, 1);
}

static gboolean
check_subgroups (RvCmd *cmd, const char *op)
{
  if (rv_device_caps (rv_cmd_device (cmd))->subgroup_arith)
    return TRUE;
  rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                "%s: the device lacks the subgroup operations this op needs.", op);
  return FALSE;
}

/* Group norm in three passes over x (B, S, C):
 *   1. per-invocation Welford partials over strided rows of one column,
 *   2. per (batch, group) combination into a scale a and shift q per (b, c),
 *   3. y = act ((x·a + q)·mul + add), with the invocations laid out as in 1
 *      so each loads its column's a and q once.
 * Workgroups are tc columns × tr rows of invocations (a column is 4 channels,
 * or 1 when C % 4 != 0) over chunks of chunk_rows rows. */
static void
group_norm_passes (RvCmd *cmd, RvTensor *y, const RvTensor *x, int groups, float eps,
                   const RvNorm *n)
{
  gint64 batch = x->shape[0], c = x->shape[x->ndim - 1];
  gint64 s = rv_tensor_numel (x) / (batch * c);
  gboolean vec = c % 4 == 0;
  gint64 units = vec ? c / 4 : c;
  gint64 col_blocks = (units + NORM_LOCAL - 1) / NORM_LOCAL;
  gint64 tc = (units + col_blocks - 1) / col_blocks;
  gint64 tr = MAX (1, NORM_LOCAL / tc);
  /* about 8 chunks per batch: enough workgroups, few partials to combine */
  gint64 rows_each = CLAMP ((s + tr * 8 - 1) / (tr * 8), 4, 256);
  rows_each = MAX (rows_each, (s + tr * 65535 - 1) / (tr * 65535));
  gint64 chunk_rows = tr * rows_each;
  gint64 chunks = (s + chunk_rows - 1) / chunk_rows;
  gint64 np = chunks * tr;                      /* partials per (batch, channel) */
  gint64 plane = (batch * c + 3) / 4 * 4;

  g_autoptr (RvTensor) part = scratch (cmd, batch * np * 3 * c);
  g_autoptr (RvTensor) stats = part ? scratch (cmd, 2 * plane) : NULL;
  if (stats == NULL)
    return;

  guint32 sspec[3] = { (guint32) (tc * tr), vec, (guint32) tc };
  RvKernel *k = _rv_op_kernel (cmd, "group-norm-stats", "ST", sspec, G_N_ELEMENTS (sspec));
  StatsPush sp = { rv_tensor_texel_offset (x), s, c, units, chunk_rows, chunks };
  RvBinding sb[2] = { { part, RV_WRITE }, { x, RV_READ } };
  rv_cmd_dispatch (cmd, k, sb, 2, &sp, sizeof sp, col_blocks, chunks, batch);

  guint32 fspec[2] = { FINAL_LOCAL, norm_flags (n) & (NORM_GAMMA | NORM_BETA | NORM_SS) };
  k = _rv_op_kernel (cmd, "group-norm-final", "STTTT", fspec, G_N_ELEMENTS (fspec));
  FinalPush fp = {
    c, groups, c / groups, np, plane, batch * groups, rv_tensor_texel_offset (part),
    n->gamma ? rv_tensor_texel_offset (n->gamma) : 0,
    n->beta ? rv_tensor_texel_offset (n->beta) : 0,
    n->scale_shift ? rv_tensor_texel_offset (n->scale_shift) : 0,
    eps,
  };
  RvBinding fb[5] = {
    { stats, RV_WRITE }, { part, RV_READ },
    { n->gamma ? n->gamma : x, RV_READ },
    { n->beta ? n->beta : x, RV_READ },
    { n->scale_shift ? n->scale_shift : x, RV_READ },
  };
  rv_cmd_dispatch (cmd, k, fb, 5, &fp, sizeof fp, rv_div_up (batch * groups, FINAL_PAIRS), 1, 1);

  guint32 aspec[5] = { (guint32) (tc * tr), vec, (guint32) tc, norm_flags (n) & (NORM_MUL | NORM_ADD),
                       n->act };
  k = _rv_op_kernel (cmd, "group-norm-apply", "STTTT", aspec, G_N_ELEMENTS (aspec));
  ApplyPush ap = {
    rv_tensor_texel_offset (x), rv_tensor_texel_offset (stats),
    n->mul ? rv_tensor_texel_offset (n->mul) : 0, n->add ? rv_tensor_texel_offset (n->add) : 0,
    s, c, units, chunk_rows, plane,
  };
  RvBinding ab[5] = {
    { y, RV_WRITE }, { x, RV_READ }, { stats, RV_READ },
    { n->mul ? n->mul : x, RV_READ }, { n->add ? n->add : x, RV_READ },
  };
  /* y in one binding when it fits; else per batch, in runs of chunks */
  const RvDeviceCaps *caps = rv_device_caps (rv_cmd_device (cmd));
  if (y->size <= caps->max_storage_range)
    {
      rv_cmd_dispatch (cmd, k, ab, 5, &ap, sizeof ap, col_blocks, chunks, batch);
      return;
    }
  gint64 unit_bytes = vec ? 16 : 4;
  gint64 run = MAX (1, (gint64) (caps->max_storage_range / 2) / (chunk_rows * units * unit_bytes));
  for (gint64 b = 0; b < batch; b++)
    for (gint64 c0 = 0; c0 < chunks; c0 += run)
      {
        gint64 rows = MIN (run * chunk_rows, s - c0 * chunk_rows);
        /* bind from the first unit, rounded down to the binding alignment */
        gint64 first = ((b * s + c0 * chunk_rows) * units * unit_bytes) / 256 * 256;
        RvTensor view = *y;
        view.offset += first;
        view.size = MIN (y->size - first, (VkDeviceSize) ((rows * units + 64) * unit_bytes + 256) / 256 * 256);
        ab[0].tensor = &view;
        ap.batch0 = b;
        ap.chunk0 = c0;
        ap.y0 = first / unit_bytes;
        rv_cmd_dispatch (cmd, k, ab, 5, &ap, sizeof ap, col_blocks, MIN (run, chunks - c0), 1);
      }
}

void
rv_op_group_norm (RvCmd *cmd, RvTensor *y, const RvTensor *x, int groups, float eps,
                  const RvNorm *n)
{
  static const RvNorm none = { 0 };
  const char *op = "group_norm";
  if (!_rv_op_begin (cmd))
    return;
  if (n == NULL)
    n = &none;
  if (!check_output (cmd, op, y) || !check_input (cmd, op, "x", x) || !check_subgroups (cmd, op) ||
      !check_act (cmd, op, n->act))
    return;
  if (x->ndim < 2 || !rv_tensor_same_shape (x, y))
    {
      _rv_op_invalid (cmd, op, "x and y must be (B, S…, C) of the same shape");
      return;
    }
  gint64 numel = rv_tensor_numel (x), batch = x->shape[0], c = x->shape[x->ndim - 1];
  gint64 s = numel / (batch * c);
  if (groups <= 0 || c % groups != 0)
    {
      _rv_op_invalid (cmd, op, "%" G_GINT64_FORMAT " channels do not split into %d groups", c, groups);
      return;
    }
  if ((n->gamma && (!check_input (cmd, op, "gamma", n->gamma) || !check_numel (cmd, op, "gamma", n->gamma, c))) ||
      (n->beta && (!check_input (cmd, op, "beta", n->beta) || !check_numel (cmd, op, "beta", n->beta, c))) ||
      (n->scale_shift && (!check_input (cmd, op, "scale_shift", n->scale_shift) ||
                          !check_numel (cmd, op, "scale_shift", n->scale_shift, batch * 2 * c))) ||
      (n->mul && (!check_input (cmd, op, "mul", n->mul) || !check_numel (cmd, op, "mul", n->mul, numel))) ||
      (n->add && (!check_input (cmd, op, "add", n->add) || !check_numel (cmd, op, "add", n->add, numel))))
    return;

  gint64 lanes = c % 4 == 0 ? 4 : 1;
  gint64 blocks = fused_blocks (batch, c / lanes, lanes, c / groups);
  if (blocks > 0 && s * (c / lanes / blocks) <= FUSED_MAX_WORK &&
      y->size <= rv_device_caps (rv_cmd_device (cmd))->max_storage_range)
    group_norm_fused (cmd, y, x, groups, eps, n, blocks);
  else
    group_norm_passes (cmd, y, x, groups, eps, n);
}

void
rv_op_layer_norm (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *gamma,
                  const RvTensor *beta, float eps)
{
  const char *op = "layer_norm";
  if (!_rv_op_begin (cmd))
    return;
  if (!check_output (cmd, op, y) || !check_input (cmd, op, "x", x) || !check_subgroups (cmd, op))
    return;
  if (!rv_tensor_same_shape (x, y))
    {
      _rv_op_invalid (cmd, op, "x and y must have the same shape");
      return;
    }
  gint64 c = x->shape[x->ndim - 1], rows = rv_tensor_numel (x) / c;
  if ((gamma && (!check_input (cmd, op, "gamma", gamma) || !check_numel (cmd, op, "gamma", gamma, c))) ||
      (beta && (!check_input (cmd, op, "beta", beta) || !check_numel (cmd, op, "beta", beta, c))))
    return;
  gboolean vec = c % 4 == 0;
  guint32 spec[3] = { LAYER_LOCAL, vec, (gamma ? NORM_GAMMA : 0) | (beta ? NORM_BETA : 0) };
  RvKernel *k = _rv_op_kernel (cmd, "layer-norm", "STTT", spec, G_N_ELEMENTS (spec));
  guint32 gx, gy;
  _rv_grid_1d (cmd, rows, LAYER_GROUP_ROWS, &gx, &gy);
  LayerPush pc = {
    rv_tensor_texel_offset (x),
    gamma ? rv_tensor_texel_offset (gamma) : 0,
    beta ? rv_tensor_texel_offset (beta) : 0,
    rows, c, vec ? c / 4 : c, LAYER_GROUP_ROWS, gx, eps,
  };
  RvBinding b[4] = {
    { y, RV_WRITE }, { x, RV_READ },
    { gamma ? gamma : x, RV_READ }, { beta ? beta : x, RV_READ },
  };
  rv_cmd_dispatch (cmd, k, b, 4, &pc, sizeof pc, gx, gy, 1);
}

/* ---- concatenation, resampling, embeddings ---- */

typedef struct {
  EltHeader h;
  guint32   ao, bo, ya, yb, ymagic, yshift;
} ConcatPush;

/* Concatenations with at most this many pieces per input are copies. */
#define CONCAT_COPY_MAX 8

void
rv_op_concat (RvCmd *cmd, RvTensor *y, const RvTensor *a, const RvTensor *b, int dim)
{
  const char *op = "concat";
  if (!_rv_op_begin (cmd))
    return;
  if (!check_output (cmd, op, y) || !check_input (cmd, op, "a", a) || !check_input (cmd, op, "b", b))
    return;
  if (dim < 0)
    dim += y->ndim;
  gboolean ok = a->ndim == y->ndim && b->ndim == y->ndim && dim >= 0 && dim < y->ndim &&
                a->shape[dim] + b->shape[dim] == y->shape[dim];
  for (int i = 0; ok && i < y->ndim; i++)
    if (i != dim && (a->shape[i] != y->shape[i] || b->shape[i] != y->shape[i]))
      ok = FALSE;
  if (!ok)
    {
      g_autofree char *ds = rv_tensor_describe (y);
      g_autofree char *as = rv_tensor_describe (a);
      g_autofree char *bs = rv_tensor_describe (b);
      _rv_op_invalid (cmd, op, "%s and %s do not concatenate to %s along dim %d", as, bs, ds, dim);
      return;
    }
  gint64 outer = _rv_dims (y, 0, dim), inner = _rv_dims (y, dim + 1, y->ndim);
  gint64 ya = a->shape[dim] * inner, yb = b->shape[dim] * inner;
  if (outer <= CONCAT_COPY_MAX && a->dtype == RV_DTYPE_F32 && b->dtype == RV_DTYPE_F32)
    {
      /* a few contiguous pieces (tokens of a small batch): plain copies,
       * which a CPU driver does on its queue thread without waking its
       * compute threads, 0.02 ms against 0.3 ms for the kernel */
      for (gint64 o = 0; o < outer; o++)
        {
          rv_cmd_copy (cmd, y, o * (ya + yb) * 4, a, o * ya * 4, ya * 4);
          rv_cmd_copy (cmd, y, (o * (ya + yb) + ya) * 4, b, o * yb * 4, yb * 4);
        }
      return;
    }
  guint32 spec[2] = { ELT_LOCAL, ya % 4 == 0 && yb % 4 == 0 };
  RvKernel *k = _rv_op_kernel (cmd, "concat", "STT", spec, G_N_ELEMENTS (spec));
  ConcatPush pc = { { 0 }, rv_tensor_texel_offset (a), rv_tensor_texel_offset (b), ya, yb };
  fastdiv_magic (ya + yb, &pc.ymagic, &pc.yshift);
  RvBinding bb[3] = { { y, RV_WRITE }, { a, RV_READ }, { b, RV_READ } };
  dispatch_eltwise (cmd, k, y, bb, 3, &pc, sizeof pc);
}

typedef struct {
  EltHeader h;
  guint32   xo, h_in, w_in;
  float     sy, sx;
  guint32   r, cin, pad;
  guint32   dims[4], magic[4];
} ResamplePush;

/* MODE of eltwise.comp's RESAMPLE kernel */
typedef enum { RESAMPLE_NEAREST, RESAMPLE_POOL, RESAMPLE_SHUFFLE, RESAMPLE_UNSHUFFLE } ResampleMode;

G_STATIC_ASSERT (sizeof (ResamplePush) <= RV_PUSH_MAX);

/* want_*: y's expected (H, W, C), or 0 where any will do (C: x's) */
static void
resample (RvCmd *cmd, const char *op, RvTensor *y, const RvTensor *x, ResampleMode mode,
          gint64 want_h, gint64 want_w, gint64 want_c, int r)
{
  if (!_rv_op_begin (cmd))
    return;
  if (!check_output (cmd, op, y) || !check_input (cmd, op, "x", x))
    return;
  if (x->ndim != 4 || y->ndim != 4 || x->shape[0] != y->shape[0] ||
      y->shape[3] != (want_c > 0 ? want_c : x->shape[3]) ||
      (want_h > 0 && (y->shape[1] != want_h || y->shape[2] != want_w)))
    {
      g_autofree char *xs = rv_tensor_describe (x);
      g_autofree char *ys = rv_tensor_describe (y);
      _rv_op_invalid (cmd, op, "cannot resample %s to %s", xs, ys);
      return;
    }
  gint64 c = y->shape[3];
  /* a shuffle's neighbouring channels come from different places */
  gboolean vec = c % 4 == 0 && mode != RESAMPLE_SHUFFLE && mode != RESAMPLE_UNSHUFFLE;
  guint32 spec[3] = { ELT_LOCAL, vec, mode };
  RvKernel *k = _rv_op_kernel (cmd, "resample", "ST", spec, G_N_ELEMENTS (spec));
  ResamplePush pc = { { 0 } };
  pc.xo = rv_tensor_texel_offset (x);
  pc.h_in = x->shape[1];
  pc.w_in = x->shape[2];
  /* torch's nearest source index: floor (dst · (float) in / out) in f32 */
  pc.sy = (float) x->shape[1] / (float) y->shape[1];
  pc.sx = (float) x->shape[2] / (float) y->shape[2];
  pc.r = (guint32) r;
  pc.cin = (guint32) x->shape[3];
  gint64 dims[4] = { y->shape[0], y->shape[1], y->shape[2], vec ? c / 4 : c };
  guint32 shifts[3];
  for (int i = 0; i < 3; i++)
    fastdiv_magic (dims[3 - i], &pc.magic[i], &shifts[i]);
  pc.magic[3] = shifts[0] | shifts[1] << 8 | shifts[2] << 16;
  for (int i = 0; i < 4; i++)
    pc.dims[i] = dims[i];
  RvBinding b[2] = { { y, RV_WRITE }, { x, RV_READ } };
  dispatch_eltwise (cmd, k, y, b, 2, &pc, sizeof pc);
}

void
rv_op_upsample_nearest2x (RvCmd *cmd, RvTensor *y, const RvTensor *x)
{
  resample (cmd, "upsample_nearest2x", y, x, RESAMPLE_NEAREST, x->ndim == 4 ? 2 * x->shape[1] : 0,
            x->ndim == 4 ? 2 * x->shape[2] : 0, 0, 1);
}

void
rv_op_avgpool2x2 (RvCmd *cmd, RvTensor *y, const RvTensor *x)
{
  /* as torch's avg_pool2d (2, 2): an odd last row or column is dropped */
  resample (cmd, "avgpool2x2", y, x, RESAMPLE_POOL, x->ndim == 4 ? x->shape[1] / 2 : 0,
            x->ndim == 4 ? x->shape[2] / 2 : 0, 0, 1);
}

void
rv_op_resize_nearest (RvCmd *cmd, RvTensor *y, const RvTensor *x)
{
  resample (cmd, "resize_nearest", y, x, RESAMPLE_NEAREST, 0, 0, 0, 1);
}

void
rv_op_pixel_shuffle (RvCmd *cmd, RvTensor *y, const RvTensor *x, int r)
{
  const char *op = "pixel_shuffle";
  if (r < 1 || (x->ndim == 4 && x->shape[3] % (r * r) != 0))
    {
      g_autofree char *xs = rv_tensor_describe (x);
      _rv_op_invalid (cmd, op, "%s has no whole number of channels for a factor of %d", xs, r);
      return;
    }
  resample (cmd, op, y, x, RESAMPLE_SHUFFLE, x->ndim == 4 ? x->shape[1] * r : 0,
            x->ndim == 4 ? x->shape[2] * r : 0, x->ndim == 4 ? x->shape[3] / (r * r) : 0, r);
}

void
rv_op_pixel_unshuffle (RvCmd *cmd, RvTensor *y, const RvTensor *x, int r)
{
  const char *op = "pixel_unshuffle";
  if (r < 1 || (x->ndim == 4 && (x->shape[1] % r != 0 || x->shape[2] % r != 0)))
    {
      g_autofree char *xs = rv_tensor_describe (x);
      _rv_op_invalid (cmd, op, "%s: height and width must be multiples of %d", xs, r);
      return;
    }
  resample (cmd, op, y, x, RESAMPLE_UNSHUFFLE, x->ndim == 4 ? x->shape[1] / r : 0,
            x->ndim == 4 ? x->shape[2] / r : 0, x->ndim == 4 ? x->shape[3] * r * r : 0, r);
}

typedef struct {
  EltHeader h;
  guint32   to, rows, cols, cmagic, cshift;
} EmbedPush;

void
rv_op_embedding (RvCmd *cmd, RvTensor *y, const RvTensor *table, const RvTensor *ids)
{
  const char *op = "embedding";
  if (!_rv_op_begin (cmd))
    return;
  if (!check_output (cmd, op, y) || !check_input (cmd, op, "table", table))
    return;
  if (ids->dtype != RV_DTYPE_I32 || table->ndim != 2 ||
      rv_tensor_numel (y) != rv_tensor_numel (ids) * table->shape[1])
    {
      g_autofree char *ys = rv_tensor_describe (y);
      g_autofree char *ts = rv_tensor_describe (table);
      g_autofree char *is = rv_tensor_describe (ids);
      _rv_op_invalid (cmd, op, "y %s = table %s [ids %s] does not fit (ids must be i32)", ys, ts, is);
      return;
    }
  gint64 c = table->shape[1];
  guint32 spec[2] = { ELT_LOCAL, c % 4 == 0 };
  RvKernel *k = _rv_op_kernel (cmd, "embedding", "STS", spec, G_N_ELEMENTS (spec));
  EmbedPush pc = { { 0 }, rv_tensor_texel_offset (table), table->shape[0], c };
  fastdiv_magic (c, &pc.cmagic, &pc.cshift);
  RvBinding b[3] = { { y, RV_WRITE }, { table, RV_READ }, { ids, RV_READ } };
  dispatch_eltwise (cmd, k, y, b, 3, &pc, sizeof pc);
}

/* ---- timestep embedding (host) ---- */

void
rv_op_timestep_embedding (RvCmd *cmd, RvTensor *y, const float *timesteps, int batch,
                          gboolean flip_sin_to_cos, float freq_shift)
{
  const char *op = "timestep_embedding";
  if (!_rv_op_begin (cmd))
    return;
  if (!check_output (cmd, op, y))
    return;
  gint64 dim = y->shape[y->ndim - 1];
  if (batch <= 0 || rv_tensor_numel (y) != batch * dim)
    {
      g_autofree char *ys = rv_tensor_describe (y);
      _rv_op_invalid (cmd, op, "y %s is not (%d, dim)", ys, batch);
      return;
    }
  /* diffusers' get_timestep_embedding, step by step in float32 as torch runs
   * it. exp, sin and cos are evaluated in double and rounded once to float
   * (torch's vectorized float versions can differ from that by an ulp). */
  gint64 half = dim / 2;
  const float neg_log = (float) -log (10000.0);
  const float denom = (float) half - freq_shift;
  if (half > 0 && denom == 0)
    {
      _rv_op_invalid (cmd, op, "dim / 2 − freq_shift is 0");
      return;
    }
  g_autofree float *freq = g_new (float, MAX (half, 1));
  for (gint64 k = 0; k < half; k++)
    {
      float e = neg_log * (float) k;
      e = e / denom;
      freq[k] = (float) exp ((double) e);
    }
  g_autofree float *out = g_new0 (float, batch * dim);
  for (int b = 0; b < batch; b++)
    for (gint64 k = 0; k < half; k++)
      {
        float arg = timesteps[b] * freq[k];
        float sn = (float) sin ((double) arg), cs = (float) cos ((double) arg);
        out[b * dim + k] = flip_sin_to_cos ? cs : sn;
        out[b * dim + half + k] = flip_sin_to_cos ? sn : cs;
      }
  rv_tensor_upload_f32 (cmd, y, out, batch * dim);
}
