/* test-model-files.c: configs (golden folders, cases.json, defaults of older
 * files, errors), weights (variants, shards, legacy names, manifests,
 * pickles), pipeline folders and model sets. */
#include "rv-model-files.h"
#include "rv-reference.h"
#include "rv-test-util.h"
#include "rv-tokenizer.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* ---- helpers ---- */

#define PRIOR "models", "kandinsky-2-2-prior-tiny"
#define DECODER "models", "kandinsky-2-2-decoder-tiny"
#define INPAINT "models", "kandinsky-2-2-decoder-inpaint-tiny"

#define NEED(var, ...) \
  g_autofree char *var = rv_test_reference_path (__VA_ARGS__, NULL)

/* A new folder in the test's temporary folder (G_TEST_OPTION_ISOLATE_DIRS). */
static char *
tmp_dir (const char *name)
{
  char *path = g_build_filename (g_get_user_cache_dir (), name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (path, 0700), ==, 0);
  return path;
}

static void
write_text (const char *dir, const char *name, const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GError) error = NULL;
  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

static JsonNode *
parse (const char *text)
{
  g_autoptr (GError) error = NULL;
  JsonNode *n = rv_json_parse (text, strlen (text), "test.json", &error);
  g_assert_no_error (error);
  return n;
}

#define OBJ(node) json_node_get_object (node)

/* A parse that must fail with a message mentioning each of `words`. */
static void
expect_message (GError *error, const char *const *words)
{
  g_assert_error (error, RV_ERROR, RV_ERROR_MODEL);
  g_test_message ("%s", error->message);
  for (guint i = 0; words[i] != NULL; i++)
    if (strstr (error->message, words[i]) == NULL)
      g_error ("“%s” does not mention “%s”", error->message, words[i]);
}

/* A float tensor for rv_safetensors_save, values i * scale. */
typedef struct {
  const char *name;
  RvStDType   dtype;
  int         ndim;
  gint64      shape[4];
} Spec;

static void
write_weights (const char *dir, const char *file, const Spec *specs, guint n)
{
  g_autofree RvStTensor *t = g_new0 (RvStTensor, n);
  g_autoptr (GPtrArray) buffers = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < n; i++)
    {
      gint64 numel = 1;
      for (int d = 0; d < specs[i].ndim; d++)
        numel *= specs[i].shape[d];
      gsize size = rv_st_dtype_size (specs[i].dtype);
      guint8 *data = g_malloc0 (MAX (numel * size, 1));
      for (gint64 k = 0; k < numel; k++)
        {
          float v = (float) k * 0.5f;
          if (specs[i].dtype == RV_ST_F32)
            memcpy (data + 4 * k, &v, 4);
          else if (specs[i].dtype == RV_ST_F16)
            {
              guint16 h = rv_f32_to_f16 (v);
              memcpy (data + 2 * k, &h, 2);
            }
          else if (specs[i].dtype == RV_ST_I64)
            memcpy (data + 8 * k, &k, 8);
        }
      g_ptr_array_add (buffers, data);
      t[i] = (RvStTensor) { .name = specs[i].name, .dtype = specs[i].dtype,
                            .ndim = specs[i].ndim, .data = data, .nbytes = numel * size };
      memcpy (t[i].shape, specs[i].shape, sizeof specs[i].shape);
    }
  g_autofree char *path = g_build_filename (dir, file, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (rv_safetensors_save (path, t, n, NULL, &error));
  g_assert_no_error (error);
}

/* ---- configs ---- */

static void
test_golden_configs (void)
{
  NEED (prior, PRIOR);
  NEED (decoder, DECODER);
  NEED (inpaint, INPAINT);
  g_autoptr (GError) error = NULL;
  g_autofree char *text_dir = g_build_filename (prior, "text_encoder", NULL);
  RvClipTextConfig text;
  g_assert_true (rv_clip_text_config_load (text_dir, &text, &error));
  g_assert_no_error (error);
  g_assert_cmpint (text.hidden_size, ==, 32);
  g_assert_cmpint (text.num_hidden_layers, ==, 5);
  g_assert_cmpint (text.num_attention_heads, ==, 4);
  g_assert_cmpint (text.intermediate_size, ==, 37);
  g_assert_cmpint (text.hidden_act, ==, RV_ACT_GELU);
  g_assert_cmpfloat (text.layer_norm_eps, ==, 1e-5f);
  g_assert_cmpint (text.max_position_embeddings, ==, 77);
  g_assert_cmpint (text.vocab_size, ==, 49408);
  g_assert_cmpint (text.projection_dim, ==, 32);
  g_assert_cmpint (text.eos_token_id, ==, 2);

  g_autofree char *vision_dir = g_build_filename (prior, "image_encoder", NULL);
  RvClipVisionConfig vision;
  g_assert_true (rv_clip_vision_config_load (vision_dir, &vision, &error));
  g_assert_cmpint (vision.image_size, ==, 224);
  g_assert_cmpint (vision.patch_size, ==, 14);
  g_assert_cmpint (vision.num_channels, ==, 3);
  g_assert_cmpint (vision.hidden_act, ==, RV_ACT_GELU);

  g_autofree char *proc_dir = g_build_filename (prior, "image_processor", NULL);
  RvImageProcessorConfig proc;
  g_assert_true (rv_image_processor_config_load (proc_dir, &proc, &error));
  g_assert_cmpint (proc.shortest_edge, ==, 224);
  g_assert_cmpint (proc.crop_height, ==, 224);
  g_assert_cmpint (proc.crop_width, ==, 224);
  g_assert_cmpint (proc.resample, ==, RV_RESAMPLE_BICUBIC);
  g_assert_cmpfloat (fabs (proc.rescale_factor - 1 / 255.0), <, 1e-12);
  g_assert_cmpfloat (proc.image_mean[1], ==, 0.4578275f);
  g_assert_cmpfloat (proc.image_std[2], ==, 0.27577711f);
  g_assert_true (proc.do_resize && proc.do_center_crop && proc.do_normalize && proc.do_rescale);

  g_autofree char *prior_dir = g_build_filename (prior, "prior", NULL);
  RvPriorConfig p;
  g_assert_true (rv_prior_config_load (prior_dir, &p, &error));
  g_assert_cmpint (p.num_attention_heads, ==, 2);
  g_assert_cmpint (p.attention_head_dim, ==, 12);
  g_assert_cmpint (p.num_layers, ==, 2);
  g_assert_cmpint (p.embedding_dim, ==, 32);
  g_assert_cmpint (p.num_embeddings, ==, 77);
  g_assert_cmpint (p.additional_embeddings, ==, 4);
  g_assert_cmpint (p.time_embed_dim, ==, 24);
  g_assert_cmpint (p.clip_embed_dim, ==, 32);
  g_assert_cmpint (p.embedding_proj_dim, ==, 32);
  g_assert_cmpint (p.time_embed_act_fn, ==, RV_ACT_SILU);
  g_assert_true (p.added_prd && p.encoder_hid_proj && !p.norm_in && !p.embedding_proj_norm);

  g_autofree char *unet_dir = g_build_filename (decoder, "unet", NULL);
  RvUNetConfig u;
  g_assert_true (rv_unet_config_load (unet_dir, &u, &error));
  g_assert_cmpint (u.in_channels, ==, 4);
  g_assert_cmpint (u.out_channels, ==, 8);
  g_assert_cmpint (u.n_blocks, ==, 2);
  g_assert_cmpint (u.block_out_channels[1], ==, 64);
  g_assert_cmpstr (u.down_block_types[0], ==, "ResnetDownsampleBlock2D");
  g_assert_cmpstr (u.down_block_types[1], ==, "SimpleCrossAttnDownBlock2D");
  g_assert_cmpstr (u.up_block_types[0], ==, "SimpleCrossAttnUpBlock2D");
  g_assert_cmpstr (u.mid_block_type, ==, "UNetMidBlock2DSimpleCrossAttn");
  g_assert_cmpint (u.layers_per_block[0], ==, 1);
  g_assert_cmpint (u.attention_head_dim[1], ==, 4);
  g_assert_cmpint (u.num_attention_heads[1], ==, 4);
  g_assert_cmpint (u.cross_attention_dim, ==, 32);
  g_assert_cmpint (u.encoder_hid_dim, ==, 32);
  g_assert_cmpint (u.encoder_hid_dim_type, ==, RV_HID_PROJ_IMAGE);
  g_assert_cmpint (u.addition_embed_type, ==, RV_ADD_EMBED_IMAGE);
  g_assert_cmpint (u.class_embed_type, ==, RV_CLASS_EMBED_NONE);
  g_assert_cmpint (u.resnet_time_scale_shift, ==, RV_TIME_SHIFT_SCALE_SHIFT);
  g_assert_cmpint (u.norm_num_groups, ==, 32);
  g_assert_cmpfloat (u.norm_eps, ==, 1e-5f);
  g_assert_cmpint (u.time_embedding_dim, ==, 128);
  g_assert_cmpint (u.time_embedding_act_fn, ==, RV_ACT_NONE);
  g_assert_true (u.flip_sin_to_cos && u.freq_shift == 0 && !u.only_cross_attention[0]);

  g_autofree char *inpaint_unet = g_build_filename (inpaint, "unet", NULL);
  RvUNetConfig ui;
  g_assert_true (rv_unet_config_load (inpaint_unet, &ui, &error));
  g_assert_cmpint (ui.in_channels, ==, 9);

  g_autofree char *movq_dir = g_build_filename (decoder, "movq", NULL);
  RvVQConfig v;
  g_assert_true (rv_vq_config_load (movq_dir, &v, &error));
  g_assert_cmpint (v.n_blocks, ==, 2);
  g_assert_cmpstr (v.up_block_types[0], ==, "AttnUpDecoderBlock2D");
  g_assert_cmpint (v.norm_num_groups, ==, 8);
  g_assert_true (v.norm_spatial && v.mid_block_add_attention);
  g_assert_cmpint (v.latent_channels, ==, 4);
  g_assert_cmpint (v.vq_embed_dim, ==, 4);
  g_assert_cmpint (v.num_vq_embeddings, ==, 12);

  g_autofree char *ddpm_dir = g_build_filename (decoder, "scheduler", NULL);
  RvSchedulerConfig s;
  g_assert_true (rv_scheduler_config_load (ddpm_dir, -1, &s, &error));
  g_assert_no_error (error);
  g_assert_cmpint (s.kind, ==, RV_SCHEDULER_DDPM);
  g_assert_cmpfloat (s.beta_start, ==, 0.00085);
  g_assert_cmpfloat (s.beta_end, ==, 0.012);
  g_assert_cmpint (s.beta_schedule, ==, RV_BETAS_LINEAR);
  g_assert_cmpint (s.variance_type, ==, RV_VARIANCE_FIXED_SMALL);
  g_assert_cmpint (s.timestep_spacing, ==, RV_SPACING_LEADING);
  g_assert_cmpint (s.steps_offset, ==, 1);
  g_assert_false (s.clip_sample);

  g_autofree char *unclip_dir = g_build_filename (prior, "scheduler", NULL);
  g_assert_true (rv_scheduler_config_load (unclip_dir, -1, &s, &error));
  g_assert_cmpint (s.kind, ==, RV_SCHEDULER_UNCLIP);
  g_assert_cmpint (s.beta_schedule, ==, RV_BETAS_SQUAREDCOS_CAP_V2);
  g_assert_cmpint (s.prediction_type, ==, RV_PREDICT_SAMPLE);
  g_assert_cmpint (s.variance_type, ==, RV_VARIANCE_FIXED_SMALL_LOG);
  g_assert_cmpfloat (s.clip_sample_range, ==, 10.0);
  g_assert_true (s.clip_sample);
}

/* cases.json's constructor configs (fewer keys, ints for sizes, "-inf")
 * give the same structs as the folders' config files. */
static void
test_cases_json_configs (void)
{
  NEED (index_path, "cases.json");
  NEED (prior, PRIOR);
  NEED (decoder, DECODER);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) root = rv_json_load_object (index_path, &error);
  g_assert_no_error (error);
  JsonObject *configs = json_object_get_object_member (OBJ (root), "configs");

  RvClipTextConfig t1, t2;
  g_autofree char *text_dir = g_build_filename (prior, "text_encoder", NULL);
  g_assert_true (rv_clip_text_config_load (text_dir, &t1, &error));
  g_assert_true (rv_clip_text_config_parse (json_object_get_object_member (configs, "text_encoder"),
                                            "cases.json", &t2, &error));
  g_assert_cmpmem (&t1, sizeof t1, &t2, sizeof t2);

  RvUNetConfig u1, u2;
  g_autofree char *unet_dir = g_build_filename (decoder, "unet", NULL);
  g_assert_true (rv_unet_config_load (unet_dir, &u1, &error));
  g_assert_true (rv_unet_config_parse (json_object_get_object_member (configs, "unet"),
                                       "cases.json", &u2, &error));
  g_assert_cmpmem (&u1, sizeof u1, &u2, sizeof u2);

  RvPriorConfig p1, p2;
  g_autofree char *prior_dir = g_build_filename (prior, "prior", NULL);
  g_assert_true (rv_prior_config_load (prior_dir, &p1, &error));
  g_assert_true (rv_prior_config_parse (json_object_get_object_member (configs, "prior"),
                                        "cases.json", &p2, &error));
  g_assert_cmpmem (&p1, sizeof p1, &p2, sizeof p2);

  RvVQConfig v1, v2;
  g_autofree char *movq_dir = g_build_filename (decoder, "movq", NULL);
  g_assert_true (rv_vq_config_load (movq_dir, &v1, &error));
  g_assert_true (rv_vq_config_parse (json_object_get_object_member (configs, "movq"),
                                     "cases.json", &v2, &error));
  g_assert_cmpmem (&v1, sizeof v1, &v2, sizeof v2);

  RvImageProcessorConfig i1, i2;   /* size/crop_size as ints here */
  g_autofree char *proc_dir = g_build_filename (prior, "image_processor", NULL);
  g_assert_true (rv_image_processor_config_load (proc_dir, &i1, &error));
  g_assert_true (rv_image_processor_config_parse (
    json_object_get_object_member (configs, "image_processor"), "cases.json", &i2, &error));
  g_assert_cmpmem (&i1, sizeof i1, &i2, sizeof i2);

  /* the prior scheduler without _class_name or beta_schedule: UnCLIP defaults */
  RvSchedulerConfig s1, s2;
  g_autofree char *unclip_dir = g_build_filename (prior, "scheduler", NULL);
  g_assert_true (rv_scheduler_config_load (unclip_dir, -1, &s1, &error));
  g_assert_true (rv_scheduler_config_parse (
    json_object_get_object_member (configs, "prior_scheduler"), "cases.json",
    RV_SCHEDULER_UNCLIP, &s2, &error));
  g_assert_cmpmem (&s1, sizeof s1, &s2, sizeof s2);
  g_assert_no_error (error);

  /* every scheduler config of every case parses; DPM-Solver++ has "-inf" */
  JsonArray *cases = json_object_get_array_member (OBJ (root), "cases");
  guint n_dpm = 0;
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonObject *params = json_object_get_object_member (json_array_get_object_element (cases, i),
                                                          "params");
      g_autoptr (GList) keys = json_object_get_members (params);
      for (GList *l = keys; l != NULL; l = l->next)
        {
          const char *key = l->data;
          if (!g_str_has_suffix (key, "scheduler_config") && !g_str_has_suffix (key, "_scheduler"))
            continue;
          JsonObject *cfg = json_object_get_object_member (params, key);
          /* "ddim_scheduler", or "scheduler_config" with params.scheduler "ddim" */
          const char *name = strcmp (key, "scheduler_config") == 0
                             ? json_object_get_string_member (params, "scheduler") : key;
          int kind = g_str_has_prefix (name, "dpmpp") ? RV_SCHEDULER_DPM_MULTISTEP
                     : g_str_has_prefix (name, "ddim") ? RV_SCHEDULER_DDIM
                     : g_str_has_prefix (name, "ddpm") ? RV_SCHEDULER_DDPM : RV_SCHEDULER_UNCLIP;
          g_assert_true (rv_scheduler_config_parse (cfg, key, kind, &s1, &error));
          g_assert_no_error (error);
          if (kind == RV_SCHEDULER_DPM_MULTISTEP)
            {
              g_assert_cmpfloat (s1.lambda_min_clipped, ==, -INFINITY);
              g_assert_cmpint (s1.algorithm_type, ==, RV_DPM_DPMSOLVER_PP);
              g_assert_cmpint (s1.solver_order, ==, 2);
              g_assert_cmpint (s1.final_sigmas_type, ==, RV_FINAL_SIGMA_ZERO);
              g_assert_cmpint (s1.timestep_spacing, ==, RV_SPACING_LEADING);
              n_dpm++;
            }
        }
    }
  g_assert_cmpuint (n_dpm, >=, 2);
}

/* Configs written by older library versions lack newer keys. */
static void
test_config_defaults (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) prior = parse ("{\"num_attention_heads\": 2, \"attention_head_dim\": 3, "
                                      "\"num_layers\": 1, \"embedding_dim\": 8}");
  RvPriorConfig p;
  g_assert_true (rv_prior_config_parse (OBJ (prior), "prior.json", &p, &error));
  g_assert_cmpint (p.time_embed_dim, ==, 6);
  g_assert_cmpint (p.clip_embed_dim, ==, 8);
  g_assert_cmpint (p.num_embeddings, ==, 77);
  g_assert_cmpint (p.additional_embeddings, ==, 4);
  g_assert_true (p.added_prd && p.encoder_hid_proj && !p.norm_in);
  /* null is None: no projection, no prd token (not the default) */
  g_autoptr (JsonNode) nulls = parse ("{\"num_attention_heads\": 2, \"attention_head_dim\": 3, "
                                      "\"num_layers\": 1, \"embedding_dim\": 8, "
                                      "\"encoder_hid_proj_type\": null, \"added_emb_type\": null, "
                                      "\"norm_in_type\": \"layer\", \"time_embed_dim\": null, "
                                      "\"time_embed_act_fn\": \"gelu\"}");
  g_assert_true (rv_prior_config_parse (OBJ (nulls), "prior.json", &p, &error));
  g_assert_true (!p.added_prd && !p.encoder_hid_proj && p.norm_in);
  g_assert_cmpint (p.time_embed_dim, ==, 6);
  g_assert_cmpint (p.time_embed_act_fn, ==, RV_ACT_GELU);

  g_autoptr (JsonNode) unet = parse (
    "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8, 16, 16],"
    " \"down_block_types\": [\"A\", \"B\", \"C\"], \"up_block_types\": [\"C\", \"B\", \"A\"],"
    " \"layers_per_block\": [1, 2, 3], \"attention_head_dim\": [2, 4, 8],"
    " \"num_attention_heads\": null, \"only_cross_attention\": true,"
    " \"mid_block_type\": null, \"encoder_hid_dim\": 12, \"act_fn\": \"swish\","
    " \"transformer_layers_per_block\": [1, 1, 2], \"time_embedding_act_fn\": \"gelu\"}");
  RvUNetConfig u;
  g_assert_true (rv_unet_config_parse (OBJ (unet), "unet.json", &u, &error));
  g_assert_no_error (error);
  g_assert_cmpint (u.n_blocks, ==, 3);
  g_assert_cmpint (u.layers_per_block[2], ==, 3);
  g_assert_cmpint (u.attention_head_dim[1], ==, 4);
  g_assert_cmpint (u.num_attention_heads[2], ==, 8);
  g_assert_cmpint (u.transformer_layers_per_block[2], ==, 2);
  g_assert_true (u.only_cross_attention[0] && u.only_cross_attention[2]);
  g_assert_true (u.mid_block_only_cross_attention);
  g_assert_cmpstr (u.mid_block_type, ==, "");
  g_assert_cmpint (u.encoder_hid_dim_type, ==, RV_HID_PROJ_TEXT);
  g_assert_cmpint (u.act_fn, ==, RV_ACT_SILU);
  g_assert_cmpint (u.time_embedding_act_fn, ==, RV_ACT_GELU);
  g_assert_cmpint (u.norm_num_groups, ==, 32);
  g_assert_cmpfloat (u.norm_eps, ==, 1e-5f);
  g_assert_cmpint (u.time_embedding_dim, ==, 32);
  g_assert_cmpint (u.cross_attention_dim, ==, 1280);
  g_assert_cmpint (u.resnet_time_scale_shift, ==, RV_TIME_SHIFT_DEFAULT);

  g_autoptr (JsonNode) text = parse ("{\"hidden_size\": 64, \"num_hidden_layers\": 2, "
                                     "\"num_attention_heads\": 4, \"intermediate_size\": 256}");
  RvClipTextConfig t;
  g_assert_true (rv_clip_text_config_parse (OBJ (text), "text.json", &t, &error));
  g_assert_cmpint (t.hidden_act, ==, RV_ACT_QUICK_GELU);
  g_assert_cmpint (t.eos_token_id, ==, 49407);
  g_assert_cmpint (t.max_position_embeddings, ==, 77);

  g_autoptr (JsonNode) proc = parse ("{\"size\": {\"height\": 256, \"width\": 320}, "
                                     "\"crop_size\": 200, \"image_mean\": 0.5, "
                                     "\"image_std\": [0.25], \"do_center_crop\": false}");
  RvImageProcessorConfig ip;
  g_assert_true (rv_image_processor_config_parse (OBJ (proc), "pp.json", &ip, &error));
  g_assert_cmpint (ip.shortest_edge, ==, 0);
  g_assert_cmpint (ip.resize_height, ==, 256);
  g_assert_cmpint (ip.resize_width, ==, 320);
  g_assert_cmpint (ip.crop_height, ==, 200);
  g_assert_cmpfloat (ip.image_mean[2], ==, 0.5f);
  g_assert_cmpfloat (ip.image_std[1], ==, 0.25f);
  g_assert_false (ip.do_center_crop);

  /* Python's json.dumps writes -Infinity */
  g_autoptr (JsonNode) dpm = parse ("{\"_class_name\": \"DPMSolverMultistepScheduler\", "
                                    "\"lambda_min_clipped\": -Infinity, \"beta_end\": 0.012, "
                                    "\"beta_start\": 0.00085}");
  RvSchedulerConfig s;
  g_assert_true (rv_scheduler_config_parse (OBJ (dpm), "s.json", -1, &s, &error));
  g_assert_cmpint (s.kind, ==, RV_SCHEDULER_DPM_MULTISTEP);
  g_assert_true (isinf (s.lambda_min_clipped) && s.lambda_min_clipped < 0);
  g_assert_cmpint (s.timestep_spacing, ==, RV_SPACING_LINSPACE);
  g_assert_cmpint (s.variance_type, ==, RV_VARIANCE_NONE);
  g_assert_false (s.clip_sample);
  g_assert_true (s.lower_order_final);
  g_autoptr (JsonNode) ddim = parse ("{\"_class_name\": \"DDIMScheduler\"}");
  g_assert_true (rv_scheduler_config_parse (OBJ (ddim), "s.json", -1, &s, &error));
  g_assert_true (s.set_alpha_to_one && s.clip_sample);
  g_assert_cmpint (s.steps_offset, ==, 0);
  g_assert_cmpstr (rv_scheduler_kind_name (s.kind), ==, "DDIMScheduler");
}

static void
test_config_errors (void)
{
  static const struct { int type; const char *json; const char *words[4]; } cases[] = {
    { 0, "{\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 8}",
      { "hidden_size", "missing" } },
    { 0, "{\"hidden_size\": \"64\", \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8}", { "hidden_size", "integer" } },
    { 0, "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8, \"hidden_act\": \"relu\"}", { "hidden_act", "“relu”", "gelu" } },
    { 0, "{\"hidden_size\": 66, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8}", { "hidden_size", "multiple" } },
    { 0, "{\"hidden_size\": 0, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8}", { "hidden_size", "outside" } },
    { 0, "{\"hidden_size\": 64, \"num_hidden_layers\": 2.5, \"num_attention_heads\": 4, "
         "\"intermediate_size\": 8}", { "num_hidden_layers" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8, 16], "
         "\"down_block_types\": [\"A\"], \"up_block_types\": [\"A\", \"B\"], "
         "\"layers_per_block\": 1}", { "down_block_types", "entries" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8, 16], "
         "\"down_block_types\": [\"A\", \"B\"], \"up_block_types\": [\"A\", \"B\"]}",
      { "layers_per_block", "missing" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [1,2,3,4,5,6,7,8,9], "
         "\"down_block_types\": [], \"up_block_types\": [], \"layers_per_block\": 1}",
      { "block_out_channels", "9" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8], "
         "\"down_block_types\": [\"A\"], \"up_block_types\": [\"A\"], \"layers_per_block\": 1, "
         "\"attention_head_dim\": [1, 2]}", { "attention_head_dim", "blocks" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8], "
         "\"down_block_types\": [\"A\"], \"up_block_types\": [\"A\"], \"layers_per_block\": 1, "
         "\"flip_sin_to_cos\": 1}", { "flip_sin_to_cos", "true or false" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8], "
         "\"down_block_types\": [\"A\"], \"up_block_types\": [\"A\"], \"layers_per_block\": 1, "
         "\"time_embedding_type\": \"fourier\"}", { "time_embedding_type", "positional" } },
    { 1, "{\"in_channels\": 4, \"out_channels\": 4, \"block_out_channels\": [8], "
         "\"down_block_types\": [7], \"up_block_types\": [\"A\"], \"layers_per_block\": 1}",
      { "down_block_types", "strings" } },
    { 2, "{\"block_out_channels\": [8], \"down_block_types\": [\"A\"], "
         "\"up_block_types\": [\"A\"], \"latent_channels\": 4, \"norm_type\": \"batch\"}",
      { "norm_type", "spatial" } },
    { 3, "{\"beta_schedule\": \"linear\"}", { "_class_name", "missing" } },
    { 3, "{\"_class_name\": \"EulerDiscreteScheduler\"}", { "“EulerDiscreteScheduler”", "DDPMScheduler" } },
    { 3, "{\"_class_name\": \"DDPMScheduler\", \"trained_betas\": [0.1, 0.2]}", { "trained_betas" } },
    { 3, "{\"_class_name\": \"DDPMScheduler\", \"beta_start\": \"small\"}", { "beta_start", "number" } },
    { 3, "{\"_class_name\": \"DDPMScheduler\", \"beta_start\": 0.5, \"beta_end\": 0.1}", { "beta_end" } },
    { 4, "{\"num_attention_heads\": 2, \"attention_head_dim\": 3, \"num_layers\": 1, "
         "\"embedding_dim\": 8, \"norm_in_type\": \"rms\"}", { "norm_in_type", "“layer”" } },
    { 5, "{\"size\": {\"longest\": 3}}", { "size", "shortest_edge" } },
    { 5, "{\"image_std\": [0.5, 0, 0.5]}", { "image_std", "zero" } },
    { 5, "{\"resample\": 9}", { "resample" } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (JsonNode) n = parse (cases[i].json);
      g_autoptr (GError) error = NULL;
      RvClipTextConfig t;
      RvUNetConfig u;
      RvVQConfig v;
      RvSchedulerConfig s;
      RvPriorConfig p;
      RvImageProcessorConfig ip;
      gboolean ok;
      switch (cases[i].type)
        {
        case 0: ok = rv_clip_text_config_parse (OBJ (n), "/some/text_encoder/config.json", &t, &error); break;
        case 1: ok = rv_unet_config_parse (OBJ (n), "/some/unet/config.json", &u, &error); break;
        case 2: ok = rv_vq_config_parse (OBJ (n), "/some/movq/config.json", &v, &error); break;
        case 3: ok = rv_scheduler_config_parse (OBJ (n), "/some/scheduler/scheduler_config.json", -1, &s, &error); break;
        case 4: ok = rv_prior_config_parse (OBJ (n), "/some/prior/config.json", &p, &error); break;
        default: ok = rv_image_processor_config_parse (OBJ (n), "/some/image_processor/config.json", &ip, &error); break;
        }
      g_assert_false (ok);
      expect_message (error, (const char *const[]) { "/some/", cases[i].words[0],
                                                     cases[i].words[1], cases[i].words[2], NULL });
    }

  /* a missing or malformed file names itself */
  g_autofree char *dir = tmp_dir ("configs");
  g_autoptr (GError) error = NULL;
  RvUNetConfig u;
  g_assert_false (rv_unet_config_load (dir, &u, &error));
  expect_message (error, (const char *const[]) { "config.json", NULL });
  g_clear_error (&error);
  write_text (dir, "config.json", "{\"in_channels\": 4,,}");
  g_assert_false (rv_unet_config_load (dir, &u, &error));
  expect_message (error, (const char *const[]) { "config.json", "JSON", NULL });
  g_clear_error (&error);
  write_text (dir, "config.json", "[4]");
  g_assert_false (rv_unet_config_load (dir, &u, &error));
  expect_message (error, (const char *const[]) { "config.json", "object", NULL });
}

/* ---- weights ---- */

static void
test_weights (void)
{
  g_autofree char *dir = tmp_dir ("text_encoder");
  const Spec specs[] = {
    { "a.weight", RV_ST_F32, 2, { 4, 3 } },
    { "b.bias", RV_ST_F16, 1, { 4 } },
    { "text_model.embeddings.position_ids", RV_ST_I64, 2, { 1, 77 } },
    { "mid.attentions.0.query.weight", RV_ST_F32, 2, { 2, 2 } },
    { "mid.attentions.0.proj_attn.bias", RV_ST_F32, 1, { 2 } },
    { "blocks.0.attn1.to_k.weight", RV_ST_F32, 2, { 2, 2 } },
    { "key.weight", RV_ST_F32, 1, { 3 } },
    { "conv.weight", RV_ST_F32, 4, { 5, 6, 1, 1 } },
  };
  write_weights (dir, "model.safetensors", specs, G_N_ELEMENTS (specs));
  g_autoptr (GError) error = NULL;
  g_autoptr (RvWeights) w = rv_weights_open (dir, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (rv_weights_describe (w), "model.safetensors"));
  g_assert_cmpint (rv_weights_main_dtype (w), ==, RV_ST_F32);

  /* f16 converted; I64 found but not a float */
  g_autofree float *b = rv_weights_get_f32 (w, "b.bias", &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (b[3], ==, 1.5f);
  g_assert_cmpint (rv_weights_lookup (w, "b.bias")->dtype, ==, RV_ST_F16);
  g_autofree float *ids = rv_weights_get_f32 (w, "text_model.embeddings.position_ids", &error);
  g_assert_null (ids);
  g_assert_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_WRONG_DTYPE);
  g_clear_error (&error);
  g_autofree float *none = rv_weights_get_f32 (w, "nope.weight", &error);
  g_assert_null (none);
  expect_message (error, (const char *const[]) { "nope.weight", "model.safetensors", NULL });
  g_clear_error (&error);

  /* legacy and current attention names find each other */
  g_assert_true (rv_weights_lookup (w, "mid.attentions.0.to_q.weight")
                 == rv_weights_lookup (w, "mid.attentions.0.query.weight"));
  g_assert_nonnull (rv_weights_lookup (w, "mid.attentions.0.to_out.0.bias"));
  g_assert_nonnull (rv_weights_lookup (w, "blocks.0.attn1.key.weight"));
  g_assert_nonnull (rv_weights_lookup (w, "to_k.weight"));     /* a bare "key" module */
  g_assert_null (rv_weights_lookup (w, "blocks.0.attn1.to_v.weight"));
  g_assert_null (rv_weights_lookup (w, "mid.attentions.0.xquery.weight"));
  g_assert_null (rv_weights_lookup (w, "mid.attentions.0.to_q"));

  /* manifests: everything present, 1×1 conv accepted for a linear */
  g_autoptr (RvManifest) good = rv_manifest_new ();
  rv_manifest_add (good, RV_SHAPE (4, 3), "a.weight");
  rv_manifest_add (good, RV_SHAPE (4), "b.%s", "bias");
  rv_manifest_add (good, RV_SHAPE (2, 2), "mid.attentions.%d.to_q.weight", 0);
  rv_manifest_add (good, RV_SHAPE (5, 6), "conv.weight");
  g_assert_cmpuint (rv_manifest_size (good), ==, 4);
  g_assert_true (rv_weights_check (w, good, &error));
  g_assert_no_error (error);

  /* one error with the missing and the mismatched, the first few of each */
  g_autoptr (RvManifest) bad = rv_manifest_new ();
  for (int i = 0; i < 7; i++)
    rv_manifest_add (bad, RV_SHAPE (8), "missing.%d.weight", i);
  rv_manifest_add (bad, RV_SHAPE (3, 4), "a.weight");
  rv_manifest_add (bad, RV_SHAPE (1, 77), "text_model.embeddings.position_ids");
  rv_manifest_add (bad, RV_SHAPE (4), "b.bias");
  g_assert_false (rv_weights_check (w, bad, &error));
  expect_message (error, (const char *const[]) {
    "model.safetensors", "7 of 10 tensors missing", "missing.0.weight", "missing.4.weight",
    "2 with the wrong shape", "a.weight: expected F32/F16/BF16 (3, 4), found F32 (4, 3)",
    "position_ids", NULL });
  g_assert_null (strstr (error->message, "missing.5.weight"));
  g_assert_null (strstr (error->message, "b.bias"));
}

static void
test_weight_files (void)
{
  g_autoptr (GError) error = NULL;
  const Spec half[] = { { "w", RV_ST_F16, 2, { 3, 3 } }, { "v", RV_ST_F16, 1, { 3 } } };
  const Spec full[] = { { "w", RV_ST_F32, 2, { 3, 3 } } };

  /* only the fp16 variant */
  g_autofree char *fp16 = tmp_dir ("fp16");
  write_weights (fp16, "diffusion_pytorch_model.fp16.safetensors", half, 2);
  g_autoptr (RvWeights) w16 = rv_weights_open (fp16, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rv_weights_main_dtype (w16), ==, RV_ST_F16);
  g_assert_true (g_str_has_suffix (rv_weights_describe (w16), ".fp16.safetensors"));
  /* the full-precision file wins when both are there */
  write_weights (fp16, "diffusion_pytorch_model.safetensors", full, 1);
  g_autoptr (RvWeights) w32 = rv_weights_open (fp16, &error);
  g_assert_cmpint (rv_weights_main_dtype (w32), ==, RV_ST_F32);
  g_assert_null (rv_weights_lookup (w32, "v"));

  /* sharded */
  g_autofree char *sharded = tmp_dir ("sharded");
  const Spec s1[] = { { "a", RV_ST_F32, 1, { 2 } }, { "b", RV_ST_F32, 1, { 3 } } };
  const Spec s2[] = { { "c", RV_ST_BF16, 1, { 4 } } };
  write_weights (sharded, "model-00001-of-00002.safetensors", s1, 2);
  write_weights (sharded, "model-00002-of-00002.safetensors", s2, 1);
  write_text (sharded, "model.safetensors.index.json",
              "{\"metadata\": {\"total_size\": 28}, \"weight_map\": {"
              "\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
              " \"c\": \"model-00002-of-00002.safetensors\"}}");
  g_autoptr (RvWeights) ws = rv_weights_open (sharded, &error);
  g_assert_no_error (error);
  g_assert_nonnull (rv_weights_lookup (ws, "a"));
  g_assert_cmpint (rv_weights_lookup (ws, "c")->dtype, ==, RV_ST_BF16);
  g_autofree float *c = rv_weights_get_f32 (ws, "c", &error);
  g_assert_no_error (error);

  static const struct { const char *index, *what; } bad_indexes[] = {
    { "{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}", "same folder" },
    { "{\"weight_map\": {\"a\": \"model-00002-of-00002.safetensors\"}}", "not there" },
    { "{\"weight_map\": {\"a\": \"model-00003-of-00002.safetensors\"}}", "00003" },
    { "{\"weights\": {}}", "weight_map" },
    { "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
      "\"x\": \"model-00001-b.safetensors\"}}", "both" },
  };
  write_weights (sharded, "model-00001-b.safetensors", s1, 2);
  for (guint i = 0; i < G_N_ELEMENTS (bad_indexes); i++)
    {
      write_text (sharded, "model.safetensors.index.json", bad_indexes[i].index);
      g_autoptr (RvWeights) wb = rv_weights_open (sharded, &error);
      g_assert_null (wb);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, bad_indexes[i].what));
      g_clear_error (&error);
    }

  /* pickles are refused, with a way out */
  g_autofree char *pickle = tmp_dir ("pickle");
  write_text (pickle, "pytorch_model.bin", "not really a pickle");
  g_autoptr (RvWeights) wp = rv_weights_open (pickle, &error);
  g_assert_null (wp);
  expect_message (error, (const char *const[]) { "pytorch_model.bin", "pickle", "save_file",
                                                 "model.safetensors", NULL });
  g_clear_error (&error);
  g_autofree char *ckpt = tmp_dir ("ckpt");
  write_text (ckpt, "diffusion_pytorch_model.bin", "x");
  g_autoptr (RvWeights) wc = rv_weights_open (ckpt, &error);
  expect_message (error, (const char *const[]) { "diffusion_pytorch_model.safetensors", NULL });
  g_clear_error (&error);

  /* nothing at all; a missing folder */
  g_autofree char *empty = tmp_dir ("empty");
  g_autoptr (RvWeights) we = rv_weights_open (empty, &error);
  expect_message (error, (const char *const[]) { "has no weights", NULL });
  g_clear_error (&error);
  g_autofree char *gone = g_build_filename (empty, "gone", NULL);
  g_autoptr (RvWeights) wg = rv_weights_open (gone, &error);
  expect_message (error, (const char *const[]) { "does not exist", NULL });
  g_clear_error (&error);

  /* a damaged file's own error comes through */
  g_autofree char *damaged = tmp_dir ("damaged");
  g_autofree char *damaged_file = g_build_filename (damaged, "model.safetensors", NULL);
  g_file_set_contents (damaged_file, "\x07\0\0\0\0\0\0\0{\"a\":1}", 15, &error);
  g_assert_no_error (error);
  g_autoptr (RvWeights) wd = rv_weights_open (damaged, &error);
  g_assert_null (wd);
  g_assert_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_BAD_ENTRY);
}

/* The golden text encoder against the manifest its config implies
 * (docs/model-spec.md §4 names), then against a config that does not fit. */
static void
clip_text_manifest (RvManifest *m, const RvClipTextConfig *c)
{
  gint64 h = c->hidden_size, f = c->intermediate_size;
  rv_manifest_add (m, RV_SHAPE (c->vocab_size, h), "text_model.embeddings.token_embedding.weight");
  rv_manifest_add (m, RV_SHAPE (c->max_position_embeddings, h),
                   "text_model.embeddings.position_embedding.weight");
  for (int l = 0; l < c->num_hidden_layers; l++)
    {
      const char *p = "text_model.encoder.layers";
      for (int n = 1; n <= 2; n++)
        {
          rv_manifest_add (m, RV_SHAPE (h), "%s.%d.layer_norm%d.weight", p, l, n);
          rv_manifest_add (m, RV_SHAPE (h), "%s.%d.layer_norm%d.bias", p, l, n);
        }
      const char *proj[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
      for (int k = 0; k < 4; k++)
        {
          rv_manifest_add (m, RV_SHAPE (h, h), "%s.%d.self_attn.%s.weight", p, l, proj[k]);
          rv_manifest_add (m, RV_SHAPE (h), "%s.%d.self_attn.%s.bias", p, l, proj[k]);
        }
      rv_manifest_add (m, RV_SHAPE (f, h), "%s.%d.mlp.fc1.weight", p, l);
      rv_manifest_add (m, RV_SHAPE (f), "%s.%d.mlp.fc1.bias", p, l);
      rv_manifest_add (m, RV_SHAPE (h, f), "%s.%d.mlp.fc2.weight", p, l);
      rv_manifest_add (m, RV_SHAPE (h), "%s.%d.mlp.fc2.bias", p, l);
    }
  rv_manifest_add (m, RV_SHAPE (h), "text_model.final_layer_norm.weight");
  rv_manifest_add (m, RV_SHAPE (h), "text_model.final_layer_norm.bias");
  rv_manifest_add (m, RV_SHAPE (c->projection_dim, h), "text_projection.weight");
}

static void
test_golden_weights (void)
{
  NEED (dir, PRIOR, "text_encoder");
  g_autoptr (GError) error = NULL;
  RvClipTextConfig c;
  g_assert_true (rv_clip_text_config_load (dir, &c, &error));
  g_autoptr (RvWeights) w = rv_weights_open (dir, &error);
  g_assert_no_error (error);
  g_autoptr (RvManifest) m = rv_manifest_new ();
  clip_text_manifest (m, &c);
  g_assert_true (rv_weights_check (w, m, &error));
  g_assert_no_error (error);
  g_autofree float *proj = rv_weights_get_f32 (w, "text_projection.weight", &error);
  g_assert_no_error (error);
  g_assert_true (isfinite (proj[0]));

  c.num_hidden_layers += 1;
  c.intermediate_size += 1;
  g_autoptr (RvManifest) wrong = rv_manifest_new ();
  clip_text_manifest (wrong, &c);
  g_assert_false (rv_weights_check (w, wrong, &error));
  expect_message (error, (const char *const[]) { "16 of 101 tensors missing",
                                                 "text_model.encoder.layers.5.layer_norm1.weight",
                                                 "with the wrong shape", "mlp.fc1", NULL });
}

/* ---- folders and model sets ---- */

static void
test_folders (void)
{
  NEED (prior, PRIOR);
  NEED (decoder, DECODER);
  g_autoptr (GError) error = NULL;
  const char *const prior_classes[] = { "KandinskyV22PriorPipeline", NULL };
  g_autoptr (RvModelFolder) f = rv_model_folder_open (prior, prior_classes, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (rv_model_folder_class (f), ==, "KandinskyV22PriorPipeline");
  g_assert_cmpstr (rv_model_folder_component_class (f, "text_encoder"), ==,
                   "CLIPTextModelWithProjection");
  g_assert_null (rv_model_folder_component_class (f, "unet"));
  g_autofree char *tok = rv_model_folder_component (f, "tokenizer", &error);
  g_assert_no_error (error);
  g_assert_true (g_file_test (tok, G_FILE_TEST_IS_DIR));
  g_autofree char *unet = rv_model_folder_component (f, "unet", &error);
  g_assert_null (unet);
  expect_message (error, (const char *const[]) { "“unet”", "KandinskyV22PriorPipeline", NULL });
  g_clear_error (&error);

  g_autoptr (RvModelFolder) wrong = rv_model_folder_open (decoder, prior_classes, &error);
  g_assert_null (wrong);
  expect_message (error, (const char *const[]) { "KandinskyV22Pipeline",
                                                 "KandinskyV22PriorPipeline", NULL });
  g_clear_error (&error);

  g_autofree char *plain = tmp_dir ("plain");
  g_autoptr (RvModelFolder) none = rv_model_folder_open (plain, NULL, &error);
  expect_message (error, (const char *const[]) { "model_index.json", NULL });
  g_clear_error (&error);
  write_text (plain, "model_index.json", "{\"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}");
  g_autoptr (RvModelFolder) nameless = rv_model_folder_open (plain, NULL, &error);
  expect_message (error, (const char *const[]) { "_class_name", NULL });
  g_clear_error (&error);
  /* other values (e.g. "requires_safety_checker": true) are options, but a
   * list must be [library, class] */
  write_text (plain, "model_index.json", "{\"_class_name\": \"X\", \"flag\": true, "
              "\"unet\": [\"UNet\"]}");
  g_autoptr (RvModelFolder) malformed = rv_model_folder_open (plain, NULL, &error);
  expect_message (error, (const char *const[]) { "\"unet\"", NULL });
  g_clear_error (&error);
  /* a listed component whose folder is missing; absent components */
  write_text (plain, "model_index.json", "{\"_class_name\": \"X\", \"unet\": [\"diffusers\", "
              "\"UNet2DConditionModel\"], \"safety_checker\": [null, null]}");
  g_autoptr (RvModelFolder) ok = rv_model_folder_open (plain, NULL, &error);
  g_assert_no_error (error);
  g_assert_null (rv_model_folder_component_class (ok, "safety_checker"));
  g_autofree char *missing = rv_model_folder_component (ok, "unet", &error);
  expect_message (error, (const char *const[]) { "missing", "unet", NULL });
}

/* A pipeline folder holding only its model_index.json: all a model set
 * checks. (Not links to the golden folders: the test's temporary folder is
 * deleted recursively afterwards.) */
static char *
make_pipeline (const char *parent, const char *name, const char *class_name)
{
  g_autofree char *base = tmp_dir (parent);
  char *dir = g_build_filename (base, name, NULL);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_autofree char *index = g_strdup_printf ("{\"_class_name\": \"%s\", "
                                            "\"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}",
                                            class_name);
  write_text (dir, "model_index.json", index);
  return dir;
}

static void
test_model_sets (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *prior = make_pipeline ("full", "prior", "KandinskyV22PriorPipeline");
  g_autofree char *decoder = make_pipeline ("full", "decoder", "KandinskyV22Pipeline");
  g_autofree char *inpaint = make_pipeline ("full", "decoder-inpaint",
                                            "KandinskyV22InpaintPipeline");
  g_autofree char *full = g_path_get_dirname (prior);
  g_autoptr (RvModelSet) s = rv_model_set_new (full, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (s->prior, ==, prior);
  g_assert_cmpstr (s->decoder, ==, decoder);
  g_assert_cmpstr (s->inpaint_decoder, ==, inpaint);

  /* inpainting is optional */
  g_autofree char *p2 = make_pipeline ("two", "prior", "KandinskyV22PriorPipeline");
  g_autofree char *d2 = make_pipeline ("two", "decoder", "KandinskyV22Img2ImgPipeline");
  g_autofree char *two = g_path_get_dirname (p2);
  g_autoptr (RvModelSet) s2 = rv_model_set_new (two, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_null (s2->inpaint_decoder);

  /* separate folders, and separate folders overriding --model */
  g_autoptr (RvModelSet) s3 = rv_model_set_new (NULL, prior, decoder, inpaint, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (s3->prior, ==, prior);
  g_autoptr (RvModelSet) s4 = rv_model_set_new (two, NULL, NULL, inpaint, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (s4->inpaint_decoder, ==, inpaint);
  g_assert_cmpstr (s4->decoder, ==, d2);

  /* a missing decoder, folders of the wrong class, no folder at all */
  g_autofree char *p1 = make_pipeline ("one", "prior", "KandinskyV22PriorPipeline");
  g_autofree char *one = g_path_get_dirname (p1);
  g_autoptr (RvModelSet) e1 = rv_model_set_new (one, NULL, NULL, NULL, &error);
  g_assert_null (e1);
  expect_message (error, (const char *const[]) { "decoder", "missing", NULL });
  g_clear_error (&error);
  g_autoptr (RvModelSet) e2 = rv_model_set_new (NULL, decoder, decoder, NULL, &error);
  g_assert_null (e2);
  expect_message (error, (const char *const[]) { "prior", "KandinskyV22PriorPipeline", NULL });
  g_clear_error (&error);
  g_autoptr (RvModelSet) e3 = rv_model_set_new (NULL, prior, inpaint, NULL, &error);
  expect_message (error, (const char *const[]) { "decoder", "KandinskyV22InpaintPipeline", NULL });
  g_clear_error (&error);
  g_autoptr (RvModelSet) e4 = rv_model_set_new (NULL, prior, decoder, decoder, &error);
  expect_message (error, (const char *const[]) { "inpainting", "KandinskyV22InpaintPipeline", NULL });
  g_clear_error (&error);
  g_autofree char *nowhere = g_build_filename (one, "nowhere", NULL);
  g_autoptr (RvModelSet) e5 = rv_model_set_new (nowhere, NULL, NULL, NULL, &error);
  expect_message (error, (const char *const[]) { "does not exist", NULL });
  g_clear_error (&error);
  g_autoptr (RvModelSet) e6 = rv_model_set_new (NULL, nowhere, NULL, NULL, &error);
  expect_message (error, (const char *const[]) { "does not exist", NULL });
  g_clear_error (&error);
  g_autoptr (RvModelSet) e7 = rv_model_set_new (NULL, one, NULL, NULL, &error);
  expect_message (error, (const char *const[]) { "model_index.json", NULL });
}

/* ---- reference folders ---- */

/* Writes cases/<file> (int64 tensors, or F32 where `f32` names them and
 * values are floats) and returns its SHA-256. */
static char *
write_case (const char *dir, const char *file, const char *const *names, gconstpointer const *values,
            int n, int rows, int cols, const char *f32)
{
  g_autofree RvStTensor *t = g_new0 (RvStTensor, n);
  for (int i = 0; i < n; i++)
    {
      gboolean is_f32 = f32 != NULL && strstr (f32, names[i]) != NULL;
      t[i] = (RvStTensor) { .name = names[i], .dtype = is_f32 ? RV_ST_F32 : RV_ST_I64, .ndim = 2,
                            .shape = { rows, cols }, .data = values[i],
                            .nbytes = rows * cols * (is_f32 ? 4 : 8) };
    }
  g_autofree char *path = g_build_filename (dir, "cases", file, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (rv_safetensors_save (path, t, n, NULL, &error));
  g_autofree char *data = NULL;
  gsize len;
  g_file_get_contents (path, &data, &len, NULL);
  return g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guint8 *) data, len);
}

static const RvRefResult *
result (const RvRefCaseResult *r, const char *name)
{
  for (guint i = 0; i < r->results->len; i++)
    if (strcmp (g_array_index (r->results, RvRefResult, i).name, name) == 0)
      return &g_array_index (r->results, RvRefResult, i);
  g_error ("no result for %s", name);
}

/* The runner on a folder unlike golden/: other texts, another row length,
 * another tokenizer and its own tolerances. */
static void
test_reference_folder (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = tmp_dir ("reference");
  g_autofree char *cases_dir = tmp_dir ("reference/cases");
  g_autofree char *tok_dir = tmp_dir ("reference/weights/tiny-prior/tokenizer");
  write_text (tok_dir, "vocab.json", "{\"a</w>\": 1, \"b</w>\": 2, \"ab</w>\": 3, \"a\": 4, "
              "\"b\": 5, \"!\": 6, \"<|startoftext|>\": 7, \"<|endoftext|>\": 8}");
  write_text (tok_dir, "merges.txt", "#version: 0.2\na b</w>\n");
  write_text (tok_dir, "tokenizer_config.json", "{\"pad_token\": \"!\", \"model_max_length\": 77}");

  /* the expected rows, from the tokenizer itself */
  const char *texts[] = { "ab a", "", "b b b b b b b b b b b" };
  enum { ROWS = 3, COLS = 6 };
  g_autoptr (RvTokenizer) tok = rv_tokenizer_new (tok_dir, &error);
  g_assert_no_error (error);
  gint64 ids[ROWS * COLS], mask[ROWS * COLS];
  for (int r = 0; r < ROWS; r++)
    {
      gint32 ri[COLS], rm[COLS];
      g_assert_true (rv_tokenizer_encode (tok, texts[r], COLS, ri, rm, NULL, &error));
      for (int c = 0; c < COLS; c++)
        {
          ids[r * COLS + c] = ri[c];
          mask[r * COLS + c] = rm[c];
        }
    }
  g_assert_cmpint (ids[1], ==, 3);   /* "ab</w>" */
  const char *const names[] = { "out.input_ids", "out.attention_mask" };
  gconstpointer const values[] = { ids, mask };
  g_autofree char *sha = write_case (dir, "tok.safetensors", names, values, 2, ROWS, COLS, NULL);
  gint64 zeros[8] = { 0 };
  const char *const other_names[] = { "text_encoder.in.input_ids", "calls.unet.000.in.sample",
                                      "calls.unet.000.out.0", "calls.movq_decode.000.out.commit_loss",
                                      "step_latents.000", "out.images", "timesteps" };
  gconstpointer const other_values[] = { zeros, zeros, zeros, zeros, zeros, zeros, zeros };
  g_autofree char *sha2 = write_case (dir, "pipe.safetensors", other_names, other_values, 7, 2, 4,
                                      "calls.unet.000.in.sample calls.unet.000.out.0 "
                                      "calls.movq_decode.000.out.commit_loss step_latents.000 "
                                      "out.images");
  g_autofree char *index = g_strdup_printf (
    "{\"format_version\": 2, \"models\": {\"prior\": \"weights/tiny-prior\"},"
    " \"comparison\": {\"single_forward_fp32\": 2e-4},"
    " \"cases\": ["
    "  {\"name\": \"tokenizer\", \"kind\": \"component\", \"file\": \"cases/tok.safetensors\","
    "   \"sha256\": \"%s\", \"params\": {\"texts\": [\"%s\", \"%s\", \"%s\"],"
    "   \"model_max_length\": %d, \"model_folder\": \"tiny-prior/tokenizer\"},"
    "   \"tensors\": [{\"name\": \"out.input_ids\", \"role\": \"output\", \"dtype\": \"int64\","
    "   \"shape\": [%d, %d]}, {\"name\": \"out.attention_mask\", \"role\": \"output\","
    "   \"dtype\": \"int64\", \"shape\": [%d, %d]}]},"
    "  {\"name\": \"pipe\", \"kind\": \"future\", \"file\": \"cases/pipe.safetensors\","
    "   \"sha256\": \"%s\", \"tensors\": ["
    "   {\"name\": \"text_encoder.in.input_ids\", \"role\": \"input\", \"shape\": [2, 4]},"
    "   {\"name\": \"calls.unet.000.in.sample\", \"role\": \"intermediate\", \"shape\": [2, 4]},"
    "   {\"name\": \"calls.unet.000.out.0\", \"role\": \"intermediate\", \"shape\": [2, 4]},"
    "   {\"name\": \"calls.movq_decode.000.out.commit_loss\", \"role\": \"intermediate\","
    "    \"shape\": [2, 4]},"
    "   {\"name\": \"step_latents.000\", \"role\": \"intermediate\", \"shape\": [2, 4]},"
    "   {\"name\": \"timesteps\", \"role\": \"intermediate\", \"shape\": [2, 4]},"
    "   {\"name\": \"out.images\", \"role\": \"output\", \"shape\": [2, 4]}]}]}",
    sha, texts[0], texts[1], texts[2], COLS, ROWS, COLS, ROWS, COLS, sha2);
  write_text (dir, "cases.json", index);

  g_autoptr (RvRefSet) set = rv_ref_set_open (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rv_ref_set_n_cases (set), ==, 2);
  g_assert_null (rv_ref_set_find (set, "nope"));
  g_autofree char *r1 = rv_ref_set_resolve (set, "tiny-prior/tokenizer");
  g_autofree char *r2 = rv_ref_set_resolve (set, "weights/tiny-prior");
  g_autofree char *r3 = rv_ref_set_resolve (set, "tiny-prior/unet");
  g_assert_cmpstr (r1, ==, tok_dir);
  g_assert_nonnull (r2);
  g_assert_null (r3);

  g_autoptr (RvRefRun) run = rv_ref_run_new (set, NULL);
  g_autoptr (RvRefCaseResult) pass = rv_ref_run_case (run, rv_ref_set_find (set, "tokenizer"));
  g_assert_null (pass->error);
  g_assert_cmpint (pass->status, ==, RV_REF_PASS);
  g_assert_cmpuint (pass->results->len, ==, 2);
  const RvRefResult *r = result (pass, "out.input_ids");
  g_assert_true (r->exact);
  g_assert_cmpfloat (r->error, ==, 0);
  g_assert_cmpstr (r->handler, ==, "handle_tokenizer");

  /* results no handler computes (a case kind none knows); inputs and
   * commit_loss are not checked; tolerances by kind of tensor, from
   * cases.json where it says */
  g_autoptr (RvRefCaseResult) pipe = rv_ref_run_case (run, rv_ref_set_find (set, "pipe"));
  g_assert_null (pipe->error);
  g_assert_cmpint (pipe->status, ==, RV_REF_NOT_RUN);
  g_assert_cmpuint (pipe->results->len, ==, 4);
  g_assert_cmpint (result (pipe, "calls.unet.000.out.0")->status, ==, RV_REF_NOT_RUN);
  g_assert_cmpfloat (result (pipe, "step_latents.000")->tolerance, ==, 1e-3);
  g_assert_cmpfloat (result (pipe, "out.images")->tolerance, ==, 2e-4);
  g_assert_cmpfloat (result (pipe, "calls.unet.000.out.0")->tolerance, ==, 2e-4);
  g_assert_cmpfloat (result (pipe, "timesteps")->tolerance, ==, 0);

  /* one token off: FAIL, saying where */
  ids[COLS + 1] += 1;
  g_autofree char *sha3 = write_case (dir, "tok.safetensors", names, values, 2, ROWS, COLS, NULL);
  g_autoptr (RvRefCaseResult) damaged = rv_ref_run_case (run, rv_ref_set_find (set, "tokenizer"));
  g_assert_cmpint (damaged->status, ==, RV_REF_FAIL);
  g_assert_nonnull (strstr (damaged->error, "SHA-256"));
  RvRefCase *c = (RvRefCase *) rv_ref_set_find (set, "tokenizer");
  g_clear_pointer (&c->sha256, g_free);
  g_autoptr (RvRefCaseResult) fail = rv_ref_run_case (run, c);
  g_assert_null (fail->error);
  g_assert_cmpint (fail->status, ==, RV_REF_FAIL);
  r = result (fail, "out.input_ids");
  g_assert_cmpint (r->status, ==, RV_REF_FAIL);
  g_assert_cmpfloat (r->error, ==, 1);
  g_assert_nonnull (strstr (r->note, "index 7"));
  g_assert_cmpint (result (fail, "out.attention_mask")->status, ==, RV_REF_PASS);

  /* a handler error fails what it covers */
  write_text (tok_dir, "merges.txt", "#version only\n");
  g_autoptr (RvRefRun) run2 = rv_ref_run_new (set, NULL);
  g_autoptr (RvRefCaseResult) broken = rv_ref_run_case (run2, c);
  g_assert_cmpint (broken->status, ==, RV_REF_FAIL);
  g_assert_nonnull (strstr (result (broken, "out.input_ids")->note, "merges.txt"));

  /* folders that are not reference folders */
  g_autoptr (RvRefSet) none = rv_ref_set_open (tok_dir, &error);
  g_assert_null (none);
  expect_message (error, (const char *const[]) { "cases.json", NULL });
  g_clear_error (&error);
  write_text (tok_dir, "cases.json", "{\"cases\": [{\"name\": \"x\"}]}");
  g_autoptr (RvRefSet) bad = rv_ref_set_open (tok_dir, &error);
  expect_message (error, (const char *const[]) { "case 0", "file", NULL });
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  rv_test_add ("/model-files/golden-configs", test_golden_configs);
  rv_test_add ("/model-files/cases-json-configs", test_cases_json_configs);
  rv_test_add ("/model-files/config-defaults", test_config_defaults);
  rv_test_add ("/model-files/config-errors", test_config_errors);
  rv_test_add ("/model-files/weights", test_weights);
  rv_test_add ("/model-files/weight-files", test_weight_files);
  rv_test_add ("/model-files/golden-weights", test_golden_weights);
  rv_test_add ("/model-files/folders", test_folders);
  rv_test_add ("/model-files/model-sets", test_model_sets);
  rv_test_add ("/model-files/reference-folder", test_reference_folder);
  return g_test_run ();
}
