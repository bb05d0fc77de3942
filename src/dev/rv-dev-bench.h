/* rv-dev-bench.h: timing of recorded ops for `reverie-dev bench ops`. */
#pragma once

#include "rv-device.h"
#include "rv-ops.h"

G_BEGIN_DECLS

typedef struct _RvBench RvBench;

/* Records the op under test once on cmd (tensors prepared by the caller). */
typedef void (*RvBenchFn) (RvCmd *cmd, gpointer data);

RvBench  *rv_bench_new (RvDevice *dev, gboolean json, const char *filter, GError **error);
void      rv_bench_free (RvBench *b);
RvDevice *rv_bench_device (RvBench *b);
RvCmd    *rv_bench_cmd (RvBench *b);
/* FALSE if the filter excludes this op (skip preparing its tensors). */
gboolean  rv_bench_wanted (RvBench *b, const char *op, const char *shape);
/* Runs fn once to warm up (kernel compilation), then enough times to fill
 * about a quarter second, and prints time per call, GFLOP/s and GB/s from
 * the GPU timestamps (wall clock where the device has none). */
void      rv_bench_op (RvBench *b, const char *op, const char *shape, double flops,
                       double bytes, RvBenchFn fn, gpointer data);
/* Prints the collected rows as JSON when the bench was created with json. */
void      rv_bench_finish (RvBench *b);

/* Op families, one per source file. */
void      rv_bench_ops_gemm (RvBench *b);
void      rv_bench_ops_attention (RvBench *b);
void      rv_bench_ops_basic (RvBench *b);

G_END_DECLS
