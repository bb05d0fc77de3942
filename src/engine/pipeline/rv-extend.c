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
  int nx, ny;
  g_autofree int *xs = grid_positions (p->width - p->fw, MAX (1, p->fw / 2), &nx);
  g_autofree int *ys = grid_positions (p->height - p->fh, MAX (1, p->fh / 2), &ny);
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

  /* greedy: the candidate with the most context next, until all is filled */
  p->frames = g_array_new (FALSE, FALSE, sizeof (RvRect));
  g_autofree gint32 *work = g_memdup2 (p->owner, (gsize) W * H * sizeof (gint32));
  for (;;)
    {
      int best = -1;
      for (int i = 0; i < nc; i++)
        if (!c[i].done && c[i].filled < (gint64) c[i].r.width * c[i].r.height &&
            (best < 0 || better (&c[i], i, &c[best], best)))
          best = i;
      if (best < 0)
        break;
      if (p->frames->len >= RV_EXTEND_MAX_FRAMES)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       "Extending to %d×%d pixels would take more than %d frames of %d×%d: use "
                       "smaller borders, or a model with a larger native size.",
                       p->width, p->height, RV_EXTEND_MAX_FRAMES, p->fw, p->fh);
          return NULL;
        }
      RvRect r = c[best].r;
      g_array_append_val (p->frames, r);
      c[best].done = TRUE;
      /* the frame's empty pixels are filled now: update the candidates it overlaps */
      for (int i = 0; i < nc; i++)
        {
          RvRect *o = &c[i].r;
          int x0 = MAX (r.x, o->x), y0 = MAX (r.y, o->y);
          int x1 = MIN (r.x + r.width, o->x + o->width), y1 = MIN (r.y + r.height, o->y + o->height);
          if (c[i].done || x0 >= x1 || y0 >= y1)
            continue;
          c[i].filled += (gint64) (x1 - x0) * (y1 - y0) - count_filled (work, p->width, x0, y0, x1, y1);
        }
      for (int y = r.y; y < r.y + r.height; y++)
        for (int x = r.x; x < r.x + r.width; x++)
          if (work[(gsize) y * W + x] < 0)
            work[(gsize) y * W + x] = (gint32) p->frames->len;
    }
  return g_steal_pointer (&p);
}

GArray *
rv_engine_plan_extend (RvEngine *e, const RvRequest *req, int *width, int *height, GError **error)
{
  g_autoptr (RvExtendPlan) p = _rv_extend_plan (req, rv_engine_native_size (e), error);
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
 * the radius of the windows whose means are compared; the size of a step up
 * to which it is corrected in full, and from which not at all (a larger
 * step is a shape that ends at the border, not a shift of colour). */
#define CORRECTION_REACH  2.0f
#define CORRECTION_RADIUS 3
#define CORRECTION_FULL   24.0
#define CORRECTION_NONE   48.0

/* Frame `index`'s output (r.width × r.height RGB) into the canvas. Its empty
 * pixels take the output, corrected for the step of colour at the border of
 * what was there: the mean of the filled pixels around the nearest filled
 * one minus the mean of the output's new pixels there, fading out over
 * CORRECTION_REACH feathers (the decoder tends to draw a flat area a little
 * off the colour it continues). Pixels earlier frames made blend toward the
 * output over `feather` pixels from the empty area, fading to nothing at the
 * frame's edge; the source's pixels (owner 0) are never written. */
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

  /* summed-area tables of the canvas over filled pixels and of the output
   * over empty ones: 3 channel sums and a count each */
  enum { V = 8 };
  gsize sw = (gsize) w + 1;
  g_autofree double *sat = g_new0 (double, sw * (h + 1) * V);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        gsize i = (gsize) y * w + x;
        const guint8 *cp = canvas->pixels + ((gsize) (y + r.y) * canvas->width + x + r.x) * ch;
        const guint8 *gp = gen->pixels + i * gen->channels;
        double v[V] = { 0 };
        for (int k = 0; k < 3; k++)
          {
            v[k] = filled[i] ? cp[k] : 0;
            v[4 + k] = filled[i] ? 0 : gp[k];
          }
        v[3] = filled[i];
        v[7] = !filled[i];
        for (int k = 0; k < V; k++)
          sat[(((gsize) y + 1) * sw + x + 1) * V + k] =
            v[k] + sat[((gsize) y * sw + x + 1) * V + k] + sat[(((gsize) y + 1) * sw + x) * V + k] -
            sat[((gsize) y * sw + x) * V + k];
      }
  /* the step at each filled pixel's window, computed when first needed */
  g_autofree float *step = g_new (float, n * 3);
  g_autofree guint8 *have_step = g_new0 (guint8, n);

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        gsize i = (gsize) y * w + x;
        gsize c = (gsize) (y + r.y) * canvas->width + x + r.x;
        guint8 *dst = canvas->pixels + c * ch;
        const guint8 *src = gen->pixels + i * gen->channels;
        if (empty[i])
          {
            float fade = near[i] < 0 || feather <= 0 ? 0.0f
                       : 1.0f - (float) sqrt ((double) d2[i]) / (CORRECTION_REACH * feather + 1.0f);
            double corr[3] = { 0, 0, 0 };
            if (fade > 0)
              {
                gint32 s0 = near[i];
                if (!have_step[s0])
                  {
                    int nx = s0 % w, ny = s0 / w;
                    int x0 = MAX (0, nx - CORRECTION_RADIUS), x1 = MIN (w, nx + CORRECTION_RADIUS + 1);
                    int y0 = MAX (0, ny - CORRECTION_RADIUS), y1 = MIN (h, ny + CORRECTION_RADIUS + 1);
                    double sum[V];
                    for (int k = 0; k < V; k++)
                      sum[k] = sat[((gsize) y1 * sw + x1) * V + k] - sat[((gsize) y0 * sw + x1) * V + k] -
                               sat[((gsize) y1 * sw + x0) * V + k] + sat[((gsize) y0 * sw + x0) * V + k];
                    double big = 0, st[3] = { 0, 0, 0 };
                    for (int k = 0; k < 3 && sum[3] > 0 && sum[7] > 0; k++)
                      {
                        st[k] = sum[k] / sum[3] - sum[4 + k] / sum[7];
                        big = MAX (big, fabs (st[k]));
                      }
                    double keep = big <= CORRECTION_FULL ? 1.0
                                : big >= CORRECTION_NONE ? 0.0
                                : (CORRECTION_NONE - big) / (CORRECTION_NONE - CORRECTION_FULL);
                    for (int k = 0; k < 3; k++)
                      step[s0 * 3 + k] = (float) (st[k] * keep);
                    have_step[s0] = 1;
                  }
                for (int k = 0; k < 3; k++)
                  corr[k] = step[near[i] * 3 + k] * fade;
              }
            for (int k = 0; k < 3; k++)
              dst[k] = (guint8) CLAMP (lrint (src[k] + corr[k]), 0, 255);
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
