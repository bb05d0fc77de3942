/* rv-dev-scenes.c: prompts of the embedded model's scene grammar and the
 * prompt-following checker (docs/tiny-model.md; same rules as
 * tools/train/checker.py). */
#include "rv-dev-scenes.h"
#include "rv-random.h"

#include <math.h>
#include <string.h>

#define SIDE 64
#define FAR 60.0
#define MIN_PIXELS 20
#define SMALL_BELOW 0.375
#define REL 0.2

const char *const rv_scene_colors[RV_N_COLORS] = {
  "red", "orange", "yellow", "green", "blue", "purple", "white", "black",
};
const guint8 rv_scene_palette[RV_N_COLORS][3] = {
  { 220, 40, 40 }, { 240, 140, 20 }, { 240, 220, 40 }, { 40, 170, 60 },
  { 40, 80, 220 }, { 140, 50, 180 }, { 245, 245, 245 }, { 20, 20, 20 },
};
const char *const rv_scene_kinds[RV_N_KINDS] = { "circle", "square", "triangle", "ring" };
static const char *const sizes[2] = { "small", "large" };
static const char *const positions[5] = { "left", "right", "top", "bottom", "center" };
const char *const rv_scene_attribute_names[RV_N_ATTRS] = {
  "count", "background", "colour", "kind", "size", "position", "relation",
};

/* ---- prompts ---- */

static int
pick (RvRandom *r, int n)
{
  return (int) (rv_random_next (r) % (guint64) n);
}

static gboolean
coin (RvRandom *r)
{
  return rv_random_next (r) & 1;
}

static int
pick_other (RvRandom *r, int a, int b)
{
  for (;;)
    {
      int c = pick (r, RV_N_COLORS);
      if (c != a && c != b)
        return c;
    }
}

void
rv_scene_random (guint64 seed, int template_, RvSceneSpec *spec)
{
  RvRandom r;
  rv_random_init (&r, seed);
  memset (spec, 0, sizeof *spec);
  if (template_ < 0)
    template_ = coin (&r) ? RV_TEMPLATE_SINGLE : coin (&r) ? RV_TEMPLATE_LEFT : RV_TEMPLATE_ABOVE;
  spec->template_ = template_;
  GString *p = g_string_new ("a");
  if (template_ == RV_TEMPLATE_SINGLE)
    {
      RvShapeSpec *s = &spec->shapes[0];
      spec->n_shapes = 1;
      s->kind = pick (&r, RV_N_KINDS);
      s->color = pick (&r, RV_N_COLORS);
      s->size = coin (&r) ? pick (&r, 2) : -1;
      s->position = coin (&r) ? pick (&r, 5) : -1;
      spec->bg = coin (&r) ? pick_other (&r, s->color, s->color) : -1;
      if (s->size >= 0)
        g_string_append_printf (p, " %s", sizes[s->size]);
      g_string_append_printf (p, " %s %s", rv_scene_colors[s->color], rv_scene_kinds[s->kind]);
      if (s->position >= 0)
        g_string_append_printf (p, " at the %s", positions[s->position]);
    }
  else
    {
      spec->n_shapes = 2;
      for (int i = 0; i < 2; i++)
        {
          spec->shapes[i].kind = pick (&r, RV_N_KINDS);
          spec->shapes[i].size = spec->shapes[i].position = -1;
        }
      spec->shapes[0].color = pick (&r, RV_N_COLORS);
      spec->shapes[1].color = pick_other (&r, spec->shapes[0].color, spec->shapes[0].color);
      spec->bg = coin (&r) ? pick_other (&r, spec->shapes[0].color, spec->shapes[1].color) : -1;
      g_string_append_printf (p, " %s %s %s a %s %s", rv_scene_colors[spec->shapes[0].color],
                              rv_scene_kinds[spec->shapes[0].kind],
                              template_ == RV_TEMPLATE_LEFT ? "to the left of" : "above",
                              rv_scene_colors[spec->shapes[1].color],
                              rv_scene_kinds[spec->shapes[1].kind]);
    }
  if (spec->bg >= 0)
    g_string_append_printf (p, " on a %s background", rv_scene_colors[spec->bg]);
  g_strlcpy (spec->prompt, p->str, sizeof spec->prompt);
  g_string_free (p, TRUE);
}

/* ---- scenes drawn (tools/train/scenes.py: shape_mask, _place, render_at) ---- */

static const double size_range[2][2] = { { 0.22, 0.30 }, { 0.45, 0.60 } };

/* Whether the point (dx, dy) from the bounding-box centre lies in a shape of
 * half-side h. */
static gboolean
inside (int kind, double dx, double dy, double h)
{
  switch (kind)
    {
    case 1:                                     /* square */
      return fabs (dx) <= h && fabs (dy) <= h;
    case 0:                                     /* circle */
      return dx * dx + dy * dy <= h * h;
    case 3:                                     /* ring */
      {
        double r2 = dx * dx + dy * dy;
        return r2 <= h * h && r2 > (h / 2) * (h / 2);
      }
    default:                                    /* triangle, apex up */
      {
        double t = (dy + h) / (2 * h);          /* 0 at the apex, 1 at the base */
        return t >= 0 && t <= 1 && fabs (dx) <= t * h;
      }
    }
}

/* Centroid (fractions of the side) and bounding box of a shape drawn at 64. */
static gboolean
footprint (const RvPlacedShape *s, double *cx, double *cy, int box[4])
{
  double sx = 0, sy = 0;
  int n = 0;
  box[0] = box[1] = SIDE;
  box[2] = box[3] = -1;
  for (int y = 0; y < SIDE; y++)
    for (int x = 0; x < SIDE; x++)
      if (inside (s->kind, x + 0.5 - s->cx, y + 0.5 - s->cy, s->side / 2))
        {
          sx += x;
          sy += y;
          n++;
          box[0] = MIN (box[0], x);
          box[1] = MIN (box[1], y);
          box[2] = MAX (box[2], x);
          box[3] = MAX (box[3], y);
        }
  if (n == 0)
    return FALSE;
  *cx = (sx / n + 0.5) / SIDE;
  *cy = (sy / n + 0.5) / SIDE;
  return TRUE;
}

static double
uniform (RvRandom *r, double a, double b)
{
  return a + (b - a) * rv_random_uniform (r);
}

static gboolean position_holds (double cx, double cy, int pos);

/* One shape of a size class, aimed at a named position (-1: anywhere). */
static gboolean
place (RvRandom *r, int kind, int size, int pos, RvPlacedShape *out)
{
  for (int tries = 0; tries < 200; tries++)
    {
      double side = uniform (r, size_range[size][0], size_range[size][1]) * SIDE, h = side / 2;
      double cx = uniform (r, h + 1, SIDE - h - 1), cy = uniform (r, h + 1, SIDE - h - 1);
      if (pos >= 0)
        {
          /* aim at the named third, then verify on the drawn centroid */
          double a = pos == 0 ? 0 : pos == 1 ? 2.0 / 3 : 1.0 / 3;
          double b = pos == 0 ? 1.0 / 3 : pos == 1 ? 1 : 2.0 / 3;
          double lo = MAX (h + 1, a * SIDE + 1), hi = MIN (SIDE - h - 1, b * SIDE - 1);
          if (pos == 0 || pos == 1 || pos == 4)
            {
              if (lo >= hi)
                continue;
              cx = uniform (r, lo, hi);
            }
          a = pos == 2 ? 0 : pos == 3 ? 2.0 / 3 : 1.0 / 3;
          b = pos == 2 ? 1.0 / 3 : pos == 3 ? 1 : 2.0 / 3;
          lo = MAX (h + 1, a * SIDE + 1);
          hi = MIN (SIDE - h - 1, b * SIDE - 1);
          if (pos == 2 || pos == 3 || pos == 4)
            {
              if (lo >= hi)
                continue;
              cy = uniform (r, lo, hi);
            }
        }
      RvPlacedShape s = { -1, kind, cx, cy, side };
      double fx, fy;
      int box[4];
      if (!footprint (&s, &fx, &fy, box) || (pos >= 0 && !position_holds (fx, fy, pos)))
        continue;
      *out = s;
      return TRUE;
    }
  return FALSE;
}

void
rv_scene_layout (guint64 seed, const RvSceneSpec *spec, RvSceneLayout *out)
{
  RvRandom r;
  rv_random_init (&r, seed ^ 0x5ce9e5);
  memset (out, 0, sizeof *out);
  out->n_shapes = spec->n_shapes;
  int c0 = spec->shapes[0].color, c1 = spec->n_shapes > 1 ? spec->shapes[1].color : c0;
  out->bg = spec->bg >= 0 ? spec->bg : pick_other (&r, c0, c1);
  if (spec->n_shapes == 1)
    {
      const RvShapeSpec *w = &spec->shapes[0];
      int size = w->size >= 0 ? w->size : pick (&r, 2);
      /* a large shape cannot always reach a third: a small one then */
      while (!place (&r, w->kind, size, w->position, &out->shapes[0]))
        size = 0;
      out->shapes[0].color = w->color;
      return;
    }
  for (int tries = 0;; tries++)
    {
      RvPlacedShape a, b;
      if (!place (&r, spec->shapes[0].kind, pick (&r, 2), -1, &a) ||
          !place (&r, spec->shapes[1].kind, tries < 500 ? pick (&r, 2) : 0, -1, &b))
        continue;
      double ax, ay, bx, by;
      int ba[4], bb[4];
      footprint (&a, &ax, &ay, ba);
      footprint (&b, &bx, &by, bb);
      gboolean apart = ba[2] + 3 < bb[0] || bb[2] + 3 < ba[0] || ba[3] + 3 < bb[1] || bb[3] + 3 < ba[1];
      double gap = spec->template_ == RV_TEMPLATE_LEFT ? bx - ax : by - ay;
      if (!apart || gap < REL + 0.02)
        continue;
      a.color = spec->shapes[0].color;
      b.color = spec->shapes[1].color;
      out->shapes[0] = a;
      out->shapes[1] = b;
      return;
    }
}

RvImage *
rv_scene_render (const RvSceneLayout *l, int n)
{
  RvImage *img = rv_image_new (n, n, 3);
  for (gsize p = 0; p < (gsize) n * n; p++)
    memcpy (img->pixels + p * 3, rv_scene_palette[l->bg], 3);
  double f = (double) n / SIDE;
  for (int i = 0; i < l->n_shapes; i++)
    {
      const RvPlacedShape *s = &l->shapes[i];
      double cx = s->cx * f, cy = s->cy * f, h = s->side * f / 2;
      int x0 = MAX (0, (int) floor (cx - h) - 1), x1 = MIN (n, (int) ceil (cx + h) + 1);
      int y0 = MAX (0, (int) floor (cy - h) - 1), y1 = MIN (n, (int) ceil (cy + h) + 1);
      for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
          if (inside (s->kind, x + 0.5 - cx, y + 0.5 - cy, h))
            memcpy (img->pixels + ((gsize) y * n + x) * 3, rv_scene_palette[s->color], 3);
    }
  return img;
}

/* ---- checker ---- */

static int
nearest_color (const double rgb[3])
{
  int best = 0;
  double bd = G_MAXDOUBLE;
  for (int c = 0; c < RV_N_COLORS; c++)
    {
      double d = 0;
      for (int k = 0; k < 3; k++)
        d += (rgb[k] - rv_scene_palette[c][k]) * (rgb[k] - rv_scene_palette[c][k]);
      if (d < bd)
        {
          bd = d;
          best = c;
        }
    }
  return best;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* numpy's median: the mean of the two middle values for an even count */
static double
median (double *v, int n)
{
  qsort (v, n, sizeof (double), cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* box average when the side is a multiple of 64, nearest otherwise */
static void
resample64 (const RvImage *img, double *out)
{
  int w = img->width, h = img->height, ch = img->channels;
  gboolean boxed = w % SIDE == 0 && h % SIDE == 0;
  for (int y = 0; y < SIDE; y++)
    for (int x = 0; x < SIDE; x++)
      for (int c = 0; c < 3; c++)
        {
          double v = 0;
          if (boxed)
            {
              int fy = h / SIDE, fx = w / SIDE;
              for (int dy = 0; dy < fy; dy++)
                for (int dx = 0; dx < fx; dx++)
                  v += img->pixels[((gsize) (y * fy + dy) * w + x * fx + dx) * ch + c];
              v /= fx * fy;
            }
          else
            v = img->pixels[((gsize) (y * h / SIDE) * w + x * w / SIDE) * ch + c];
          out[(y * SIDE + x) * 3 + c] = v;
        }
}

static int
cmp_found (const void *a, const void *b)
{
  return ((const RvFoundShape *) b)->pixels - ((const RvFoundShape *) a)->pixels;
}

void
rv_scene_analyse (const RvImage *img, RvAnalysis *out)
{
  g_autofree double *a = g_new (double, SIDE * SIDE * 3);
  resample64 (img, a);
  memset (out, 0, sizeof *out);

  /* background: nearest palette colour to the median border pixel */
  double border[3][4 * SIDE];
  int nb = 0;
  for (int i = 0; i < SIDE; i++)
    for (int e = 0; e < 4; e++)
      {
        int y = e == 0 ? 0 : e == 1 ? SIDE - 1 : i, x = e == 2 ? 0 : e == 3 ? SIDE - 1 : i;
        if ((e >= 2) && (i == 0 || i == SIDE - 1))
          continue;   /* corners once */
        for (int c = 0; c < 3; c++)
          border[c][nb] = a[(y * SIDE + x) * 3 + c];
        nb++;
      }
  double med[3];
  for (int c = 0; c < 3; c++)
    med[c] = median (border[c], nb);
  out->bg = nearest_color (med);

  gboolean obj[SIDE * SIDE];
  for (int p = 0; p < SIDE * SIDE; p++)
    {
      double d = 0;
      for (int c = 0; c < 3; c++)
        d += (a[p * 3 + c] - rv_scene_palette[out->bg][c]) * (a[p * 3 + c] - rv_scene_palette[out->bg][c]);
      obj[p] = sqrt (d) > FAR;
    }

  /* 4-connected components */
  int label[SIDE * SIDE] = { 0 };
  int stack[SIDE * SIDE], pts[SIDE * SIDE];
  int n_found = 0;
  RvFoundShape found[SIDE * SIDE / MIN_PIXELS + 1];
  for (int start = 0; start < SIDE * SIDE; start++)
    {
      if (!obj[start] || label[start])
        continue;
      int sp = 0, np = 0;
      stack[sp++] = start;
      label[start] = 1;
      while (sp > 0)
        {
          int p = stack[--sp];
          pts[np++] = p;
          int y = p / SIDE, x = p % SIDE;
          int nbrs[4][2] = { { y - 1, x }, { y + 1, x }, { y, x - 1 }, { y, x + 1 } };
          for (int k = 0; k < 4; k++)
            {
              int yy = nbrs[k][0], xx = nbrs[k][1];
              if (yy < 0 || yy >= SIDE || xx < 0 || xx >= SIDE)
                continue;
              int q = yy * SIDE + xx;
              if (obj[q] && !label[q])
                {
                  label[q] = 1;
                  stack[sp++] = q;
                }
            }
        }
      if (np < MIN_PIXELS)
        continue;
      RvFoundShape *s = &found[n_found++];
      memset (s, 0, sizeof *s);
      s->pixels = np;
      s->x0 = s->y0 = SIDE;
      s->x1 = s->y1 = -1;
      double sx = 0, sy = 0;
      g_autofree double *cv = g_new (double, np * 3);
      for (int i = 0; i < np; i++)
        {
          int y = pts[i] / SIDE, x = pts[i] % SIDE;
          sx += x;
          sy += y;
          s->x0 = MIN (s->x0, x);
          s->x1 = MAX (s->x1, x);
          s->y0 = MIN (s->y0, y);
          s->y1 = MAX (s->y1, y);
          for (int c = 0; c < 3; c++)
            cv[c * np + i] = a[pts[i] * 3 + c];
        }
      double m[3];
      for (int c = 0; c < 3; c++)
        m[c] = median (cv + c * np, np);
      s->color = nearest_color (m);
      s->cx = (sx / np + 0.5) / SIDE;
      s->cy = (sy / np + 0.5) / SIDE;
      int bw = s->x1 - s->x0 + 1, bh = s->y1 - s->y0 + 1;
      s->side = (double) MAX (bw, bh) / SIDE;
      s->size = s->side < SMALL_BELOW ? 0 : 1;
      double fill = (double) np / (bw * bh);
      int ccy = MIN ((int) (s->cy * SIDE), SIDE - 1), ccx = MIN ((int) (s->cx * SIDE), SIDE - 1);
      if (!obj[ccy * SIDE + ccx])
        s->kind = 3;                           /* ring */
      else if (fill > 0.88)
        s->kind = 1;                           /* square */
      else if (fill >= 0.65)
        s->kind = 0;                           /* circle */
      else
        s->kind = 2;                           /* triangle */
    }
  qsort (found, n_found, sizeof (RvFoundShape), cmp_found);
  out->n_shapes = n_found;
  memcpy (out->shapes, found, MIN (n_found, (int) G_N_ELEMENTS (out->shapes)) * sizeof (RvFoundShape));
}

static int
third (double v)
{
  return v < 1.0 / 3 ? 0 : v > 2.0 / 3 ? 2 : 1;
}

static gboolean
position_holds (double cx, double cy, int pos)
{
  int tx = third (cx), ty = third (cy);
  switch (pos)
    {
    case 0: return tx == 0;
    case 1: return tx == 2;
    case 2: return ty == 0;
    case 3: return ty == 2;
    default: return tx == 1 && ty == 1;
    }
}

static gboolean
in_position (const RvFoundShape *s, int pos)
{
  return position_holds (s->cx, s->cy, pos);
}

gboolean
rv_scene_check (const RvImage *img, const RvSceneSpec *spec, gboolean *checked, gboolean *passed)
{
  RvAnalysis an;
  rv_scene_analyse (img, &an);
  gboolean chk[RV_N_ATTRS] = { 0 }, ok[RV_N_ATTRS] = { 0 };
  chk[RV_ATTR_COUNT] = TRUE;
  ok[RV_ATTR_COUNT] = an.n_shapes == spec->n_shapes;
  if (spec->bg >= 0)
    {
      chk[RV_ATTR_BG] = TRUE;
      ok[RV_ATTR_BG] = an.bg == spec->bg;
    }
  gboolean satisfied;
  if (spec->n_shapes == 1)
    {
      const RvShapeSpec *w = &spec->shapes[0];
      const RvFoundShape *f = an.n_shapes > 0 ? &an.shapes[0] : NULL;   /* the largest */
      chk[RV_ATTR_COLOR] = chk[RV_ATTR_KIND] = TRUE;
      ok[RV_ATTR_COLOR] = f && f->color == w->color;
      ok[RV_ATTR_KIND] = f && f->kind == w->kind;
      if (w->size >= 0)
        {
          chk[RV_ATTR_SIZE] = TRUE;
          ok[RV_ATTR_SIZE] = f && f->size == w->size;
        }
      if (w->position >= 0)
        {
          chk[RV_ATTR_POSITION] = TRUE;
          ok[RV_ATTR_POSITION] = f && in_position (f, w->position);
        }
      satisfied = TRUE;
      for (int i = 0; i < RV_N_ATTRS; i++)
        if (chk[i] && !ok[i])
          satisfied = FALSE;
    }
  else
    {
      gboolean pair = FALSE;
      chk[RV_ATTR_COLOR] = chk[RV_ATTR_KIND] = chk[RV_ATTR_RELATION] = TRUE;
      if (an.n_shapes == 2)
        for (int o = 0; o < 2; o++)
          {
            const RvFoundShape *a = &an.shapes[o], *b = &an.shapes[1 - o];
            gboolean ca = a->color == spec->shapes[0].color && b->color == spec->shapes[1].color;
            gboolean ka = a->kind == spec->shapes[0].kind && b->kind == spec->shapes[1].kind;
            gboolean ra = spec->template_ == RV_TEMPLATE_LEFT ? b->cx - a->cx >= REL
                                                              : b->cy - a->cy >= REL;
            ok[RV_ATTR_COLOR] |= ca;
            ok[RV_ATTR_KIND] |= ca && ka;
            ok[RV_ATTR_RELATION] |= ca && ra;
            pair |= ca && ka && ra;
          }
      satisfied = ok[RV_ATTR_COUNT] && pair && (!chk[RV_ATTR_BG] || ok[RV_ATTR_BG]);
    }
  if (checked)
    memcpy (checked, chk, sizeof chk);
  if (passed)
    memcpy (passed, ok, sizeof ok);
  return satisfied;
}
