/* rv-net-common.h: how the networks declare and upload their weights (the
 * loader, weight tables and their walker), and small forward helpers. */
#pragma once

#include "reverie.h"
#include "rv-ops.h"
#include "rv-model-files.h"

G_BEGIN_DECLS

/* Uploads one component's weights. Errors are sticky: after the first failure
 * every load returns NULL and rv_loader_finish reports it. Matrix weights
 * (linear, conv) follow the policy; biases, norms and embeddings stay f32. */
typedef struct {
  RvCmd          *cmd;
  RvWeights      *weights;
  RvDType         matrix_dtype;
  GError         *error;
  guint64         bytes;          /* uploaded so far */
  guint64         pending;        /* staged since the last submit */
} RvLoader;

void      rv_loader_init (RvLoader *l, RvCmd *cmd, RvWeights *weights, RvWeightPolicy policy);
/* linear weight (out, in) -> device (in, out) */
RvTensor *rv_load_linear (RvLoader *l, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
/* conv weight (out, in, kh, kw) -> device (kh, kw, in, out); 1×1 convs too */
RvTensor *rv_load_conv (RvLoader *l, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
/* any other tensor, f32, its shape as stored (a (O, I, 1, 1) conv kept as is) */
RvTensor *rv_load_plain (RvLoader *l, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
/* host copy of a tensor (g_free), e.g. clip_mean; NULL on error */
float    *rv_load_host (RvLoader *l, gint64 *numel, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
/* Submits the remaining uploads; FALSE with the first error. */
gboolean  rv_loader_finish (RvLoader *l, GError **error);

/* ---- weight tables ----
 * Every network declares its checkpoint tensors the same way: each block
 * type has one table of (name after the block's prefix, how it uploads,
 * its PyTorch shape in sizes the block resolves, the RvTensor * field it
 * fills). One walker reads a table three ways: listing the tensors with
 * their shapes in a manifest (checked before anything is uploaded),
 * uploading them into the struct, and freeing them. A network walks its
 * blocks in one function and calls it with each of the three modes, so the
 * names checked, the names loaded and the tensors freed cannot disagree. */

typedef enum {
  RV_WEIGHT_PLAIN,       /* f32, shape as stored (rv_load_plain) */
  RV_WEIGHT_LINEAR,      /* (out, in) -> (in, out) (rv_load_linear) */
  RV_WEIGHT_CONV,        /* (out, in, kh, kw) -> (kh, kw, in, out) (rv_load_conv) */
  RV_WEIGHT_POINTWISE,   /* a linear (out, in) run as a 1×1 conv: (1, 1, in, out) */
  RV_WEIGHT_HOST,        /* host f32 copy (float *, g_free) */
  RV_WEIGHT_MAPPED,      /* left in the file: the const RvStTensor * itself */
} RvWeightKind;

/* Symbolic sizes in a table's shapes are negative indices into the sizes
 * array the block passes (-1 … -RV_WEIGHT_SIZES + 1); positive ones are
 * literal. */
#define RV_WEIGHT_SIZES 16

typedef struct {
  gsize        offset;      /* of the field in the block's struct */
  const char  *name;        /* "conv1.weight" */
  RvWeightKind kind;
  guint        when;        /* 0: always; else only when the walk's flags have all these bits */
  gint64       shape[4];    /* PyTorch shape, 0-terminated */
} RvWeightSpec;

#define RV_WEIGHT(type, field, name, kind, when, ...) \
  { G_STRUCT_OFFSET (type, field), name, kind, when, { __VA_ARGS__ } }

typedef enum { RV_WALK_MANIFEST, RV_WALK_LOAD, RV_WALK_CLEAR } RvWalkMode;

typedef struct {
  RvWalkMode  mode;
  RvManifest *manifest;     /* RV_WALK_MANIFEST */
  RvLoader   *loader;       /* RV_WALK_LOAD */
} RvWeightWalk;

/* The tensors of one block: `prefix` ("down_blocks.0.resnets.1", or "" for
 * a model's own), the table, the flags selecting optional entries, and the
 * symbolic sizes (sizes[-S] for S). */
void      rv_weights_walk (RvWeightWalk *w, gpointer block, const char *prefix,
                           const RvWeightSpec *table, guint n, guint flags, const gint64 *sizes);
#define RV_WEIGHTS_WALK(w, block, prefix, table, flags, sizes) \
  rv_weights_walk ((w), (block), (prefix), (table), G_N_ELEMENTS (table), (flags), (sizes))

/* Loads a network's weights from `weights`: walk (MANIFEST), check the
 * files, walk (LOAD), finish. On failure the walk is run again with CLEAR.
 * *bytes (optional): device bytes uploaded. */
gboolean  rv_weights_load_walk (RvCmd *cmd, RvWeights *weights, RvWeightPolicy policy,
                                void (*walk) (RvWeightWalk *w, gpointer net), gpointer net,
                                guint64 *bytes, GError **error);
/* Frees what a walk loaded. */
void      rv_weights_clear_walk (void (*walk) (RvWeightWalk *w, gpointer net), gpointer net);

/* The device dtype for matrix weights under a policy, given the file's dtype. */
RvDType   rv_weight_policy_dtype (RvDevice *dev, RvWeightPolicy policy, RvStDType stored);

/* A new f32 tensor on cmd's device, or NULL with the error recorded on cmd. */
RvTensor *rv_net_tensor (RvCmd *cmd, int ndim, const gint64 *shape);
#define RV_NET_TENSOR(cmd, ...) \
  rv_net_tensor ((cmd), (int) (sizeof ((const gint64[]) { __VA_ARGS__ }) / sizeof (gint64)), \
                 (const gint64[]) { __VA_ARGS__ })
/* rows (B, C) = x[b, index[b], :] of tokens x (B, L, C), by copies. */
void      rv_token_rows (RvCmd *cmd, RvTensor *rows, const RvTensor *x, const gint64 *index);

G_END_DECLS
