/* rv-ops-gemm.c: linear, batched matmul and conv2d. All three are one GEMM
 * with a fused epilogue (shaders/gemm.comp), run by one of three kernels
 * chosen per device: CPU drivers, GPUs in general, NVIDIA tensor cores. */
#include "rv-ops-private.h"

#include <math.h>

/* The push constant block of gemm.comp. */
typedef struct {
  guint32 m, n, k;
  guint32 batch;
  guint32 row_blocks;
  guint32 a_off, b_off, bias_off, res_off;
  guint32 a_batch, b_batch;
  guint32 sam, sak, sbk, sbn;
  guint32 flags;
  float   alpha;
  guint32 h, w, cin, ho, wo, kw, stride;
  gint32  pad_t, pad_l;
  guint32 b_off1, b_off2, bias_off1, bias_off2;   /* groups: batch entries 1, 2 */
} GemmPush;

G_STATIC_ASSERT (sizeof (GemmPush) <= RV_PUSH_MAX);

/* How the kernels address A and B (the A_* and B_* modes of gemm.comp). */
enum { A_VEC4_K, A_VEC4_M, A_STRIDED, A_CONV_VEC4, A_CONV, A_CONV_CELL, A_CONV_ROWS };
enum { B_VEC4_N, B_VEC4_K, B_STRIDED };

enum { FLAG_BIAS = 1, FLAG_RESIDUAL = 2, FLAG_ACT_SHIFT = 2 };

/* The CPU kernel's register tiles (TM × TN, the gemm-cpu* rows of
 * shaders/meson.build); choose_cpu_tile picks one per shape. */
typedef struct {
  const char *module;
  guint32     tm, tn;
  gboolean    lanes_n;   /* the SIMD lanes take column blocks (else row blocks) */
} CpuTile;

static const CpuTile cpu_tiles[] = {
  { "gemm-cpu", 8, 16, FALSE },
  { "gemm-cpu-4x16", 4, 16, FALSE },
  { "gemm-cpu-8x8", 8, 8, FALSE },
  { "gemm-cpu-4x8", 4, 8, FALSE },
  { "gemm-cpu-n4x4", 4, 4, TRUE },
  { "gemm-cpu-n4x8", 4, 8, TRUE },
  { "gemm-cpu-n8x4", 8, 4, TRUE },
};

static int forced_cpu_tile = -1;

guint
_rv_gemm_cpu_tile_count (void)
{
  return G_N_ELEMENTS (cpu_tiles);
}

const char *
_rv_gemm_cpu_tile_name (guint index)
{
  return index < G_N_ELEMENTS (cpu_tiles) ? cpu_tiles[index].module : NULL;
}

void
_rv_gemm_force_cpu_tile (int index)
{
  forced_cpu_tile = index >= 0 && index < (int) G_N_ELEMENTS (cpu_tiles) ? index : -1;
}

/* One problem: y (batch, M, N) = act (alpha · A·B + bias) + residual, A and B
 * addressed through the strides in pc (or as a convolution). */
typedef struct {
  const char     *op;
  GemmPush        pc;
  gboolean        conv;
  gboolean        conv_rows;   /* no padding, kernel rows texel-aligned: A_CONV_ROWS */
  const RvTensor *a, *b, *bias, *res;
  RvTensor       *y;
  gboolean        groups;      /* B and bias of batch entries 1, 2 from b_more, bias_more */
  const RvTensor *b_more[2], *bias_more[2];
} Gemm;

static RvGemmVariant forced_variant = RV_GEMM_AUTO;
static gboolean forced_group_split;

void
_rv_gemm_force_group_split (gboolean split)
{
  forced_group_split = split;
}

void
_rv_gemm_force_variant (RvGemmVariant variant)
{
  forced_variant = variant;
}

/* ---- kernel choice ---- */

static gboolean
coopmat_usable (const RvDeviceCaps *caps)
{
  /* gemm.comp's cooperative-matrix kernel is written for 4 subgroups of 32
   * and 24 KiB of shared memory. */
  return caps->coopmat_nv && caps->subgroup_size == 32 && caps->max_shared_memory >= 24576;
}

/* Results of the cooperative-matrix self-check, by device name and driver:
 * 1 agreed, -1 disagreed. */
static GMutex check_lock;
static GHashTable *check_results;

static gboolean
coopmat_trusted (RvCmd *cmd)
{
  RvDevice *dev = rv_cmd_device (cmd);
  const RvDeviceCaps *caps = rv_device_caps (dev);
  g_autofree char *key = g_strdup_printf ("%s|%s", caps->name, caps->driver);
  g_mutex_lock (&check_lock);
  if (check_results == NULL)
    check_results = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  int result = GPOINTER_TO_INT (g_hash_table_lookup (check_results, key));
  if (result == 0)
    {
      /* The check allocates tensors, which may take memory that work recorded
       * on cmd still reads after its tensors were freed: run that work first. */
      GError *error = NULL;
      if (!rv_cmd_submit (cmd, &error))
        {
          rv_cmd_fail (cmd, error);
          g_mutex_unlock (&check_lock);
          return FALSE;
        }
      if (_rv_gemm_self_check (dev, RV_GEMM_COOPMAT, &error))
        result = 1;
      else
        {
          g_warning ("The tensor-core matrix kernel gave wrong results on %s (%s); using the "
                     "portable kernel instead.", caps->name, error->message);
          g_error_free (error);
          result = -1;
        }
      g_hash_table_insert (check_results, g_steal_pointer (&key), GINT_TO_POINTER (result));
    }
  g_mutex_unlock (&check_lock);
  return result > 0;
}

static RvGemmVariant
choose_variant (RvCmd *cmd, const Gemm *g)
{
  if (forced_variant != RV_GEMM_AUTO)
    return forced_variant;
  const RvDeviceCaps *caps = rv_device_caps (rv_cmd_device (cmd));
  /* Tensor cores round the activations to fp16: only worth it, and only
   * precise enough, where the weights are fp16 already. */
  if (g->b->dtype == RV_DTYPE_F16 && coopmat_usable (caps) && coopmat_trusted (cmd))
    return RV_GEMM_COOPMAT;
  if (caps->type == VK_PHYSICAL_DEVICE_TYPE_CPU)
    return RV_GEMM_CPU;
  return RV_GEMM_TILED;
}

/* Specialization of the CPU kernel: addressing modes and activation. Each
 * combination is a pipeline that lavapipe compiles on its first use (about
 * 1.5 s of CPU; later runs find it in Mesa's shader cache). */
static void
cpu_spec (const Gemm *g, guint32 spec[4])
{
  const GemmPush *pc = &g->pc;
  if (g->conv)
    /* by kernel cell from 16 channels on; fewer channels per cell measured
     * faster with the single loop over K, unless a kernel row's pixels are
     * one run of texels (no padding: a patch embedding, a "valid" conv) */
    spec[0] = pc->cin >= 16 && pc->cin % 4 == 0 ? A_CONV_CELL
              : g->conv_rows                   ? A_CONV_ROWS
              : pc->cin % 4 != 0               ? A_CONV
                                               : A_CONV_VEC4;
  else if (pc->sak == 1 && pc->k % 4 == 0 && pc->sam % 4 == 0 && pc->a_batch % 4 == 0)
    spec[0] = A_VEC4_K;
  else if (pc->sam == 1 && pc->m % 4 == 0 && pc->sak % 4 == 0 && pc->a_batch % 4 == 0)
    spec[0] = A_VEC4_M;
  else
    spec[0] = A_STRIDED;
  if (pc->sbn == 1 && pc->n % 4 == 0 && pc->sbk % 4 == 0 && pc->b_batch % 4 == 0)
    spec[1] = B_VEC4_N;
  else if (pc->sbk == 1 && pc->k % 4 == 0 && pc->sbn % 4 == 0 && pc->b_batch % 4 == 0)
    spec[1] = B_VEC4_K;
  else
    spec[1] = B_STRIDED;
  spec[3] = pc->flags >> FLAG_ACT_SHIFT;
}

/* The CPU kernel's tile for a problem: REVERIE_GEMM_CPU_TILE=TMxTN (a
 * benchmarking knob) or the tests' choice, else by shape. */
static const CpuTile *
choose_cpu_tile (const Gemm *g)
{
  if (forced_cpu_tile >= 0)
    return &cpu_tiles[forced_cpu_tile];
  static gsize env_once;
  static int env_tile = -1;
  if (g_once_init_enter (&env_once))
    {
      const char *v = g_getenv ("REVERIE_GEMM_CPU_TILE");
      for (guint i = 0; v != NULL && i < G_N_ELEMENTS (cpu_tiles); i++)
        {
          g_autofree char *name = g_strdup_printf ("%s%ux%u", cpu_tiles[i].lanes_n ? "n" : "",
                                                   cpu_tiles[i].tm, cpu_tiles[i].tn);
          if (g_str_equal (v, name))
            env_tile = i;
        }
      g_once_init_leave (&env_once, 1);
    }
  if (env_tile >= 0)
    return &cpu_tiles[env_tile];
  /* Few rows leave most SIMD lanes of a row-block tile idle: with at most 8
   * (a batch of embeddings, the prior's last tokens) the lanes take column
   * blocks instead, 2–7× faster on the embedded UNet's time projections
   * and the prior's steps (0.08–0.14 ms against 0.22–1.0 ms); up to 32 (a
   * 4×4 latent level at batch 2) a 4-row tile fills the lanes: 1.6–2× on
   * its 3×3 convolutions. */
  if (g->pc.m <= 8)
    return &cpu_tiles[5];
  if (g->pc.m <= 32)
    return &cpu_tiles[1];
  /* Measured on lavapipe (2 cores, AVX2; bench ops with each tile forced,
   * best of 2 interleaved runs): 8×8 is fastest on most shapes, small and
   * large (1.1–1.25× over 8×16 on the 3×3 convolutions and on linear layers
   * of 64–256 outputs); a convolution of 4 channels or fewer, or whose
   * channels are not read 4 at a time, is faster with 8×16 (1.1–1.4×); a
   * wide linear layer (≥ 512 outputs) with 4×16. A convolution walked by
   * kernel row (A_CONV_ROWS: the CLIP patch embedding of 3 channels) is
   * faster with 8×8 again: 13.3–14.2 GFLOP/s against 12.3–13.4 (5
   * alternating pairs, 8×8 ahead in each). */
  if (g->conv_rows && g->pc.cin < 16)
    return &cpu_tiles[2];
  if (g->conv && (g->pc.cin % 4 != 0 || g->pc.cin <= 4))
    return &cpu_tiles[0];
  if (!g->conv && g->pc.n >= 512)
    return &cpu_tiles[1];
  return &cpu_tiles[2];
}

/* ---- recording ---- */

static gboolean
texel_reachable (RvDevice *dev, const RvTensor *t)
{
  guint64 end = (guint64) rv_tensor_texel_offset (t) + (rv_tensor_numel (t) + 3) / 4;
  return end <= rv_device_caps (dev)->max_texel_elements;
}

static void
gemm_record (RvCmd *cmd, Gemm *g, RvGemmVariant variant)
{
  RvDevice *dev = rv_cmd_device (cmd);
  const RvDeviceCaps *caps = rv_device_caps (dev);
  GemmPush *pc = &g->pc;

  const RvTensor *read[8] = { g->a, g->b, g->bias, g->res, g->b_more[0], g->b_more[1],
                              g->bias_more[0], g->bias_more[1] };
  for (guint i = 0; i < G_N_ELEMENTS (read); i++)
    if (read[i] != NULL &&
        (!texel_reachable (dev, read[i]) || rv_tensor_numel (read[i]) >= G_MAXINT32))
      {
        rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                      "%s: an input is too large for this device's texel buffers; try a "
                      "smaller image size or fewer images at once.", g->op);
        return;
      }
  if (rv_tensor_numel (g->y) >= G_MAXINT32)
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "%s: the output is too large for 32-bit indexing; try a smaller image "
                    "size or fewer images at once.", g->op);
      return;
    }

  pc->a_off = rv_tensor_texel_offset (g->a);
  pc->b_off = rv_tensor_texel_offset (g->b);
  pc->bias_off = g->bias ? rv_tensor_texel_offset (g->bias) : 0;
  pc->res_off = g->res ? rv_tensor_texel_offset (g->res) : 0;
  pc->b_off1 = g->b_more[0] ? rv_tensor_texel_offset (g->b_more[0]) : 0;
  pc->b_off2 = g->b_more[1] ? rv_tensor_texel_offset (g->b_more[1]) : 0;
  pc->bias_off1 = g->bias_more[0] ? rv_tensor_texel_offset (g->bias_more[0]) : 0;
  pc->bias_off2 = g->bias_more[1] ? rv_tensor_texel_offset (g->bias_more[1]) : 0;

  const char *module;
  guint32 spec[5];
  guint n_spec;
  guint32 bm, bn;
  if (variant == RV_GEMM_CPU)
    {
      /* one invocation per SIMD lane, tm rows × tn columns each */
      guint32 width = CLAMP (caps->subgroup_size, 1, 64);
      const CpuTile *tile = choose_cpu_tile (g);
      module = tile->module;
      cpu_spec (g, spec);
      spec[2] = width;
      n_spec = 4;
      bm = tile->lanes_n ? tile->tm : width * tile->tm;
      bn = tile->lanes_n ? width * tile->tn : tile->tn;
    }
  else
    {
      if (variant == RV_GEMM_COOPMAT && !coopmat_usable (caps))
        {
          rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                        "%s: “%s” has no usable cooperative-matrix support.", g->op,
                        caps->name);
          return;
        }
      module = variant == RV_GEMM_COOPMAT ? "gemm-coopmat-nv" : "gemm-tiled";
      spec[0] = g->conv ? A_CONV : A_STRIDED;
      spec[1] = B_STRIDED;      /* the defaults: these kernels read B element-wise */
      spec[2] = 0;
      spec[3] = 255;            /* ACT_DYNAMIC */
      n_spec = 1;
      bm = 64;
      bn = 64;
    }
  if (g->groups)
    {
      spec[4] = TRUE;           /* GROUPS: batch entries 1, 2 read b_off1/2, bias_off1/2 */
      n_spec = 5;
    }

  RvKernel *kernel = _rv_op_kernel (cmd, module, "TTTTS", spec, n_spec);
  pc->row_blocks = rv_div_up (pc->m, bm);
  guint64 tiles = (guint64) pc->row_blocks * pc->batch;
  guint32 gx = rv_div_up (pc->n, bn);
  guint32 gy = (guint32) MIN (tiles, MIN (caps->max_workgroup_count[1], 65535));
  guint32 gz = rv_div_up (tiles, gy);
  RvBinding b[5] = {
    { g->a, RV_READ },
    { g->b, RV_READ },
    { g->bias ? g->bias : g->a, RV_READ },
    { g->res ? g->res : g->a, RV_READ },
    { g->y, RV_WRITE },
  };
  rv_cmd_dispatch (cmd, kernel, b, 5, pc, sizeof *pc, gx, gy, gz);
}

static void
gemm_run (RvCmd *cmd, Gemm *g)
{
  gemm_record (cmd, g, choose_variant (cmd, g));
}

/* ---- argument checks ---- */

static gboolean
is_weight_dtype (const RvTensor *t)
{
  return t->dtype == RV_DTYPE_F32 || t->dtype == RV_DTYPE_F16;
}

static gboolean
overlap (const RvTensor *a, const RvTensor *b)
{
  return a != NULL && b != NULL && a->block == b->block && a->offset < b->offset + b->size &&
         b->offset < a->offset + a->size;
}

/* Checks shared by linear and conv2d: output, bias, residual, aliasing. */
static gboolean
check_epilogue (RvCmd *cmd, Gemm *g, gint64 rows, gint64 n, RvAct act)
{
  if (g->y->dtype != RV_DTYPE_F32 || rv_tensor_numel (g->y) != rows * n ||
      g->y->shape[g->y->ndim - 1] != n)
    {
      g_autofree char *sy = rv_tensor_describe (g->y);
      return _rv_op_invalid (cmd, g->op, "y is %s; it must be f32 (%" G_GINT64_FORMAT ", %"
                             G_GINT64_FORMAT ")", sy, rows, n);
    }
  if (g->bias != NULL && (!is_weight_dtype (g->bias) || rv_tensor_numel (g->bias) != n))
    {
      g_autofree char *sb = rv_tensor_describe (g->bias);
      return _rv_op_invalid (cmd, g->op, "bias is %s; it must be f32 or f16 (%" G_GINT64_FORMAT
                             ")", sb, n);
    }
  if (g->res != NULL && (g->res->dtype != RV_DTYPE_F32 || rv_tensor_numel (g->res) != rows * n))
    {
      g_autofree char *sr = rv_tensor_describe (g->res);
      return _rv_op_invalid (cmd, g->op, "residual is %s; it must be f32 with the %"
                             G_GINT64_FORMAT " elements of y", sr, rows * n);
    }
  if (overlap (g->y, g->a) || overlap (g->y, g->b) || overlap (g->y, g->bias) ||
      overlap (g->y, g->res))
    return _rv_op_invalid (cmd, g->op, "y may not share memory with an input");
  if (act < RV_ACT_NONE || act > RV_ACT_QUICK_GELU)
    return _rv_op_invalid (cmd, g->op, "unknown activation %d", (int) act);
  g->pc.flags = (g->bias ? FLAG_BIAS : 0) | (g->res ? FLAG_RESIDUAL : 0) |
                ((guint32) act << FLAG_ACT_SHIFT);
  g->pc.alpha = 1.0f;
  g->pc.batch = 1;
  return TRUE;
}

static gboolean
linear_setup (RvCmd *cmd, Gemm *g, RvTensor *y, const RvTensor *x, const RvTensor *w,
              const RvTensor *bias, RvAct act, const RvTensor *residual)
{
  *g = (Gemm) { .op = "linear", .a = x, .b = w, .bias = bias, .res = residual, .y = y };
  if (w->ndim != 2 || !is_weight_dtype (w) || x->dtype != RV_DTYPE_F32 ||
      x->shape[x->ndim - 1] != w->shape[0])
    {
      g_autofree char *sx = rv_tensor_describe (x), *sw = rv_tensor_describe (w);
      return _rv_op_invalid (cmd, g->op, "x %s and w %s do not make x (M, K) · w (K, N) with "
                             "x f32 and w f32 or f16", sx, sw);
    }
  gint64 k = w->shape[0], n = w->shape[1], m = rv_tensor_numel (x) / k;
  if (!check_epilogue (cmd, g, m, n, act))
    return FALSE;
  GemmPush *pc = &g->pc;
  pc->m = m;
  pc->n = n;
  pc->k = k;
  pc->sam = k;
  pc->sak = 1;
  pc->sbk = n;
  pc->sbn = 1;
  return TRUE;
}

static gboolean
conv_setup (RvCmd *cmd, Gemm *g, RvTensor *y, const RvTensor *x, const RvTensor *w,
            const RvTensor *bias, const RvConv2d *p, const RvTensor *residual)
{
  *g = (Gemm) { .op = "conv2d", .a = x, .b = w, .bias = bias, .res = residual, .y = y };
  if (x->ndim != 4 || x->dtype != RV_DTYPE_F32 || w->ndim != 4 || !is_weight_dtype (w) ||
      w->shape[0] != p->kh || w->shape[1] != p->kw || w->shape[2] != x->shape[3])
    {
      g_autofree char *sx = rv_tensor_describe (x), *sw = rv_tensor_describe (w);
      return _rv_op_invalid (cmd, g->op, "x %s must be f32 (B, H, W, Cin) and w %s f32 or f16 "
                             "(%d, %d, Cin, Cout)", sx, sw, p->kh, p->kw);
    }
  if (p->kh < 1 || p->kw < 1 || p->stride < 1 || p->pad_top < 0 || p->pad_left < 0 ||
      p->pad_bottom < 0 || p->pad_right < 0)
    return _rv_op_invalid (cmd, g->op, "bad parameters: kernel %d×%d, stride %d, padding "
                           "(%d, %d, %d, %d)", p->kh, p->kw, p->stride, p->pad_top,
                           p->pad_left, p->pad_bottom, p->pad_right);
  gint64 batch = x->shape[0], h = x->shape[1], wi = x->shape[2], cin = x->shape[3];
  gint64 cout = w->shape[3];
  gint64 hp = h + p->pad_top + p->pad_bottom, wp = wi + p->pad_left + p->pad_right;
  if (hp < p->kh || wp < p->kw)
    return _rv_op_invalid (cmd, g->op, "the %d×%d kernel is larger than the padded input "
                           "(%" G_GINT64_FORMAT "×%" G_GINT64_FORMAT ")", p->kh, p->kw, hp, wp);
  gint64 ho = (hp - p->kh) / p->stride + 1, wo = (wp - p->kw) / p->stride + 1;
  if (y->ndim != 4 || y->shape[0] != batch || y->shape[1] != ho || y->shape[2] != wo)
    {
      g_autofree char *sy = rv_tensor_describe (y);
      return _rv_op_invalid (cmd, g->op, "y is %s; it must be (%" G_GINT64_FORMAT ", %"
                             G_GINT64_FORMAT ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ")",
                             sy, batch, ho, wo, cout);
    }
  if (!check_epilogue (cmd, g, batch * ho * wo, cout, RV_ACT_NONE))
    return FALSE;
  GemmPush *pc = &g->pc;
  pc->m = batch * ho * wo;
  pc->n = cout;
  pc->k = p->kh * p->kw * cin;
  pc->sbk = cout;
  pc->sbn = 1;
  if (p->kh == 1 && p->kw == 1 && p->stride == 1 && hp == h && wp == wi)
    {
      /* NHWC makes a 1×1 convolution a plain product of (B·H·W, Cin) rows */
      pc->sam = cin;
      pc->sak = 1;
      return TRUE;
    }
  g->conv = TRUE;
  /* every window inside the image, and each kernel row's KW·Cin elements
   * starting on a texel */
  g->conv_rows = p->pad_top == 0 && p->pad_left == 0 && p->pad_bottom == 0 && p->pad_right == 0 &&
                 (p->kw * cin) % 4 == 0 && (wi * cin) % 4 == 0 && (p->stride * cin) % 4 == 0;
  pc->h = h;
  pc->w = wi;
  pc->cin = cin;
  pc->ho = ho;
  pc->wo = wo;
  pc->kw = p->kw;
  pc->stride = p->stride;
  pc->pad_t = p->pad_top;
  pc->pad_l = p->pad_left;
  return TRUE;
}

/* ---- the ops ---- */

void
rv_op_linear (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
              const RvTensor *bias, RvAct act, const RvTensor *residual)
{
  Gemm g;
  if (_rv_op_begin (cmd) && linear_setup (cmd, &g, y, x, w, bias, act, residual))
    gemm_run (cmd, &g);
}

void
rv_op_linear_group (RvCmd *cmd, RvTensor *y, const RvTensor *x, int n, const RvTensor *const *w,
                    const RvTensor *const *bias)
{
  const char *op = "linear_group";
  if (!_rv_op_begin (cmd))
    return;
  if (n < 1 || n > 3 || w == NULL || w[0] == NULL || w[0]->ndim != 2 ||
      x->shape[x->ndim - 1] != w[0]->shape[0])
    {
      _rv_op_invalid (cmd, op, "it takes 1 to 3 weights (K, N) for x (M, K)");
      return;
    }
  gint64 k = w[0]->shape[0], cols = w[0]->shape[1], m = rv_tensor_numel (x) / k;
  for (int i = 0; i < n; i++)
    if (w[i] == NULL || !rv_tensor_same_shape (w[i], w[0]) || w[i]->dtype != w[0]->dtype ||
        (bias != NULL && bias[i] == NULL) || (bias != NULL && bias[i]->dtype != bias[0]->dtype))
      {
        _rv_op_invalid (cmd, op, "weight %d differs from the first in shape or dtype, or "
                        "lacks its bias", i);
        return;
      }
  if (y->dtype != RV_DTYPE_F32 || rv_tensor_numel (y) != n * m * cols ||
      y->shape[y->ndim - 1] != cols)
    {
      g_autofree char *sy = rv_tensor_describe (y);
      _rv_op_invalid (cmd, op, "y is %s; it must be f32 (%d, %" G_GINT64_FORMAT ", %"
                      G_GINT64_FORMAT ")", sy, n, m, cols);
      return;
    }
  if (overlap (y, x))
    {
      _rv_op_invalid (cmd, op, "y may not share memory with x");
      return;
    }
  gboolean together = !forced_group_split;
  for (int i = 1; i < n; i++)
    together = together && w[i]->block == w[0]->block &&
               (bias == NULL || bias[i]->block == bias[0]->block);
  if (!together)
    {
      /* each part on its own, then copied into its place in y */
      gint64 shape[2] = { m, cols };
      for (int i = 0; i < n && !rv_cmd_failed (cmd); i++)
        {
          GError *error = NULL;
          g_autoptr (RvTensor) part = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 2, shape,
                                                     &error);
          if (part == NULL)
            {
              rv_cmd_fail (cmd, error);
              return;
            }
          rv_op_linear (cmd, part, x, w[i], bias ? bias[i] : NULL, RV_ACT_NONE, NULL);
          rv_cmd_copy (cmd, y, i * rv_tensor_nbytes (part), part, 0, rv_tensor_nbytes (part));
        }
      return;
    }

  /* part 0 as y sets up and checks the product; the batch does the rest */
  RvTensor y0 = *y;
  y0.ndim = 2;
  y0.shape[0] = m;
  y0.shape[1] = cols;
  Gemm g;
  if (!linear_setup (cmd, &g, &y0, x, w[0], bias ? bias[0] : NULL, RV_ACT_NONE, NULL))
    return;
  g.op = op;
  g.y = y;
  g.pc.batch = n;
  g.pc.a_batch = 0;
  g.pc.b_batch = 0;
  g.groups = TRUE;
  for (int i = 1; i < n; i++)
    {
      g.b_more[i - 1] = w[i];
      g.bias_more[i - 1] = bias ? bias[i] : NULL;
    }
  gemm_run (cmd, &g);
}

void
rv_op_conv2d (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
              const RvTensor *bias, const RvConv2d *p, const RvTensor *residual)
{
  g_return_if_fail (p != NULL);
  Gemm g;
  if (!_rv_op_begin (cmd) || !conv_setup (cmd, &g, y, x, w, bias, p, residual))
    return;
  RvGemmVariant variant = choose_variant (cmd, &g);
  /* Winograd reads its inputs through texel views too; where one lies beyond
   * them, the direct path reports it */
  RvDevice *dev = rv_cmd_device (cmd);
  gboolean reachable = texel_reachable (dev, x) && texel_reachable (dev, w) &&
                       (bias == NULL || texel_reachable (dev, bias)) &&
                       (residual == NULL || texel_reachable (dev, residual));
  if (!reachable || !_rv_winograd_conv2d (cmd, y, x, w, bias, p, residual, variant == RV_GEMM_CPU))
    gemm_record (cmd, &g, variant);
}

/* (batch, rows, cols) of a matmul operand; 2-d tensors are batch 1 and
 * leading dims beyond the last two are all batch. */
static void
matrix_dims (const RvTensor *t, gint64 *batch, gint64 *rows, gint64 *cols)
{
  *batch = _rv_dims (t, 0, t->ndim - 2);
  *rows = t->shape[t->ndim - 2];
  *cols = t->shape[t->ndim - 1];
}

void
rv_op_matmul (RvCmd *cmd, RvTensor *y, const RvTensor *a, gboolean trans_a,
              const RvTensor *b, gboolean trans_b, float alpha)
{
  if (!_rv_op_begin (cmd))
    return;
  Gemm g = { .op = "matmul", .a = a, .b = b, .y = y };
  if (a->ndim < 2 || b->ndim < 2 || y->ndim < 2 || a->dtype != RV_DTYPE_F32 ||
      b->dtype != RV_DTYPE_F32 || y->dtype != RV_DTYPE_F32)
    {
      _rv_op_invalid (cmd, g.op, "a, b and y must be f32 matrices (2-d or batched)");
      return;
    }
  gint64 ba, ra, ca, bb, rb, cb, by, m, n;
  matrix_dims (a, &ba, &ra, &ca);
  matrix_dims (b, &bb, &rb, &cb);
  matrix_dims (y, &by, &m, &n);
  gint64 k = trans_a ? ra : ca;
  gint64 batch = MAX (ba, bb);
  if ((trans_a ? ca : ra) != m || (trans_b ? cb : rb) != k || (trans_b ? rb : cb) != n ||
      (ba != 1 && ba != batch) || (bb != 1 && bb != batch) || by != batch)
    {
      g_autofree char *sa = rv_tensor_describe (a), *sb = rv_tensor_describe (b);
      g_autofree char *sy = rv_tensor_describe (y);
      _rv_op_invalid (cmd, g.op, "shapes do not match: a %s%s, b %s%s, y %s", sa,
                      trans_a ? " transposed" : "", sb, trans_b ? " transposed" : "", sy);
      return;
    }
  if (overlap (y, a) || overlap (y, b))
    {
      _rv_op_invalid (cmd, g.op, "y may not share memory with a or b");
      return;
    }
  GemmPush *pc = &g.pc;
  pc->m = m;
  pc->n = n;
  pc->k = k;
  pc->batch = batch;
  pc->alpha = alpha;
  pc->sam = trans_a ? 1 : k;
  pc->sak = trans_a ? m : 1;
  pc->sbk = trans_b ? 1 : n;
  pc->sbn = trans_b ? k : 1;
  pc->a_batch = ba == 1 ? 0 : m * k;
  pc->b_batch = bb == 1 ? 0 : k * n;
  if (bb == 1 && !trans_a)
    {
      /* one B for all: the batch is just more rows of A */
      pc->m = batch * m;
      pc->batch = 1;
      pc->a_batch = 0;
    }
  gemm_run (cmd, &g);
}

/* ---- the cooperative-matrix self-check ---- */

static RvTensor *
check_tensor (RvCmd *cmd, GRand *rand, RvDType dtype, int ndim, const gint64 *shape,
              GError **error)
{
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), dtype, ndim, shape, error);
  if (t == NULL)
    return NULL;
  gint64 n = rv_tensor_numel (t);
  g_autofree float *data = g_new (float, n);
  for (gint64 i = 0; i < n; i++)
    data[i] = (float) g_rand_double_range (rand, -1, 1);
  rv_tensor_upload_f32 (cmd, t, data, n);
  return t;
}

static double
rel_diff (const float *a, const float *b, gint64 n)
{
  double num = 0, den = 0;
  for (gint64 i = 0; i < n; i++)
    {
      if (!isfinite (a[i]) || !isfinite (b[i]))
        return INFINITY;
      num += (double) (a[i] - b[i]) * (a[i] - b[i]);
      den += (double) b[i] * b[i];
    }
  return sqrt (num / MAX (den, 1e-30));
}

gboolean
_rv_gemm_self_check (RvDevice *dev, RvGemmVariant variant, GError **error)
{
  g_autoptr (RvCmd) cmd = rv_cmd_new (dev, error);
  if (cmd == NULL)
    return FALSE;
  g_autoptr (GRand) rand = g_rand_new_with_seed (2);
  /* Odd sizes, so partial tiles are covered; silu and bias on the linear. */
  const gint64 xs[2] = { 77, 96 }, ws[2] = { 96, 80 }, bs[1] = { 80 }, ys[2] = { 77, 80 };
  const gint64 cxs[4] = { 2, 9, 11, 20 }, cws[4] = { 3, 3, 20, 24 }, cys[4] = { 2, 9, 11, 24 };
  const RvConv2d p = { 3, 3, 1, 1, 1, 1, 1 };
  g_autoptr (RvTensor) x = check_tensor (cmd, rand, RV_DTYPE_F32, 2, xs, error);
  g_autoptr (RvTensor) w = x ? check_tensor (cmd, rand, RV_DTYPE_F16, 2, ws, error) : NULL;
  g_autoptr (RvTensor) bias = w ? check_tensor (cmd, rand, RV_DTYPE_F16, 1, bs, error) : NULL;
  g_autoptr (RvTensor) cx = bias ? check_tensor (cmd, rand, RV_DTYPE_F32, 4, cxs, error) : NULL;
  g_autoptr (RvTensor) cw = cx ? check_tensor (cmd, rand, RV_DTYPE_F16, 4, cws, error) : NULL;
  RvTensor *out[4] = { NULL };
  const gint64 *out_shape[4] = { ys, ys, cys, cys };
  gboolean ok = cw != NULL;
  for (guint i = 0; i < 4 && ok; i++)
    {
      out[i] = rv_tensor_new (dev, RV_DTYPE_F32, i < 2 ? 2 : 4, out_shape[i], error);
      ok = out[i] != NULL;
    }
  float *got[4] = { NULL };
  for (guint i = 0; i < 4 && ok; i++)
    {
      Gemm g;
      if (i < 2 ? linear_setup (cmd, &g, out[i], x, w, bias, RV_ACT_SILU, NULL)
                : conv_setup (cmd, &g, out[i], cx, cw, NULL, &p, NULL))
        gemm_record (cmd, &g, i % 2 == 0 ? variant : RV_GEMM_TILED);
      got[i] = g_new (float, rv_tensor_numel (out[i]));
      rv_cmd_download (cmd, out[i], got[i], rv_tensor_nbytes (out[i]));
    }
  if (ok)
    ok = rv_cmd_submit (cmd, error);
  for (guint i = 0; i < 4 && ok; i += 2)
    {
      /* the kernels differ in summation order and in rounding A to fp16 */
      double d = rel_diff (got[i], got[i + 1], rv_tensor_numel (out[i]));
      if (!(d < 1e-2))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_UNSUPPORTED,
                       "the %s results differ from the reference kernel's by %.3g",
                       i == 0 ? "linear" : "conv2d", d);
          ok = FALSE;
        }
    }
  for (guint i = 0; i < 4; i++)
    {
      g_clear_pointer (&out[i], rv_tensor_free);
      g_free (got[i]);
    }
  return ok;
}
