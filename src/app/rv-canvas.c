/* rv-canvas.c: the picture being made or edited, drawn with zoom and pan, and
 * the mask brush over it (pointer and stylus input, translucent overlay); in
 * extend mode, the canvas grown by borders the user drags out from the
 * picture's edges, with the frames that will fill them. */
#include "config.h"

#include <math.h>

#include <glib/gi18n.h>

#include "rv-canvas.h"

#define ZOOM_MIN 0.05
#define ZOOM_MAX 64.0

struct _RvCanvas
{
  GtkWidget        parent_instance;

  /* owned */
  GdkTexture      *texture;
  RvMask          *mask;
#if !GTK_CHECK_VERSION (4, 10, 0)
  cairo_surface_t *surface;        /* texture as Cairo pixels, for nearest-neighbour zoom */
#endif

  /* view: zoom is screen px per picture px; pan moves the picture's centre
   * away from the widget's centre (screen px) */
  gboolean         fit;
  double           zoom;
  double           pan_x, pan_y;
  double           drag_pan_x, drag_pan_y;

  /* brush */
  gboolean         painting;       /* primary button paints rather than pans */
  gboolean         erasing;
  double           brush_size;     /* diameter, screen px */
  gboolean         show_mask;
  gboolean         stroking;       /* a stroke from the drag gesture */
  gboolean         pointer_in;
  double           pointer_x, pointer_y;

  /* extend mode: borders in picture px (left, right, top, bottom), the
   * frames that will fill them (RvRect on the grown canvas, or NULL: the new
   * area is outlined instead), and the edge handles */
  gboolean         extending;
  int              border[4];
  GArray          *frames;
  GtkWidget       *handles[4];
  int              drag_edge;      /* the handle being dragged, or -1 */
  int              drag_border;    /* its border when the drag began */
  gboolean         drag_was_fit;   /* the view fitted the window before it */
};

enum { EDGE_LEFT, EDGE_RIGHT, EDGE_TOP, EDGE_BOTTOM };

G_DEFINE_FINAL_TYPE (RvCanvas, rv_canvas, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_TEXTURE,
  PROP_PAINTING,
  PROP_ERASING,
  PROP_BRUSH_SIZE,
  PROP_SHOW_MASK,
  PROP_ZOOM,
  PROP_EXTENDING,
  PROP_EXTEND_LEFT,
  PROP_EXTEND_RIGHT,
  PROP_EXTEND_TOP,
  PROP_EXTEND_BOTTOM,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* ---- view geometry ---- */

static gboolean
showing_borders (RvCanvas *self)
{
  return self->extending && self->texture != NULL;
}

/* the size of what is shown, picture px: the picture, plus the borders in extend mode */
static void
content_size (RvCanvas *self, double *cw, double *ch)
{
  *cw = gdk_texture_get_width (self->texture);
  *ch = gdk_texture_get_height (self->texture);
  if (showing_borders (self))
    {
      *cw += self->border[EDGE_LEFT] + self->border[EDGE_RIGHT];
      *ch += self->border[EDGE_TOP] + self->border[EDGE_BOTTOM];
    }
}

static void
update_handles (RvCanvas *self)
{
  for (int i = 0; i < 4; i++)
    gtk_widget_set_child_visible (self->handles[i], showing_borders (self));
}

static void
redraw (RvCanvas *self)
{
  /* the handles move with the view */
  gtk_widget_queue_allocate (GTK_WIDGET (self));
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static double
fit_zoom (RvCanvas *self)
{
  int w = gtk_widget_get_width (GTK_WIDGET (self)), h = gtk_widget_get_height (GTK_WIDGET (self));
  if (self->texture == NULL || w <= 0 || h <= 0)
    return 1;
  double tw, th;
  content_size (self, &tw, &th);
  const double margin = 24;
  return CLAMP (MIN ((w - 2 * margin) / tw, (h - 2 * margin) / th), ZOOM_MIN, ZOOM_MAX);
}

static double
current_zoom (RvCanvas *self)
{
  return self->fit ? fit_zoom (self) : self->zoom;
}

/* what is shown (the grown canvas in extend mode) in widget coordinates */
static void
content_rect (RvCanvas *self, graphene_rect_t *r)
{
  double z = current_zoom (self);
  double tw, th;
  content_size (self, &tw, &th);
  tw *= z;
  th *= z;
  double cx = gtk_widget_get_width (GTK_WIDGET (self)) / 2.0 + (self->fit ? 0 : self->pan_x);
  double cy = gtk_widget_get_height (GTK_WIDGET (self)) / 2.0 + (self->fit ? 0 : self->pan_y);
  /* whole screen pixels, so that nearest-neighbour zoom stays even */
  graphene_rect_init (r, round (cx - tw / 2), round (cy - th / 2), tw, th);
}

/* the picture's rectangle in widget coordinates */
static void
picture_rect (RvCanvas *self, graphene_rect_t *r)
{
  double z = current_zoom (self);
  graphene_rect_t c;
  content_rect (self, &c);
  double dx = showing_borders (self) ? self->border[EDGE_LEFT] * z : 0;
  double dy = showing_borders (self) ? self->border[EDGE_TOP] * z : 0;
  graphene_rect_init (r, c.origin.x + round (dx), c.origin.y + round (dy),
                      gdk_texture_get_width (self->texture) * z,
                      gdk_texture_get_height (self->texture) * z);
}

static void
to_picture (RvCanvas *self, double wx, double wy, double *px, double *py)
{
  graphene_rect_t r;
  picture_rect (self, &r);
  double z = current_zoom (self);
  *px = (wx - r.origin.x) / z;
  *py = (wy - r.origin.y) / z;
}

/* Zooms about a point of the widget, which stays where it is. */
static void
zoom_at (RvCanvas *self, double factor, double wx, double wy)
{
  if (self->texture == NULL)
    return;
  double old = current_zoom (self);
  double z = CLAMP (old * factor, ZOOM_MIN, ZOOM_MAX);
  double cx = gtk_widget_get_width (GTK_WIDGET (self)) / 2.0;
  double cy = gtk_widget_get_height (GTK_WIDGET (self)) / 2.0;
  double pan_x = self->fit ? 0 : self->pan_x, pan_y = self->fit ? 0 : self->pan_y;
  /* the picture point under (wx, wy) is (w - c - pan) / zoom from the centre */
  self->pan_x = wx - cx - (wx - cx - pan_x) * z / old;
  self->pan_y = wy - cy - (wy - cy - pan_y) * z / old;
  self->zoom = z;
  self->fit = FALSE;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ZOOM]);
  redraw (self);
}

/* ---- drawing ---- */

/* The grown canvas: the new area tinted, the frames that will fill it
 * dashed (else the new area outlined), light and dark so that they show on
 * anything. */
static void
draw_extension (RvCanvas *self, GtkSnapshot *snapshot, int w, int h)
{
  graphene_rect_t c, p;
  content_rect (self, &c);
  picture_rect (self, &p);
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  /* the new area: a checkerboard, as for empty pixels */
  cairo_save (cr);
  cairo_rectangle (cr, c.origin.x, c.origin.y, c.size.width, c.size.height);
  cairo_rectangle (cr, p.origin.x + p.size.width, p.origin.y, -p.size.width, p.size.height);
  cairo_clip (cr);
  cairo_set_source_rgb (cr, 0.55, 0.55, 0.58);
  cairo_paint (cr);
  cairo_set_source_rgb (cr, 0.42, 0.42, 0.45);
  const int cell = 12;
  for (int y = 0; y * cell < c.size.height; y++)
    for (int x = y % 2; x * cell < c.size.width; x += 2)
      cairo_rectangle (cr, c.origin.x + x * cell, c.origin.y + y * cell, cell, cell);
  cairo_fill (cr);
  cairo_restore (cr);
  cairo_destroy (cr);
}

static void
draw_extension_outline (RvCanvas *self, GtkSnapshot *snapshot, int w, int h)
{
  graphene_rect_t c;
  content_rect (self, &c);
  double z = current_zoom (self);
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  double dashes[] = { 6, 4 };
  cairo_set_line_width (cr, 1.5);
  if (self->frames != NULL && self->frames->len > 0)
    {
      for (guint i = 0; i < self->frames->len; i++)
        {
          const RvRect *f = &g_array_index (self->frames, RvRect, i);
          cairo_rectangle (cr, c.origin.x + f->x * z + 0.75, c.origin.y + f->y * z + 0.75,
                           f->width * z - 1.5, f->height * z - 1.5);
        }
    }
  else
    cairo_rectangle (cr, c.origin.x + 0.75, c.origin.y + 0.75, c.size.width - 1.5, c.size.height - 1.5);
  cairo_set_source_rgba (cr, 0, 0, 0, 0.7);
  cairo_set_dash (cr, dashes, 2, 0);
  cairo_stroke_preserve (cr);
  cairo_set_source_rgba (cr, 1, 1, 1, 0.9);
  cairo_set_dash (cr, dashes, 2, 5);
  cairo_stroke (cr);
  cairo_destroy (cr);
}

static cairo_pattern_t *
mask_stripes (void)
{
  static cairo_pattern_t *pattern;
  if (pattern == NULL)
    {
      const int size = 12;
      cairo_surface_t *tile = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, size, size);
      cairo_t *cr = cairo_create (tile);
      cairo_set_source_rgba (cr, 0.05, 0.05, 0.25, 0.45);
      cairo_paint (cr);
      cairo_set_source_rgba (cr, 1.0, 0.35, 0.75, 0.7);
      cairo_set_line_width (cr, size / 2.0 / G_SQRT2);
      for (int k = -1; k <= 1; k++)
        {
          cairo_move_to (cr, k * size, size);
          cairo_line_to (cr, k * size + size, 0);
        }
      cairo_stroke (cr);
      cairo_destroy (cr);
      pattern = cairo_pattern_create_for_surface (tile);
      cairo_pattern_set_extend (pattern, CAIRO_EXTEND_REPEAT);
      cairo_surface_destroy (tile);
    }
  return pattern;
}

#if !GTK_CHECK_VERSION (4, 10, 0)
static cairo_surface_t *
texture_surface (RvCanvas *self)
{
  if (self->surface == NULL)
    {
      int w = gdk_texture_get_width (self->texture), h = gdk_texture_get_height (self->texture);
      self->surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, w, h);
      gdk_texture_download (self->texture, cairo_image_surface_get_data (self->surface),
                            cairo_image_surface_get_stride (self->surface));
      cairo_surface_mark_dirty (self->surface);
    }
  return self->surface;
}
#endif

static void
rv_canvas_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  RvCanvas *self = RV_CANVAS (widget);
  if (self->texture == NULL)
    return;
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  graphene_rect_t r;
  picture_rect (self, &r);
  double z = current_zoom (self);
  gboolean pixelated = z >= 2;

  gtk_snapshot_push_clip (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  gboolean borders = showing_borders (self);
  if (borders)
    draw_extension (self, snapshot, w, h);
#if GTK_CHECK_VERSION (4, 10, 0)
  gtk_snapshot_append_scaled_texture (snapshot, self->texture,
                                      pixelated ? GSK_SCALING_FILTER_NEAREST : GSK_SCALING_FILTER_TRILINEAR,
                                      &r);
#else
  if (pixelated)
    {
      graphene_rect_t visible;
      if (graphene_rect_intersection (&r, &GRAPHENE_RECT_INIT (0, 0, w, h), &visible))
        {
          cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &visible);
          cairo_translate (cr, r.origin.x, r.origin.y);
          cairo_scale (cr, z, z);
          cairo_set_source_surface (cr, texture_surface (self), 0, 0);
          cairo_pattern_set_filter (cairo_get_source (cr), CAIRO_FILTER_NEAREST);
          cairo_paint (cr);
          cairo_destroy (cr);
        }
    }
  else
    gtk_snapshot_append_texture (snapshot, self->texture, &r);
#endif

  if (self->show_mask && !rv_mask_is_empty (self->mask))
    {
      /* the mask as translucent stripes, light and dark, so that it shows on
       * any picture and the picture shows through */
      graphene_rect_t visible;
      if (graphene_rect_intersection (&r, &GRAPHENE_RECT_INIT (0, 0, w, h), &visible))
        {
          cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &visible);
          /* the stripes stay in screen pixels whatever the zoom */
          cairo_set_source (cr, mask_stripes ());
          cairo_translate (cr, r.origin.x, r.origin.y);
          cairo_scale (cr, z, z);
          cairo_mask_surface (cr, rv_mask_get_surface (self->mask), 0, 0);
          cairo_destroy (cr);
        }
    }

  if (self->painting && self->pointer_in)
    {
      /* the brush outline, light and dark so it shows on any picture */
      graphene_rect_t box = GRAPHENE_RECT_INIT (self->pointer_x - self->brush_size / 2 - 2,
                                                self->pointer_y - self->brush_size / 2 - 2,
                                                self->brush_size + 4, self->brush_size + 4);
      cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &box);
      cairo_arc (cr, self->pointer_x, self->pointer_y, self->brush_size / 2, 0, 2 * G_PI);
      cairo_set_line_width (cr, 2.5);
      cairo_set_source_rgba (cr, 0, 0, 0, 0.6);
      cairo_stroke_preserve (cr);
      cairo_set_line_width (cr, 1);
      cairo_set_source_rgba (cr, 1, 1, 1, 0.9);
      cairo_stroke (cr);
      cairo_destroy (cr);
    }
  if (borders)
    {
      /* the frames go over the picture too: they overlap it */
      draw_extension_outline (self, snapshot, w, h);
      for (int i = 0; i < 4; i++)
        gtk_widget_snapshot_child (widget, self->handles[i], snapshot);
    }
  gtk_snapshot_pop (snapshot);
}

static void
rv_canvas_size_allocate (GtkWidget *widget, int width, int height, int baseline)
{
  RvCanvas *self = RV_CANVAS (widget);
  gboolean borders = showing_borders (self);
  graphene_rect_t c;
  if (borders)
    content_rect (self, &c);
  for (int i = 0; i < 4; i++)
    {
      GtkWidget *handle = self->handles[i];
      if (!borders)
        continue;
      int hw, hh;
      gtk_widget_measure (handle, GTK_ORIENTATION_HORIZONTAL, -1, &hw, NULL, NULL, NULL);
      gtk_widget_measure (handle, GTK_ORIENTATION_VERTICAL, -1, &hh, NULL, NULL, NULL);
      double x = c.origin.x + c.size.width / 2, y = c.origin.y + c.size.height / 2;
      switch (i)
        {
        case EDGE_LEFT: x = c.origin.x; break;
        case EDGE_RIGHT: x = c.origin.x + c.size.width; break;
        case EDGE_TOP: y = c.origin.y; break;
        default: y = c.origin.y + c.size.height; break;
        }
      gtk_widget_size_allocate (handle, &(GtkAllocation) { (int) round (x - hw / 2.0),
                                                           (int) round (y - hh / 2.0), hw, hh }, -1);
    }
}

/* ---- input ---- */

static double
brush_radius (RvCanvas *self, double pressure)
{
  return MAX (0.5, self->brush_size / 2 / current_zoom (self) * CLAMP (pressure, 0.1, 1.0));
}

static void
begin_stroke (RvCanvas *self, double wx, double wy, double pressure, gboolean erase)
{
  double px, py;
  to_picture (self, wx, wy, &px, &py);
  rv_mask_begin_stroke (self->mask, px, py, brush_radius (self, pressure), erase || self->erasing);
  if (!self->show_mask)
    {
      self->show_mask = TRUE;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SHOW_MASK]);
    }
}

static void
stroke_to (RvCanvas *self, double wx, double wy, double pressure)
{
  double px, py;
  to_picture (self, wx, wy, &px, &py);
  rv_mask_stroke_to (self->mask, px, py, brush_radius (self, pressure));
}

static gboolean
event_from_stylus (GtkEventController *controller)
{
  GdkEvent *event = gtk_event_controller_get_current_event (controller);
  return event != NULL && gdk_event_get_device_tool (event) != NULL;
}

/* the edge handle under a point of the widget, or -1 */
static int
handle_at (RvCanvas *self, double x, double y)
{
  if (!showing_borders (self))
    return -1;
  for (int i = 0; i < 4; i++)
    {
      graphene_rect_t b;
      if (!gtk_widget_compute_bounds (self->handles[i], GTK_WIDGET (self), &b))
        continue;
      graphene_rect_inset (&b, -6, -6);   /* a little slack for the pointer */
      if (graphene_rect_contains_point (&b, &GRAPHENE_POINT_INIT (x, y)))
        return i;
    }
  return -1;
}

static void
set_border (RvCanvas *self, int edge, int value)
{
  value = CLAMP (value, 0, RV_EXTEND_MAX_SIDE);
  if (self->border[edge] == value)
    return;
  self->border[edge] = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EXTEND_LEFT + edge]);
  redraw (self);
}

static void
on_drag_begin (GtkGestureDrag *gesture, double x, double y, RvCanvas *self)
{
  guint button = gtk_gesture_single_get_current_button (GTK_GESTURE_SINGLE (gesture));
  if (self->texture == NULL)
    {
      gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_DENIED);
      return;
    }
  self->stroking = FALSE;
  self->drag_edge = button == GDK_BUTTON_PRIMARY ? handle_at (self, x, y) : -1;
  if (self->drag_edge >= 0)
    {
      /* the view holds still while an edge is dragged, so that it follows
       * the pointer; it fits the grown canvas again after */
      self->drag_was_fit = self->fit;
      if (self->fit)
        {
          self->zoom = fit_zoom (self);
          self->pan_x = self->pan_y = 0;
          self->fit = FALSE;
        }
      self->drag_border = self->border[self->drag_edge];
      gtk_widget_set_cursor_from_name (GTK_WIDGET (self), self->drag_edge <= EDGE_RIGHT ? "ew-resize" : "ns-resize");
      gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
      return;
    }
  if (self->painting && button == GDK_BUTTON_PRIMARY)
    {
      /* pens paint through the stylus gesture, which knows their pressure */
      if (event_from_stylus (GTK_EVENT_CONTROLLER (gesture)))
        {
          gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_DENIED);
          return;
        }
      self->stroking = TRUE;
      begin_stroke (self, x, y, 1.0, FALSE);
    }
  else
    {
      if (self->fit)
        {
          self->zoom = fit_zoom (self);
          self->pan_x = self->pan_y = 0;
          self->fit = FALSE;
        }
      self->drag_pan_x = self->pan_x;
      self->drag_pan_y = self->pan_y;
      gtk_widget_set_cursor_from_name (GTK_WIDGET (self), "grabbing");
    }
  gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
}

static void
on_drag_update (GtkGestureDrag *gesture, double dx, double dy, RvCanvas *self)
{
  double x0, y0;
  gtk_gesture_drag_get_start_point (gesture, &x0, &y0);
  if (self->drag_edge >= 0)
    {
      /* outward is positive; whole steps of 8 px */
      int e = self->drag_edge;
      double along = e <= EDGE_RIGHT ? dx : dy;
      double outward = (e == EDGE_LEFT || e == EDGE_TOP) ? -along : along;
      double z = current_zoom (self);
      int value = MAX (0, (int) (round ((self->drag_border + outward / z) / 8.0) * 8));
      int change = value - self->border[e];
      if (change == 0)
        return;
      /* the opposite side stays where it is on screen */
      double shift = change * z / 2.0 * ((e == EDGE_LEFT || e == EDGE_TOP) ? -1 : 1);
      if (e <= EDGE_RIGHT)
        self->pan_x += shift;
      else
        self->pan_y += shift;
      set_border (self, e, value);
      return;
    }
  if (self->stroking)
    {
      self->pointer_x = x0 + dx;
      self->pointer_y = y0 + dy;
      stroke_to (self, x0 + dx, y0 + dy, 1.0);
      return;
    }
  self->pan_x = self->drag_pan_x + dx;
  self->pan_y = self->drag_pan_y + dy;
  redraw (self);
}

static void
on_drag_end (GtkGestureDrag *gesture, double dx, double dy, RvCanvas *self)
{
  if (self->stroking)
    rv_mask_end_stroke (self->mask);
  self->stroking = FALSE;
  if (self->drag_edge >= 0 && self->drag_was_fit)
    rv_canvas_zoom_to_fit (self);
  self->drag_edge = -1;
  gtk_widget_set_cursor_from_name (GTK_WIDGET (self), self->painting ? "crosshair" : NULL);
}

static double
stylus_pressure (GtkGestureStylus *gesture)
{
  double p = 1.0;
  if (!gtk_gesture_stylus_get_axis (gesture, GDK_AXIS_PRESSURE, &p))
    p = 1.0;
  return p;
}

static gboolean
stylus_is_eraser (GtkGestureStylus *gesture)
{
  GdkDeviceTool *tool = gtk_gesture_stylus_get_device_tool (gesture);
  return tool != NULL && gdk_device_tool_get_tool_type (tool) == GDK_DEVICE_TOOL_TYPE_ERASER;
}

static void
on_stylus_down (GtkGestureStylus *gesture, double x, double y, RvCanvas *self)
{
  if (!self->painting || self->texture == NULL)
    return;
  begin_stroke (self, x, y, stylus_pressure (gesture), stylus_is_eraser (gesture));
}

static void
on_stylus_motion (GtkGestureStylus *gesture, double x, double y, RvCanvas *self)
{
  self->pointer_in = TRUE;
  self->pointer_x = x;
  self->pointer_y = y;
  if (self->painting && self->texture != NULL &&
      gtk_gesture_is_active (GTK_GESTURE (gesture)))
    stroke_to (self, x, y, stylus_pressure (gesture));
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
on_stylus_up (GtkGestureStylus *gesture, double x, double y, RvCanvas *self)
{
  if (self->painting)
    rv_mask_end_stroke (self->mask);
}

static void
on_motion (GtkEventControllerMotion *motion, double x, double y, RvCanvas *self)
{
  self->pointer_in = TRUE;
  self->pointer_x = x;
  self->pointer_y = y;
  if (self->painting)
    gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
on_leave (GtkEventControllerMotion *motion, RvCanvas *self)
{
  self->pointer_in = FALSE;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

/* Ctrl + wheel zooms about the pointer; the wheel alone pans. */
static gboolean
on_scroll (GtkEventControllerScroll *scroll, double dx, double dy, RvCanvas *self)
{
  if (self->texture == NULL)
    return FALSE;
  GdkModifierType state = gtk_event_controller_get_current_event_state (GTK_EVENT_CONTROLLER (scroll));
  if (state & GDK_CONTROL_MASK)
    {
      zoom_at (self, pow (1.1, -dy), self->pointer_x, self->pointer_y);
      return TRUE;
    }
  if (self->fit)
    return FALSE;
  self->pan_x -= dx * 30;
  self->pan_y -= dy * 30;
  redraw (self);
  return TRUE;
}

static void
on_mask_changed (RvMask *mask, RvCanvas *self)
{
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

/* ---- GObject ---- */

static void
rv_canvas_dispose (GObject *object)
{
  RvCanvas *self = RV_CANVAS (object);
  g_clear_object (&self->texture);
  if (self->mask != NULL)
    g_signal_handlers_disconnect_by_data (self->mask, self);
  g_clear_object (&self->mask);
#if !GTK_CHECK_VERSION (4, 10, 0)
  g_clear_pointer (&self->surface, cairo_surface_destroy);
#endif
  for (int i = 0; i < 4; i++)
    g_clear_pointer (&self->handles[i], gtk_widget_unparent);
  g_clear_pointer (&self->frames, g_array_unref);
  G_OBJECT_CLASS (rv_canvas_parent_class)->dispose (object);
}

static void
rv_canvas_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  RvCanvas *self = RV_CANVAS (object);
  switch (prop_id)
    {
    case PROP_TEXTURE: g_value_set_object (value, self->texture); break;
    case PROP_PAINTING: g_value_set_boolean (value, self->painting); break;
    case PROP_ERASING: g_value_set_boolean (value, self->erasing); break;
    case PROP_BRUSH_SIZE: g_value_set_double (value, self->brush_size); break;
    case PROP_SHOW_MASK: g_value_set_boolean (value, self->show_mask); break;
    case PROP_ZOOM: g_value_set_double (value, current_zoom (self)); break;
    case PROP_EXTENDING: g_value_set_boolean (value, self->extending); break;
    case PROP_EXTEND_LEFT:
    case PROP_EXTEND_RIGHT:
    case PROP_EXTEND_TOP:
    case PROP_EXTEND_BOTTOM:
      g_value_set_int (value, self->border[prop_id - PROP_EXTEND_LEFT]);
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rv_canvas_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  RvCanvas *self = RV_CANVAS (object);
  switch (prop_id)
    {
    case PROP_TEXTURE:
      rv_canvas_set_texture (self, g_value_get_object (value), FALSE);
      break;
    case PROP_PAINTING:
      self->painting = g_value_get_boolean (value);
      gtk_widget_set_cursor_from_name (GTK_WIDGET (self), self->painting ? "crosshair" : NULL);
      if (self->painting)
        self->show_mask = TRUE;
      gtk_widget_queue_draw (GTK_WIDGET (self));
      break;
    case PROP_ERASING:
      self->erasing = g_value_get_boolean (value);
      break;
    case PROP_BRUSH_SIZE:
      self->brush_size = g_value_get_double (value);
      gtk_widget_queue_draw (GTK_WIDGET (self));
      break;
    case PROP_SHOW_MASK:
      self->show_mask = g_value_get_boolean (value);
      gtk_widget_queue_draw (GTK_WIDGET (self));
      break;
    case PROP_EXTENDING:
      rv_canvas_set_extending (self, g_value_get_boolean (value));
      break;
    case PROP_EXTEND_LEFT:
    case PROP_EXTEND_RIGHT:
    case PROP_EXTEND_TOP:
    case PROP_EXTEND_BOTTOM:
      set_border (self, prop_id - PROP_EXTEND_LEFT, g_value_get_int (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
rv_canvas_class_init (RvCanvasClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = rv_canvas_dispose;
  object_class->get_property = rv_canvas_get_property;
  object_class->set_property = rv_canvas_set_property;
  widget_class->snapshot = rv_canvas_snapshot;
  widget_class->size_allocate = rv_canvas_size_allocate;

  properties[PROP_TEXTURE] =
    g_param_spec_object ("texture", NULL, NULL, GDK_TYPE_TEXTURE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_PAINTING] =
    g_param_spec_boolean ("painting", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_ERASING] =
    g_param_spec_boolean ("erasing", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_BRUSH_SIZE] =
    g_param_spec_double ("brush-size", NULL, NULL, 1, 1000, 32,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_SHOW_MASK] =
    g_param_spec_boolean ("show-mask", NULL, NULL, TRUE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_ZOOM] =
    g_param_spec_double ("zoom", NULL, NULL, ZOOM_MIN, ZOOM_MAX, 1,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_EXTENDING] =
    g_param_spec_boolean ("extending", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  const char *edges[] = { "extend-left", "extend-right", "extend-top", "extend-bottom" };
  for (int i = 0; i < 4; i++)
    properties[PROP_EXTEND_LEFT + i] =
      g_param_spec_int (edges[i], NULL, NULL, 0, RV_EXTEND_MAX_SIDE, 0,
                        G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_css_name (widget_class, "canvas");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
rv_canvas_init (RvCanvas *self)
{
  self->fit = TRUE;
  self->zoom = 1;
  self->brush_size = 32;
  self->show_mask = TRUE;
  self->drag_edge = -1;
  self->mask = rv_mask_new ();
  /* the edge handles: drawn and named for assistive technologies; the
   * canvas's own drag gesture moves them */
  const char *names[] = { N_("Extend left edge"), N_("Extend right edge"),
                          N_("Extend top edge"), N_("Extend bottom edge") };
  const char *icons[] = { "pan-start-symbolic", "pan-end-symbolic", "pan-up-symbolic", "pan-down-symbolic" };
  for (int i = 0; i < 4; i++)
    {
      GtkWidget *handle = gtk_image_new_from_icon_name (icons[i]);
      gtk_widget_add_css_class (handle, "extend-handle");
      gtk_widget_add_css_class (handle, "osd");
      gtk_widget_set_can_target (handle, FALSE);
      gtk_widget_set_tooltip_text (handle, _("Drag outward to extend the picture"));
      gtk_accessible_update_property (GTK_ACCESSIBLE (handle), GTK_ACCESSIBLE_PROPERTY_LABEL, _(names[i]), -1);
      gtk_widget_set_parent (handle, GTK_WIDGET (self));
      gtk_widget_set_child_visible (handle, FALSE);
      self->handles[i] = handle;
    }
  g_signal_connect (self->mask, "changed", G_CALLBACK (on_mask_changed), self);

  gtk_widget_set_focusable (GTK_WIDGET (self), TRUE);
  gtk_widget_set_overflow (GTK_WIDGET (self), GTK_OVERFLOW_HIDDEN);

  GtkGesture *drag = gtk_gesture_drag_new ();
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (drag), 0);
  g_signal_connect (drag, "drag-begin", G_CALLBACK (on_drag_begin), self);
  g_signal_connect (drag, "drag-update", G_CALLBACK (on_drag_update), self);
  g_signal_connect (drag, "drag-end", G_CALLBACK (on_drag_end), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drag));

  GtkGesture *stylus = gtk_gesture_stylus_new ();
  g_signal_connect (stylus, "down", G_CALLBACK (on_stylus_down), self);
  g_signal_connect (stylus, "motion", G_CALLBACK (on_stylus_motion), self);
  g_signal_connect (stylus, "up", G_CALLBACK (on_stylus_up), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (stylus));

  GtkEventController *motion = gtk_event_controller_motion_new ();
  g_signal_connect (motion, "motion", G_CALLBACK (on_motion), self);
  g_signal_connect (motion, "leave", G_CALLBACK (on_leave), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);

  GtkEventController *scroll = gtk_event_controller_scroll_new (GTK_EVENT_CONTROLLER_SCROLL_BOTH_AXES);
  g_signal_connect (scroll, "scroll", G_CALLBACK (on_scroll), self);
  gtk_widget_add_controller (GTK_WIDGET (self), scroll);
}

/* ---- API ---- */

GtkWidget *
rv_canvas_new (void)
{
  return g_object_new (RV_TYPE_CANVAS, NULL);
}

GdkTexture *
rv_canvas_get_texture (RvCanvas *self)
{
  g_return_val_if_fail (RV_IS_CANVAS (self), NULL);
  return self->texture;
}

/* new_picture: a different picture (fit it, and start a fresh mask); else a
 * newer version of the same one (a preview or a result: keep view and mask,
 * unless its size changed). */
void
rv_canvas_set_texture (RvCanvas *self, GdkTexture *texture, gboolean new_picture)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  g_return_if_fail (texture == NULL || GDK_IS_TEXTURE (texture));
  gboolean resized = texture != NULL &&
    (self->texture == NULL || gdk_texture_get_width (texture) != gdk_texture_get_width (self->texture) ||
     gdk_texture_get_height (texture) != gdk_texture_get_height (self->texture));
  if (!g_set_object (&self->texture, texture) && !new_picture)
    return;
#if !GTK_CHECK_VERSION (4, 10, 0)
  g_clear_pointer (&self->surface, cairo_surface_destroy);
#endif
  if (texture != NULL && (new_picture || resized))
    {
      rv_mask_reset (self->mask, gdk_texture_get_width (texture), gdk_texture_get_height (texture));
      self->fit = TRUE;
      self->pan_x = self->pan_y = 0;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ZOOM]);
    }
  update_handles (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXTURE]);
  redraw (self);
}

/* Borrowed; lives as long as the canvas. */
RvMask *
rv_canvas_get_mask (RvCanvas *self)
{
  g_return_val_if_fail (RV_IS_CANVAS (self), NULL);
  return self->mask;
}

void
rv_canvas_zoom_by (RvCanvas *self, double factor)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  zoom_at (self, factor, gtk_widget_get_width (GTK_WIDGET (self)) / 2.0,
           gtk_widget_get_height (GTK_WIDGET (self)) / 2.0);
}

void
rv_canvas_zoom_to_fit (RvCanvas *self)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  self->fit = TRUE;
  self->pan_x = self->pan_y = 0;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_ZOOM]);
  redraw (self);
}

/* Extend mode: the borders shown around the picture, with handles on the
 * edges to drag them out. */
void
rv_canvas_set_extending (RvCanvas *self, gboolean extending)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  extending = !!extending;
  if (self->extending == extending)
    return;
  self->extending = extending;
  update_handles (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EXTENDING]);
  redraw (self);
}

gboolean
rv_canvas_get_extending (RvCanvas *self)
{
  g_return_val_if_fail (RV_IS_CANVAS (self), FALSE);
  return self->extending;
}

void
rv_canvas_get_borders (RvCanvas *self, int *left, int *right, int *top, int *bottom)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  *left = self->border[EDGE_LEFT];
  *right = self->border[EDGE_RIGHT];
  *top = self->border[EDGE_TOP];
  *bottom = self->border[EDGE_BOTTOM];
}

void
rv_canvas_set_borders (RvCanvas *self, int left, int right, int top, int bottom)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  g_object_freeze_notify (G_OBJECT (self));
  set_border (self, EDGE_LEFT, left);
  set_border (self, EDGE_RIGHT, right);
  set_border (self, EDGE_TOP, top);
  set_border (self, EDGE_BOTTOM, bottom);
  g_object_thaw_notify (G_OBJECT (self));
}

/* The frames that will fill the borders (RvRect on the grown canvas, in the
 * order they run), or NULL to outline the new area instead. Takes a ref. */
void
rv_canvas_set_frames (RvCanvas *self, GArray *frames)
{
  g_return_if_fail (RV_IS_CANVAS (self));
  g_clear_pointer (&self->frames, g_array_unref);
  self->frames = frames ? g_array_ref (frames) : NULL;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}
