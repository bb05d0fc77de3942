/* rv-prior.h: the PriorTransformer (docs/model-spec.md §6). */
#pragma once

#include "rv-net-common.h"

G_BEGIN_DECLS

typedef struct _RvPrior RvPrior;

/* dir: the prior folder of the prior pipeline. */
RvPrior     *rv_prior_load (RvCmd *cmd, const char *dir, RvWeightPolicy policy, GError **error);
void         rv_prior_free (RvPrior *m);
const RvPriorConfig *rv_prior_config (RvPrior *m);
/* Returns the x₀ prediction (batch, embedding_dim) for
 *   hidden_states        (batch, embedding_dim)   noisy normalized embedding
 *   timestep             one value for the whole batch
 *   proj_embedding       (batch, embedding_dim)   text_embeds
 *   encoder_hidden_states (batch, tokens, embedding_dim) last_hidden_state
 *   attention_mask       host (batch, tokens), 1 = valid token, or NULL
 *                        (every token valid; attention stays causal)
 * all device f32 but the mask. NULL when recording failed. */
RvTensor    *rv_prior_forward (RvPrior *m, RvCmd *cmd, const RvTensor *hidden_states,
                               float timestep, const RvTensor *proj_embedding,
                               const RvTensor *encoder_hidden_states, const guint8 *attention_mask);
/* The same forward in two parts, for a sampling loop: the prefix (the text
 * tokens and the text embedding, which every step shares) once, then each
 * step. rv_prior_prefix_new returns NULL when the recording failed (error on
 * cmd) and also, with cmd still fine, when a row's first token is padding
 * (then early tokens see later ones, and rv_prior_forward must be used). */
typedef struct _RvPriorPrefix RvPriorPrefix;
RvPriorPrefix *rv_prior_prefix_new (RvPrior *m, RvCmd *cmd, const RvTensor *proj_embedding,
                                    const RvTensor *encoder_hidden_states,
                                    const guint8 *attention_mask);
RvTensor    *rv_prior_forward_prefixed (RvPrior *m, RvCmd *cmd, RvPriorPrefix *prefix,
                                        const RvTensor *hidden_states, float timestep);
void         rv_prior_prefix_free (RvPriorPrefix *prefix);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvPriorPrefix, rv_prior_prefix_free)

/* clip_mean and clip_std (embedding_dim floats each), host copies owned by m. */
const float *rv_prior_clip_mean (RvPrior *m);
const float *rv_prior_clip_std (RvPrior *m);
/* x (batch, clip_embed_dim) host values ← x·clip_std + clip_mean, the
 * pipeline's post-processing of the sampled embedding, in place. */
void         rv_prior_post_process (RvPrior *m, float *x, int batch);

G_END_DECLS
