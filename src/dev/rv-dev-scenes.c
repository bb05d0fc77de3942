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

static gboolean
in_position (const RvFoundShape *s, int pos)
{
  int tx = s->cx < 1.0 / 3 ? 0 : s->cx > 2.0 / 3 ? 2 : 1;
  int ty = s->cy < 1.0 / 3 ? 0 : s->cy > 2.0 / 3 ? 2 : 1;
  switch (pos)
    {
    case 0: return tx == 0;
    case 1: return tx == 2;
    case 2: return ty == 0;
    case 3: return ty == 2;
    default: return tx == 1 && ty == 1;
    }
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
