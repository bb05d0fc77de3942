/* fuzz-recipe.c: recipes in PNG text chunks (tEXt, zTXt, iTXt) through the
 * chunk reader and rv_recipe_from_text. Keys and values come out as UTF-8,
 * and a recipe written back to a PNG reads back the same. */
#include "fuzz.h"
#include "rv-image-io.h"

#include <string.h>

static void
assert_same (GHashTable *a, GHashTable *b)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, a);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_assert_cmpstr (g_hash_table_lookup (b, k), ==, v);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GHashTable) table = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (!_rv_png_parse_text (data, size, table))
    {
      g_assert (g_hash_table_size (table) == 0);
      return 0;
    }
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, table);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      g_assert (g_utf8_validate (k, -1, NULL) && strlen (k) >= 1);
      g_assert (g_utf8_validate (v, -1, NULL));
    }

  g_autoptr (GError) error = NULL;
  g_autoptr (RvRecipe) r = rv_recipe_from_text (table, &error);
  if (r == NULL)
    {
      g_assert (error != NULL && error->domain == RV_ERROR);
      return 0;
    }
  g_autofree char *s = rv_recipe_to_string (r);
  g_assert (g_utf8_validate (s, -1, NULL));
  g_autoptr (RvRecipe) copy = rv_recipe_copy (r);
  g_autoptr (GHashTable) text = rv_recipe_to_text (r);
  g_autoptr (GHashTable) text2 = rv_recipe_to_text (copy);
  assert_same (text, text2);

  /* written into a PNG and read back, the recipe is unchanged */
  g_autoptr (RvImage) img = rv_image_new (1, 1, 3);
  memset (img->pixels, 0x80, 3);
  g_autoptr (GBytes) png = rv_image_encode_png (img, text, &error);
  g_assert_no_error (error);
  g_autoptr (GHashTable) back = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  gsize len;
  const guint8 *p = g_bytes_get_data (png, &len);
  g_assert (_rv_png_parse_text (p, len, back));
  assert_same (text, back);
  g_autoptr (RvRecipe) again = rv_recipe_from_text (back, &error);
  g_assert_no_error (error);
  g_autoptr (GHashTable) text3 = rv_recipe_to_text (again);
  assert_same (text, text3);
  return 0;
}
