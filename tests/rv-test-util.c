/* rv-test-util.c: shared helpers for the engine tests. */
#include <stdarg.h>
#include "rv-test-util.h"

#include <math.h>
#include <stdlib.h>

static RvDevice *device;
static RvCmd *command;

/* At exit the shared command stream and device go, so that the Vulkan
 * objects behind them are destroyed (the validation layer and the leak
 * checkers see an orderly shutdown). */
static void
teardown (void)
{
  g_clear_pointer (&command, rv_cmd_free);
  g_clear_pointer (&device, rv_device_unref);
}

RvDevice *
rv_test_device (void)
{
  if (device == NULL)
    {
      g_autoptr (GError) error = NULL;
      device = rv_device_new (NULL, &error);
      g_assert_no_error (error);
      atexit (teardown);
    }
  return device;
}

RvCmd *
rv_test_cmd (void)
{
  if (command == NULL)
    {
      g_autoptr (GError) error = NULL;
      command = rv_cmd_new (rv_test_device (), &error);
      g_assert_no_error (error);
    }
  return command;
}

typedef struct {
  void (*func) (void);
} Case;

static void
run_case (gconstpointer data)
{
  const Case *c = data;
  guint before = rv_validation_message_count ();
  c->func ();
  g_assert_cmpuint (rv_validation_message_count (), ==, before);
}

void
rv_test_add (const char *path, void (*func) (void))
{
  Case *c = g_new0 (Case, 1);   /* lives for the process */
  c->func = func;
  g_test_add_data_func (path, c, run_case);
}

float *
rv_test_random (GRand *rand, gint64 n, float lo, float hi)
{
  float *v = g_new (float, MAX (n, 1));
  for (gint64 i = 0; i < n; i++)
    v[i] = (float) g_rand_double_range (rand, lo, hi);
  return v;
}

void
rv_test_round_f16 (float *data, gint64 n)
{
  for (gint64 i = 0; i < n; i++)
    data[i] = rv_f16_to_f32 (rv_f32_to_f16 (data[i]));
}

RvTensor *
rv_test_tensor (RvDType dtype, int ndim, const gint64 *shape, const float *data)
{
  g_autoptr (GError) error = NULL;
  RvTensor *t = rv_tensor_new (rv_test_device (), dtype, ndim, shape, &error);
  g_assert_no_error (error);
  gint64 n = rv_tensor_numel (t);
  if (dtype == RV_DTYPE_I32)
    {
      g_autofree gint32 *iv = g_new (gint32, n);
      for (gint64 i = 0; i < n; i++)
        iv[i] = (gint32) data[i];
      rv_cmd_upload (rv_test_cmd (), t, iv, n * 4);
    }
  else
    rv_tensor_upload_f32 (rv_test_cmd (), t, data, n);
  return t;
}

RvTensor *
rv_test_output (int ndim, const gint64 *shape)
{
  g_autoptr (GError) error = NULL;
  RvTensor *t = rv_tensor_new (rv_test_device (), RV_DTYPE_F32, ndim, shape, &error);
  g_assert_no_error (error);
  rv_cmd_fill_u32 (rv_test_cmd (), t, 0x7fc00000u);   /* quiet NaN */
  return t;
}

float *
rv_test_download (RvTensor *t)
{
  gint64 n = rv_tensor_numel (t);
  float *out = g_new (float, MAX (n, 1));
  g_autoptr (GError) error = NULL;
  if (t->dtype == RV_DTYPE_F16)
    {
      g_autofree guint16 *h = g_new (guint16, n);
      rv_cmd_download (rv_test_cmd (), t, h, n * 2);
      rv_cmd_submit (rv_test_cmd (), &error);
      g_assert_no_error (error);
      for (gint64 i = 0; i < n; i++)
        out[i] = rv_f16_to_f32 (h[i]);
    }
  else
    {
      rv_cmd_download (rv_test_cmd (), t, out, n * 4);
      rv_cmd_submit (rv_test_cmd (), &error);
      g_assert_no_error (error);
    }
  return out;
}

double
rv_test_rel_err (const float *got, const double *ref, gint64 n)
{
  double num = 0, den = 0;
  for (gint64 i = 0; i < n; i++)
    {
      if (!isfinite (got[i]))
        return INFINITY;
      double d = got[i] - ref[i];
      num += d * d;
      den += ref[i] * ref[i];
    }
  return den > 0 ? sqrt (num / den) : sqrt (num);
}

void
rv_test_assert_close (const char *what, const float *got, const double *ref, gint64 n, double tol)
{
  double e = rv_test_rel_err (got, ref, n);
  if (!(e <= tol))
    {
      gint64 worst = 0;
      double wd = -1;
      for (gint64 i = 0; i < n; i++)
        {
          double d = isfinite (got[i]) ? fabs (got[i] - ref[i]) : INFINITY;
          if (d > wd)
            {
              wd = d;
              worst = i;
            }
        }
      g_error ("%s: relative error %.3g > %.3g (worst at %" G_GINT64_FORMAT ": got %.9g, want %.9g)",
               what, e, tol, worst, got[worst], ref[worst]);
    }
  g_test_message ("%s: relative error %.3g", what, e);
}

char *
rv_test_reference_dir (void)
{
  const char *root = g_getenv ("REVERIE_REFERENCE_DIR");
  if (root == NULL)
    g_error ("REVERIE_REFERENCE_DIR is not set: run the tests with meson test");
  if (!g_file_test (root, G_FILE_TEST_IS_DIR))
    g_error ("the reference set %s is missing", root);
  return g_strdup (root);
}

char *
rv_test_reference_path (const char *first, ...)
{
  g_autofree char *root = rv_test_reference_dir ();
  g_autoptr (GPtrArray) parts = g_ptr_array_new ();
  g_ptr_array_add (parts, root);
  va_list ap;
  va_start (ap, first);
  for (const char *p = first; p != NULL; p = va_arg (ap, const char *))
    g_ptr_array_add (parts, (gpointer) p);
  va_end (ap);
  g_ptr_array_add (parts, NULL);
  char *path = g_build_filenamev ((char **) parts->pdata);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    g_error ("%s is missing from the reference set", path);
  return path;
}
