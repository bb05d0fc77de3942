/* test-kernels.c: kernels built once per key, from any thread; the kernel
 * lists a run leaves in the cache and the background builds of the next
 * process (rv_device_save_kernel_list, rv_device_prewarm_kernels). */
#include "rv-test-util.h"

#include <glib/gstdio.h>
#include <string.h>

static char *cache_dir;

static const guint32 concat_spec[] = { 64, 1 };
static const guint32 norm_spec[] = { 64, 1, 3 };
static const guint32 resample_spec[] = { 64, 1, 0 };

/* The one kernel list file under the cache, or NULL. */
static char *
find_list (void)
{
  g_autofree char *dir = g_build_filename (cache_dir, "reverie", NULL);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return NULL;
  char *found = NULL;
  const char *n;
  while ((n = g_dir_read_name (d)) != NULL)
    if (g_str_has_prefix (n, "kernels-"))
      {
        g_assert_null (found);
        found = g_build_filename (dir, n, NULL);
      }
  return found;
}

static char **
read_lines (const char *path)
{
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_strchomp (text);
  return g_strsplit (text, "\n", -1);
}

static void
wait_for_kernels (RvDevice *dev, guint n)
{
  gint64 end = g_get_monotonic_time () + 120 * G_USEC_PER_SEC;
  while (rv_device_kernel_count (dev) < n && g_get_monotonic_time () < end)
    g_usleep (2000);
  g_assert_cmpuint (rv_device_kernel_count (dev), ==, n);
}

static void
test_kernel_list (void)
{
  g_autoptr (GError) error = NULL;

  /* a run: two kernels, in this order */
  RvDevice *dev = rv_device_new (NULL, &error);
  g_assert_no_error (error);
  RvKernel *a = rv_device_kernel (dev, "concat", "STT", concat_spec, 2, &error);
  g_assert_no_error (error);
  RvKernel *b = rv_device_kernel (dev, "layer-norm", "STTT", norm_spec, 3, &error);
  g_assert_no_error (error);
  g_assert_true (a != b);
  g_assert_true (rv_device_kernel (dev, "concat", "STT", concat_spec, 2, &error) == a);
  g_assert_cmpuint (rv_device_kernel_count (dev), ==, 2);
  /* a tag that is not a plain name writes nothing */
  rv_device_save_kernel_list (dev, "../escape");
  rv_device_save_kernel_list (dev, "");
  g_assert_null (find_list ());
  rv_device_save_kernel_list (dev, "model-1");
  rv_device_unref (dev);

  g_autofree char *path = find_list ();
  g_assert_nonnull (path);
  g_assert_true (strstr (path, "-model-1.txt") != NULL);
  g_auto (GStrv) lines = read_lines (path);
  g_assert_cmpuint (g_strv_length (lines), ==, 2);
  g_assert_cmpstr (lines[0], ==, "concat|STT|64|1");
  g_assert_cmpstr (lines[1], ==, "layer-norm|STTT|64|1|3");

  /* lines that name no kernel of this program are skipped, not fatal */
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_autofree char *longline = g_strnfill (5000, 'x');
  g_autofree char *bad = g_strconcat (text, "\nno-such-kernel|S\nconcat|XY|1\nconcat|STT|one\n||||\n",
                                      "concat|STT|1|2|3|4|5|6|7|8|9|10|11|12|13\n../x|S\n",
                                      longline, "\n\n", NULL);
  g_assert_true (g_file_set_contents (path, bad, -1, NULL));

  /* the next process: both built in the background, none of the bad lines */
  dev = rv_device_new (NULL, &error);
  g_assert_no_error (error);
  rv_device_prewarm_kernels (dev, "model-1");
  wait_for_kernels (dev, 2);
  a = rv_device_kernel (dev, "concat", "STT", concat_spec, 2, &error);
  g_assert_no_error (error);
  g_assert_nonnull (a);
  g_assert_cmpuint (rv_device_kernel_count (dev), ==, 2);
  /* this run uses concat and resample: they come first, then the rest of the
   * old list; the bad lines are dropped */
  RvKernel *r = rv_device_kernel (dev, "resample", "ST", resample_spec, 3, &error);
  g_assert_no_error (error);
  g_assert_nonnull (r);
  rv_device_save_kernel_list (dev, "model-1");
  rv_device_unref (dev);
  g_auto (GStrv) merged = read_lines (path);
  g_assert_cmpuint (g_strv_length (merged), ==, 3);
  g_assert_cmpstr (merged[0], ==, "concat|STT|64|1");
  g_assert_cmpstr (merged[1], ==, "resample|ST|64|1|0");
  g_assert_cmpstr (merged[2], ==, "layer-norm|STTT|64|1|3");

  /* a tag with no list: nothing happens */
  dev = rv_device_new (NULL, &error);
  g_assert_no_error (error);
  rv_device_prewarm_kernels (dev, "model-2");
  g_usleep (50000);
  g_assert_cmpuint (rv_device_kernel_count (dev), ==, 0);
  rv_device_unref (dev);
}

typedef struct {
  RvDevice *dev;
  RvKernel *got[3];
} Racer;

static gpointer
race (gpointer data)
{
  Racer *r = data;
  r->got[0] = rv_device_kernel (r->dev, "resample", "ST", resample_spec, 3, NULL);
  r->got[1] = rv_device_kernel (r->dev, "layer-norm", "STTT", norm_spec, 3, NULL);
  r->got[2] = rv_device_kernel (r->dev, "concat", "STT", concat_spec, 2, NULL);
  return NULL;
}

/* The background builders and two threads that need the same kernels at the
 * same time: each kernel is built once, and everyone gets that one. */
static void
test_kernel_race (void)
{
  g_autoptr (GError) error = NULL;
  RvDevice *dev = rv_device_new (NULL, &error);
  g_assert_no_error (error);
  rv_device_prewarm_kernels (dev, "model-1");   /* the list of the test above */
  Racer r1 = { dev }, r2 = { dev };
  GThread *t1 = g_thread_new ("racer", race, &r1);
  GThread *t2 = g_thread_new ("racer", race, &r2);
  g_thread_join (t1);
  g_thread_join (t2);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_nonnull (r1.got[i]);
      g_assert_true (r1.got[i] == r2.got[i]);
    }
  g_assert_cmpuint (rv_device_kernel_count (dev), ==, 3);
  /* a module that does not exist is an error, also while others build */
  g_assert_null (rv_device_kernel (dev, "no-such-kernel", "S", NULL, 0, &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  rv_device_unref (dev);
}

/* Kernels asked for without waiting: the command stream keeps the dispatches
 * of one still being built and records them at the submit; the results are
 * those of any other dispatch. */
static void
test_kernel_request (void)
{
  g_autoptr (GError) error = NULL;
  RvDevice *dev = rv_device_new (NULL, &error);
  g_assert_no_error (error);
  RvKernel *k = rv_device_kernel_request (dev, "concat", "STT", concat_spec, 2, &error);
  g_assert_no_error (error);
  g_assert_nonnull (k);
  g_assert_true (rv_device_kernel_request (dev, "concat", "STT", concat_spec, 2, &error) == k);
  g_assert_true (rv_kernel_wait (dev, k, &error));
  g_assert_true (rv_kernel_ready (k));
  g_assert_null (rv_device_kernel_request (dev, "no-such-kernel", "S", NULL, 0, &error));
  g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
  g_clear_error (&error);

  /* a chain of ops whose kernels are all new on this device: the first
   * dispatch finds its kernel unbuilt, so everything after it waits for the
   * submit, barriers, uploads and downloads included */
  RvCmd *cmd = rv_cmd_new (dev, &error);
  g_assert_no_error (error);
  gint64 shape[2] = { 12, 5 }, yshape[2] = { 12, 10 };
  float av[60], bv[60], out[120];
  for (int i = 0; i < 60; i++)
    av[i] = i, bv[i] = -i;
  g_autoptr (RvTensor) a = rv_tensor_new (dev, RV_DTYPE_F32, 2, shape, &error);
  g_autoptr (RvTensor) b = rv_tensor_new (dev, RV_DTYPE_F32, 2, shape, &error);
  g_autoptr (RvTensor) y = rv_tensor_new (dev, RV_DTYPE_F32, 2, yshape, &error);
  g_autoptr (RvTensor) z = rv_tensor_new (dev, RV_DTYPE_F32, 2, yshape, &error);
  g_assert_no_error (error);
  rv_cmd_upload (cmd, a, av, sizeof av);
  rv_cmd_upload (cmd, b, bv, sizeof bv);
  rv_op_concat (cmd, y, a, b, 1);             /* 12 rows: the kernel, not copies */
  rv_op_binary (cmd, z, y, y, RV_BIN_ADD);    /* reads what the concat wrote */
  rv_cmd_download (cmd, z, out, sizeof out);
  g_assert_cmpuint (rv_cmd_pending (cmd), >=, 4);   /* concat, barrier, add, barrier, download… */
  g_assert_true (rv_cmd_submit (cmd, &error));
  g_assert_cmpuint (rv_cmd_pending (cmd), ==, 0);
  g_assert_no_error (error);
  for (int r = 0; r < 12; r++)
    for (int c = 0; c < 10; c++)
      g_assert_cmpfloat (out[r * 10 + c], ==, 2.0f * (c < 5 ? av[r * 5 + c] : bv[r * 5 + c - 5]));
  rv_cmd_free (cmd);
  g_clear_pointer (&a, rv_tensor_free);
  g_clear_pointer (&b, rv_tensor_free);
  g_clear_pointer (&y, rv_tensor_free);
  g_clear_pointer (&z, rv_tensor_free);
  rv_device_unref (dev);
}

/* Released while the background builders still work: they stop. */
static void
test_kernel_release_early (void)
{
  g_autoptr (GError) error = NULL;
  for (guint i = 0; i < 3; i++)
    {
      RvDevice *dev = rv_device_new (NULL, &error);
      g_assert_no_error (error);
      rv_device_prewarm_kernels (dev, "model-1");
      rv_device_unref (dev);
    }
}

static void
remove_tree (const char *path)
{
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *n;
  while (d != NULL && (n = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, n, NULL);
      if (g_file_test (child, G_FILE_TEST_IS_DIR))
        remove_tree (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

int
main (int argc, char **argv)
{
  /* a private cache, set before anything reads XDG_CACHE_HOME */
  cache_dir = g_dir_make_tmp ("reverie-kernels-XXXXXX", NULL);
  g_assert_nonnull (cache_dir);
  g_setenv ("XDG_CACHE_HOME", cache_dir, TRUE);
  g_unsetenv ("REVERIE_PIPELINE_CACHE");
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/kernels/list", test_kernel_list);
  rv_test_add ("/kernels/race", test_kernel_race);
  rv_test_add ("/kernels/request", test_kernel_request);
  rv_test_add ("/kernels/release-early", test_kernel_release_early);
  int rc = g_test_run ();
  remove_tree (cache_dir);
  return rc;
}
