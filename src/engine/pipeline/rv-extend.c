/* rv-extend.c: outpainting (RV_JOB_EXTEND) on the host: the canvas, the plan
 * of frames (which native-size crops are inpainted, in which order), the
 * crops given to the inpainting decoder and the compositing of each frame's
 * output back into the canvas. The frames themselves run in rv-jobs.c. */
#include "config.h"

#include "rv-engine-private.h"

#include <math.h>
#include <string.h>

void
_rv_extend_plan_free (RvExtendPlan *p)
{
  if (p == NULL)
    return;
  g_free (p->owner);
  if (p->frames != NULL)
    g_array_unref (p->frames);
  if (p->waves != NULL)
    g_array_unref (p->waves);
  g_free (p);
}

static gboolean
invalid (GError **error, const char *message)
{
  g_set_error_literal (error, RV_ERROR, RV_ERROR_INVALID, message);
  return FALSE;
}

/* 1 where a source pixel is kept: without a mask, one opaque enough (alpha
 * ≥ 128); with one (the image's size), one it does not mark for repainting
 * in its mode. */
static guint8 *
source_keep (const RvImage *img, const RvImage *mask, RvMaskMode mode, GError **error)
{
  gsize n = (gsize) img->width * img->height;
  guint8 *keep = g_new (guint8, n);
  for (gsize p = 0; p < n; p++)
    keep[p] = mask != NULL || img->channels != 4 || img->pixels[p * 4 + 3] >= 128;
  if (mask == NULL)
    return keep;
  if (mask->width != img->width || mask->height != img->height)
    {
      g_free (keep);
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "The mask is %d×%d but the picture is %d×%d: an extend mask must have the "
                   "picture's size.", mask->width, mask->height, img->width, img->height);
      return NULL;
    }
  if (mode == RV_MASK_AUTO)
    mode = rv_mask_mode_detect (mask);
  for (gsize p = 0; p < n; p++)
    {
      const guint8 *px = mask->pixels + p * mask->channels;
      gboolean repaint = mode == RV_MASK_ALPHA
                           ? mask->channels == 4 && px[3] < 128
                           : (px[0] * 299 + px[1] * 587 + px[2] * 114 + 500) / 1000 >= 128;
      if (repaint)
        keep[p] = 0;
    }
  return keep;
}

/* n positions from 0 to `last`, evenly spread, at most `stride` apart. */
static int *
grid_positions (int last, int stride, int *n)
{
  *n = last <= 0 ? 1 : (last + stride - 1) / stride + 1;
  int *pos = g_new (int, *n);
  for (int i = 0; i < *n; i++)
    pos[i] = *n == 1 ? 0 : (int) lround ((double) i * last / (*n - 1));
  return pos;
}

typedef struct {
  RvRect r;
  gint64 filled;          /* pixels already there */
  gint64 dist2;           /* (2·distance between centres)², to the source's centre */
  gboolean done;
} Candidate;

/* Better candidate first: more of it filled (in sixteenths; anything
 * filled before nothing), then more to fill, then nearer the source, then
 * the grid order. */
static gboolean
better (const Candidate *a, int ia, const Candidate *b, int ib)
{
  gint64 area_a = (gint64) a->r.width * a->r.height, area_b = (gint64) b->r.width * b->r.height;
  gint64 qa = a->filled > 0 ? a->filled * 16 / area_a : -1;
  gint64 qb = b->filled > 0 ? b->filled * 16 / area_b : -1;
  if (qa != qb)
    return qa > qb;
  gint64 ea = area_a - a->filled, eb = area_b - b->filled;
  if (ea != eb)
    return ea > eb;
  if (a->dist2 != b->dist2)
    return a->dist2 < b->dist2;
  return ia < ib;
}

static gint64
count_filled (const gint32 *owner, int width, int x0, int y0, int x1, int y1)
{
  gint64 c = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      c += owner[(gsize) y * width + x] >= 0;
  return c;
}

/* The frames covering the empty pixels of p's canvas on a grid of
 * 1/`div` frame strides, greedily: the candidate with the largest share
 * already filled next. *work gets, per canvas pixel, 0 for the source, k + 1
 * for the pixels frame k fills (−1 never stays). */
static GArray *
plan_frames (RvExtendPlan *p, int kx0, int ky0, int kx1, int ky1, int div, gint32 **work_out,
             GError **error)
{
  int W = p->width, H = p->height;
  int nx, ny;
  g_autofree int *xs = grid_positions (W - p->fw, MAX (1, p->fw / div), &nx);
  g_autofree int *ys = grid_positions (H - p->fh, MAX (1, p->fh / div), &ny);
  int nc = nx * ny;
  g_autofree Candidate *c = g_new0 (Candidate, nc);
  /* filled pixels per candidate from a summed-area table */
  g_autofree gint64 *sat = g_new0 (gint64, (gsize) (W + 1) * (H + 1));
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      sat[(gsize) (y + 1) * (W + 1) + x + 1] = (p->owner[(gsize) y * W + x] >= 0) +
        sat[(gsize) y * (W + 1) + x + 1] + sat[(gsize) (y + 1) * (W + 1) + x] -
        sat[(gsize) y * (W + 1) + x];
  gint64 scx = kx0 + kx1 + 1, scy = ky0 + ky1 + 1;   /* 2 × the kept area's centre */
  for (int j = 0; j < ny; j++)
    for (int i = 0; i < nx; i++)
      {
        Candidate *k = &c[j * nx + i];
        k->r = (RvRect) { xs[i], ys[j], p->fw, p->fh };
        int x0 = xs[i], y0 = ys[j], x1 = x0 + p->fw, y1 = y0 + p->fh;
        k->filled = sat[(gsize) y1 * (W + 1) + x1] - sat[(gsize) y0 * (W + 1) + x1] -
                    sat[(gsize) y1 * (W + 1) + x0] + sat[(gsize) y0 * (W + 1) + x0];
        gint64 dx = 2 * x0 + p->fw - scx, dy = 2 * y0 + p->fh - scy;
        k->dist2 = dx * dx + dy * dy;
      }

  GArray *frames = g_array_new (FALSE, FALSE, sizeof (RvRect));
  gint32 *work = g_memdup2 (p->owner, (gsize) W * H * sizeof (gint32));
  for (;;)
    {
      int best = -1;
      for (int i = 0; i < nc; i++)
        if (!c[i].done && c[i].filled < (gint64) c[i].r.width * c[i].r.height &&
            (best < 0 || better (&c[i], i, &c[best], best)))
          best = i;
      if (best < 0)
        break;
      if (frames->len >= RV_EXTEND_MAX_FRAMES)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       "Extending to %d×%d pixels would take more than %d frames of %d×%d: use "
                       "smaller borders, or a model with a larger native size.",
                       p->width, p->height, RV_EXTEND_MAX_FRAMES, p->fw, p->fh);
          g_array_unref (frames);
          g_free (work);
          return NULL;
        }
      RvRect r = c[best].r;
      g_array_append_val (frames, r);
      c[best].done = TRUE;
      /* the frame's empty pixels are filled now: update the candidates it overlaps */
      for (int i = 0; i < nc; i++)
        {
          RvRect *o = &c[i].r;
          int x0 = MAX (r.x, o->x), y0 = MAX (r.y, o->y);
          int x1 = MIN (r.x + r.width, o->x + o->width), y1 = MIN (r.y + r.height, o->y + o->height);
          if (c[i].done || x0 >= x1 || y0 >= y1)
            continue;
          c[i].filled += (gint64) (x1 - x0) * (y1 - y0) - count_filled (work, W, x0, y0, x1, y1);
        }
      for (int y = r.y; y < r.y + r.height; y++)
        for (int x = r.x; x < r.x + r.width; x++)
          if (work[(gsize) y * W + x] < 0)
            work[(gsize) y * W + x] = (gint32) frames->len;
    }
  *work_out = work;
  return frames;
}

/* The wave of each frame: frames of one wave neither see nor touch what
 * another of the wave fills, so they run together (one decoder batch); a
 * frame that sees or blends into pixels an earlier frame fills runs in a
 * later wave than it. */
static GArray *
frame_waves (const RvExtendPlan *p, const gint32 *work)
{
  guint n = p->frames->len;
  GArray *waves = g_array_sized_new (FALSE, TRUE, sizeof (int), n);
  g_array_set_size (waves, n);
  g_autofree guint8 *dep = g_new0 (guint8, n);
  for (guint k = 0; k < n; k++)
    {
      RvRect rk = g_array_index (p->frames, RvRect, k);
      memset (dep, 0, n);
      /* pixels earlier frames fill inside this one */
      for (int y = rk.y; y < rk.y + rk.height; y++)
        for (int x = rk.x; x < rk.x + rk.width; x++)
          {
            gint32 w = work[(gsize) y * p->width + x];
            if (w > 0 && (guint) w - 1 < k)
              dep[w - 1] = 1;
          }
      /* earlier frames holding pixels this one fills */
      for (guint j = 0; j < k; j++)
        {
          RvRect rj = g_array_index (p->frames, RvRect, j);
          for (int y = rj.y; y < rj.y + rj.height && !dep[j]; y++)
            for (int x = rj.x; x < rj.x + rj.width; x++)
              if (work[(gsize) y * p->width + x] == (gint32) k + 1)
                {
                  dep[j] = 1;
                  break;
                }
        }
      int wave = 0;
      for (guint j = 0; j < k; j++)
        if (dep[j])
          wave = MAX (wave, g_array_index (waves, int, j) + 1);
      g_array_index (waves, int, k) = wave;
    }
  return waves;
}

RvExtendPlan *
_rv_extend_plan (const RvRequest *req, int native, GError **error)
{
  const RvImage *img = req->image;
  if (img == NULL)
    {
      invalid (error, "Extending needs a picture.");
      return NULL;
    }
  if (req->extend_left < 0 || req->extend_right < 0 || req->extend_top < 0 ||
      req->extend_bottom < 0)
    {
      invalid (error, "The borders to add must be 0 or more pixels.");
      return NULL;
    }
  gint64 W = (gint64) img->width + req->extend_left + req->extend_right;
  gint64 H = (gint64) img->height + req->extend_top + req->extend_bottom;
  if (W > RV_EXTEND_MAX_SIDE || H > RV_EXTEND_MAX_SIDE)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "The extended picture would be %" G_GINT64_FORMAT "×%" G_GINT64_FORMAT
                   " pixels; at most %d pixels a side can be generated. Use smaller borders.",
                   W, H, RV_EXTEND_MAX_SIDE);
      return NULL;
    }
  g_autofree guint8 *keep = source_keep (img, req->mask, req->mask_mode, error);
  if (keep == NULL)
    return NULL;

  g_autoptr (RvExtendPlan) p = g_new0 (RvExtendPlan, 1);
  p->width = (int) W;
  p->height = (int) H;
  p->ox = req->extend_left;
  p->oy = req->extend_top;
  p->owner = g_new (gint32, (gsize) W * H);
  for (gsize i = 0; i < (gsize) W * H; i++)
    p->owner[i] = -1;
  gint64 kept = 0;
  int kx0 = G_MAXINT, ky0 = G_MAXINT, kx1 = -1, ky1 = -1;
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      if (keep[(gsize) y * img->width + x])
        {
          p->owner[(gsize) (y + p->oy) * W + x + p->ox] = 0;
          kept++;
          kx0 = MIN (kx0, x + p->ox);
          ky0 = MIN (ky0, y + p->oy);
          kx1 = MAX (kx1, x + p->ox);
          ky1 = MAX (ky1, y + p->oy);
        }
  if (kept == 0)
    {
      invalid (error, "The picture is entirely transparent: there is nothing to extend from. "
                      "Use generate instead.");
      return NULL;
    }
  if (kept == W * H)
    {
      invalid (error, "Nothing to fill: all four borders are 0 and the picture has no "
                      "transparent pixels. Give a border to add (in pixels).");
      return NULL;
    }

  p->fw = (int) MIN (native, W);
  p->fh = (int) MIN (native, H);
  /* frames side by side when each of them then holds part of the source
   * (they see it and do not depend on one another: one batch); otherwise
   * on a grid of half a frame, growing outward from the source */
  g_autofree gint32 *work = NULL;
  GArray *frames = plan_frames (p, kx0, ky0, kx1, ky1, 1, &work, error);
  if (frames == NULL)
    return NULL;
  gboolean all_see = TRUE;
  for (guint k = 0; k < frames->len && all_see; k++)
    {
      RvRect r = g_array_index (frames, RvRect, k);
      all_see = count_filled (p->owner, p->width, r.x, r.y, r.x + r.width, r.y + r.height) * 8 >=
                (gint64) r.width * r.height;
    }
  if (!all_see)
    {
      g_array_unref (frames);
      g_clear_pointer (&work, g_free);
      frames = plan_frames (p, kx0, ky0, kx1, ky1, 2, &work, error);
      if (frames == NULL)
        return NULL;
    }
  p->frames = frames;
  p->waves = frame_waves (p, work);
  return g_steal_pointer (&p);
}

GArray *
rv_engine_plan_extend (RvEngine *e, const RvRequest *req, int *width, int *height, GError **error)
{
  g_autoptr (RvExtendPlan) p = _rv_extend_plan (req, e->extend_frame, error);
  if (p == NULL)
    return NULL;
  if (width != NULL)
    *width = p->width;
  if (height != NULL)
    *height = p->height;
  return g_array_ref (p->frames);
}

RvImage *
_rv_extend_canvas (const RvExtendPlan *p, const RvImage *src)
{
  RvImage *c = rv_image_new (p->width, p->height, src->channels);
  memset (c->pixels, 0, (gsize) p->width * p->height * src->channels);
  for (int y = 0; y < src->height; y++)
    memcpy (c->pixels + ((gsize) (y + p->oy) * p->width + p->ox) * src->channels,
            src->pixels + (gsize) y * src->width * src->channels, (gsize) src->width * src->channels);
  return c;
}

/* For each pixel of a w × h area, the index of the nearest pixel where
 * `filled` is set (−1 when none is) and the squared distance to it: a
 * two-pass propagation of nearest positions. */
static void
nearest_filled (const guint8 *filled, int w, int h, gint32 *near, gint64 *d2)
{
  for (gsize i = 0; i < (gsize) w * h; i++)
    {
      near[i] = filled[i] ? (gint32) i : -1;
      d2[i] = filled[i] ? 0 : G_MAXINT64;
    }
  static const int fwd[4][2] = { { -1, 0 }, { -1, -1 }, { 0, -1 }, { 1, -1 } };
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < h; k++)
      {
        int y = pass == 0 ? k : h - 1 - k;
        for (int l = 0; l < w; l++)
          {
            int x = pass == 0 ? l : w - 1 - l;
            gsize i = (gsize) y * w + x;
            for (int q = 0; q < 4; q++)
              {
                int qx = x + (pass == 0 ? fwd[q][0] : -fwd[q][0]);
                int qy = y + (pass == 0 ? fwd[q][1] : -fwd[q][1]);
                if (qx < 0 || qy < 0 || qx >= w || qy >= h)
                  continue;
                gint32 src = near[(gsize) qy * w + qx];
                if (src < 0)
                  continue;
                gint64 dx = x - src % w, dy = y - src / w;
                if (dx * dx + dy * dy < d2[i])
                  {
                    d2[i] = dx * dx + dy * dy;
                    near[i] = src;
                  }
              }
          }
      }
}

static guint8 *
frame_filled (const RvImage *canvas, const gint32 *owner, RvRect r)
{
  guint8 *f = g_new (guint8, (gsize) r.width * r.height);
  for (int y = 0; y < r.height; y++)
    for (int x = 0; x < r.width; x++)
      f[(gsize) y * r.width + x] = owner[(gsize) (y + r.y) * canvas->width + x + r.x] >= 0;
  return f;
}

/* The frame's pixels as RGB, the empty ones given the colour of the nearest
 * filled pixel, so that the encoder sees no false edge at the border of
 * what is there; repaint receives 1 for the empty pixels. */
RvImage *
_rv_extend_crop (const RvImage *canvas, const gint32 *owner, RvRect r, float *repaint)
{
  RvImage *out = rv_image_new (r.width, r.height, 3);
  gsize n = (gsize) r.width * r.height;
  g_autofree guint8 *filled = frame_filled (canvas, owner, r);
  g_autofree gint32 *near = g_new (gint32, n);
  g_autofree gint64 *d2 = g_new (gint64, n);
  nearest_filled (filled, r.width, r.height, near, d2);
  int ch = canvas->channels;
  for (gsize i = 0; i < n; i++)
    {
      repaint[i] = filled[i] ? 0.0f : 1.0f;
      if (near[i] < 0)
        {
          memset (out->pixels + i * 3, 128, 3);
          continue;
        }
      int sx = near[i] % r.width + r.x, sy = near[i] / r.width + r.y;
      memcpy (out->pixels + i * 3, canvas->pixels + ((gsize) sy * canvas->width + sx) * ch, 3);
    }
  return out;
}

/* Chessboard distance to the nearest pixel where `seed` is set (two passes). */
static void
distance_to (const guint8 *seed, int w, int h, int *d)
{
  int far = w + h;
  for (gsize i = 0; i < (gsize) w * h; i++)
    d[i] = seed[i] ? 0 : far;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        int *v = &d[(gsize) y * w + x];
        if (x > 0) *v = MIN (*v, d[(gsize) y * w + x - 1] + 1);
        if (y > 0)
          {
            *v = MIN (*v, d[(gsize) (y - 1) * w + x] + 1);
            if (x > 0) *v = MIN (*v, d[(gsize) (y - 1) * w + x - 1] + 1);
            if (x + 1 < w) *v = MIN (*v, d[(gsize) (y - 1) * w + x + 1] + 1);
          }
      }
  for (int y = h - 1; y >= 0; y--)
    for (int x = w - 1; x >= 0; x--)
      {
        int *v = &d[(gsize) y * w + x];
        if (x + 1 < w) *v = MIN (*v, d[(gsize) y * w + x + 1] + 1);
        if (y + 1 < h)
          {
            *v = MIN (*v, d[(gsize) (y + 1) * w + x] + 1);
            if (x + 1 < w) *v = MIN (*v, d[(gsize) (y + 1) * w + x + 1] + 1);
            if (x > 0) *v = MIN (*v, d[(gsize) (y + 1) * w + x - 1] + 1);
          }
      }
}

/* How far the colour correction reaches into the new pixels, in feathers;
 * the difference up to which it is applied in full, and from which not at
 * all (a larger one is a shape the decoder drew where the canvas has none,
 * not a shift of colour); the smoothing passes over the correction field. */
#define CORRECTION_REACH  2.0f
#define CORRECTION_FULL   24.0f
#define CORRECTION_NONE   48.0f
#define CORRECTION_PASSES 48

/* Frame `index`'s output (r.width × r.height RGB) into the canvas.
 *
 * The decoder also draws the frame's filled pixels, and draws them a little
 * off (the MoVQ round trip shifts colours), and the new pixels continue what
 * it drew, not what is there. So the new pixels are corrected by that
 * difference: d = canvas − output on the filled pixels bordering the empty
 * area, carried into the empty area by a smooth (harmonic) field — each
 * empty pixel the mean of its four neighbours, d on filled ones, the frame's
 * edge free — and faded out over CORRECTION_REACH feathers. Where the
 * decoder disagrees with the canvas by more than a shift of colour the
 * correction is weakened (CORRECTION_FULL … CORRECTION_NONE). Pixels earlier
 * frames made blend toward the output over `feather` pixels from the empty
 * area, fading to nothing at the frame's edge; the source's pixels (owner 0)
 * are never written. */
void
_rv_extend_paste (RvImage *canvas, gint32 *owner, RvRect r, const RvImage *gen, int index,
                  float feather)
{
  gsize n = (gsize) r.width * r.height;
  int ch = canvas->channels, w = r.width, h = r.height;
  g_autofree guint8 *filled = frame_filled (canvas, owner, r);
  g_autofree guint8 *empty = g_new (guint8, n);
  for (gsize i = 0; i < n; i++)
    empty[i] = !filled[i];
  g_autofree int *d = g_new (int, n);
  distance_to (empty, w, h, d);
  g_autofree gint32 *near = g_new (gint32, n);
  g_autofree gint64 *d2 = g_new (gint64, n);
  nearest_filled (filled, w, h, near, d2);

  /* the difference on filled pixels, weakened where it is too large */
  g_autofree float *diff = g_new0 (float, n * 3);
  for (gsize i = 0; i < n; i++)
    {
      if (!filled[i])
        continue;
      int x = (int) (i % w), y = (int) (i / w);
      const guint8 *cp = canvas->pixels + ((gsize) (y + r.y) * canvas->width + x + r.x) * ch;
      const guint8 *gp = gen->pixels + i * gen->channels;
      float big = 0, v[3];
      for (int k = 0; k < 3; k++)
        {
          v[k] = (float) cp[k] - (float) gp[k];
          big = MAX (big, fabsf (v[k]));
        }
      float keep = big <= CORRECTION_FULL ? 1.0f
                 : big >= CORRECTION_NONE ? 0.0f
                 : (CORRECTION_NONE - big) / (CORRECTION_NONE - CORRECTION_FULL);
      for (int k = 0; k < 3; k++)
        diff[i * 3 + k] = v[k] * keep;
    }
  /* the field on empty pixels within reach: from the nearest filled pixel's
   * difference, then smoothed (Gauss-Seidel sweeps of the four-neighbour mean) */
  float reach = CORRECTION_REACH * feather + 1.0f;
  g_autofree float *field = g_new0 (float, n * 3);
  g_autofree guint8 *active = g_new0 (guint8, n);
  gboolean any = FALSE;
  for (gsize i = 0; i < n; i++)
    if (empty[i] && near[i] >= 0 && feather > 0 && sqrt ((double) d2[i]) < reach + 2)
      {
        active[i] = 1;
        any = TRUE;
        for (int k = 0; k < 3; k++)
          field[i * 3 + k] = diff[(gsize) near[i] * 3 + k];
      }
  for (gsize i = 0; i < n; i++)
    if (filled[i])
      for (int k = 0; k < 3; k++)
        field[i * 3 + k] = diff[i * 3 + k];
  for (int pass = 0; pass < CORRECTION_PASSES && any; pass++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        {
          gsize i = (gsize) y * w + x;
          if (!active[i])
            continue;
          static const int nb[4][2] = { { -1, 0 }, { 1, 0 }, { 0, -1 }, { 0, 1 } };
          float sum[3] = { 0, 0, 0 };
          int cnt = 0;
          for (int q = 0; q < 4; q++)
            {
              int qx = x + nb[q][0], qy = y + nb[q][1];
              if (qx < 0 || qy < 0 || qx >= w || qy >= h)
                continue;
              gsize j = (gsize) qy * w + qx;
              if (empty[j] && !active[j])
                continue;   /* beyond reach: free, like the frame's edge */
              for (int k = 0; k < 3; k++)
                sum[k] += field[j * 3 + k];
              cnt++;
            }
          if (cnt > 0)
            for (int k = 0; k < 3; k++)
              field[i * 3 + k] = sum[k] / cnt;
        }

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        gsize i = (gsize) y * w + x;
        gsize c = (gsize) (y + r.y) * canvas->width + x + r.x;
        guint8 *dst = canvas->pixels + c * ch;
        const guint8 *src = gen->pixels + i * gen->channels;
        if (empty[i])
          {
            float fade = !active[i] ? 0.0f
                       : MAX (0.0f, 1.0f - ((float) sqrt ((double) d2[i]) - 1.0f) / reach);
            for (int k = 0; k < 3; k++)
              dst[k] = (guint8) CLAMP (lrintf (src[k] + field[i * 3 + k] * MIN (fade, 1.0f)), 0, 255);
            if (ch == 4)
              dst[3] = 255;
            owner[c] = index + 1;
            continue;
          }
        if (owner[c] == 0 || feather <= 0)
          continue;
        int edge = MIN (MIN (x, w - 1 - x), MIN (y, h - 1 - y));
        float a = CLAMP (1.0f - d[i] / (feather + 1.0f), 0.0f, 1.0f) * MIN (1.0f, edge / feather);
        if (a <= 0)
          continue;
        for (int k = 0; k < 3; k++)
          dst[k] = (guint8) lrintf (a * src[k] + (1 - a) * dst[k]);
      }
}

/* One line of pixels (stride `step` apart, n of them) across the seams
 * in it: where two neighbours come from different frames, the SEAM_RAMP
 * pixels on each side are redrawn as a straight ramp between the pixels
 * just beyond; where a frame's pixel meets a source pixel, only the frame's
 * side is, over SOURCE_RAMP pixels from the source's pixel on (the source's
 * outermost pixels are often a little off, and they stay as they are, so
 * the step to them is spread further). A ramp shortens where its side of
 * the line changes owner sooner. Reads `from`, writes `to`. */
#define SEAM_RAMP   2
#define SOURCE_RAMP 6

static gboolean
owned_by (const gint32 *own, gsize ostep, int from, int to, gint32 who)
{
  for (int k = from; k <= to; k++)
    if (own[(gsize) k * ostep] != who)
      return FALSE;
  return TRUE;
}

static void
smooth_line (const guint8 *from, guint8 *to, const gint32 *own, gsize step, gsize ostep, int n,
             int ch)
{
  for (int x = 0; x + 1 < n; x++)
    {
      gint32 a = own[(gsize) x * ostep], b = own[(gsize) (x + 1) * ostep];
      if (a == b || a < 0 || b < 0 || (a == 0 && b == 0))
        continue;
      /* the ramp runs from pixel lo to pixel hi, both kept; a source
       * pixel is never redrawn, so that side's length is 0 */
      int lo_len = a == 0 ? 0 : b == 0 ? SOURCE_RAMP : SEAM_RAMP;
      int hi_len = b == 0 ? 0 : a == 0 ? SOURCE_RAMP : SEAM_RAMP;
      while (lo_len > 0 && (x - lo_len < 0 || !owned_by (own, ostep, x - lo_len, x, a)))
        lo_len--;
      while (hi_len > 0 && (x + 1 + hi_len >= n || !owned_by (own, ostep, x + 1, x + 1 + hi_len, b)))
        hi_len--;
      if (lo_len + hi_len == 0)
        continue;
      int lo = x - lo_len, hi = x + 1 + hi_len;
      const guint8 *pl = from + (gsize) lo * step, *ph = from + (gsize) hi * step;
      for (int k = lo + 1; k < hi; k++)
        {
          float t = (float) (k - lo) / (float) (hi - lo);
          guint8 *q = to + (gsize) k * step;
          for (int c = 0; c < 3; c++)
            q[c] = (guint8) lrintf ((1 - t) * pl[c] + t * ph[c]);
        }
    }
}

void
_rv_extend_smooth_seams (RvImage *canvas, const gint32 *owner)
{
  int W = canvas->width, H = canvas->height, ch = canvas->channels;
  gsize bytes = (gsize) W * H * ch;
  g_autofree guint8 *from = g_malloc (bytes);
  memcpy (from, canvas->pixels, bytes);
  for (int y = 0; y < H; y++)
    smooth_line (from + (gsize) y * W * ch, canvas->pixels + (gsize) y * W * ch,
                 owner + (gsize) y * W, ch, 1, W, ch);
  memcpy (from, canvas->pixels, bytes);
  for (int x = 0; x < W; x++)
    smooth_line (from + (gsize) x * ch, canvas->pixels + (gsize) x * ch, owner + x,
                 (gsize) W * ch, W, H, ch);
}

/* Frame r of the canvas as the image encoder is shown it: the filled pixels
 * as they are, the empty ones in the per-channel median colour of the
 * filled ones (the colour most of what is there has; a smear of the nearest
 * colours would show the encoder stripes that are not there). */
RvImage *
_rv_extend_context_crop (const RvImage *canvas, const gint32 *owner, RvRect r)
{
  RvImage *out = rv_image_new (r.width, r.height, 3);
  int ch = canvas->channels;
  guint hist[3][256] = { { 0 } };
  guint count = 0;
  for (int y = 0; y < r.height; y++)
    for (int x = 0; x < r.width; x++)
      {
        gsize c = (gsize) (y + r.y) * canvas->width + x + r.x;
        if (owner[c] < 0)
          continue;
        for (int k = 0; k < 3; k++)
          hist[k][canvas->pixels[c * ch + k]]++;
        count++;
      }
  guint8 med[3] = { 128, 128, 128 };
  for (int k = 0; k < 3 && count > 0; k++)
    {
      guint seen = 0;
      for (int v = 0; v < 256; v++)
        if ((seen += hist[k][v]) * 2 >= count)
          {
            med[k] = (guint8) v;
            break;
          }
    }
  for (int y = 0; y < r.height; y++)
    for (int x = 0; x < r.width; x++)
      {
        gsize c = (gsize) (y + r.y) * canvas->width + x + r.x;
        guint8 *dst = out->pixels + ((gsize) y * r.width + x) * 3;
        memcpy (dst, owner[c] >= 0 ? canvas->pixels + c * ch : med, 3);
      }
  return out;
}
