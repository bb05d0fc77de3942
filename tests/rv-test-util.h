/* rv-test-util.h: shared helpers for the engine tests: a validated device,
 * random inputs, poisoned outputs and normalized errors. */
#pragma once

#include <glib.h>
#include "rv-device.h"
#include "rv-ops.h"

G_BEGIN_DECLS

/* The device under test (REVERIE_DEVICE or the best one), created once.
 * REVERIE_VALIDATION=1 (set by the meson tests) loads the validation layer. */
RvDevice *rv_test_device (void);
/* A command stream on the test device, one per test process. */
RvCmd    *rv_test_cmd (void);

/* Registers a GTest case that fails if the validation layer reported
 * anything while it ran. */
void      rv_test_add (const char *path, void (*func) (void));

/* n uniform values in [lo, hi) from a GRand seeded per test. */
float    *rv_test_random (GRand *rand, gint64 n, float lo, float hi);
/* host f32 -> new device tensor of dtype (f32 / f16 / i32 from values) */
RvTensor *rv_test_tensor (RvDType dtype, int ndim, const gint64 *shape, const float *data);
/* A new f32 tensor filled with NaN, so unwritten outputs show. */
RvTensor *rv_test_output (int ndim, const gint64 *shape);
/* Submits the stream and returns the tensor's values as f32 (g_free). */
float    *rv_test_download (RvTensor *t);
/* Rounds host values through f16, as an f16 weight upload does. */
void      rv_test_round_f16 (float *data, gint64 n);

/* ||got − ref||₂ / ||ref||₂ in double; +inf if got has a NaN or Inf. When
 * ||ref|| is 0 the absolute norm is returned. */
double    rv_test_rel_err (const float *got, const double *ref, gint64 n);
/* Asserts rel_err ≤ tol with a readable message naming `what`. */
void      rv_test_assert_close (const char *what, const float *got, const double *ref, gint64 n,
                                double tol);

/* The in-tree reference set (REVERIE_REFERENCE_DIR, set by the meson tests to
 * tests/reference/kandinsky-2-2-tiny), and a path inside it. The set is part
 * of the repository, so a missing path fails the test. */
char     *rv_test_reference_dir (void);
char     *rv_test_reference_path (const char *first, ...) G_GNUC_NULL_TERMINATED;

G_END_DECLS
