/* fuzz-server.h: what the server fuzz targets check of every parse. */
#pragma once

#include "rv-server-request.h"

static const RvApiLimits fuzz_limits = {
  .model_name = "reverie-tiny",
  .max_size = 1024,
  .default_width = 512,
  .default_height = 512,
  .max_image_side = 1024,
};

/* Either a request within the limits or an error of the API's shape. */
static inline void
fuzz_check_parse (RvApiRequest *r, RvApiError *e)
{
  g_assert ((r == NULL) != (e == NULL));
  if (e != NULL)
    {
      g_assert (e->status >= 400 && e->status < 600);
      g_assert (e->type != NULL && e->message != NULL && g_utf8_validate (e->message, -1, NULL));
      g_assert (e->param == NULL || g_utf8_validate (e->param, -1, NULL));
      g_autoptr (GBytes) json = rv_api_error_to_json (e);
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_assert (json_parser_load_from_data (parser, g_bytes_get_data (json, NULL),
                                            g_bytes_get_size (json), NULL));
      return;
    }
  g_assert (r->n >= 1 && r->n <= RV_API_MAX_N);
  g_assert (r->width >= 64 && r->height >= 64 && r->width <= fuzz_limits.max_size &&
            r->height <= fuzz_limits.max_size);
  if (r->kind != RV_API_VARIATION)
    g_assert (r->prompt != NULL && g_utf8_validate (r->prompt, -1, NULL) &&
              g_utf8_strlen (r->prompt, -1) <= RV_API_MAX_PROMPT);
  g_assert (r->negative_prompt == NULL || g_utf8_validate (r->negative_prompt, -1, NULL));
  g_assert (r->steps >= 0 && r->steps <= 1000 && r->prior_steps >= 0 && r->prior_steps <= 1000);
  g_assert (r->seed <= G_GUINT64_CONSTANT (9007199254740991));
  if (r->kind != RV_API_GENERATE)
    {
      g_assert (r->image != NULL && r->image_sha256 != NULL);
      g_assert (r->image->width <= fuzz_limits.max_image_side &&
                r->image->height <= fuzz_limits.max_image_side);
    }
  if (r->kind == RV_API_EDIT)
    g_assert (r->mask != NULL && r->mask->channels == 4 && r->mask->width == r->image->width &&
              r->mask->height == r->image->height);
}
