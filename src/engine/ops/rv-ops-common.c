/* rv-ops-common.c: helpers shared by the op implementations. */
#include "rv-ops-private.h"

#include <stdarg.h>

RvKernel *
_rv_op_kernel (RvCmd *cmd, const char *module, const char *bindings, const guint32 *spec,
               guint n_spec)
{
  GError *error = NULL;
  RvKernel *k = rv_device_kernel_request (rv_cmd_device (cmd), module, bindings, spec, n_spec, &error);
  if (k == NULL)
    rv_cmd_fail (cmd, error);
  return k;
}

void
_rv_grid_1d (RvCmd *cmd, gint64 n, guint local, guint32 *gx, guint32 *gy)
{
  guint64 groups = (n + local - 1) / local;
  guint32 maxx = MIN (rv_device_caps (rv_cmd_device (cmd))->max_workgroup_count[0], 65535);
  if (groups <= maxx)
    {
      *gx = (guint32) MAX (groups, 1);
      *gy = 1;
    }
  else
    {
      *gx = maxx;
      *gy = (guint32) ((groups + maxx - 1) / maxx);
    }
}

gboolean
_rv_op_invalid (RvCmd *cmd, const char *op, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  rv_cmd_failf (cmd, RV_ERROR_INVALID, "%s: %s", op, msg);
  return FALSE;
}

gboolean
_rv_op_begin (RvCmd *cmd)
{
  return !rv_cmd_failed (cmd);
}

gint64
_rv_dims (const RvTensor *t, int from, int to)
{
  gint64 n = 1;
  for (int i = from; i < to; i++)
    n *= t->shape[i];
  return n;
}
