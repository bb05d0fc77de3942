/* test-server-request.c: the Images API request parser — sizes, JSON fields,
 * multipart uploads and masks, and thousands of damaged multipart bodies that
 * must all end in a 400 (never a crash). */
#include "config.h"

#include "rv-server-request.h"
#include "rv-image-io.h"

#include <string.h>

static const RvApiLimits limits = {
  .model_name = "reverie-test",
  .max_size = 512,
  .default_width = 64,
  .default_height = 128,
  .max_image_side = 256,
};

static void
test_sizes (void)
{
  static const struct { const char *s; int w, h; } good[] = {
    { "256x256", 256, 256 }, { "512x512", 512, 512 }, { "1024x1024", 1024, 1024 },
    { "64x64", 64, 64 }, { "64x512", 64, 512 }, { "448x192", 448, 192 },
  };
  static const char *const bad[] = {
    "", "x", "64", "64x", "x64", "65x64", "64x65", "0x0", "576x64", "1024x512", "2048x2048",
    "64X64", " 64x64", "64x64 ", "+64x64", "-64x64", "64x-64", "64x64x64", "0064x64000",
    "99999999999x64", "1024x1024\n",
  };
  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      int w = 0, h = 0;
      g_assert_true (rv_api_parse_size (good[i].s, limits.max_size, &w, &h));
      g_assert_cmpint (w, ==, good[i].w);
      g_assert_cmpint (h, ==, good[i].h);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      int w = 0, h = 0;
      if (rv_api_parse_size (bad[i], limits.max_size, &w, &h))
        g_error ("“%s” was taken as %dx%d", bad[i], w, h);
    }
}

static RvApiRequest *
parse_json (const char *json, RvApiError **error)
{
  g_autoptr (GBytes) body = g_bytes_new (json, strlen (json));
  return rv_api_request_parse_json (body, &limits, error);
}

static void
assert_refused (RvApiRequest *r, RvApiError *e, guint status, const char *code, const char *param)
{
  g_assert_null (r);
  g_assert_nonnull (e);
  g_assert_cmpuint (e->status, ==, status);
  g_assert_nonnull (e->message);
  g_assert_nonnull (e->type);
  if (code != NULL)
    g_assert_cmpstr (e->code, ==, code);
  g_assert_cmpstr (e->param, ==, param);
}

static void
test_json (void)
{
  g_autoptr (RvApiError) e = NULL;
  g_autoptr (RvApiRequest) r = parse_json ("{\"prompt\": \"a cat\", \"n\": 3, \"size\": \"128x64\", "
                                           "\"response_format\": \"b64_json\", \"model\": \"dall-e-2\", "
                                           "\"user\": \"u\", \"seed\": 9007199254740991, \"steps\": 4.0, "
                                           "\"prior_steps\": 3, \"guidance\": 2, \"prior_guidance\": 1.5, "
                                           "\"negative_prompt\": \"blur\", \"scheduler\": \"ddim\", "
                                           "\"stream\": true, \"quality\": \"standard\"}", &e);
  g_assert_null (e);
  g_assert_nonnull (r);
  g_assert_cmpint (r->kind, ==, RV_API_GENERATE);
  g_assert_cmpstr (r->prompt, ==, "a cat");
  g_assert_cmpint (r->n, ==, 3);
  g_assert_cmpint (r->width, ==, 128);
  g_assert_cmpint (r->height, ==, 64);
  g_assert_cmpint (r->format, ==, RV_API_B64_JSON);
  g_assert_true (r->seed_given);
  g_assert_cmpuint (r->seed, ==, G_GUINT64_CONSTANT (9007199254740991));
  g_assert_cmpint (r->steps, ==, 4);
  g_assert_cmpint (r->prior_steps, ==, 3);
  g_assert_cmpfloat (r->guidance, ==, 2);
  g_assert_cmpfloat (r->prior_guidance, ==, 1.5);
  g_assert_cmpstr (r->negative_prompt, ==, "blur");
  g_assert_cmpstr (r->scheduler, ==, "ddim");
  g_assert_true (r->stream);

  /* defaults, and null as "not given" */
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_json ("{\"prompt\": \"x\", \"n\": null, \"size\": null, \"model\": \"reverie-test\"}", &e);
  g_assert_nonnull (r);
  g_assert_cmpint (r->n, ==, 1);
  g_assert_cmpint (r->width, ==, 64);
  g_assert_cmpint (r->height, ==, 128);
  g_assert_cmpint (r->format, ==, RV_API_URL);
  g_assert_false (r->seed_given);
  g_assert_cmpfloat (r->guidance, <, 0);
  g_assert_false (r->size_given);
  g_assert_cmpstr (r->model, ==, "reverie-test");

  /* `model` is kept as given: the server resolves it (an unknown one is its 404) */
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_json ("{\"prompt\": \"x\", \"model\": \"dall-e-3\", \"size\": \"64x64\"}", &e);
  g_assert_nonnull (r);
  g_assert_cmpstr (r->model, ==, "dall-e-3");
  g_assert_true (r->size_given);
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_json ("{\"prompt\": \"x\"}", &e);
  g_assert_nonnull (r);
  g_assert_null (r->model);

  static const struct { const char *json; guint status; const char *code, *param; } refused[] = {
    { "", 400, "invalid_json", NULL },
    { "{", 400, "invalid_json", NULL },
    { "[]", 400, "invalid_json", NULL },
    { "\"prompt\"", 400, "invalid_json", NULL },
    { "{}", 400, "missing_required_parameter", "prompt" },
    { "{\"prompt\": \"\"}", 400, "invalid_value", "prompt" },
    { "{\"prompt\": \" \\n\\t\"}", 400, "invalid_value", "prompt" },
    { "{\"prompt\": 5}", 400, "invalid_type", "prompt" },
    { "{\"prompt\": [\"x\"]}", 400, "invalid_type", "prompt" },
    { "{\"prompt\": \"x\", \"n\": 0}", 400, "invalid_value", "n" },
    { "{\"prompt\": \"x\", \"n\": 11}", 400, "invalid_value", "n" },
    { "{\"prompt\": \"x\", \"n\": 2.5}", 400, "invalid_type", "n" },
    { "{\"prompt\": \"x\", \"n\": \"2\"}", 400, "invalid_type", "n" },
    { "{\"prompt\": \"x\", \"n\": 1e300}", 400, "invalid_type", "n" },
    { "{\"prompt\": \"x\", \"size\": \"100x100\"}", 400, "invalid_size", "size" },
    { "{\"prompt\": \"x\", \"size\": \"1024x64\"}", 400, "invalid_size", "size" },
    { "{\"prompt\": \"x\", \"response_format\": \"png\"}", 400, "invalid_value", "response_format" },
    { "{\"prompt\": \"x\", \"model\": 3}", 400, "invalid_type", "model" },
    { "{\"prompt\": \"x\", \"quality\": \"hd\"}", 400, "invalid_value", "quality" },
    { "{\"prompt\": \"x\", \"style\": \"vivid\"}", 400, "unknown_parameter", "style" },
    { "{\"prompt\": \"x\", \"image\": \"x.png\"}", 400, "unknown_parameter", "image" },
    { "{\"prompt\": \"x\", \"seed\": -1}", 400, "invalid_value", "seed" },
    { "{\"prompt\": \"x\", \"seed\": 9007199254740992}", 400, "invalid_value", "seed" },
    { "{\"prompt\": \"x\", \"steps\": 0}", 400, "invalid_value", "steps" },
    { "{\"prompt\": \"x\", \"prior_steps\": 1}", 400, "invalid_value", "prior_steps" },
    { "{\"prompt\": \"x\", \"guidance\": 101}", 400, "invalid_value", "guidance" },
    { "{\"prompt\": \"x\", \"guidance\": \"high\"}", 400, "invalid_type", "guidance" },
    { "{\"prompt\": \"x\", \"scheduler\": \"euler\"}", 400, "invalid_value", "scheduler" },
    { "{\"prompt\": \"x\", \"stream\": \"yes\"}", 400, "invalid_type", "stream" },
    { "{\"prompt\": \"x\", \"stream\": {}}", 400, "invalid_type", "stream" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_autoptr (RvApiError) err = NULL;
      RvApiRequest *bad = parse_json (refused[i].json, &err);
      if (bad != NULL)
        g_error ("%s was accepted", refused[i].json);
      assert_refused (bad, err, refused[i].status, refused[i].code, refused[i].param);
    }

  /* nesting that would exhaust the parser's stack */
  GString *deep = g_string_new ("{\"prompt\": ");
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  g_autoptr (RvApiError) deep_error = NULL;
  RvApiRequest *deep_r = parse_json (deep->str, &deep_error);
  assert_refused (deep_r, deep_error, 400, "invalid_json", NULL);
  g_string_free (deep, TRUE);
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_json ("{\"prompt\": \"[[[[{{{{\\\"[[[[\", \"user\": \"]]]\"}", &e);
  g_assert_nonnull (r);
  g_assert_cmpstr (r->prompt, ==, "[[[[{{{{\"[[[[");

  /* 1000 characters pass (counted as characters, not bytes); 1001 do not */
  GString *json = g_string_new ("{\"prompt\": \"");
  for (int i = 0; i < 1000; i++)
    g_string_append (json, "é");
  g_string_append (json, "\"}");
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_json (json->str, &e);
  g_assert_nonnull (r);
  g_string_insert (json, 12, "a");
  g_autoptr (RvApiError) long_error = NULL;
  RvApiRequest *too_long = parse_json (json->str, &long_error);
  assert_refused (too_long, long_error, 400, "string_above_max_length", "prompt");
  g_string_free (json, TRUE);

  /* the error shape */
  g_autoptr (RvApiError) shape = rv_api_error_new (429, "queue_full", NULL, "busy \"now\"");
  g_autoptr (GBytes) out = rv_api_error_to_json (shape);
  g_autofree char *text = g_strndup (g_bytes_get_data (out, NULL), g_bytes_get_size (out));
  g_assert_cmpstr (text, ==, "{\"error\":{\"message\":\"busy \\\"now\\\"\",\"type\":\"rate_limit_error\","
                             "\"param\":null,\"code\":\"queue_full\"}}");
}

/* ---- multipart ---- */

#define BOUNDARY "----reverie-test-7d3f"

typedef struct {
  const char *name;
  GBytes     *value;
  gboolean    file;
} Part;

static GBytes *
form (const Part *parts, int n)
{
  GByteArray *b = g_byte_array_new ();
  for (int i = 0; i < n; i++)
    {
      g_autofree char *head = g_strdup_printf ("--" BOUNDARY "\r\nContent-Disposition: form-data; "
                                               "name=\"%s\"%s\r\n\r\n", parts[i].name,
                                               parts[i].file ? "; filename=\"f.png\"\r\n"
                                                               "Content-Type: image/png" : "");
      g_byte_array_append (b, (const guint8 *) head, strlen (head));
      g_byte_array_append (b, g_bytes_get_data (parts[i].value, NULL), g_bytes_get_size (parts[i].value));
      g_byte_array_append (b, (const guint8 *) "\r\n", 2);
    }
  const char *tail = "--" BOUNDARY "--\r\n";
  g_byte_array_append (b, (const guint8 *) tail, strlen (tail));
  return g_byte_array_free_to_bytes (b);
}

static GBytes *
text (const char *s)
{
  return g_bytes_new (s, strlen (s));
}

/* RGBA with the given alpha everywhere but a 4×4 block at (x0, y0) of alpha0. */
static GBytes *
png (int w, int h, int channels, guint8 alpha, int x0, int y0, guint8 alpha0)
{
  g_autoptr (RvImage) img = rv_image_new (w, h, channels);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        guint8 *p = img->pixels + ((gsize) y * w + x) * channels;
        p[0] = (guint8) (x * 16);
        p[1] = (guint8) (y * 16);
        p[2] = 77;
        if (channels == 4)
          p[3] = x >= x0 && x < x0 + 4 && y >= y0 && y < y0 + 4 ? alpha0 : alpha;
      }
  GBytes *b = rv_image_encode_png (img, NULL, NULL);
  g_assert_nonnull (b);
  return b;
}

static RvApiRequest *
parse_form (RvApiKind kind, GBytes *body, const char *content_type, RvApiError **error)
{
  g_autoptr (SoupMessageHeaders) h = soup_message_headers_new (SOUP_MESSAGE_HEADERS_REQUEST);
  soup_message_headers_replace (h, "Content-Type", content_type);
  return rv_api_request_parse_multipart (kind, h, body, &limits, error);
}

static void
test_multipart (void)
{
  g_autoptr (GBytes) image = png (16, 16, 4, 255, 0, 0, 255);
  g_autoptr (GBytes) mask = png (16, 16, 4, 255, 4, 8, 0);
  g_autoptr (GBytes) prompt = text ("a boat");
  g_autoptr (GBytes) n = text ("2");
  g_autoptr (GBytes) size = text ("64x64");
  const char *type = "multipart/form-data; boundary=" BOUNDARY;

  Part edit[] = { { "image", image, TRUE }, { "mask", mask, TRUE }, { "prompt", prompt },
                  { "n", n }, { "size", size } };
  g_autoptr (GBytes) body = form (edit, G_N_ELEMENTS (edit));
  g_autoptr (RvApiError) e = NULL;
  g_autoptr (RvApiRequest) r = parse_form (RV_API_EDIT, body, type, &e);
  if (r == NULL)
    g_error ("%s", e->message);
  g_assert_cmpstr (r->prompt, ==, "a boat");
  g_assert_cmpint (r->n, ==, 2);
  g_assert_cmpint (r->width, ==, 64);
  g_assert_nonnull (r->image);
  g_assert_nonnull (r->image_sha256);
  g_assert_nonnull (r->mask_sha256);
  g_assert_false (r->mask_everything);
  /* the edit mask: alpha 0 exactly where the uploaded mask is fully transparent */
  g_assert_cmpint (r->mask->channels, ==, 4);
  for (int y = 0; y < 16; y++)
    for (int x = 0; x < 16; x++)
      {
        gboolean hole = x >= 4 && x < 8 && y >= 8 && y < 12;
        g_assert_cmpint (r->mask->pixels[(y * 16 + x) * 4 + 3], ==, hole ? 0 : 255);
      }

  /* semi-transparent pixels are kept: only alpha 0 is edited */
  g_autoptr (GBytes) faint = png (16, 16, 4, 200, 0, 0, 1);
  Part faint_edit[] = { { "image", faint, TRUE }, { "prompt", prompt } };
  g_autoptr (GBytes) faint_body = form (faint_edit, G_N_ELEMENTS (faint_edit));
  g_autoptr (RvApiError) faint_error = NULL;
  RvApiRequest *none = parse_form (RV_API_EDIT, faint_body, type, &faint_error);
  assert_refused (none, faint_error, 400, "invalid_mask", "image");

  /* an all-transparent mask edits everything */
  g_autoptr (GBytes) clear = png (16, 16, 4, 0, 0, 0, 0);
  Part all[] = { { "image", image, TRUE }, { "mask", clear, TRUE }, { "prompt", prompt } };
  g_autoptr (GBytes) all_body = form (all, G_N_ELEMENTS (all));
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_form (RV_API_EDIT, all_body, type, &e);
  g_assert_nonnull (r);
  g_assert_true (r->mask_everything);

  /* variations: an RGB image is fine; no prompt field */
  g_autoptr (GBytes) rgb = png (24, 16, 3, 0, 0, 0, 0);
  Part var[] = { { "image[]", rgb, TRUE }, { "response_format", text ("b64_json") } };
  g_autoptr (GBytes) var_body = form (var, G_N_ELEMENTS (var));
  g_bytes_unref (var[1].value);
  g_clear_pointer (&r, rv_api_request_free);
  r = parse_form (RV_API_VARIATION, var_body, type, &e);
  g_assert_nonnull (r);
  g_assert_cmpint (r->image->width, ==, 24);
  g_assert_cmpint (r->width, ==, 64);
  g_assert_cmpint (r->height, ==, 128);
  g_assert_cmpint (r->format, ==, RV_API_B64_JSON);

  /* refusals */
  g_autoptr (GBytes) small_mask = png (8, 8, 4, 255, 0, 0, 0);
  g_autoptr (GBytes) big = png (300, 16, 4, 255, 0, 0, 0);
  g_autoptr (GBytes) jpeg = g_bytes_new_static ("\xff\xd8\xff\xe0\0\x10JFIF\0\1\1\0\0\1\0\1\0\0", 20);
  g_autoptr (GBytes) fake = g_bytes_new_static ("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10garbage!", 32);
  g_autoptr (GBytes) opaque_rgb = png (16, 16, 3, 0, 0, 0, 0);
  g_autoptr (GBytes) bad_n = text ("two");
  g_autoptr (GBytes) bad_text = g_bytes_new_static ("a\0b", 3);
  static const struct { int kind; int parts[4]; guint status; const char *code, *param; } cases[] = {
    /* part indices into the table below */
    { RV_API_EDIT, { 1, 3, -1 }, 400, "missing_required_parameter", "image" },
    { RV_API_EDIT, { 0, 2, -1 }, 400, "missing_required_parameter", "prompt" },
    { RV_API_EDIT, { 0, 4, 3, -1 }, 400, "image_size_mismatch", "mask" },
    { RV_API_EDIT, { 5, 3, -1 }, 413, "image_too_large", "image" },
    { RV_API_EDIT, { 6, 3, -1 }, 400, "invalid_image_format", "image" },
    { RV_API_EDIT, { 0, 7, 3, -1 }, 400, "invalid_image", "mask" },
    { RV_API_EDIT, { 0, 11, 3, -1 }, 400, "invalid_mask", "mask" },
    { RV_API_EDIT, { 0, 1, 3, 3 }, 400, "duplicate_parameter", "prompt" },
    { RV_API_VARIATION, { 8, 9, -1 }, 400, "invalid_type", "n" },
    { RV_API_VARIATION, { 8, 3, -1 }, 400, "unknown_parameter", "prompt" },
    { RV_API_VARIATION, { 8, 1, -1 }, 400, "unknown_parameter", "mask" },
    { RV_API_EDIT, { 0, 10, -1 }, 400, "invalid_value", "prompt" },
  };
  Part table[] = {
    { "image", image, TRUE }, { "mask", mask, TRUE }, { "mask", image, TRUE }, { "prompt", prompt },
    { "mask", small_mask, TRUE }, { "image", big, TRUE }, { "image", jpeg, TRUE },
    { "mask", fake, TRUE }, { "image", opaque_rgb, TRUE }, { "n", bad_n }, { "prompt", bad_text },
    { "mask", opaque_rgb, TRUE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Part parts[4];
      int count = 0;
      for (int k = 0; k < 4 && cases[i].parts[k] >= 0; k++)
        parts[count++] = table[cases[i].parts[k]];
      g_autoptr (GBytes) b = form (parts, count);
      g_autoptr (RvApiError) err = NULL;
      RvApiRequest *bad = parse_form (cases[i].kind, b, type, &err);
      if (bad != NULL)
        g_error ("case %u was accepted", i);
      assert_refused (bad, err, cases[i].status, cases[i].code, cases[i].param);
    }

  /* too many parts, refused before libsoup takes them apart */
  g_autoptr (GBytes) user = text ("u");
  Part many[40];
  for (guint i = 0; i < G_N_ELEMENTS (many); i++)
    many[i] = (Part) { "user", user, FALSE };
  g_autoptr (GBytes) many_body = form (many, G_N_ELEMENTS (many));
  g_autoptr (RvApiError) many_error = NULL;
  RvApiRequest *many_r = parse_form (RV_API_VARIATION, many_body, type, &many_error);
  assert_refused (many_r, many_error, 400, "invalid_multipart", NULL);

  /* content types */
  static const char *const types[] = {
    "application/json", "multipart/form-data", "multipart/mixed; boundary=" BOUNDARY,
    "text/plain", "multipart/form-data; boundary=\"\"", "multipart/form-data; boundary=other",
  };
  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autoptr (RvApiError) err = NULL;
      RvApiRequest *bad = parse_form (RV_API_EDIT, body, types[i], &err);
      assert_refused (bad, err, 400, NULL, NULL);
    }
}

/* Damaged forms: truncations, flipped bytes, stray boundaries and line
 * breaks. Each must give a request or a 400/413, and nothing else. */
static void
test_multipart_damaged (void)
{
  g_autoptr (GBytes) image = png (16, 16, 4, 255, 2, 2, 0);
  g_autoptr (GBytes) prompt = text ("a damaged form");
  Part parts[] = { { "image", image, TRUE }, { "prompt", prompt }, { "n", text ("1") },
                   { "size", text ("64x64") } };
  g_autoptr (GBytes) body = form (parts, G_N_ELEMENTS (parts));
  g_bytes_unref (parts[2].value);
  g_bytes_unref (parts[3].value);
  const char *type = "multipart/form-data; boundary=" BOUNDARY;
  static const char *const inserts[] = {
    "--" BOUNDARY, "--" BOUNDARY "--", "\r\n", "\r\n\r\n", "\r\n--" BOUNDARY "\r\n", "-", "\0",
    "Content-Disposition: form-data; name=\"n\"\r\n\r\n",
  };
  gsize len = 0;
  const guint8 *orig = g_bytes_get_data (body, &len);
  int accepted = 0, refused = 0;
  int rounds = g_test_thorough () ? 20000 : 3000;
  for (int i = 0; i < rounds; i++)
    {
      GByteArray *b = g_byte_array_new ();
      g_byte_array_append (b, orig, len);
      int edits = g_test_rand_int_range (1, 4);
      for (int k = 0; k < edits; k++)
        {
          guint at = b->len ? (guint) g_test_rand_int_range (0, b->len) : 0;
          switch (g_test_rand_int_range (0, 4))
            {
            case 0:
              g_byte_array_set_size (b, at);
              break;
            case 1:
              if (b->len)
                b->data[at] ^= (guint8) g_test_rand_int_range (1, 256);
              break;
            case 2:
              {
                const char *s = inserts[g_test_rand_int_range (0, G_N_ELEMENTS (inserts))];
                gsize sl = s[0] ? strlen (s) : 1;
                g_array_insert_vals ((GArray *) b, at, s, (guint) sl);
              }
              break;
            default:
              if (b->len)
                {
                  guint cut = (guint) g_test_rand_int_range (1, 64);
                  g_byte_array_remove_range (b, at, MIN (cut, b->len - at));
                }
              break;
            }
        }
      g_autoptr (GBytes) damaged = g_byte_array_free_to_bytes (b);
      g_autoptr (RvApiError) err = NULL;
      g_autoptr (RvApiRequest) r = parse_form (RV_API_EDIT, damaged, type, &err);
      if (r != NULL)
        {
          g_assert_null (err);
          g_assert_nonnull (r->image);
          accepted++;
        }
      else
        {
          g_assert_nonnull (err);
          if (err->status != 400 && err->status != 413)
            g_error ("status %u for a damaged form: %s", err->status, err->message);
          refused++;
        }
    }
  g_test_message ("%d damaged forms accepted, %d refused", accepted, refused);
  g_assert_cmpint (refused, >, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/server/request/sizes", test_sizes);
  g_test_add_func ("/server/request/json", test_json);
  g_test_add_func ("/server/request/multipart", test_multipart);
  g_test_add_func ("/server/request/multipart-damaged", test_multipart_damaged);
  return g_test_run ();
}
