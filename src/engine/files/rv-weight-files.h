/* rv-weight-files.h: a component's weights in safetensors files, and the
 * manifest of tensors its config implies, checked before anything is uploaded. */
#pragma once

#include "reverie.h"
#include "rv-safetensors.h"

G_BEGIN_DECLS

/* A network's expected tensors: name and PyTorch shape. */
typedef struct _RvManifest RvManifest;

RvManifest *rv_manifest_new (void);
void        rv_manifest_free (RvManifest *m);
/* RV_SHAPE (a, b, …) expands to the ndim and shape arguments. */
#define RV_SHAPE(...) \
  (int) (sizeof ((const gint64[]) { __VA_ARGS__ }) / sizeof (gint64)), (const gint64[]) { __VA_ARGS__ }
/* Expects a tensor of this shape, named by printf: 
 *   rv_manifest_add (m, RV_SHAPE (c, c), "encoder.layers.%d.self_attn.q_proj.weight", i); */
void        rv_manifest_add (RvManifest *m, int ndim, const gint64 *shape, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);
guint       rv_manifest_size (const RvManifest *m);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvManifest, rv_manifest_free)

/* The weights of one component folder: model.safetensors or
 * diffusion_pytorch_model.safetensors, else the *.fp16.safetensors variant,
 * else a sharded *.safetensors.index.json. Pickled weights (.bin, .ckpt, .pt,
 * .pth) are refused with instructions to convert them. */
typedef struct _RvWeights RvWeights;

RvWeights        *rv_weights_open (const char *dir, GError **error);
void              rv_weights_free (RvWeights *w);
/* The file(s), for messages: "DIR/model.safetensors". */
const char       *rv_weights_describe (RvWeights *w);
/* A tensor by name, NULL if absent. Legacy attention names (query, key,
 * value, proj_attn) and current ones (to_q, to_k, to_v, to_out.0) find each
 * other. The tensor's dtype tells F16 weights apart. */
const RvStTensor *rv_weights_lookup (RvWeights *w, const char *name);
/* Host f32 values of a float tensor (g_free); an error names the tensor. */
float            *rv_weights_get_f32 (RvWeights *w, const char *name, GError **error);
/* Checks every tensor of the manifest for presence and shape, before anything
 * is uploaded: one error listing the missing tensors and the shape mismatches
 * (the first few of each, with counts). A (O, I, 1, 1) tensor matches an
 * expected (O, I). Extra tensors in the files are ignored. */
gboolean          rv_weights_check (RvWeights *w, const RvManifest *m, GError **error);
/* From now on rv_weights_open makes up random f16 weights (seed ≠ 0) for
 * every tensor a network's manifest names, instead of reading files: for
 * measuring a full-size model from its config.json files alone. 0 = files. */
void              rv_weights_use_random (guint64 seed);
/* The dtype most of the float weights have (RV_ST_F16 for an fp16 variant). */
RvStDType         rv_weights_main_dtype (RvWeights *w);
/* Whether a file name is a pickled checkpoint (.bin, .ckpt, .pth, .pt,
 * .pkl, .pickle, any case): never read, never downloaded. */
gboolean          rv_weights_name_is_pickled (const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvWeights, rv_weights_free)

G_END_DECLS
