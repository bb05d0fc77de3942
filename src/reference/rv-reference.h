/* rv-reference.h: the reference-case runner. Reads a folder in the golden
 * format (cases.json, cases/<case>.safetensors, models/…; docs/reference-format.md),
 * runs each case through the engine with case handlers, and compares what
 * they compute with the recorded tensors (relative L2 error in double, or
 * exact for integer tensors).
 *
 * A case's checked tensors are its "output" tensors and the "intermediate"
 * ones that are results rather than recorded inputs: calls.<m>.<k>.out.*
 * (except commit_loss), step_latents.*, timesteps and pre.*. Each is PASS,
 * FAIL, or NOT RUN when no handler produces it yet.
 *
 * Adding a handler
 *
 *   1. Write  gboolean handle_x (RvRefContext *ctx, GError **error)
 *      It reads the case's params (rv_ref_params) and recorded tensors
 *      (rv_ref_get_f32, rv_ref_get_i64, rv_ref_lookup), finds model folders
 *      with rv_ref_model_folder, the Vulkan device with rv_ref_device, keeps
 *      loaded networks across cases with rv_ref_cache_get/_set, and hands
 *      every tensor it computes to rv_ref_put_f32 / rv_ref_put_i64 under its
 *      recorded name. Everything comes from the case (sizes, steps, configs):
 *      nothing about a particular reference set is assumed. Returning FALSE
 *      with an error fails the tensors the handler covers.
 *   2. Add one row to handlers[] in rv-reference.c: case kind and/or case
 *      name (NULL = any), the prefix of the tensor names it produces, and the
 *      function. A handler defined elsewhere is declared at the end of this
 *      header.
 *
 * Tolerances (rv_ref_tolerance), from cases.json "comparison" when present:
 * single forwards single_forward_fp32 (1e-4); full loops full_loop_latents
 * (1e-3) for step_latents.*, pipeline out.* and calls.movq_decode.*.out.*;
 * integer tensors exact. A handler may pass its own (e.g. 0 for x/127.5 − 1). */
#pragma once

#include "rv-device.h"
#include "rv-safetensors.h"

G_BEGIN_DECLS

typedef struct {
  char   *name;
  char   *role;                  /* "input", "intermediate", "output" */
  char   *dtype;                 /* "float32", "int64", "uint8" */
  int     ndim;
  gint64  shape[RV_ST_MAX_DIMS];
} RvRefTensorInfo;

typedef struct {
  char       *name;
  char       *kind;              /* "component", "scheduler", "pipeline" */
  char       *description;
  JsonObject *params;
  char       *file;              /* full path of the case's safetensors file */
  char       *sha256;            /* or NULL */
  GArray     *tensors;           /* RvRefTensorInfo */
} RvRefCase;

/* ---- a reference folder ---- */

typedef struct _RvRefSet RvRefSet;

RvRefSet        *rv_ref_set_open (const char *dir, GError **error);
void             rv_ref_set_free (RvRefSet *set);
const char      *rv_ref_set_dir (RvRefSet *set);
JsonObject      *rv_ref_set_index (RvRefSet *set);      /* all of cases.json */
/* The format_version this reader knows for the set's format: 2 for the
 * pipeline format (docs/reference-format.md), 1 for the upscaler format
 * (tests/reference/real-esrgan-tiny/README.md). */
gint64           rv_ref_set_known_version (RvRefSet *set);
guint            rv_ref_set_n_cases (RvRefSet *set);
const RvRefCase *rv_ref_set_case (RvRefSet *set, guint i);
const RvRefCase *rv_ref_set_find (RvRefSet *set, const char *name);
/* A model folder named relative to the set ("models/x", "x/tokenizer" where
 * x is the last part of an entry of cases.json "models"), or NULL. */
char            *rv_ref_set_resolve (RvRefSet *set, const char *relative);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvRefSet, rv_ref_set_free)

/* ---- running ---- */

typedef enum {
  RV_REF_PASS,
  RV_REF_FAIL,
  RV_REF_NOT_RUN,
} RvRefStatus;

typedef struct {
  char        *name;
  RvRefStatus  status;
  gboolean     exact;            /* integer comparison */
  double       error;            /* relative L2, or the number of differing values */
  double       tolerance;
  double       max_abs;          /* largest absolute difference */
  gint64       numel;
  char        *handler;          /* which handler produced it */
  char        *note;             /* why it failed or did not run */
} RvRefResult;

typedef struct {
  const RvRefCase *rcase;
  RvRefStatus      status;       /* FAIL if any fails; NOT_RUN if any did not run */
  GArray          *results;      /* RvRefResult, in the case's tensor order */
  double           seconds;
  char            *error;        /* the case could not be read, or NULL */
} RvRefCaseResult;

typedef struct _RvRefRun RvRefRun;

/* device_selector as rv_device_new; the device is created when a handler
 * first needs it. */
RvRefRun        *rv_ref_run_new (RvRefSet *set, const char *device_selector);
void             rv_ref_run_free (RvRefRun *run);
RvRefCaseResult *rv_ref_run_case (RvRefRun *run, const RvRefCase *rcase);
void             rv_ref_case_result_free (RvRefCaseResult *r);
const char      *rv_ref_status_name (RvRefStatus status);   /* "PASS" */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvRefRun, rv_ref_run_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvRefCaseResult, rv_ref_case_result_free)

/* ---- for handlers ---- */

typedef struct _RvRefContext RvRefContext;
typedef gboolean (*RvRefHandlerFunc) (RvRefContext *ctx, GError **error);

#define RV_REF_TOL_AUTO (-1.0)

const RvRefCase  *rv_ref_case (RvRefContext *ctx);
RvRefSet         *rv_ref_set (RvRefContext *ctx);
JsonObject       *rv_ref_params (RvRefContext *ctx);
/* A recorded tensor of the case, or NULL. */
const RvStTensor *rv_ref_lookup (RvRefContext *ctx, const char *name);
/* Recorded values (g_free); an error if absent or of the wrong kind. */
float            *rv_ref_get_f32 (RvRefContext *ctx, const char *name, GError **error);
gint64           *rv_ref_get_i64 (RvRefContext *ctx, const char *name, GError **error);
/* rv_ref_set_resolve, with an error naming the case when not found. */
char             *rv_ref_model_folder (RvRefContext *ctx, const char *relative, GError **error);
RvDevice         *rv_ref_device (RvRefContext *ctx, GError **error);
/* Anything expensive to load, kept for the whole run under a key. */
gpointer          rv_ref_cache_get (RvRefContext *ctx, const char *key);
void              rv_ref_cache_set (RvRefContext *ctx, const char *key, gpointer data,
                                    GDestroyNotify destroy);
/* The default tolerance of a tensor of this case. */
double            rv_ref_tolerance (RvRefContext *ctx, const char *name);
/* Computed values to compare with the recorded tensor `name` (copied).
 * tolerance: RV_REF_TOL_AUTO or a relative L2 bound. */
void              rv_ref_put_f32 (RvRefContext *ctx, const char *name, const float *data,
                                  int ndim, const gint64 *shape, double tolerance);
void              rv_ref_put_i64 (RvRefContext *ctx, const char *name, const gint64 *data,
                                  int ndim, const gint64 *shape);

/* (B, C, H, W) ↔ (B, H, W, C) on the host (g_free); `to_nhwc` picks the direction. */
float            *rv_ref_transpose_channels (const float *x, gint64 b, gint64 c, gint64 hw,
                                             gboolean to_nhwc);
/* The recorded NCHW float tensor `name` as NHWC (g_free), with its NHWC shape. */
float            *rv_ref_get_nhwc (RvRefContext *ctx, const char *name, gint64 shape[4],
                                   GError **error);

/* ---- handlers defined in other files ---- */

/* super-resolution networks (rv-upscaler-reference.c): cases of kind
 * "upscale", the Real-ESRGAN family's reference format */
gboolean          rv_ref_handle_upscaler (RvRefContext *ctx, GError **error);

/* decoder UNet (rv-unet-reference.c) */
gboolean          rv_ref_handle_unet_components (RvRefContext *ctx, GError **error);
gboolean          rv_ref_handle_unet_calls (RvRefContext *ctx, GError **error);

/* MoVQ codec (rv-movq-reference.c) */
gboolean          rv_ref_handle_movq_components (RvRefContext *ctx, GError **error);
gboolean          rv_ref_handle_movq_calls (RvRefContext *ctx, GError **error);

/* CLIP encoders, image processor, prior (rv-clip-prior-reference.c):
 * each handles <model>.* of `components` and every calls.<model>.<k>.*; the
 * processor and the image encoder also pre.pixel_values, pre.image_embeds
 * and pre.zero_image_embeds */
gboolean          rv_ref_handle_text_encoder (RvRefContext *ctx, GError **error);
gboolean          rv_ref_handle_image_encoder (RvRefContext *ctx, GError **error);
gboolean          rv_ref_handle_image_processor (RvRefContext *ctx, GError **error);
gboolean          rv_ref_handle_prior (RvRefContext *ctx, GError **error);

/* schedulers and whole pipelines (rv-pipeline-reference.c) */
gboolean          rv_ref_handle_schedulers (RvRefContext *ctx, GError **error);
gboolean          rv_ref_handle_pipeline (RvRefContext *ctx, GError **error);

G_END_DECLS
