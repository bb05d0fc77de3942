/* rv-movq-reference.c: check-reference handlers for the MoVQ codec: the
 * decode, quantize and encode forwards of the components case and every
 * recorded calls.movq_decode.<k> / calls.movq_encode.<k> of the pipeline
 * cases, each run from its recorded (NCHW) inputs. */
#include "rv-movq.h"
#include "rv-reference.h"

#include <string.h>

/* The MoVQ of a folder with its encoder, loaded once per run with fp32
 * weights as stored, and a command stream to run it on. */
typedef struct {
  RvCmd  *cmd;
  RvMovq *movq;
} Codec;

static void
codec_free (Codec *c)
{
  rv_movq_free (c->movq);
  rv_cmd_free (c->cmd);
  g_free (c);
}

static Codec *
cached_codec (RvRefContext *ctx, const char *relative, GError **error)
{
  g_autofree char *dir = rv_ref_model_folder (ctx, relative, error);
  if (dir == NULL)
    return NULL;
  g_autofree char *key = g_strconcat ("movq:", dir, NULL);
  Codec *c = rv_ref_cache_get (ctx, key);
  if (c != NULL)
    return c;
  RvDevice *dev = rv_ref_device (ctx, error);
  g_autoptr (RvCmd) cmd = dev ? rv_cmd_new (dev, error) : NULL;
  if (cmd == NULL)
    return NULL;
  RvMovq *m = rv_movq_load (cmd, dir, RV_WEIGHTS_AS_STORED, TRUE, error);
  if (m == NULL)
    return NULL;
  c = g_new0 (Codec, 1);
  c->cmd = g_steal_pointer (&cmd);
  c->movq = m;
  rv_ref_cache_set (ctx, key, c, (GDestroyNotify) codec_free);
  return c;
}

typedef enum { DECODE, ENCODE } Direction;

/* Runs the codec on host NHWC data x (B, H, W, C) and returns the result
 * NCHW (g_free) with its shape in `shape`. */
static float *
run_codec (Codec *c, Direction dir, const float *x, const gint64 in_shape[4], gint64 shape[4],
           GError **error)
{
  g_autoptr (RvTensor) t = rv_tensor_new (rv_cmd_device (c->cmd), RV_DTYPE_F32, 4, in_shape,
                                          error);
  if (t == NULL)
    return NULL;
  rv_cmd_upload (c->cmd, t, x, rv_tensor_nbytes (t));
  g_autoptr (RvTensor) y = dir == DECODE ? rv_movq_decode (c->movq, c->cmd, t)
                                         : rv_movq_encode (c->movq, c->cmd, t);
  g_autofree float *nhwc = y != NULL ? g_new (float, rv_tensor_numel (y)) : NULL;
  if (y != NULL)
    rv_cmd_download (c->cmd, y, nhwc, rv_tensor_nbytes (y));
  if (!rv_cmd_submit (c->cmd, error))
    return NULL;
  if (y == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "MoVQ: nothing was computed");
      return NULL;
    }
  shape[0] = y->shape[0];
  shape[1] = y->shape[3];
  shape[2] = y->shape[1];
  shape[3] = y->shape[2];
  return rv_ref_transpose_channels (nhwc, shape[0], shape[1], shape[2] * shape[3], FALSE);
}


/* out = decode or encode of the recorded input `in`. */
static gboolean
check_forward (RvRefContext *ctx, Codec *c, Direction dir, const char *in, const char *out,
               GError **error)
{
  gint64 in_shape[4], shape[4];
  g_autofree float *x = rv_ref_get_nhwc (ctx, in, in_shape, error);
  if (x == NULL)
    return FALSE;
  g_autofree float *y = run_codec (c, dir, x, in_shape, shape, error);
  if (y == NULL)
    return FALSE;
  rv_ref_put_f32 (ctx, out, y, 4, shape, RV_REF_TOL_AUTO);
  return TRUE;
}

/* components: movq.decode.out.sample_force_not_quantize from movq.decode.in.latents;
 * movq.quantize.out.{quant,indices} of those latents and
 * movq.decode.out.sample_quantized, the decode of the quantized latents;
 * movq.encode.out.latents from movq.encode.in.image. */
gboolean
rv_ref_handle_movq_components (RvRefContext *ctx, GError **error)
{
  JsonObject *p = rv_ref_params (ctx);
  JsonNode *folders = json_object_get_member (p, "model_folders");
  const char *folder = folders != NULL && JSON_NODE_HOLDS_OBJECT (folders)
                       ? json_object_get_string_member_with_default (
                           json_node_get_object (folders), "movq", NULL)
                       : NULL;
  Codec *c = cached_codec (ctx, folder != NULL ? folder : "movq", error);
  if (c == NULL)
    return FALSE;

  if (rv_ref_lookup (ctx, "movq.decode.in.latents") != NULL)
    {
      if (!check_forward (ctx, c, DECODE, "movq.decode.in.latents",
                          "movq.decode.out.sample_force_not_quantize", error))
        return FALSE;

      gint64 shape[4], out_shape[4];
      g_autofree float *z = rv_ref_get_nhwc (ctx, "movq.decode.in.latents", shape, error);
      if (z == NULL)
        return FALSE;
      gsize n = shape[0] * shape[1] * shape[2];
      g_autofree float *quant = g_new (float, n * shape[3]);
      g_autofree gint64 *indices = g_new (gint64, n);
      rv_movq_quantize (c->movq, z, n, quant, indices);
      g_autofree float *quant_nchw = rv_ref_transpose_channels (quant, shape[0], shape[3],
                                                         shape[1] * shape[2], FALSE);
      gint64 nchw[4] = { shape[0], shape[3], shape[1], shape[2] };
      rv_ref_put_f32 (ctx, "movq.quantize.out.quant", quant_nchw, 4, nchw, RV_REF_TOL_AUTO);
      rv_ref_put_i64 (ctx, "movq.quantize.out.indices", indices, 3, shape);
      g_autofree float *y = run_codec (c, DECODE, quant, shape, out_shape, error);
      if (y == NULL)
        return FALSE;
      rv_ref_put_f32 (ctx, "movq.decode.out.sample_quantized", y, 4, out_shape, RV_REF_TOL_AUTO);
    }
  if (rv_ref_lookup (ctx, "movq.encode.in.image") != NULL
      && !check_forward (ctx, c, ENCODE, "movq.encode.in.image", "movq.encode.out.latents", error))
    return FALSE;
  return TRUE;
}

/* Every calls.movq_decode.<k> (args.0 → out.sample) and calls.movq_encode.<k>
 * (args.0 → out.latents) of a pipeline case, with the MoVQ of
 * params.model_folder. */
gboolean
rv_ref_handle_movq_calls (RvRefContext *ctx, GError **error)
{
  const char *folder = json_object_get_string_member_with_default (rv_ref_params (ctx),
                                                                   "model_folder", NULL);
  if (folder == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "Case “%s”: params.model_folder is missing", rv_ref_case (ctx)->name);
      return FALSE;
    }
  g_autofree char *relative = g_build_filename (folder, "movq", NULL);
  Codec *c = cached_codec (ctx, relative, error);
  if (c == NULL)
    return FALSE;

  static const struct {
    const char *prefix, *output;
    Direction   dir;
  } kinds[] = {
    { "calls.movq_decode.", "out.sample", DECODE },
    { "calls.movq_encode.", "out.latents", ENCODE },
  };
  GArray *tensors = rv_ref_case (ctx)->tensors;
  for (guint i = 0; i < tensors->len; i++)
    {
      const char *name = g_array_index (tensors, RvRefTensorInfo, i).name;
      for (guint j = 0; j < G_N_ELEMENTS (kinds); j++)
        {
          if (!g_str_has_prefix (name, kinds[j].prefix) || !g_str_has_suffix (name, ".args.0"))
            continue;
          /* calls.<model>.<k>.args.0 → calls.<model>.<k>.<output> */
          g_autofree char *call = g_strndup (name, strlen (name) - strlen ("args.0"));
          g_autofree char *out = g_strconcat (call, kinds[j].output, NULL);
          if (!check_forward (ctx, c, kinds[j].dir, name, out, error))
            return FALSE;
        }
    }
  return TRUE;
}
