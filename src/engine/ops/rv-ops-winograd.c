/* rv-ops-winograd.c: 3×3 stride-1 convolutions as Winograd's F(4×4, 3×3).
 *
 * A direct 3×3 convolution costs 9 multiply-adds per output and input
 * channel; F(4×4, 3×3) computes a 4×4 block of outputs from a 6×6 input
 * tile with 36, a quarter of the work, at the price of three transforms
 * (shaders/winograd.comp) around one batched GEMM of 36 products:
 *
 *   U (36, Cin, Cout)   = G·g·Gᵀ          the weights, per call
 *   V (36, tiles, Cin)  = Bᵀ·d·B          the input tiles
 *   M (36, tiles, Cout) = V · U           rv_op_matmul, batch 36
 *   y                   = Aᵀ·M·A + bias + residual
 *
 * On CPU drivers the GEMM runs at the same rate either way, so the
 * convolutions with many channels run up to 2–3× faster (bench ops). The
 * arithmetic is f32 throughout; the transforms add rounding of a few 1e-6
 * relative (tests/test-ops-gemm.c holds it to the same 1e-5 as the direct
 * kernel). U, V and M are scratch tensors of at most 32 MiB each (and at
 * most one storage binding): tiles are taken in runs and output channels in
 * slices to stay inside that, so device memory stays bounded for any image
 * size. docs/devices.md §6 has the measurements. */
#include "rv-ops-private.h"

#define WG_LOCAL 64
#define WG_CHUNK_BYTES ((gsize) 32 << 20)

typedef struct {
  guint32 count, groups_x;
  guint32 src_off, bias_off, res_off;
  guint32 flags;
  guint32 quads, cin, co4_total, co4_0;
  guint32 h, w;
  guint32 tiles_w, tiles_hw;
  guint32 tile0, ntiles;
  gint32  pad_t, pad_l;
} WinoPush;

static RvWinogradMode forced_mode = RV_WINOGRAD_AUTO;
static gsize forced_chunk_bytes;

void
_rv_winograd_force (RvWinogradMode mode, gsize chunk_bytes)
{
  forced_mode = mode;
  forced_chunk_bytes = chunk_bytes;
}

static gsize
chunk_limit (RvDevice *dev)
{
  gsize limit = forced_chunk_bytes ? forced_chunk_bytes : WG_CHUNK_BYTES;
  return MIN (limit, rv_device_caps (dev)->max_storage_range);
}

/* The tests' choice, else REVERIE_WINOGRAD=0 or 1 (a benchmarking knob). */
static RvWinogradMode
mode (void)
{
  static gsize env_once;
  static RvWinogradMode env_mode;
  if (g_once_init_enter (&env_once))
    {
      const char *v = g_getenv ("REVERIE_WINOGRAD");
      env_mode = v == NULL ? RV_WINOGRAD_AUTO : g_str_equal (v, "0") ? RV_WINOGRAD_OFF
                 : g_str_equal (v, "1") ? RV_WINOGRAD_ON : RV_WINOGRAD_AUTO;
      g_once_init_leave (&env_once, 1);
    }
  return forced_mode != RV_WINOGRAD_AUTO ? forced_mode : env_mode;
}

/* How one convolution is cut under the scratch limit. */
typedef struct {
  gint64 tiles_h, tiles_w, tiles;
  gint64 coutc;    /* output channels per slice of U */
  gint64 slices;
  gint64 run;      /* tiles per run */
} Plan;

/* Whether a 3×3 convolution of (batch, h, w, cin) -> cout with padding p
 * goes through Winograd, and how; cpu_kernel: its GEMM would run on the CPU
 * kernel. */
static gboolean
plan_conv (gint64 batch, gint64 h, gint64 w, gint64 cin, gint64 cout, const RvConv2d *p,
           gboolean cpu_kernel, gsize limit, Plan *pl)
{
  RvWinogradMode m = mode ();
  if (m == RV_WINOGRAD_OFF || p->kh != 3 || p->kw != 3 || p->stride != 1 || cin % 4 != 0 ||
      cout % 4 != 0)
    return FALSE;
  /* the smallest scratch: one tile and a slice of 4 output channels */
  if ((gsize) 36 * cin * 4 * sizeof (float) > limit)
    return FALSE;
  gint64 ho = h + p->pad_top + p->pad_bottom - 2, wo = w + p->pad_left + p->pad_right - 2;
  pl->tiles_h = (ho + 3) / 4;
  pl->tiles_w = (wo + 3) / 4;
  pl->tiles = batch * pl->tiles_h * pl->tiles_w;
  pl->coutc = MIN (cout, (gint64) (limit / (36 * cin * sizeof (float))) / 4 * 4);
  pl->slices = (cout + pl->coutc - 1) / pl->coutc;
  pl->run = MIN (pl->tiles, MAX (1, (gint64) (limit / (36 * MAX (cin, pl->coutc) * sizeof (float)))));
  if (m == RV_WINOGRAD_ON)
    return TRUE;
  if (!cpu_kernel)
    return FALSE;
  /* Measured on lavapipe (bench ops, conv rows, forced on and off): with
   * 128 tiles and more (32×32 at batch 2) it wins from 32 channels in and out
   * (1.5–3×); with fewer the GEMM's rows leave SIMD lanes idle, and only very
   * wide layers gain (16×16 × 640–1280 channels at batch 2: 1.4–2×); at 8
   * tiles (8×8 at batch 2) it is 2–3× slower whatever the channels. */
  gint64 ch = MIN (cin, cout);
  return (pl->tiles >= 128 && ch >= 32) || (pl->tiles >= 32 && ch >= 256);
}

gboolean
_rv_winograd_applies (RvCmd *cmd, const RvTensor *x, const RvTensor *w, const RvConv2d *p,
                      gboolean cpu_kernel)
{
  Plan pl;
  return plan_conv (x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[3], p,
                    cpu_kernel, chunk_limit (rv_cmd_device (cmd)), &pl);
}

static guint64
padded (gint64 numel)
{
  return ((guint64) numel * sizeof (float) + 255) / 256 * 256;
}

guint64
rv_op_conv2d_scratch_bytes (gint64 batch, gint64 h, gint64 w, gint64 cin, gint64 cout,
                            const RvConv2d *p)
{
  Plan pl;
  if (!plan_conv (batch, h, w, cin, cout, p, TRUE,
                  forced_chunk_bytes ? forced_chunk_bytes : WG_CHUNK_BYTES, &pl))
    return 0;
  /* U (whole or one slice), a run's V and its M */
  return padded (36 * cin * pl.coutc) + padded (36 * pl.run * cin) + padded (36 * pl.run * pl.coutc);
}

static RvTensor *
scratch3 (RvCmd *cmd, gint64 d0, gint64 d1, gint64 d2)
{
  GError *error = NULL;
  const gint64 shape[3] = { d0, d1, d2 };
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, 3, shape, &error);
  if (t == NULL)
    rv_cmd_fail (cmd, error);
  return t;
}

static void
dispatch (RvCmd *cmd, const char *module, const char *bindings, const RvBinding *b, guint nb,
          WinoPush *pc)
{
  const guint32 spec[1] = { WG_LOCAL };
  RvKernel *k = _rv_op_kernel (cmd, module, bindings, spec, 1);
  if (k == NULL)
    return;
  guint32 gx, gy;
  _rv_grid_1d (cmd, pc->count, WG_LOCAL, &gx, &gy);
  pc->groups_x = gx;
  rv_cmd_dispatch (cmd, k, b, nb, pc, sizeof *pc, gx, gy, 1);
}

/* The push constants of the tile kernels for a run of nt tiles from t0, with
 * `quads` channel quads per tile, on an image of h × w (x's or y's). */
static WinoPush
tile_push (const Plan *pl, gint64 t0, gint64 nt, gint64 quads, gint64 h, gint64 w)
{
  WinoPush pc = { 0 };
  pc.count = nt * quads;
  pc.quads = quads;
  pc.h = h;
  pc.w = w;
  pc.tiles_w = pl->tiles_w;
  pc.tiles_hw = pl->tiles_h * pl->tiles_w;
  pc.tile0 = t0;
  pc.ntiles = nt;
  return pc;
}

/* U for output channels [co0, co0 + coutc) */
static void
transform_weights (RvCmd *cmd, RvTensor *u, const RvTensor *w, gint64 co0, gint64 coutc)
{
  gint64 cin = w->shape[2], cout = w->shape[3];
  WinoPush pc = { 0 };
  pc.count = cin * (coutc / 4);
  pc.src_off = rv_tensor_texel_offset (w);
  pc.quads = coutc / 4;
  pc.cin = cin;
  pc.co4_total = cout / 4;
  pc.co4_0 = co0 / 4;
  RvBinding b[2] = { { w, RV_READ }, { u, RV_WRITE } };
  dispatch (cmd, "winograd-weight", "TS", b, 2, &pc);
}

void
_rv_winograd_conv2d (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
                     const RvTensor *bias, const RvConv2d *p, const RvTensor *residual)
{
  gint64 h = x->shape[1], wi = x->shape[2], cin = x->shape[3];
  gint64 ho = y->shape[1], wo = y->shape[2], cout = y->shape[3];
  Plan pl;
  if (!plan_conv (x->shape[0], h, wi, cin, cout, p, TRUE, chunk_limit (rv_cmd_device (cmd)), &pl))
    {
      rv_cmd_failf (cmd, RV_ERROR_INVALID, "conv2d: this convolution cannot run as Winograd");
      return;
    }
  gint64 tiles = pl.tiles, coutc = pl.coutc, run = pl.run, slices = pl.slices;

  g_autoptr (RvTensor) u = NULL;
  if (slices == 1)
    {
      u = scratch3 (cmd, 36, cin, cout);
      if (u == NULL)
        return;
      transform_weights (cmd, u, w, 0, cout);
    }
  for (gint64 t0 = 0; t0 < tiles && !rv_cmd_failed (cmd); t0 += run)
    {
      gint64 nt = MIN (run, tiles - t0);
      g_autoptr (RvTensor) v = scratch3 (cmd, 36, nt, cin);
      if (v == NULL)
        return;
      WinoPush pc = tile_push (&pl, t0, nt, cin / 4, h, wi);
      pc.src_off = rv_tensor_texel_offset (x);
      pc.pad_t = p->pad_top;
      pc.pad_l = p->pad_left;
      RvBinding bi[2] = { { x, RV_READ }, { v, RV_WRITE } };
      dispatch (cmd, "winograd-input", "TS", bi, 2, &pc);

      for (gint64 co0 = 0; co0 < cout && !rv_cmd_failed (cmd); co0 += coutc)
        {
          gint64 nc = MIN (coutc, cout - co0);
          g_autoptr (RvTensor) us = NULL;
          if (slices > 1)
            {
              us = scratch3 (cmd, 36, cin, nc);
              if (us == NULL)
                return;
              transform_weights (cmd, us, w, co0, nc);
            }
          g_autoptr (RvTensor) m = scratch3 (cmd, 36, nt, nc);
          if (m == NULL)
            return;
          rv_op_matmul (cmd, m, v, FALSE, us ? us : u, FALSE, 1.0f);

          WinoPush po = tile_push (&pl, t0, nt, nc / 4, ho, wo);
          po.src_off = rv_tensor_texel_offset (m);
          po.bias_off = bias ? rv_tensor_texel_offset (bias) : 0;
          po.res_off = residual ? rv_tensor_texel_offset (residual) : 0;
          po.flags = (bias ? 1 : 0) | (residual ? 2 : 0);
          po.co4_total = cout / 4;
          po.co4_0 = co0 / 4;
          RvBinding bo[4] = {
            { m, RV_READ },
            { bias ? bias : m, RV_READ },
            { residual ? residual : m, RV_READ },
            { y, RV_WRITE },
          };
          dispatch (cmd, "winograd-output", "TTTS", bo, 4, &po);
        }
    }
}
