/* rv-clip-prior-reference.c: check-reference handlers for the CLIP text and
 * vision encoders, the image processor and the prior: single forwards from
 * a case's recorded inputs, in the `components` form (<model>.in.*), for
 * every recorded pipeline call (calls.<model>.<k>.*), and the image
 * variation's pre.pixel_values, pre.image_embeds, pre.zero_image_embeds. */
#include "rv-clip.h"
#include "rv-prior.h"
#include "rv-reference.h"

#include <string.h>

/* ---- finding things in a case ---- */

static const char *
string_member (JsonObject *o, const char *key)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, key) : NULL;
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
         ? json_node_get_string (n) : NULL;
}

/* The folder of a prior-pipeline component: params.model_folders (by key or
 * by folder name), else params.model_folder/<component>, else the set's
 * prior model/<component>. */
static char *
component_folder (RvRefContext *ctx, const char *component, GError **error)
{
  JsonObject *p = rv_ref_params (ctx);
  g_autoptr (GPtrArray) tries = g_ptr_array_new_with_free_func (g_free);
  JsonNode *folders = json_object_get_member (p, "model_folders");
  if (folders != NULL && JSON_NODE_HOLDS_OBJECT (folders))
    {
      const char *f = string_member (json_node_get_object (folders), component);
      if (f != NULL)
        g_ptr_array_add (tries, g_strdup (f));
    }
  else if (folders != NULL && JSON_NODE_HOLDS_ARRAY (folders))
    {
      JsonArray *a = json_node_get_array (folders);
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *n = json_array_get_element (a, i);
          if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
            {
              g_autofree char *base = g_path_get_basename (json_node_get_string (n));
              if (strcmp (base, component) == 0)
                g_ptr_array_add (tries, g_strdup (json_node_get_string (n)));
            }
        }
    }
  const char *folder = string_member (p, "model_folder");
  if (folder != NULL)
    g_ptr_array_add (tries, g_build_filename (folder, component, NULL));
  JsonNode *models = json_object_get_member (rv_ref_set_index (rv_ref_set (ctx)), "models");
  const char *prior = models != NULL && JSON_NODE_HOLDS_OBJECT (models)
                        ? string_member (json_node_get_object (models), "prior") : NULL;
  if (prior != NULL)
    g_ptr_array_add (tries, g_build_filename (prior, component, NULL));
  for (guint i = 0; i < tries->len; i++)
    {
      char *dir = rv_ref_set_resolve (rv_ref_set (ctx), tries->pdata[i]);
      if (dir != NULL)
        return dir;
    }
  g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s”: no %s folder found in %s",
               rv_ref_case (ctx)->name, component, rv_ref_set_dir (rv_ref_set (ctx)));
  return NULL;
}

/* The prefixes of a model's single forwards in the case: "<model>." when it
 * has <model>.in.* tensors, and every "calls.<model>.<k>.". */
static GPtrArray *
forward_prefixes (RvRefContext *ctx, const char *model)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *component = g_strdup_printf ("%s.in.", model);
  g_autofree char *calls = g_strdup_printf ("calls.%s.", model);
  GArray *tensors = rv_ref_case (ctx)->tensors;
  for (guint i = 0; i < tensors->len; i++)
    {
      const char *name = g_array_index (tensors, RvRefTensorInfo, i).name;
      char *prefix = NULL;
      if (g_str_has_prefix (name, component))
        prefix = g_strdup_printf ("%s.", model);
      else if (g_str_has_prefix (name, calls))
        {
          const char *end = strchr (name + strlen (calls), '.');
          if (end != NULL)
            prefix = g_strndup (name, end + 1 - name);
        }
      if (prefix == NULL)
        continue;
      gboolean seen = FALSE;
      for (guint j = 0; j < out->len && !seen; j++)
        seen = strcmp (out->pdata[j], prefix) == 0;
      if (seen)
        g_free (prefix);
      else
        g_ptr_array_add (out, prefix);
    }
  return out;
}

/* The recorded input of a forward, by keyword (in.<kwarg>) or by position
 * (args.<i>); NULL with an error when neither is there. */
static char *
input_name (RvRefContext *ctx, const char *prefix, const char *kwarg, int position,
            GError **error)
{
  char *name = g_strdup_printf ("%sin.%s", prefix, kwarg);
  if (rv_ref_lookup (ctx, name) != NULL)
    return name;
  g_free (name);
  name = g_strdup_printf ("%sargs.%d", prefix, position);
  if (rv_ref_lookup (ctx, name) != NULL)
    return name;
  g_free (name);
  g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s” records no %sin.%s",
               rv_ref_case (ctx)->name, prefix, kwarg);
  return NULL;
}

/* Downloads device tensors (one submit), hands each to the runner as
 * names[i] where the case records it, and frees them. */
static gboolean
put_tensors (RvRefContext *ctx, RvCmd *cmd, guint n, const char *const *names,
             RvTensor *const *tensors, GError **error)
{
  g_autoptr (GPtrArray) host = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < n; i++)
    {
      float *v = g_new (float, rv_tensor_numel (tensors[i]));
      rv_cmd_download (cmd, tensors[i], v, rv_tensor_nbytes (tensors[i]));
      g_ptr_array_add (host, v);
    }
  gboolean ok = rv_cmd_submit (cmd, error);
  for (guint i = 0; i < n; i++)
    {
      const RvTensor *t = tensors[i];
      if (ok && rv_ref_lookup (ctx, names[i]) != NULL)
        rv_ref_put_f32 (ctx, names[i], host->pdata[i], t->ndim, t->shape, RV_REF_TOL_AUTO);
      rv_tensor_free (tensors[i]);
    }
  return ok;
}

typedef gpointer (*LoadFunc) (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error);

/* The component's network, loaded once per run and folder, and a command
 * stream (*cmd) on its device. */
static gpointer
network (RvRefContext *ctx, const char *component, LoadFunc load, GDestroyNotify destroy,
         RvCmd **cmd, GError **error)
{
  g_autofree char *dir = component_folder (ctx, component, error);
  RvDevice *dev = dir != NULL ? rv_ref_device (ctx, error) : NULL;
  *cmd = dev != NULL ? rv_cmd_new (dev, error) : NULL;
  if (*cmd == NULL)
    return NULL;
  g_autofree char *key = g_strdup_printf ("%s:%s", component, dir);
  gpointer net = rv_ref_cache_get (ctx, key);
  if (net == NULL)
    {
      /* fp32 weights stay fp32: the reference is float32 */
      net = load (*cmd, dir, RV_WEIGHTS_AS_STORED, error);
      if (net != NULL)
        rv_ref_cache_set (ctx, key, net, destroy);
    }
  return net;
}

/* An NCHW float tensor of the case as a device (B, H, W, C) tensor. */
static RvTensor *
upload_nchw (RvRefContext *ctx, RvCmd *cmd, const char *name, GError **error)
{
  const RvStTensor *info = rv_ref_lookup (ctx, name);
  if (info == NULL || info->ndim != 4)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s”: %s is not an NCHW image batch",
                   rv_ref_case (ctx)->name, name);
      return NULL;
    }
  g_autofree float *v = rv_ref_get_f32 (ctx, name, error);
  if (v == NULL)
    return NULL;
  gint64 b = info->shape[0], c = info->shape[1], h = info->shape[2], w = info->shape[3];
  g_autofree float *hwc = g_new (float, b * c * h * w);
  for (gint64 i = 0; i < b; i++)
    for (gint64 k = 0; k < c; k++)
      for (gint64 p = 0; p < h * w; p++)
        hwc[(i * h * w + p) * c + k] = v[(i * c + k) * h * w + p];
  RvTensor *t = rv_tensor_new_4d (rv_cmd_device (cmd), RV_DTYPE_F32, b, h, w, c, error);
  if (t != NULL)
    rv_cmd_upload (cmd, t, hwc, b * c * h * w * sizeof (float));
  return t;
}

static RvTensor *
upload_f32 (RvRefContext *ctx, RvCmd *cmd, const char *name, GError **error)
{
  const RvStTensor *info = rv_ref_lookup (ctx, name);
  if (info == NULL || info->ndim < 1 || info->ndim > RV_MAX_DIMS)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s”: cannot use %s as an input",
                   rv_ref_case (ctx)->name, name);
      return NULL;
    }
  g_autofree float *v = rv_ref_get_f32 (ctx, name, error);
  if (v == NULL)
    return NULL;
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, info->ndim, info->shape, error);
  if (t != NULL)
    rv_cmd_upload (cmd, t, v, info->numel * sizeof (float));
  return t;
}

/* ---- text encoder ---- */

gboolean
rv_ref_handle_text_encoder (RvRefContext *ctx, GError **error)
{
  g_autoptr (RvCmd) cmd = NULL;
  RvClipText *net = network (ctx, "text_encoder", (LoadFunc) rv_clip_text_load,
                             (GDestroyNotify) rv_clip_text_free, &cmd, error);
  if (net == NULL)
    return FALSE;
  g_autoptr (GPtrArray) prefixes = forward_prefixes (ctx, "text_encoder");
  for (guint i = 0; i < prefixes->len; i++)
    {
      const char *prefix = prefixes->pdata[i];
      g_autofree char *ids_name = input_name (ctx, prefix, "input_ids", 0, error);
      const RvStTensor *info = ids_name ? rv_ref_lookup (ctx, ids_name) : NULL;
      if (info != NULL && info->ndim != 1 && info->ndim != 2)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s”: %s is not (B, L) token ids",
                       rv_ref_case (ctx)->name, ids_name);
          return FALSE;
        }
      g_autofree gint64 *ids64 = info ? rv_ref_get_i64 (ctx, ids_name, error) : NULL;
      if (ids64 == NULL)
        return FALSE;
      int batch = info->ndim == 2 ? info->shape[0] : 1, len = info->shape[info->ndim - 1];
      g_autofree gint32 *ids = g_new (gint32, info->numel);
      for (gint64 k = 0; k < info->numel; k++)
        ids[k] = (gint32) CLAMP (ids64[k], G_MININT32, G_MAXINT32);
      RvTensor *last = NULL, *embeds = NULL;
      if (!rv_clip_text_forward (net, cmd, ids, batch, len, &last, &embeds))
        return rv_cmd_submit (cmd, error);
      g_autofree char *last_name = g_strconcat (prefix, "out.last_hidden_state", NULL);
      g_autofree char *embeds_name = g_strconcat (prefix, "out.text_embeds", NULL);
      if (!put_tensors (ctx, cmd, 2, (const char *[]) { last_name, embeds_name },
                        (RvTensor *[]) { last, embeds }, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- image encoder ---- */

/* One forward; the outputs go to <prefix>out.* and, for the zero image, to
 * `embeds_name`. */
static gboolean
vision_forward (RvRefContext *ctx, RvCmd *cmd, RvClipVision *net, RvTensor *pixels,
                const char *prefix, const char *embeds_name, GError **error)
{
  RvTensor *embeds = NULL, *last = NULL;
  gboolean ok = rv_clip_vision_forward (net, cmd, pixels, &embeds, prefix ? &last : NULL);
  rv_tensor_free (pixels);
  if (!ok)
    return rv_cmd_submit (cmd, error);
  if (prefix == NULL)
    return put_tensors (ctx, cmd, 1, &embeds_name, &embeds, error);
  g_autofree char *name = g_strconcat (prefix, "out.image_embeds", NULL);
  g_autofree char *last_name = g_strconcat (prefix, "out.last_hidden_state", NULL);
  return put_tensors (ctx, cmd, 2, (const char *[]) { name, last_name },
                      (RvTensor *[]) { embeds, last }, error);
}

gboolean
rv_ref_handle_image_encoder (RvRefContext *ctx, GError **error)
{
  g_autoptr (RvCmd) cmd = NULL;
  RvClipVision *net = network (ctx, "image_encoder", (LoadFunc) rv_clip_vision_load,
                               (GDestroyNotify) rv_clip_vision_free, &cmd, error);
  if (net == NULL)
    return FALSE;
  g_autoptr (GPtrArray) prefixes = forward_prefixes (ctx, "image_encoder");
  for (guint i = 0; i < prefixes->len; i++)
    {
      g_autofree char *px_name = input_name (ctx, prefixes->pdata[i], "pixel_values", 0, error);
      RvTensor *px = px_name ? upload_nchw (ctx, cmd, px_name, error) : NULL;
      if (px == NULL || !vision_forward (ctx, cmd, net, px, prefixes->pdata[i], NULL, error))
        return FALSE;
    }

  /* the pipelines' pre.image_embeds, from the recorded pixel values */
  if (rv_ref_lookup (ctx, "pre.image_embeds") != NULL &&
      rv_ref_lookup (ctx, "pre.pixel_values") != NULL)
    {
      RvTensor *px = upload_nchw (ctx, cmd, "pre.pixel_values", error);
      if (px == NULL || !vision_forward (ctx, cmd, net, px, NULL, "pre.image_embeds", error))
        return FALSE;
    }

  /* the embedding of an all-zero image (the negative image embedding) */
  static const char *const zero_names[] = { "image_encoder.zero_embed", "pre.zero_image_embeds" };
  for (guint i = 0; i < G_N_ELEMENTS (zero_names); i++)
    {
      if (rv_ref_lookup (ctx, zero_names[i]) == NULL)
        continue;
      const RvClipVisionConfig *cfg = rv_clip_vision_config (net);
      RvTensor *px = rv_tensor_new_4d (rv_cmd_device (cmd), RV_DTYPE_F32, 1, cfg->image_size,
                                       cfg->image_size, cfg->num_channels, error);
      if (px == NULL)
        return FALSE;
      rv_cmd_fill_u32 (cmd, px, 0);
      if (!vision_forward (ctx, cmd, net, px, NULL, zero_names[i], error))
        return FALSE;
    }
  return TRUE;
}

/* ---- image processor ---- */

/* The processor on a recorded uint8 (H, W, 3) image, compared as (1, 3, H, W). */
static gboolean
process_image (RvRefContext *ctx, const RvImageProcessorConfig *cfg, const char *image_name,
               const char *out_name, GError **error)
{
  const RvStTensor *info = rv_ref_lookup (ctx, image_name);
  g_autofree gint64 *v = info ? rv_ref_get_i64 (ctx, image_name, error) : NULL;
  if (v == NULL)
    return FALSE;
  if (info->ndim != 3 || (info->shape[2] != 3 && info->shape[2] != 4))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Case “%s”: %s is not an H × W × 3 image",
                   rv_ref_case (ctx)->name, image_name);
      return FALSE;
    }
  g_autoptr (RvImage) img = rv_image_new (info->shape[1], info->shape[0], info->shape[2]);
  for (gint64 k = 0; k < info->numel; k++)
    img->pixels[k] = (guint8) CLAMP (v[k], 0, 255);
  int h, w;
  g_autofree float *hwc = rv_clip_preprocess (cfg, img, &h, &w, error);
  if (hwc == NULL)
    return FALSE;
  g_autofree float *chw = g_new (float, 3 * h * w);
  for (int k = 0; k < 3; k++)
    for (int p = 0; p < h * w; p++)
      chw[k * h * w + p] = hwc[p * 3 + k];
  rv_ref_put_f32 (ctx, out_name, chw, 4, (gint64[]) { 1, 3, h, w }, RV_REF_TOL_AUTO);
  return TRUE;
}

gboolean
rv_ref_handle_image_processor (RvRefContext *ctx, GError **error)
{
  g_autofree char *dir = component_folder (ctx, "image_processor", error);
  RvImageProcessorConfig cfg;
  if (dir == NULL || !rv_image_processor_config_load (dir, &cfg, error))
    return FALSE;
  g_autoptr (GPtrArray) prefixes = forward_prefixes (ctx, "image_processor");
  for (guint i = 0; i < prefixes->len; i++)
    {
      g_autofree char *name = input_name (ctx, prefixes->pdata[i], "image_uint8_hwc", 0, error);
      g_autofree char *out = g_strconcat (prefixes->pdata[i], "out.pixel_values", NULL);
      if (name == NULL || !process_image (ctx, &cfg, name, out, error))
        return FALSE;
    }
  /* the pipelines' pre.pixel_values of their input image */
  if (rv_ref_lookup (ctx, "pre.pixel_values") != NULL &&
      rv_ref_lookup (ctx, "in.image_uint8_hwc") != NULL)
    return process_image (ctx, &cfg, "in.image_uint8_hwc", "pre.pixel_values", error);
  return TRUE;
}

/* ---- prior ---- */

gboolean
rv_ref_handle_prior (RvRefContext *ctx, GError **error)
{
  g_autoptr (RvCmd) cmd = NULL;
  RvPrior *net = network (ctx, "prior", (LoadFunc) rv_prior_load, (GDestroyNotify) rv_prior_free,
                          &cmd, error);
  if (net == NULL)
    return FALSE;
  g_autoptr (GPtrArray) prefixes = forward_prefixes (ctx, "prior");
  for (guint i = 0; i < prefixes->len; i++)
    {
      const char *prefix = prefixes->pdata[i];
      g_autofree char *hs_name = input_name (ctx, prefix, "hidden_states", 0, error);
      g_autofree char *t_name = hs_name ? input_name (ctx, prefix, "timestep", 1, error) : NULL;
      g_autofree char *pe_name = t_name ? input_name (ctx, prefix, "proj_embedding", 2, error)
                                        : NULL;
      g_autofree char *ehs_name = pe_name ? input_name (ctx, prefix, "encoder_hidden_states", 3,
                                                        error) : NULL;
      if (ehs_name == NULL)
        return FALSE;
      g_autofree float *t = rv_ref_get_f32 (ctx, t_name, error);
      if (t == NULL)
        return FALSE;
      /* the mask is optional */
      g_autofree char *mask_name = g_strdup_printf ("%sin.attention_mask", prefix);
      const RvStTensor *mask_info = rv_ref_lookup (ctx, mask_name);
      g_autofree guint8 *mask = NULL;
      if (mask_info != NULL)
        {
          g_autofree gint64 *m = rv_ref_get_i64 (ctx, mask_name, error);
          if (m == NULL)
            return FALSE;
          mask = g_new (guint8, mask_info->numel);
          for (gint64 k = 0; k < mask_info->numel; k++)
            mask[k] = m[k] != 0;
        }
      RvTensor *hs = upload_f32 (ctx, cmd, hs_name, error);
      RvTensor *pe = hs ? upload_f32 (ctx, cmd, pe_name, error) : NULL;
      RvTensor *ehs = pe ? upload_f32 (ctx, cmd, ehs_name, error) : NULL;
      if (ehs == NULL)
        {
          rv_tensor_free (hs), rv_tensor_free (pe);
          return FALSE;
        }
      RvTensor *pred = rv_prior_forward (net, cmd, hs, t[0], pe, ehs, mask);
      rv_tensor_free (hs), rv_tensor_free (pe), rv_tensor_free (ehs);
      if (pred == NULL)
        return rv_cmd_submit (cmd, error);
      g_autofree char *pred_name = g_strconcat (prefix, "out.predicted_image_embedding", NULL);
      if (!put_tensors (ctx, cmd, 1, (const char *[]) { pred_name }, &pred, error))
        return FALSE;
    }

  /* prior.post_process: x·clip_std + clip_mean */
  const RvStTensor *pp = rv_ref_lookup (ctx, "prior.post_process.in");
  if (pp != NULL)
    {
      g_autofree float *x = rv_ref_get_f32 (ctx, "prior.post_process.in", error);
      if (x == NULL)
        return FALSE;
      int dim = rv_prior_config (net)->clip_embed_dim;
      if (pp->ndim != 2 || pp->shape[1] != dim)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "Case “%s”: prior.post_process.in is not (B, %d)", rv_ref_case (ctx)->name,
                       dim);
          return FALSE;
        }
      rv_prior_post_process (net, x, pp->shape[0]);
      rv_ref_put_f32 (ctx, "prior.post_process.out", x, 2, pp->shape, RV_REF_TOL_AUTO);
    }
  return TRUE;
}
