/* rv-scheduler.h: diffusion schedulers on the host, in the reference's float32
 * arithmetic: UnCLIP (the prior), DDPM, DDIM and DPM-Solver++ 2M (the decoder). */
#pragma once

#include "rv-model-files.h"

G_BEGIN_DECLS

/* The configuration (RvSchedulerConfig, every key of the diffusers classes)
 * is read by rv_scheduler_config_load in rv-model-files.h. */

/* "ddpm", "ddim", "dpmpp" (also "dpm++", "dpmsolver++"), "unclip", or a
 * diffusers class name */
gboolean     rv_scheduler_kind_from_name (const char *name, RvSchedulerKind *kind);
const char  *rv_scheduler_short_name (RvSchedulerKind kind);

typedef struct _RvScheduler RvScheduler;

/* An error if the configuration asks for something not implemented
 * (thresholding, Karras sigmas, SDE variants, …). `kind` overrides the
 * config's class, as diffusers' from_config does. */
RvScheduler *rv_scheduler_new (const RvSchedulerConfig *cfg, RvSchedulerKind kind, GError **error);
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
