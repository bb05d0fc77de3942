/* rv-net-common.c: weight uploading and the weight-table walker shared by
 * the networks. */
#include "rv-net-common.h"

#include <stdarg.h>

/* Submit staged uploads every so often so staging memory stays bounded. */
#define FLUSH_BYTES ((guint64) 256 << 20)

RvDType
rv_weight_policy_dtype (RvDevice *dev, RvWeightPolicy policy, RvStDType stored)
{
  gboolean f16_ok = rv_device_caps (dev)->storage16;
  switch (policy)
    {
    case RV_WEIGHTS_F32:
      return RV_DTYPE_F32;
    case RV_WEIGHTS_AS_STORED:
      return stored == RV_ST_F16 && f16_ok ? RV_DTYPE_F16 : RV_DTYPE_F32;
    case RV_WEIGHTS_AUTO:
    default:
      return f16_ok ? RV_DTYPE_F16 : RV_DTYPE_F32;
    }
}

void
rv_loader_init (RvLoader *l, RvCmd *cmd, RvWeights *weights, RvWeightPolicy policy)
{
  l->cmd = cmd;
  l->weights = weights;
  l->matrix_dtype = rv_weight_policy_dtype (rv_cmd_device (cmd), policy,
                                            rv_weights_main_dtype (weights));
  l->error = NULL;
  l->bytes = l->pending = 0;
}

static void
account (RvLoader *l, RvTensor *t)
{
  if (t == NULL)
    return;
  l->bytes += rv_tensor_nbytes (t);
  l->pending += rv_tensor_nbytes (t);
  if (l->pending >= FLUSH_BYTES)
    {
      l->pending = 0;
      if (!rv_cmd_submit (l->cmd, &l->error))
        return;
    }
}

static float *
fetch (RvLoader *l, const char *name, const RvStTensor **info)
{
  if (l->error != NULL)
    return NULL;
  *info = rv_weights_lookup (l->weights, name);
  if (*info == NULL)
    {
      g_set_error (&l->error, RV_ERROR, RV_ERROR_MODEL, "%s: the tensor “%s” is missing",
                   rv_weights_describe (l->weights), name);
      return NULL;
    }
  return rv_weights_get_f32 (l->weights, name, &l->error);
}

RvTensor *
rv_load_linear (RvLoader *l, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const RvStTensor *info = NULL;
  g_autofree float *data = fetch (l, name, &info);
  if (data == NULL)
    return NULL;
  if (info->ndim != 2 && !(info->ndim == 4 && info->shape[2] == 1 && info->shape[3] == 1))
    {
      g_set_error (&l->error, RV_ERROR, RV_ERROR_MODEL, "%s: “%s” is not a matrix",
                   rv_weights_describe (l->weights), name);
      return NULL;
    }
  RvTensor *t = rv_weight_linear (l->cmd, data, info->shape[0], info->shape[1], l->matrix_dtype,
                                  &l->error);
  account (l, t);
  return t;
}

RvTensor *
rv_load_conv (RvLoader *l, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const RvStTensor *info = NULL;
  g_autofree float *data = fetch (l, name, &info);
  if (data == NULL)
    return NULL;
  if (info->ndim != 4)
    {
      g_set_error (&l->error, RV_ERROR, RV_ERROR_MODEL, "%s: “%s” is not a convolution kernel",
                   rv_weights_describe (l->weights), name);
      return NULL;
    }
  RvTensor *t = rv_weight_conv (l->cmd, data, info->shape[0], info->shape[1], info->shape[2],
                                info->shape[3], l->matrix_dtype, &l->error);
  account (l, t);
  return t;
}

RvTensor *
rv_load_plain (RvLoader *l, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const RvStTensor *info = NULL;
  g_autofree float *data = fetch (l, name, &info);
  if (data == NULL)
    return NULL;
  gint64 shape[RV_MAX_DIMS];
  int ndim = 0;
  gint64 numel = 1;
  for (int i = 0; i < info->ndim; i++)
    numel *= info->shape[i];
  if (info->ndim == 0)
    shape[ndim++] = 1;
  else if (info->ndim <= RV_MAX_DIMS)
    for (int i = 0; i < info->ndim; i++)
      shape[ndim++] = info->shape[i];
  else
    shape[ndim++] = numel;
  RvTensor *t = rv_weight_plain (l->cmd, data, ndim, shape, RV_DTYPE_F32, &l->error);
  account (l, t);
  return t;
}

float *
rv_load_host (RvLoader *l, gint64 *numel, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const RvStTensor *info = NULL;
  float *data = fetch (l, name, &info);
  if (data != NULL && numel != NULL)
    {
      *numel = 1;
      for (int i = 0; i < info->ndim; i++)
        *numel *= info->shape[i];
    }
  return data;
}

gboolean
rv_loader_finish (RvLoader *l, GError **error)
{
  if (l->error == NULL)
    rv_cmd_submit (l->cmd, &l->error);
  if (l->error != NULL)
    {
      g_propagate_error (error, l->error);
      l->error = NULL;
      return FALSE;
    }
  return TRUE;
}

/* "prefix.name", or the name alone for a model's own weights */
static char *
spec_name (const char *prefix, const RvWeightSpec *s)
{
  return prefix[0] ? g_strconcat (prefix, ".", s->name, NULL) : g_strdup (s->name);
}

static gpointer
spec_load (RvLoader *l, const RvWeightSpec *s, const char *name)
{
  switch (s->kind)
    {
    case RV_WEIGHT_LINEAR:
      return rv_load_linear (l, "%s", name);
    case RV_WEIGHT_CONV:
      return rv_load_conv (l, "%s", name);
    case RV_WEIGHT_POINTWISE:
      {
        /* (in, out) is the layout of a 1×1 convolution: run it as one */
        RvTensor *t = rv_load_linear (l, "%s", name);
        if (t != NULL)
          rv_tensor_reshape (t, 4, (const gint64[]) { 1, 1, t->shape[0], t->shape[1] });
        return t;
      }
    case RV_WEIGHT_HOST:
      return rv_load_host (l, NULL, "%s", name);
    case RV_WEIGHT_MAPPED:
      return l->error == NULL ? (gpointer) rv_weights_lookup (l->weights, name) : NULL;
    case RV_WEIGHT_PLAIN:
    default:
      return rv_load_plain (l, "%s", name);
    }
}

void
rv_weights_walk (RvWeightWalk *w, gpointer block, const char *prefix, const RvWeightSpec *table,
                 guint n, guint flags, const gint64 *sizes)
{
  for (guint i = 0; i < n; i++)
    {
      const RvWeightSpec *s = &table[i];
      gpointer *field = G_STRUCT_MEMBER_P (block, s->offset);
      if (w->mode == RV_WALK_CLEAR)
        {
          if (s->kind == RV_WEIGHT_HOST)
            g_clear_pointer (field, g_free);
          else if (s->kind == RV_WEIGHT_MAPPED)
            *field = NULL;
          else
            g_clear_pointer ((RvTensor **) field, rv_tensor_free);
          continue;
        }
      if ((s->when & flags) != s->when)
        continue;
      g_autofree char *name = spec_name (prefix, s);
      if (w->mode == RV_WALK_LOAD)
        {
          *field = spec_load (w->loader, s, name);
          continue;
        }
      gint64 shape[4];
      int ndim = 0;
      for (; ndim < 4 && s->shape[ndim] != 0; ndim++)
        shape[ndim] = s->shape[ndim] > 0 ? s->shape[ndim] : sizes[-s->shape[ndim]];
      rv_manifest_add (w->manifest, ndim, shape, "%s", name);
    }
}

gboolean
rv_weights_load_walk (RvCmd *cmd, RvWeights *weights, RvWeightPolicy policy,
                      void (*walk) (RvWeightWalk *w, gpointer net), gpointer net,
                      guint64 *bytes, GError **error)
{
  g_autoptr (RvManifest) manifest = rv_manifest_new ();
  RvWeightWalk w = { RV_WALK_MANIFEST, manifest, NULL };
  walk (&w, net);
  if (!rv_weights_check (weights, manifest, error))
    return FALSE;
  RvLoader l;
  rv_loader_init (&l, cmd, weights, policy);
  w = (RvWeightWalk) { RV_WALK_LOAD, NULL, &l };
  walk (&w, net);
  if (bytes != NULL)
    *bytes = l.bytes;
  if (!rv_loader_finish (&l, error))
    {
      rv_weights_clear_walk (walk, net);
      return FALSE;
    }
  return TRUE;
}

void
rv_weights_clear_walk (void (*walk) (RvWeightWalk *w, gpointer net), gpointer net)
{
  RvWeightWalk w = { RV_WALK_CLEAR, NULL, NULL };
  walk (&w, net);
}

RvTensor *
rv_net_tensor (RvCmd *cmd, int ndim, const gint64 *shape)
{
  if (rv_cmd_failed (cmd))
    return NULL;
  GError *error = NULL;
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), RV_DTYPE_F32, ndim, shape, &error);
  if (t == NULL)
    rv_cmd_fail (cmd, error);
  return t;
}

void
rv_token_rows (RvCmd *cmd, RvTensor *rows, const RvTensor *x, const gint64 *index)
{
  gint64 b = x->shape[0], len = x->shape[1], c = x->shape[2];
  gsize row = c * sizeof (float);
  for (gint64 i = 0; i < b; i++)
    rv_cmd_copy (cmd, rows, i * row, x, (i * len + index[i]) * row, row);
}
