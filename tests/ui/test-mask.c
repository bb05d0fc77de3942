/* test-mask.c: the mask brush model: strokes cover what they pass over, the
 * eraser takes it away, clear / invert / undo / redo, and the grey mask the
 * engine gets (white = repaint). */
#include "rv-mask.h"

#include <math.h>

static guint8
alpha_at (RvMask *m, int x, int y)
{
  cairo_surface_t *s = rv_mask_get_surface (m);
  cairo_surface_flush (s);
  return cairo_image_surface_get_data (s)[y * cairo_image_surface_get_stride (s) + x];
}

static guint
covered (RvMask *m)
{
  guint n = 0;
  for (int y = 0; y < rv_mask_get_height (m); y++)
    for (int x = 0; x < rv_mask_get_width (m); x++)
      n += alpha_at (m, x, y) > 127;
  return n;
}

static void
test_stroke (void)
{
  g_autoptr (RvMask) m = rv_mask_new ();
  rv_mask_reset (m, 67, 41);   /* odd sizes: Cairo's stride is not the width */
  g_assert_true (rv_mask_is_empty (m));
  g_assert_false (rv_mask_can_undo (m));

  /* a horizontal stroke of radius 4 through the middle, sampled unevenly */
  rv_mask_begin_stroke (m, 10, 20, 4, FALSE);
  for (double x = 10; x <= 50; x += 3.7)
    rv_mask_stroke_to (m, x, 20 + sin (x) * 0.3, 4);
  rv_mask_stroke_to (m, 50, 20, 4);
  rv_mask_end_stroke (m);
  g_assert_false (rv_mask_is_empty (m));
  g_assert_true (rv_mask_can_undo (m));

  /* on the line: painted; far from it: not; the ends are round */
  for (int x = 10; x <= 50; x++)
    g_assert_cmpuint (alpha_at (m, x, 20), ==, 255);
  g_assert_cmpuint (alpha_at (m, 30, 20 - 6), ==, 0);
  g_assert_cmpuint (alpha_at (m, 30, 20 + 6), ==, 0);
  g_assert_cmpuint (alpha_at (m, 5, 20), ==, 0);
  g_assert_cmpuint (alpha_at (m, 55, 20), ==, 0);
  /* about a 40 × 8 band with round caps */
  guint n = covered (m);
  g_assert_cmpuint (n, >, 40 * 8 * 0.9);
  g_assert_cmpuint (n, <, 40 * 8 + G_PI * 16 * 1.2);

  /* the engine's mask: grey RGB, white where painted */
  g_autoptr (RvImage) img = rv_mask_to_image (m);
  g_assert_cmpint (img->width, ==, 67);
  g_assert_cmpint (img->height, ==, 41);
  g_assert_cmpint (img->channels, ==, 3);
  const guint8 *on = img->pixels + (20 * 67 + 30) * 3, *off = img->pixels + (2 * 67 + 2) * 3;
  g_assert_cmpuint (on[0], ==, 255);
  g_assert_cmpuint (on[1], ==, 255);
  g_assert_cmpuint (on[2], ==, 255);
  g_assert_cmpuint (off[0], ==, 0);
}

static void
test_single_click (void)
{
  g_autoptr (RvMask) m = rv_mask_new ();
  rv_mask_reset (m, 32, 32);
  rv_mask_begin_stroke (m, 16, 16, 5, FALSE);
  rv_mask_end_stroke (m);
  /* a dot of radius 5 */
  g_assert_cmpuint (alpha_at (m, 16, 16), ==, 255);
  g_assert_cmpuint (alpha_at (m, 16, 16 + 3), ==, 255);
  g_assert_cmpuint (alpha_at (m, 16, 16 + 7), ==, 0);
  guint n = covered (m);
  g_assert_cmpuint (n, >, G_PI * 25 * 0.8);
  g_assert_cmpuint (n, <, G_PI * 25 * 1.2);
}

static void
test_eraser_undo_redo (void)
{
  g_autoptr (RvMask) m = rv_mask_new ();
  rv_mask_reset (m, 40, 40);
  rv_mask_begin_stroke (m, 5, 20, 6, FALSE);
  rv_mask_stroke_to (m, 35, 20, 6);
  rv_mask_end_stroke (m);
  guint painted = covered (m);

  /* an eraser stroke across the middle splits the band */
  rv_mask_begin_stroke (m, 20, 5, 3, TRUE);
  rv_mask_stroke_to (m, 20, 35, 3);
  rv_mask_end_stroke (m);
  g_assert_cmpuint (alpha_at (m, 20, 20), ==, 0);
  g_assert_cmpuint (alpha_at (m, 10, 20), ==, 255);
  g_assert_cmpuint (covered (m), <, painted);

  g_assert_true (rv_mask_undo (m));
  g_assert_cmpuint (alpha_at (m, 20, 20), ==, 255);
  g_assert_cmpuint (covered (m), ==, painted);
  g_assert_true (rv_mask_can_redo (m));
  g_assert_true (rv_mask_redo (m));
  g_assert_cmpuint (alpha_at (m, 20, 20), ==, 0);
  g_assert_false (rv_mask_can_redo (m));

  /* undo everything, then a new stroke drops the redo history */
  g_assert_true (rv_mask_undo (m));
  g_assert_true (rv_mask_undo (m));
  g_assert_false (rv_mask_undo (m));
  g_assert_true (rv_mask_is_empty (m));
  g_assert_true (rv_mask_can_redo (m));
  rv_mask_begin_stroke (m, 2, 2, 1, FALSE);
  rv_mask_end_stroke (m);
  g_assert_false (rv_mask_can_redo (m));
}

static void
test_clear_invert (void)
{
  g_autoptr (RvMask) m = rv_mask_new ();
  rv_mask_reset (m, 20, 10);
  rv_mask_begin_stroke (m, 5, 5, 2, FALSE);
  rv_mask_end_stroke (m);
  guint painted = covered (m);
  g_assert_cmpuint (painted, >, 0);

  rv_mask_invert (m);
  g_assert_cmpuint (covered (m), ==, 20 * 10 - painted);
  g_assert_cmpuint (alpha_at (m, 5, 5), ==, 0);
  g_assert_cmpuint (alpha_at (m, 15, 5), ==, 255);

  rv_mask_clear (m);
  g_assert_true (rv_mask_is_empty (m));
  g_assert_true (rv_mask_undo (m));         /* the clear */
  g_assert_cmpuint (covered (m), ==, 20 * 10 - painted);
  g_assert_true (rv_mask_undo (m));         /* the invert */
  g_assert_cmpuint (covered (m), ==, painted);

  /* a new picture: a fresh mask and no history */
  rv_mask_reset (m, 8, 8);
  g_assert_true (rv_mask_is_empty (m));
  g_assert_false (rv_mask_can_undo (m));
  g_assert_false (rv_mask_can_redo (m));
}

static void
test_pressure (void)
{
  /* a stroke whose radius grows along it is wider at its end */
  g_autoptr (RvMask) m = rv_mask_new ();
  rv_mask_reset (m, 100, 40);
  rv_mask_begin_stroke (m, 10, 20, 1, FALSE);
  for (int x = 12; x <= 90; x += 2)
    rv_mask_stroke_to (m, x, 20, 1 + (x - 10) / 10.0);
  rv_mask_end_stroke (m);
  int near = 0, far = 0;
  for (int y = 0; y < 40; y++)
    {
      near += alpha_at (m, 20, y) > 127;
      far += alpha_at (m, 85, y) > 127;
    }
  g_assert_cmpint (far, >, near + 6);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mask/stroke", test_stroke);
  g_test_add_func ("/mask/single-click", test_single_click);
  g_test_add_func ("/mask/eraser-undo-redo", test_eraser_undo_redo);
  g_test_add_func ("/mask/clear-invert", test_clear_invert);
  g_test_add_func ("/mask/pressure", test_pressure);
  return g_test_run ();
}
