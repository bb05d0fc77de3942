/* rv-ops-private.h: helpers shared by the op implementations. */
#pragma once

#include "rv-ops.h"

G_BEGIN_DECLS

/* The kernel, or NULL with the error recorded on the stream. */
RvKernel *_rv_op_kernel (RvCmd *cmd, const char *module, const char *bindings,
                         const guint32 *spec, guint n_spec);

/* Workgroup counts covering n invocations of `local` threads in a 1-d
 * index space that may exceed the x limit: index = (gy·gx + gx_id)·local + lid. */
void      _rv_grid_1d (RvCmd *cmd, gint64 n, guint local, guint32 *gx, guint32 *gy);

/* Records "op: message" as an invalid-argument error; returns FALSE. */
gboolean  _rv_op_invalid (RvCmd *cmd, const char *op, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

/* Checks shared by most ops: tensors on cmd's device, no earlier error.
 * Returns FALSE (quietly) when recording should be skipped. */
gboolean  _rv_op_begin (RvCmd *cmd);

/* Size of dims [from, to) */
gint64    _rv_dims (const RvTensor *t, int from, int to);

G_END_DECLS
