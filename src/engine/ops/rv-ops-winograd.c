/* rv-ops-winograd.c: 3×3 stride-1 convolutions as Winograd's F(m×m, 3×3).
 *
 * A direct 3×3 convolution costs 9 multiply-adds per output and input
 * channel. F(4×4, 3×3) computes a 4×4 block of outputs from a 6×6 input
 * tile with 36, a quarter of the work; F(2×2, 3×3) a 2×2 block from a 4×4
 * tile with 16, 4/9 of it, in four times as many tiles, which suits small
 * feature maps. Either is three transforms (shaders/winograd.comp) around
 * one batched GEMM of T² products (T = m + 2):
 *
 *   U (T², Cin, Cout)   = G·g·Gᵀ          the weights, per call
 *   V (T², tiles, Cin)  = Bᵀ·d·B          the input tiles
 *   M (T², tiles, Cout) = V · U           rv_op_matmul, batch T²
 *   y                   = Aᵀ·M·A + bias + residual
 *
 * On CPU drivers the GEMM runs at about the same rate either way, so the
 * convolutions with many channels run up to 2–3.7× faster (bench ops). The
 * arithmetic is f32 throughout; F(4×4) adds rounding of a few 1e-6 relative,
 * F(2×2) next to none (tests/test-ops-gemm.c holds both to the same 1e-5 as
 * the direct kernel). U, V and M are scratch tensors of at most 32 MiB each
 * (and at most one storage binding): tiles are taken in runs and output
 * channels in slices to stay inside that, so device memory stays bounded for
 * any image size. docs/devices.md §6 has the measurements. */
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
                 : g_str_equal (v, "1") ? RV_WINOGRAD_ON
                 : g_str_equal (v, "2") ? RV_WINOGRAD_ON_F2 : RV_WINOGRAD_AUTO;
      g_once_init_leave (&env_once, 1);
    }
  return forced_mode != RV_WINOGRAD_AUTO ? forced_mode : env_mode;
}

/* How one convolution is cut under the scratch limit. */
typedef struct {
  gint64 m;        /* outputs per tile side: F(4×4, 3×3) or F(2×2, 3×3) */
  gint64 nx;       /* (m + 2)²: the products per tile */
  gint64 tiles_h, tiles_w, tiles;
  gint64 coutc;    /* output channels per slice of U */
  gint64 slices;
  gint64 run;      /* tiles per run */
} Plan;

/* The plan of F(m×m, 3×3) for an output of (batch, ho, wo); FALSE where even
 * one tile and 4 output channels would not fit the limit. */
static gboolean
fill_plan (Plan *pl, gint64 m, gint64 batch, gint64 ho, gint64 wo, gint64 cin, gint64 cout,
           gsize limit)
{
  pl->m = m;
  pl->nx = (m + 2) * (m + 2);
  if ((gsize) pl->nx * cin * 4 * sizeof (float) > limit)
    return FALSE;
  pl->tiles_h = (ho + m - 1) / m;
  pl->tiles_w = (wo + m - 1) / m;
  pl->tiles = batch * pl->tiles_h * pl->tiles_w;
  pl->coutc = MIN (cout, (gint64) (limit / (pl->nx * cin * sizeof (float))) / 4 * 4);
  pl->slices = (cout + pl->coutc - 1) / pl->coutc;
  pl->run = MIN (pl->tiles,
                 MAX (1, (gint64) (limit / (pl->nx * MAX (cin, pl->coutc) * sizeof (float)))));
  return TRUE;
}

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
  gint64 ho = h + p->pad_top + p->pad_bottom - 2, wo = w + p->pad_left + p->pad_right - 2;
  if (m == RV_WINOGRAD_ON || m == RV_WINOGRAD_ON_F2)
    return fill_plan (pl, m == RV_WINOGRAD_ON ? 4 : 2, batch, ho, wo, cin, cout, limit);
  if (!cpu_kernel)
    return FALSE;
  /* Measured on lavapipe (bench ops, conv rows, forced each way):
   * - F(4×4) with 128 tiles and more (32×32 at batch 2) wins from 32
   *   channels in and out (1.2–3.7×); with fewer tiles the GEMM's rows leave
   *   SIMD lanes idle.
   * - Wide layers on small maps take F(2×2), whose 4× more tiles fill the
   *   lanes: at batch 2, 16×16 × 1280 channels 51–55 GFLOP/s (F(4×4) 41–46,
   *   direct 23), 8×8 × 640 42–46 (direct 26), 8×8 × 1280 27 (direct 23–24).
   * - Neither pays with 32 to 128 channels on maps of 16×16 and less at
   *   batch 2 (the embedded UNet): F(2×2) 0.4–0.9× direct, F(4×4) 0.2–0.9×. */
  gint64 ch = MIN (cin, cout);
  Plan f4;
  if (!fill_plan (&f4, 4, batch, ho, wo, cin, cout, limit))
    return FALSE;
  if (ch >= 256 && f4.tiles < 64 && fill_plan (pl, 2, batch, ho, wo, cin, cout, limit) &&
      pl->tiles >= 32)
    return TRUE;
  *pl = f4;
  return (f4.tiles >= 128 && ch >= 32) || (f4.tiles >= 32 && ch >= 256);
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
  return padded (pl.nx * cin * pl.coutc) + padded (pl.nx * pl.run * cin) +
         padded (pl.nx * pl.run * pl.coutc);
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

/* kind: "weight", "input" or "output" */
static void
dispatch (RvCmd *cmd, const Plan *pl, const char *kind, const char *bindings, const RvBinding *b,
          guint nb, WinoPush *pc)
{
  const guint32 spec[1] = { WG_LOCAL };
  g_autofree char *module = g_strdup_printf ("winograd-%s%s", kind, pl->m == 2 ? "-f2" : "");
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
transform_weights (RvCmd *cmd, const Plan *pl, RvTensor *u, const RvTensor *w, gint64 co0,
                   gint64 coutc)
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
  dispatch (cmd, pl, "weight", "TS", b, 2, &pc);
}

gboolean
_rv_winograd_conv2d (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
                     const RvTensor *bias, const RvConv2d *p, const RvTensor *residual,
                     gboolean cpu_kernel)
{
  gint64 h = x->shape[1], wi = x->shape[2], cin = x->shape[3];
  gint64 ho = y->shape[1], wo = y->shape[2], cout = y->shape[3];
  Plan pl;
  if (!plan_conv (x->shape[0], h, wi, cin, cout, p, cpu_kernel,
                  chunk_limit (rv_cmd_device (cmd)), &pl))
    return FALSE;
  gint64 tiles = pl.tiles, coutc = pl.coutc, run = pl.run, slices = pl.slices;

  g_autoptr (RvTensor) u = NULL;
  if (slices == 1)
    {
      u = scratch3 (cmd, pl.nx, cin, cout);
      if (u == NULL)
        return TRUE;
      transform_weights (cmd, &pl, u, w, 0, cout);
    }
  for (gint64 t0 = 0; t0 < tiles && !rv_cmd_failed (cmd); t0 += run)
    {
      gint64 nt = MIN (run, tiles - t0);
      g_autoptr (RvTensor) v = scratch3 (cmd, pl.nx, nt, cin);
      if (v == NULL)
        return TRUE;
      WinoPush pc = tile_push (&pl, t0, nt, cin / 4, h, wi);
      pc.src_off = rv_tensor_texel_offset (x);
      pc.pad_t = p->pad_top;
      pc.pad_l = p->pad_left;
      RvBinding bi[2] = { { x, RV_READ }, { v, RV_WRITE } };
      dispatch (cmd, &pl, "input", "TS", bi, 2, &pc);

      for (gint64 co0 = 0; co0 < cout && !rv_cmd_failed (cmd); co0 += coutc)
        {
          gint64 nc = MIN (coutc, cout - co0);
          g_autoptr (RvTensor) us = NULL;
          if (slices > 1)
            {
              us = scratch3 (cmd, pl.nx, cin, nc);
              if (us == NULL)
                return TRUE;
              transform_weights (cmd, &pl, us, w, co0, nc);
            }
          g_autoptr (RvTensor) m = scratch3 (cmd, pl.nx, nt, nc);
          if (m == NULL)
            return TRUE;
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
          dispatch (cmd, &pl, "output", "TTTS", bo, 4, &po);
        }
    }
  return TRUE;
}
