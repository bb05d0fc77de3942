/* fuzz-image.c: image files from outside (PNG, JPEG, WebP) through
 * rv_image_load_bytes. Whatever loads must be within the documented limits,
 * and a small image must survive a PNG round trip with a recipe unchanged. */
#include "fuzz.h"
#include "rv-image-io.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (data, size);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) img = rv_image_load_bytes (bytes, "fuzz", &error);
  if (img == NULL)
    {
      g_assert (error != NULL && error->domain == RV_ERROR && error->code == RV_ERROR_IMAGE);
      g_assert (g_utf8_validate (error->message, -1, NULL));
      return 0;
    }
  g_assert (error == NULL);
  g_assert (img->width >= 1 && img->height >= 1);
  g_assert (img->width <= RV_IMAGE_MAX_SIDE && img->height <= RV_IMAGE_MAX_SIDE);
  g_assert ((gint64) img->width * img->height <= RV_IMAGE_MAX_PIXELS);
  g_assert (img->channels == 3 || img->channels == 4);
  /* every pixel is readable */
  g_free (rv_image_sha256 (img));

  if ((gint64) img->width * img->height <= 64 * 64)
    {
      g_autoptr (RvRecipe) r = rv_recipe_new ();
      r->kind = g_strdup ("generate");
      r->prompt = g_strdup ("a round trip ✓");
      g_autoptr (GHashTable) text = rv_recipe_to_text (r);
      g_autoptr (GBytes) png = rv_image_encode_png (img, text, &error);
      g_assert_no_error (error);
      g_autoptr (RvImage) back = rv_image_load_bytes (png, "round trip", &error);
      g_assert_no_error (error);
      g_assert (back->width == img->width && back->height == img->height &&
                back->channels == img->channels);
      g_assert (memcmp (back->pixels, img->pixels,
                        (gsize) img->width * img->height * img->channels) == 0);
      g_autoptr (GHashTable) chunks = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      gsize len;
      const guint8 *p = g_bytes_get_data (png, &len);
      g_assert (_rv_png_parse_text (p, len, chunks));
      g_assert_cmpstr (g_hash_table_lookup (chunks, "reverie:prompt"), ==, r->prompt);
    }
  return 0;
}
