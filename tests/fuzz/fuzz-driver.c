/* fuzz-driver.c: runs a fuzz target's LLVMFuzzerTestOneInput over every file
 * of the corpus folders (or files) given, without libFuzzer: the seed corpus
 * and the crash regressions stay tested in every build. */
#include "fuzz.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

static int
path_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static int
run_file (const char *path)
{
  g_autofree char *data = NULL;
  gsize len;
  g_autoptr (GError) error = NULL;
  if (!g_file_get_contents (path, &data, &len, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  LLVMFuzzerTestOneInput ((const uint8_t *) data, len);
  return 0;
}

int
main (int argc, char **argv)
{
  int failures = 0, n = 0;
  for (int i = 1; i < argc; i++)
    {
      if (!g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          failures += run_file (argv[i]);
          n++;
          continue;
        }
      g_autoptr (GDir) dir = g_dir_open (argv[i], 0, NULL);
      g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        g_ptr_array_add (names, g_build_filename (argv[i], name, NULL));
      g_ptr_array_sort (names, path_cmp);
      for (guint k = 0; k < names->len; k++)
        {
          failures += run_file (g_ptr_array_index (names, k));
          n++;
        }
    }
  printf ("%d inputs replayed\n", n);
  return failures > 0 || n == 0;
}
