/* write-loop.c: saves two pictures with their recipes over one gallery file,
 * again and again, the way the studio saves (an encoded PNG through
 * rv_file_write_atomic), until it is killed. Writes the two expected files
 * beside it first (PATH.a, PATH.b), then prints "ready".
 *
 *   write-loop PATH SIDE */
#include "rv-image-io.h"

#include <stdio.h>
#include <stdlib.h>

static GBytes *
picture (int side, guint32 seed, const char *prompt)
{
  g_autoptr (RvImage) img = rv_image_new (side, side, 3);
  GRand *rand = g_rand_new_with_seed (seed);
  for (gsize i = 0; i < (gsize) side * side * 3; i++)
    img->pixels[i] = (guint8) g_rand_int (rand);
  g_rand_free (rand);
  g_autoptr (RvRecipe) r = rv_recipe_new ();
  r->kind = g_strdup ("generate");
  r->prompt = g_strdup (prompt);
  r->seed = seed;
  r->width = r->height = side;
  r->created = 1700000000;   /* the same bytes from every run */
  g_autoptr (GHashTable) text = rv_recipe_to_text (r);
  g_autoptr (GError) error = NULL;
  GBytes *png = rv_image_encode_png (img, text, &error);
  if (png == NULL)
    g_printerr ("write-loop: %s\n", error->message);
  return png;
}

int
main (int argc, char **argv)
{
  if (argc != 3)
    {
      g_printerr ("usage: write-loop PATH SIDE\n");
      return 2;
    }
  const char *path = argv[1];
  int side = atoi (argv[2]);
  g_autoptr (GBytes) a = picture (side, 1, "writer A");
  g_autoptr (GBytes) b = picture (side, 2, "writer B");
  if (a == NULL || b == NULL)
    return 1;
  g_autofree char *pa = g_strconcat (path, ".a", NULL);
  g_autofree char *pb = g_strconcat (path, ".b", NULL);
  g_autoptr (GError) error = NULL;
  if (!g_file_set_contents (pa, g_bytes_get_data (a, NULL), g_bytes_get_size (a), &error) ||
      !g_file_set_contents (pb, g_bytes_get_data (b, NULL), g_bytes_get_size (b), &error))
    {
      g_printerr ("write-loop: %s\n", error->message);
      return 1;
    }
  printf ("ready\n");
  fflush (stdout);
  for (guint64 i = 0;; i++)
    {
      GBytes *png = i % 2 ? b : a;
      if (!rv_file_write_atomic (path, g_bytes_get_data (png, NULL), g_bytes_get_size (png), &error))
        {
          g_printerr ("write-loop: %s\n", error->message);
          return 1;
        }
      printf ("wrote %" G_GUINT64_FORMAT "\n", i);
      fflush (stdout);
    }
}
