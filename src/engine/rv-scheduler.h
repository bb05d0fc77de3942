/* rv-scheduler.h: diffusion schedulers on the host, in the reference's float32
 * arithmetic: UnCLIP (the prior), DDPM, DDIM and DPM-Solver++ 2M (the decoder). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum {
  RV_SCHEDULER_DDPM,
  RV_SCHEDULER_DDIM,
  RV_SCHEDULER_DPMPP_2M,
  RV_SCHEDULER_UNCLIP,
} RvSchedulerKind;

typedef enum {
  RV_BETAS_LINEAR,
  RV_BETAS_SCALED_LINEAR,
  RV_BETAS_COSINE,           /* squaredcos_cap_v2 */
} RvBetaSchedule;

typedef enum {
  RV_PREDICT_EPSILON,
  RV_PREDICT_SAMPLE,
  RV_PREDICT_V,
} RvPrediction;

typedef enum {
  RV_VARIANCE_FIXED_SMALL,
  RV_VARIANCE_FIXED_SMALL_LOG,
  RV_VARIANCE_FIXED_LARGE,
  RV_VARIANCE_LEARNED_RANGE,
} RvVarianceType;

typedef enum {
  RV_SPACING_LEADING,
  RV_SPACING_LINSPACE,
  RV_SPACING_TRAILING,
} RvSpacing;

typedef struct {
  RvSchedulerKind kind;
  int             num_train_timesteps;
  RvBetaSchedule  beta_schedule;
  float           beta_start, beta_end;
  RvPrediction    prediction;
  RvVarianceType  variance;
  gboolean        clip_sample;
  float           clip_sample_range;
  int             steps_offset;
  RvSpacing       spacing;
  gboolean        set_alpha_to_one;      /* DDIM */
  int             solver_order;          /* DPM-Solver++: 1 or 2 */
  gboolean        lower_order_final;
  gboolean        euler_at_final;
  gboolean        final_sigma_zero;      /* final_sigmas_type "zero" (else sigma_min) */
} RvSchedulerConfig;

/* Defaults of the diffusers class of that kind. */
void         rv_scheduler_config_init (RvSchedulerConfig *cfg, RvSchedulerKind kind);
/* Reads a scheduler_config.json object on top of the class defaults; unknown
 * keys are ignored, options the engine does not implement are an error. */
gboolean     rv_scheduler_config_parse (RvSchedulerConfig *cfg, RvSchedulerKind kind,
                                        JsonObject *obj, GError **error);
gboolean     rv_scheduler_config_load (RvSchedulerConfig *cfg, RvSchedulerKind kind,
                                       const char *path, GError **error);
/* "ddpm", "ddim", "dpmpp" (also "dpm++", "dpmsolver++"), "unclip" */
gboolean     rv_scheduler_kind_from_name (const char *name, RvSchedulerKind *kind);
const char  *rv_scheduler_kind_name (RvSchedulerKind kind);

typedef struct _RvScheduler RvScheduler;

RvScheduler *rv_scheduler_new (const RvSchedulerConfig *cfg, GError **error);
void         rv_scheduler_free (RvScheduler *s);
const RvSchedulerConfig *rv_scheduler_config (RvScheduler *s);

/* Chooses n inference steps; resets multistep history. */
gboolean     rv_scheduler_set_timesteps (RvScheduler *s, int n, GError **error);
const gint64 *rv_scheduler_timesteps (RvScheduler *s, int *n);
/* Tables (num_train_timesteps entries). */
const float *rv_scheduler_alphas_cumprod (RvScheduler *s);
const float *rv_scheduler_betas (RvScheduler *s);
/* DPM-Solver++ sigmas (n + 1 entries), NULL for other kinds. */
const float *rv_scheduler_sigmas (RvScheduler *s, int *n);

/* Whether step `index` draws standard-normal noise (then `noise` must hold
 * `len` draws for rv_scheduler_step). */
gboolean     rv_scheduler_step_needs_noise (RvScheduler *s, int index);

/* One step at position `index` of the timestep list: sample (len floats) is
 * replaced by the previous sample. For UnCLIP the previous timestep is the
 * next list entry (t − 1 after the last). Steps must run in order from the
 * first index used (img2img may start in the middle). */
void         rv_scheduler_step (RvScheduler *s, int index, const float *model_output,
                                float *sample, gsize len, const float *noise);

/* The clean-sample estimate x₀ of step `index` from its model output (for
 * previews); written to x0. */
void         rv_scheduler_predict_x0 (RvScheduler *s, int index, const float *model_output,
                                      const float *sample, float *x0, gsize len);

/* sqrt(acp[t])·x0 + sqrt(1 − acp[t])·noise */
void         rv_scheduler_add_noise (RvScheduler *s, gint64 t, const float *x0,
                                     const float *noise, float *out, gsize len);

/* Single UnCLIP step with an explicit previous timestep (−1 = none), as the
 * diffusers scheduler's step(prev_timestep=…). */
void         rv_scheduler_unclip_step (RvScheduler *s, gint64 t, gint64 prev_t,
                                       const float *model_output, float *sample, gsize len,
                                       const float *noise);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvScheduler, rv_scheduler_free)

G_END_DECLS
