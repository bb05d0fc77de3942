/* rv-upscaler-reference.c: the check-reference handler for super-resolution
 * cases (kind "upscale"): the case's model folder on its recorded NCHW input,
 * compared with the recorded output. */
#include "rv-upscaler.h"
#include "rv-reference.h"

/* The network of a folder, loaded once per run with fp32 weights as stored,
 * and a command stream to run it on. */
typedef struct {
  RvCmd      *cmd;
  RvUpscaler *net;
} Net;

static void
net_free (Net *n)
{
  rv_upscaler_free (n->net);
  rv_cmd_free (n->cmd);
  g_free (n);
}

static Net *
cached_net (RvRefContext *ctx, const char *relative, GError **error)
{
  g_autofree char *dir = rv_ref_model_folder (ctx, relative, error);
  if (dir == NULL)
    return NULL;
  g_autofree char *key = g_strconcat ("upscaler:", dir, NULL);
  Net *n = rv_ref_cache_get (ctx, key);
  if (n != NULL)
    return n;
  RvDevice *dev = rv_ref_device (ctx, error);
  g_autoptr (RvCmd) cmd = dev ? rv_cmd_new (dev, error) : NULL;
  if (cmd == NULL)
    return NULL;
  RvUpscaler *u = rv_upscaler_load (cmd, dir, RV_WEIGHTS_AS_STORED, error);
  if (u == NULL)
    return NULL;
  n = g_new0 (Net, 1);
  n->cmd = g_steal_pointer (&cmd);
  n->net = u;
  rv_ref_cache_set (ctx, key, n, (GDestroyNotify) net_free);
  return n;
}

gboolean
rv_ref_handle_upscaler (RvRefContext *ctx, GError **error)
{
  JsonObject *params = rv_ref_params (ctx);
  const char *model = json_object_get_string_member_with_default (params, "model", NULL);
  if (model == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s” names no model",
                   rv_ref_case (ctx)->name);
      return FALSE;
    }
  Net *n = cached_net (ctx, model, error);
  if (n == NULL)
    return FALSE;
  gint64 shape[4];
  g_autofree float *x = rv_ref_get_nhwc (ctx, "input", shape, error);
  if (x == NULL)
    return FALSE;
  g_autoptr (RvTensor) t = rv_tensor_new (rv_cmd_device (n->cmd), RV_DTYPE_F32, 4, shape, error);
  if (t == NULL)
    return FALSE;
  rv_cmd_upload (n->cmd, t, x, rv_tensor_nbytes (t));
  g_autoptr (RvTensor) y = rv_upscaler_forward (n->net, n->cmd, t);
  g_autofree float *nhwc = y != NULL ? g_new (float, rv_tensor_numel (y)) : NULL;
  if (y != NULL)
    rv_cmd_download (n->cmd, y, nhwc, rv_tensor_nbytes (y));
  if (!rv_cmd_submit (n->cmd, error))
    return FALSE;
  gint64 out[4] = { y->shape[0], y->shape[3], y->shape[1], y->shape[2] };
  g_autofree float *nchw = rv_ref_transpose_channels (nhwc, out[0], out[1], out[2] * out[3], FALSE);
  double tol = json_object_get_double_member_with_default (params, "tolerance", RV_REF_TOL_AUTO);
  rv_ref_put_f32 (ctx, "output", nchw, 4, out, tol);
  return TRUE;
}
