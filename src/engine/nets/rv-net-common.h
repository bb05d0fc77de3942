/* rv-net-common.h: what the networks share: uploading weights by checkpoint
 * name into the op layouts, and small forward helpers. */
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

/* The device dtype for matrix weights under a policy, given the file's dtype. */
RvDType   rv_weight_policy_dtype (RvDevice *dev, RvWeightPolicy policy, RvStDType stored);

/* A new f32 tensor on cmd's device, or NULL with the error recorded on cmd. */
RvTensor *rv_net_tensor (RvCmd *cmd, int ndim, const gint64 *shape);
#define RV_NET_TENSOR(cmd, ...) \
  rv_net_tensor ((cmd), (int) (sizeof ((const gint64[]) { __VA_ARGS__ }) / sizeof (gint64)), \
                 (const gint64[]) { __VA_ARGS__ })

G_END_DECLS
