/* rv-config.h: each component's config.json (preprocessor_config.json,
 * scheduler_config.json) read into a typed struct.
 *
 * Configs: keys that fix a network's sizes are required; option keys default
 * as in diffusers / transformers, so that configs written by older versions
 * (which lack newer keys) load. Unknown keys are ignored. A missing required
 * key, a wrong type or an unknown option value is an RV_ERROR_MODEL
 * naming the file and the key. JSON null means what None means to the library:
 * "none" where that is an option (encoder_hid_proj_type, mid_block_type, …),
 * else the default. */
#pragma once

#include "rv-ops.h"
#include "rv-safetensors.h"

G_BEGIN_DECLS

#define RV_MAX_BLOCKS 8
#define RV_BLOCK_NAME_MAX 48

/* ---- transformers configs ---- */

typedef struct {
  int   hidden_size;
  int   num_hidden_layers;
  int   num_attention_heads;
  int   intermediate_size;
  RvAct hidden_act;                 /* "gelu" (exact) or "quick_gelu" */
  float layer_norm_eps;
  int   projection_dim;
  int   vocab_size;
  int   max_position_embeddings;
  int   bos_token_id;
  int   eos_token_id;               /* 2 (legacy): pool at argmax(ids); else first eos */
  int   pad_token_id;
} RvClipTextConfig;

typedef struct {
  int   hidden_size;
  int   num_hidden_layers;
  int   num_attention_heads;
  int   intermediate_size;
  RvAct hidden_act;
  float layer_norm_eps;
  int   projection_dim;
  int   image_size;
  int   patch_size;
  int   num_channels;
} RvClipVisionConfig;

typedef enum {
  RV_RESAMPLE_NEAREST = 0,          /* PIL's numbering */
  RV_RESAMPLE_LANCZOS = 1,
  RV_RESAMPLE_BILINEAR = 2,
  RV_RESAMPLE_BICUBIC = 3,
  RV_RESAMPLE_BOX = 4,
  RV_RESAMPLE_HAMMING = 5,
} RvResample;

/* preprocessor_config.json of a CLIPImageProcessor */
typedef struct {
  gboolean   do_resize;
  int        shortest_edge;         /* resize the shorter side to this, or 0 when… */
  int        resize_height;         /* …size is {"height", "width"}: resize to exactly this */
  int        resize_width;
  RvResample resample;
  gboolean   do_center_crop;
  int        crop_height;
  int        crop_width;
  gboolean   do_rescale;
  double     rescale_factor;
  gboolean   do_normalize;
  float      image_mean[3];
  float      image_std[3];
  gboolean   do_convert_rgb;
} RvImageProcessorConfig;

/* ---- diffusers configs ---- */

typedef struct {
  int      num_attention_heads;
  int      attention_head_dim;
  int      num_layers;
  int      embedding_dim;
  int      num_embeddings;          /* text tokens */
  int      additional_embeddings;   /* proj, time, hidden, prd */
  int      time_embed_dim;          /* null -> inner dim (heads · head_dim) */
  int      embedding_proj_dim;      /* null -> embedding_dim */
  int      clip_embed_dim;          /* null -> embedding_dim */
  RvAct    time_embed_act_fn;       /* silu or gelu */
  gboolean norm_in;                 /* norm_in_type "layer" (null: none) */
  gboolean embedding_proj_norm;     /* embedding_proj_norm_type "layer" */
  gboolean encoder_hid_proj;        /* encoder_hid_proj_type "linear" (null: none) */
  gboolean added_prd;               /* added_emb_type "prd" (null: none) */
} RvPriorConfig;

typedef enum {
  RV_ADD_EMBED_NONE,
  RV_ADD_EMBED_TEXT,
  RV_ADD_EMBED_TEXT_IMAGE,
  RV_ADD_EMBED_TEXT_TIME,
  RV_ADD_EMBED_IMAGE,
  RV_ADD_EMBED_IMAGE_HINT,
} RvAddEmbedType;

typedef enum {
  RV_HID_PROJ_NONE,
  RV_HID_PROJ_TEXT,
  RV_HID_PROJ_TEXT_IMAGE,
  RV_HID_PROJ_IMAGE,
  RV_HID_PROJ_IP_IMAGE,
} RvHidProjType;

typedef enum {
  RV_CLASS_EMBED_NONE,
  RV_CLASS_EMBED_TIMESTEP,
  RV_CLASS_EMBED_IDENTITY,
  RV_CLASS_EMBED_PROJECTION,
  RV_CLASS_EMBED_SIMPLE_PROJECTION,
} RvClassEmbedType;

typedef enum {
  RV_TIME_SHIFT_DEFAULT,            /* h + emb */
  RV_TIME_SHIFT_SCALE_SHIFT,        /* GN(h)·(1 + scale) + shift */
} RvTimeShift;

/* UNet2DConditionModel. Per-block lists (int or list in the JSON) are
 * expanded to one value per down block; up blocks use them reversed. */
typedef struct {
  int              in_channels;
  int              out_channels;
  int              n_blocks;                         /* len (block_out_channels) */
  int              block_out_channels[RV_MAX_BLOCKS];
  char             down_block_types[RV_MAX_BLOCKS][RV_BLOCK_NAME_MAX];
  char             up_block_types[RV_MAX_BLOCKS][RV_BLOCK_NAME_MAX];
  char             mid_block_type[RV_BLOCK_NAME_MAX]; /* "" for none */
  int              layers_per_block[RV_MAX_BLOCKS];
  int              attention_head_dim[RV_MAX_BLOCKS];
  int              num_attention_heads[RV_MAX_BLOCKS]; /* null -> attention_head_dim, as diffusers */
  int              transformer_layers_per_block[RV_MAX_BLOCKS];
  gboolean         only_cross_attention[RV_MAX_BLOCKS];
  gboolean         mid_block_only_cross_attention;
  int              cross_attention_dim;              /* one value (per-block lists unsupported) */
  int              encoder_hid_dim;                  /* 0 when null */
  RvHidProjType    encoder_hid_dim_type;
  RvAddEmbedType   addition_embed_type;
  int              addition_embed_type_num_heads;
  RvClassEmbedType class_embed_type;
  RvTimeShift      resnet_time_scale_shift;
  RvAct            act_fn;
  int              norm_num_groups;                  /* 32 */
  float            norm_eps;                         /* 1e-5 */
  gboolean         flip_sin_to_cos;
  int              freq_shift;
  int              time_embedding_dim;               /* null -> 4 · block_out_channels[0] */
  RvAct            time_embedding_act_fn;            /* RV_ACT_NONE when null */
  gboolean         resnet_skip_time_act;
  float            resnet_out_scale_factor;
  int              conv_in_kernel;
  int              conv_out_kernel;
  gboolean         upcast_attention;
} RvUNetConfig;

/* VQModel (MoVQ) */
typedef struct {
  int      in_channels;
  int      out_channels;
  int      n_blocks;
  int      block_out_channels[RV_MAX_BLOCKS];
  char     down_block_types[RV_MAX_BLOCKS][RV_BLOCK_NAME_MAX];
  char     up_block_types[RV_MAX_BLOCKS][RV_BLOCK_NAME_MAX];
  int      layers_per_block;
  RvAct    act_fn;
  int      latent_channels;
  int      num_vq_embeddings;
  int      vq_embed_dim;            /* null -> latent_channels */
  int      norm_num_groups;
  gboolean norm_spatial;            /* norm_type "spatial" (else "group") */
  gboolean mid_block_add_attention;
  gboolean lookup_from_codebook;
  float    scaling_factor;          /* not applied by the Kandinsky pipelines */
} RvVQConfig;

typedef enum {
  RV_SCHEDULER_DDPM,
  RV_SCHEDULER_DDIM,
  RV_SCHEDULER_UNCLIP,
  RV_SCHEDULER_DPM_MULTISTEP,       /* DPMSolverMultistepScheduler */
} RvSchedulerKind;

typedef enum { RV_BETAS_LINEAR, RV_BETAS_SCALED_LINEAR, RV_BETAS_SQUAREDCOS_CAP_V2 } RvBetaSchedule;
typedef enum { RV_PREDICT_EPSILON, RV_PREDICT_SAMPLE, RV_PREDICT_V } RvPredictionType;
typedef enum {
  RV_VARIANCE_NONE,                 /* null (DPM-Solver) */
  RV_VARIANCE_FIXED_SMALL,
  RV_VARIANCE_FIXED_SMALL_LOG,
  RV_VARIANCE_FIXED_LARGE,
  RV_VARIANCE_FIXED_LARGE_LOG,
  RV_VARIANCE_LEARNED,
  RV_VARIANCE_LEARNED_RANGE,
} RvVarianceType;
typedef enum { RV_SPACING_LEADING, RV_SPACING_TRAILING, RV_SPACING_LINSPACE } RvTimestepSpacing;
typedef enum {
  RV_DPM_DPMSOLVER_PP,              /* "dpmsolver++" */
  RV_DPM_SDE_DPMSOLVER_PP,
  RV_DPM_DPMSOLVER,
  RV_DPM_SDE_DPMSOLVER,
} RvDpmAlgorithm;
typedef enum { RV_DPM_SOLVER_MIDPOINT, RV_DPM_SOLVER_HEUN } RvDpmSolverType;
typedef enum { RV_FINAL_SIGMA_ZERO, RV_FINAL_SIGMA_MIN } RvFinalSigmas;

/* Every key of the DDPM, DDIM, UnCLIP and DPM-Solver++ configs; defaults
 * depend on the kind as in diffusers. */
typedef struct {
  RvSchedulerKind   kind;
  int               num_train_timesteps;
  double            beta_start;
  double            beta_end;
  RvBetaSchedule    beta_schedule;
  RvPredictionType  prediction_type;
  RvVarianceType    variance_type;
  gboolean          clip_sample;
  double            clip_sample_range;
  gboolean          thresholding;
  double            dynamic_thresholding_ratio;
  double            sample_max_value;
  RvTimestepSpacing timestep_spacing;
  int               steps_offset;
  gboolean          rescale_betas_zero_snr;
  gboolean          set_alpha_to_one;             /* DDIM */
  /* DPM-Solver */
  int               solver_order;
  RvDpmAlgorithm    algorithm_type;
  RvDpmSolverType   solver_type;
  gboolean          lower_order_final;
  gboolean          euler_at_final;
  gboolean          use_karras_sigmas;
  gboolean          use_exponential_sigmas;
  gboolean          use_beta_sigmas;
  gboolean          use_lu_lambdas;
  RvFinalSigmas     final_sigmas_type;
  double            lambda_min_clipped;           /* may be -inf */
} RvSchedulerConfig;

/* Each config reads from a parsed JSON object (`origin` names it in
 * messages) or from a file. */
gboolean rv_clip_text_config_parse (JsonObject *o, const char *origin, RvClipTextConfig *c,
                                    GError **error);
gboolean rv_clip_vision_config_parse (JsonObject *o, const char *origin, RvClipVisionConfig *c,
                                      GError **error);
gboolean rv_image_processor_config_parse (JsonObject *o, const char *origin,
                                          RvImageProcessorConfig *c, GError **error);
gboolean rv_prior_config_parse (JsonObject *o, const char *origin, RvPriorConfig *c,
                                GError **error);
gboolean rv_unet_config_parse (JsonObject *o, const char *origin, RvUNetConfig *c,
                               GError **error);
gboolean rv_vq_config_parse (JsonObject *o, const char *origin, RvVQConfig *c, GError **error);
/* The kind comes from "_class_name" unless `kind` ≥ 0 forces one (a
 * DPM-Solver made with from_config of a DDPM config keeps DDPM's class name). */
gboolean rv_scheduler_config_parse (JsonObject *o, const char *origin, int kind,
                                    RvSchedulerConfig *c, GError **error);
const char *rv_scheduler_kind_name (RvSchedulerKind kind);   /* "DDPMScheduler" */

/* Read `dir`/config.json (preprocessor_config.json, scheduler_config.json). */
gboolean rv_clip_text_config_load (const char *dir, RvClipTextConfig *c, GError **error);
gboolean rv_clip_vision_config_load (const char *dir, RvClipVisionConfig *c, GError **error);
gboolean rv_image_processor_config_load (const char *dir, RvImageProcessorConfig *c,
                                         GError **error);
gboolean rv_prior_config_load (const char *dir, RvPriorConfig *c, GError **error);
gboolean rv_unet_config_load (const char *dir, RvUNetConfig *c, GError **error);
gboolean rv_vq_config_load (const char *dir, RvVQConfig *c, GError **error);
gboolean rv_scheduler_config_load (const char *dir, int kind, RvSchedulerConfig *c,
                                   GError **error);

G_END_DECLS
