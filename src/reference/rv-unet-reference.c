/* rv-unet-reference.c: check-reference handlers for the decoder UNet: the
 * single forwards of the components case and every recorded calls.unet.<k>
 * of the pipeline cases, each run from its recorded inputs. */
#include "rv-unet.h"
#include "rv-reference.h"

#include <string.h>

/* The UNet of a model folder, loaded once per run with fp32 weights as stored. */
static RvUNet *
cached_unet (RvRefContext *ctx, const char *relative, GError **error)
{
  g_autofree char *dir = rv_ref_model_folder (ctx, relative, error);
  if (dir == NULL)
    return NULL;
  g_autofree char *key = g_strconcat ("unet:", dir, NULL);
  RvUNet *m = rv_ref_cache_get (ctx, key);
  if (m != NULL)
    return m;
  RvDevice *dev = rv_ref_device (ctx, error);
  g_autoptr (RvCmd) cmd = dev ? rv_cmd_new (dev, error) : NULL;
  if (cmd == NULL)
    return NULL;
  m = rv_unet_load (cmd, dir, RV_WEIGHTS_AS_STORED, error);
  if (m != NULL)
    rv_ref_cache_set (ctx, key, m, (GDestroyNotify) rv_unet_free);
  return m;
}

/* (B, C, H, W) -> (B, H, W, C) on the host, or back with to_nchw */
static float *
permute (const float *x, gint64 b, gint64 c, gint64 h, gint64 w, gboolean to_nchw)
{
  float *y = g_new (float, b * c * h * w);
  for (gint64 n = 0; n < b; n++)
    for (gint64 k = 0; k < c; k++)
      for (gint64 i = 0; i < h * w; i++)
        {
          gint64 chw = (n * c + k) * h * w + i, hwc = (n * h * w + i) * c + k;
          y[to_nchw ? chw : hwc] = x[to_nchw ? hwc : chw];
        }
  return y;
}

/* The first of the names the case records, or NULL. */
static const char *
first_present (RvRefContext *ctx, const char *const *names)
{
  for (int i = 0; names[i] != NULL; i++)
    if (rv_ref_lookup (ctx, names[i]) != NULL)
      return names[i];
  return NULL;
}

/* Runs the UNet of `folder` on the recorded NCHW sample, timestep (0-d or one
 * per row) and image_embeds, and puts the NCHW output under `out`. */
static gboolean
run_unet (RvRefContext *ctx, const char *folder, const char *sample_name, const char *t_name,
          const char *embeds_name, const char *out, GError **error)
{
  RvUNet *m = cached_unet (ctx, folder, error);
  if (m == NULL)
    return FALSE;
  const RvStTensor *si = rv_ref_lookup (ctx, sample_name);
  const RvStTensor *ti = rv_ref_lookup (ctx, t_name);
  const RvStTensor *ei = rv_ref_lookup (ctx, embeds_name);
  if (si == NULL || si->ndim != 4 || ti == NULL || ti->ndim > 1 || ei == NULL || ei->ndim != 2 ||
      (ti->ndim == 1 && ti->shape[0] != si->shape[0]))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "Case “%s”: %s, %s and %s are missing or not (B, C, H, W), a 0-d or (B) "
                   "timestep and (B, E)", rv_ref_case (ctx)->name, sample_name, t_name,
                   embeds_name);
      return FALSE;
    }
  gint64 b = si->shape[0], c = si->shape[1], h = si->shape[2], w = si->shape[3];
  g_autofree float *sample = rv_ref_get_f32 (ctx, sample_name, error);
  g_autofree float *t = sample ? rv_ref_get_f32 (ctx, t_name, error) : NULL;
  g_autofree float *embeds = t ? rv_ref_get_f32 (ctx, embeds_name, error) : NULL;
  if (embeds == NULL)
    return FALSE;
  g_autofree float *timesteps = g_new (float, b);
  for (gint64 i = 0; i < b; i++)
    timesteps[i] = ti->ndim == 0 ? t[0] : t[i];
  g_autofree float *sample_hwc = permute (sample, b, c, h, w, FALSE);

  g_autoptr (RvCmd) cmd = rv_cmd_new (rv_ref_device (ctx, NULL), error);
  if (cmd == NULL)
    return FALSE;
  g_autoptr (RvTensor) x = RV_NET_TENSOR (cmd, b, h, w, c);
  g_autoptr (RvTensor) e = x ? RV_NET_TENSOR (cmd, b, ei->shape[1]) : NULL;
  if (e != NULL)
    {
      rv_tensor_upload_f32 (cmd, x, sample_hwc, b * h * w * c);
      rv_tensor_upload_f32 (cmd, e, embeds, b * ei->shape[1]);
    }
  g_autoptr (RvTensor) y = rv_unet_forward (m, cmd, x, timesteps, e);
  gint64 co = rv_unet_config (m)->out_channels;
  g_autofree float *got = g_new (float, b * h * w * co);
  if (y != NULL)
    rv_cmd_download (cmd, y, got, rv_tensor_nbytes (y));
  if (!rv_cmd_submit (cmd, error))
    return FALSE;
  g_autofree float *got_chw = permute (got, b, co, h, w, TRUE);
  rv_ref_put_f32 (ctx, out, got_chw, 4, (const gint64[]) { b, co, h, w }, RV_REF_TOL_AUTO);
  return TRUE;
}

static const char *
folder_of (JsonObject *o, const char *key)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, key) : NULL;
  return n != NULL && json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n) : NULL;
}

/* components: unet.* (one timestep for the batch, then one per row) and
 * unet_inpaint.*, with the folders of params.model_folders. */
gboolean
rv_ref_handle_unet_components (RvRefContext *ctx, GError **error)
{
  JsonNode *mf = json_object_get_member (rv_ref_params (ctx), "model_folders");
  JsonObject *folders = mf != NULL && JSON_NODE_HOLDS_OBJECT (mf) ? json_node_get_object (mf) : NULL;
  static const struct {
    const char *model, *sample, *t, *embeds, *out;
  } runs[] = {
    { "unet", "unet.in.sample", "unet.in.timestep", "unet.in.image_embeds", "unet.out.sample" },
    { "unet", "unet.in.sample", "unet.in.timestep_per_sample", "unet.in.image_embeds",
      "unet.out.sample_per_sample_t" },
    { "unet_inpaint", "unet_inpaint.in.sample", "unet_inpaint.in.timestep",
      "unet_inpaint.in.image_embeds", "unet_inpaint.out.sample" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (runs); i++)
    {
      if (rv_ref_lookup (ctx, runs[i].out) == NULL)
        continue;
      const char *folder = folder_of (folders, runs[i].model);
      if (folder == NULL)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "Case “%s”: params.model_folders.%s is missing", rv_ref_case (ctx)->name,
                       runs[i].model);
          return FALSE;
        }
      if (!run_unet (ctx, folder, runs[i].sample, runs[i].t, runs[i].embeds, runs[i].out, error))
        return FALSE;
    }
  return TRUE;
}

/* Pipeline cases: every calls.unet.<k> from its recorded inputs (keyword or
 * positional), with the UNet of params.model_folder (the decoder's when the
 * case names none). */
gboolean
rv_ref_handle_unet_calls (RvRefContext *ctx, GError **error)
{
  const RvRefCase *rc = rv_ref_case (ctx);
  const char *folder = folder_of (rv_ref_params (ctx), "model_folder");
  if (folder == NULL)
    {
      JsonNode *models = json_object_get_member (rv_ref_set_index (rv_ref_set (ctx)), "models");
      folder = folder_of (models != NULL && JSON_NODE_HOLDS_OBJECT (models)
                          ? json_node_get_object (models) : NULL, "decoder");
    }
  if (folder == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "Case “%s”: params.model_folder is missing", rc->name);
      return FALSE;
    }
  g_autofree char *unet_folder = g_build_filename (folder, "unet", NULL);

  for (guint i = 0; i < rc->tensors->len; i++)
    {
      const RvRefTensorInfo *info = &g_array_index (rc->tensors, RvRefTensorInfo, i);
      char *end = NULL;
      if (!g_str_has_prefix (info->name, "calls.unet."))
        continue;
      guint64 k = g_ascii_strtoull (info->name + strlen ("calls.unet."), &end, 10);
      if (end == NULL || !g_str_has_prefix (end, ".out."))
        continue;
      g_autofree char *p = g_strdup_printf ("calls.unet.%03" G_GUINT64_FORMAT, k);
      g_autofree char *in_s = g_strconcat (p, ".in.sample", NULL);
      g_autofree char *arg0 = g_strconcat (p, ".args.0", NULL);
      g_autofree char *in_t = g_strconcat (p, ".in.timestep", NULL);
      g_autofree char *arg1 = g_strconcat (p, ".args.1", NULL);
      g_autofree char *in_e = g_strconcat (p, ".in.added_cond_kwargs.image_embeds", NULL);
      const char *const samples[] = { in_s, arg0, NULL };
      const char *const times[] = { in_t, arg1, NULL };
      const char *s = first_present (ctx, samples), *t = first_present (ctx, times);
      if (!run_unet (ctx, unet_folder, s ? s : in_s, t ? t : in_t, in_e, info->name, error))
        return FALSE;
    }
  return TRUE;
}
