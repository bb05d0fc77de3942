/* rv-mask.c: the mask a user paints over a picture: strokes, clear and invert
 * as an undoable list of operations, rendered with Cairo at the picture's
 * size (alpha = repaint). */
#include "config.h"

#include <string.h>

#include "rv-mask.h"

typedef enum {
  OP_STROKE,
  OP_CLEAR,
  OP_INVERT,
} OpKind;

typedef struct {
  double x, y, radius;
} Point;

typedef struct {
  OpKind   kind;
  gboolean erase;
  GArray  *points;      /* Point, strokes only */
} Op;

struct _RvMask
{
  GObject          parent_instance;

  /* owned */
  cairo_surface_t *surface;     /* A8, width × height */
  GPtrArray       *ops;         /* Op*, the first n_applied are in effect */
  guint            n_applied;
  Op              *stroke;      /* the stroke being drawn, also in ops */
  int              width, height;
  int              empty;       /* -1 = not known */
};

G_DEFINE_FINAL_TYPE (RvMask, rv_mask, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_CAN_UNDO,
  PROP_CAN_REDO,
  PROP_EMPTY,
  N_PROPS
};

enum {
  CHANGED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

static void
op_free (Op *op)
{
  if (op->points != NULL)
    g_array_unref (op->points);
  g_free (op);
}

/* ---- rendering ----
 * A stroke is drawn as quadratic curves through the midpoints of its
 * samples, so that pointer jitter does not show as corners. The same
 * segment function serves the live stroke (one segment per new sample) and a
 * full replay after undo, so both give the same pixels. */

static void
midpoint (const Point *a, const Point *b, Point *m)
{
  m->x = (a->x + b->x) / 2;
  m->y = (a->y + b->y) / 2;
  m->radius = (a->radius + b->radius) / 2;
}

static void
set_brush (cairo_t *cr, const Op *op, double radius)
{
  cairo_set_operator (cr, op->erase ? CAIRO_OPERATOR_CLEAR : CAIRO_OPERATOR_OVER);
  cairo_set_source_rgba (cr, 0, 0, 0, 1);
  cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_width (cr, MAX (radius, 0.5) * 2);
}

/* segment i of a stroke: 0 = the dot under the first sample; 1…n-1 = the
 * curve that sample i adds; n = the tail to the last sample (stroke ended) */
static void
draw_segment (cairo_t *cr, const Op *op, guint i)
{
  const Point *p = (const Point *) op->points->data;
  guint n = op->points->len;
  Point s, e;
  if (i == 0)
    {
      set_brush (cr, op, p[0].radius);
      cairo_move_to (cr, p[0].x, p[0].y);
      cairo_line_to (cr, p[0].x, p[0].y);
    }
  else if (i < n)
    {
      if (i == 1)
        s = p[0];
      else
        midpoint (&p[i - 2], &p[i - 1], &s);
      midpoint (&p[i - 1], &p[i], &e);
      const Point *c = &p[i - 1];
      set_brush (cr, op, (s.radius + e.radius) / 2);
      cairo_move_to (cr, s.x, s.y);
      cairo_curve_to (cr, s.x + 2.0 / 3 * (c->x - s.x), s.y + 2.0 / 3 * (c->y - s.y),
                      e.x + 2.0 / 3 * (c->x - e.x), e.y + 2.0 / 3 * (c->y - e.y), e.x, e.y);
    }
  else if (n >= 2)
    {
      midpoint (&p[n - 2], &p[n - 1], &s);
      set_brush (cr, op, (s.radius + p[n - 1].radius) / 2);
      cairo_move_to (cr, s.x, s.y);
      cairo_line_to (cr, p[n - 1].x, p[n - 1].y);
    }
  else
    return;
  cairo_stroke (cr);
}

static void
draw_op (cairo_t *cr, const Op *op, gboolean finished)
{
  switch (op->kind)
    {
    case OP_STROKE:
      for (guint i = 0; i < op->points->len + (finished ? 1 : 0); i++)
        draw_segment (cr, op, i);
      break;
    case OP_CLEAR:
      cairo_set_operator (cr, CAIRO_OPERATOR_CLEAR);
      cairo_paint (cr);
      break;
    case OP_INVERT:
      /* XOR with an opaque source: alpha becomes 1 - alpha */
      cairo_set_operator (cr, CAIRO_OPERATOR_XOR);
      cairo_set_source_rgba (cr, 0, 0, 0, 1);
      cairo_paint (cr);
      break;
    default:
      g_assert_not_reached ();
    }
}

static void
changed (RvMask *self)
{
  self->empty = -1;
  cairo_surface_mark_dirty (self->surface);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CAN_UNDO]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CAN_REDO]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EMPTY]);
  g_signal_emit (self, signals[CHANGED], 0);
}

static void
replay (RvMask *self)
{
  cairo_t *cr = cairo_create (self->surface);
  cairo_set_operator (cr, CAIRO_OPERATOR_CLEAR);
  cairo_paint (cr);
  for (guint i = 0; i < self->n_applied; i++)
    {
      const Op *op = g_ptr_array_index (self->ops, i);
      cairo_save (cr);
      draw_op (cr, op, op != self->stroke);
      cairo_restore (cr);
    }
  cairo_destroy (cr);
  changed (self);
}

/* A new operation drops whatever undo had taken back. */
static Op *
push_op (RvMask *self, OpKind kind)
{
  if (self->ops->len > self->n_applied)
    g_ptr_array_remove_range (self->ops, self->n_applied, self->ops->len - self->n_applied);
  Op *op = g_new0 (Op, 1);
  op->kind = kind;
  g_ptr_array_add (self->ops, op);
  self->n_applied = self->ops->len;
  return op;
}

static void
apply_now (RvMask *self, const Op *op)
{
  cairo_t *cr = cairo_create (self->surface);
  draw_op (cr, op, TRUE);
  cairo_destroy (cr);
  changed (self);
}

/* ---- GObject ---- */

static void
rv_mask_finalize (GObject *object)
{
  RvMask *self = RV_MASK (object);
  g_clear_pointer (&self->surface, cairo_surface_destroy);
  g_clear_pointer (&self->ops, g_ptr_array_unref);
  G_OBJECT_CLASS (rv_mask_parent_class)->finalize (object);
}

static void
rv_mask_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  RvMask *self = RV_MASK (object);
  switch (prop_id)
    {
    case PROP_CAN_UNDO:
      g_value_set_boolean (value, rv_mask_can_undo (self));
      break;
    case PROP_CAN_REDO:
      g_value_set_boolean (value, rv_mask_can_redo (self));
      break;
    case PROP_EMPTY:
      g_value_set_boolean (value, rv_mask_is_empty (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rv_mask_class_init (RvMaskClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->finalize = rv_mask_finalize;
  object_class->get_property = rv_mask_get_property;

  properties[PROP_CAN_UNDO] = g_param_spec_boolean ("can-undo", NULL, NULL, FALSE,
                                                    G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_CAN_REDO] = g_param_spec_boolean ("can-redo", NULL, NULL, FALSE,
                                                    G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_EMPTY] = g_param_spec_boolean ("empty", NULL, NULL, TRUE,
                                                 G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                   NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
rv_mask_init (RvMask *self)
{
  self->ops = g_ptr_array_new_with_free_func ((GDestroyNotify) op_free);
  self->width = self->height = 1;
  self->surface = cairo_image_surface_create (CAIRO_FORMAT_A8, 1, 1);
  self->empty = 1;
}

/* ---- API ---- */

RvMask *
rv_mask_new (void)
{
  return g_object_new (RV_TYPE_MASK, NULL);
}

/* A new picture: an empty mask of its size, and no history. */
void
rv_mask_reset (RvMask *self, int width, int height)
{
  g_return_if_fail (RV_IS_MASK (self));
  g_return_if_fail (width > 0 && height > 0);
  self->stroke = NULL;
  g_ptr_array_set_size (self->ops, 0);
  self->n_applied = 0;
  self->width = width;
  self->height = height;
  cairo_surface_destroy (self->surface);
  self->surface = cairo_image_surface_create (CAIRO_FORMAT_A8, width, height);
  changed (self);
}

int
rv_mask_get_width (RvMask *self)
{
  return self->width;
}

int
rv_mask_get_height (RvMask *self)
{
  return self->height;
}

void
rv_mask_begin_stroke (RvMask *self, double x, double y, double radius, gboolean erase)
{
  g_return_if_fail (RV_IS_MASK (self));
  if (self->stroke != NULL)
    rv_mask_end_stroke (self);
  Op *op = push_op (self, OP_STROKE);
  op->erase = erase;
  op->points = g_array_new (FALSE, FALSE, sizeof (Point));
  Point p = { x, y, radius };
  g_array_append_val (op->points, p);
  self->stroke = op;
  cairo_t *cr = cairo_create (self->surface);
  draw_segment (cr, op, 0);
  cairo_destroy (cr);
  changed (self);
}

void
rv_mask_stroke_to (RvMask *self, double x, double y, double radius)
{
  g_return_if_fail (RV_IS_MASK (self));
  if (self->stroke == NULL)
    return;
  GArray *pts = self->stroke->points;
  const Point *last = &g_array_index (pts, Point, pts->len - 1);
  /* samples closer than a fraction of the brush add nothing visible */
  double dx = x - last->x, dy = y - last->y, min = MAX (0.25, radius * 0.1);
  if (dx * dx + dy * dy < min * min)
    return;
  Point p = { x, y, radius };
  g_array_append_val (pts, p);
  cairo_t *cr = cairo_create (self->surface);
  draw_segment (cr, self->stroke, pts->len - 1);
  cairo_destroy (cr);
  changed (self);
}

void
rv_mask_end_stroke (RvMask *self)
{
  g_return_if_fail (RV_IS_MASK (self));
  if (self->stroke == NULL)
    return;
  cairo_t *cr = cairo_create (self->surface);
  draw_segment (cr, self->stroke, self->stroke->points->len);
  cairo_destroy (cr);
  self->stroke = NULL;
  changed (self);
}

void
rv_mask_clear (RvMask *self)
{
  g_return_if_fail (RV_IS_MASK (self));
  rv_mask_end_stroke (self);
  if (rv_mask_is_empty (self))
    return;
  apply_now (self, push_op (self, OP_CLEAR));
}

void
rv_mask_invert (RvMask *self)
{
  g_return_if_fail (RV_IS_MASK (self));
  rv_mask_end_stroke (self);
  apply_now (self, push_op (self, OP_INVERT));
}

gboolean
rv_mask_undo (RvMask *self)
{
  g_return_val_if_fail (RV_IS_MASK (self), FALSE);
  rv_mask_end_stroke (self);
  if (self->n_applied == 0)
    return FALSE;
  self->n_applied--;
  replay (self);
  return TRUE;
}

gboolean
rv_mask_redo (RvMask *self)
{
  g_return_val_if_fail (RV_IS_MASK (self), FALSE);
  if (self->stroke != NULL || self->n_applied == self->ops->len)
    return FALSE;
  self->n_applied++;
  apply_now (self, g_ptr_array_index (self->ops, self->n_applied - 1));
  return TRUE;
}

gboolean
rv_mask_can_undo (RvMask *self)
{
  return self->n_applied > 0;
}

gboolean
rv_mask_can_redo (RvMask *self)
{
  return self->stroke == NULL && self->n_applied < self->ops->len;
}

gboolean
rv_mask_is_empty (RvMask *self)
{
  g_return_val_if_fail (RV_IS_MASK (self), TRUE);
  if (self->empty < 0)
    {
      cairo_surface_flush (self->surface);
      const guint8 *data = cairo_image_surface_get_data (self->surface);
      int stride = cairo_image_surface_get_stride (self->surface);
      self->empty = 1;
      for (int y = 0; y < self->height && self->empty; y++)
        for (int x = 0; x < self->width; x++)
          if (data[(gsize) y * stride + x] != 0)
            {
              self->empty = 0;
              break;
            }
    }
  return self->empty == 1;
}

/* Borrowed; A8 at the picture's size. */
cairo_surface_t *
rv_mask_get_surface (RvMask *self)
{
  g_return_val_if_fail (RV_IS_MASK (self), NULL);
  return self->surface;
}

/* Grey RGB at the picture's size: white = repaint (RV_MASK_GREY). */
RvImage *
rv_mask_to_image (RvMask *self)
{
  g_return_val_if_fail (RV_IS_MASK (self), NULL);
  cairo_surface_flush (self->surface);
  const guint8 *data = cairo_image_surface_get_data (self->surface);
  int stride = cairo_image_surface_get_stride (self->surface);
  RvImage *img = rv_image_new (self->width, self->height, 3);
  for (int y = 0; y < self->height; y++)
    for (int x = 0; x < self->width; x++)
      memset (img->pixels + ((gsize) y * self->width + x) * 3, data[(gsize) y * stride + x], 3);
  return img;
}
