/* fuzz-config.c: the strict JSON reader and every config parser on arbitrary
 * bytes (config.json, preprocessor_config.json, scheduler_config.json). */
#include "fuzz.h"
#include "rv-model-files.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) root = rv_json_parse ((const char *) data, size, "fuzz", &error);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return 0;
  JsonObject *o = json_node_get_object (root);
  RvClipTextConfig text;
  RvClipVisionConfig vision;
  RvImageProcessorConfig image;
  RvPriorConfig prior;
  RvUNetConfig unet;
  RvVQConfig vq;
  RvSchedulerConfig sched;
  GError *e = NULL;
  /* each parse either succeeds or sets exactly one error */
#define TRY(call) do { gboolean ok_ = (call); g_assert (ok_ == (e == NULL)); g_clear_error (&e); } while (0)
  TRY (rv_clip_text_config_parse (o, "fuzz", &text, &e));
  TRY (rv_clip_vision_config_parse (o, "fuzz", &vision, &e));
  TRY (rv_image_processor_config_parse (o, "fuzz", &image, &e));
  TRY (rv_prior_config_parse (o, "fuzz", &prior, &e));
  if (rv_unet_config_parse (o, "fuzz", &unet, &e))
    {
      g_assert (unet.n_blocks >= 1 && unet.n_blocks <= RV_MAX_BLOCKS);
      for (int i = 0; i < unet.n_blocks; i++)
        g_assert (unet.block_out_channels[i] > 0 && unet.layers_per_block[i] > 0
                  && strlen (unet.down_block_types[i]) < RV_BLOCK_NAME_MAX);
    }
  g_clear_error (&e);
  if (rv_vq_config_parse (o, "fuzz", &vq, &e))
    g_assert (vq.n_blocks >= 1 && vq.n_blocks <= RV_MAX_BLOCKS && vq.vq_embed_dim > 0);
  g_clear_error (&e);
  for (int kind = -1; kind <= RV_SCHEDULER_DPM_MULTISTEP; kind++)
    TRY (rv_scheduler_config_parse (o, "fuzz", kind, &sched, &e));
#undef TRY
  return 0;
}
