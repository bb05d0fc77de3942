/* rv-server-request.c: parsing and validating Images API requests (JSON and
 * multipart/form-data), with OpenAI's error shape for everything refused. */
#include "config.h"

#include "rv-server-request.h"
#include "rv-image-io.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* ---- errors ---- */

static const char *
error_type (guint status)
{
  switch (status)
    {
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

RvApiError *
rv_api_error_new (guint status, const char *code, const char *param, const char *format, ...)
{
  RvApiError *e = g_new0 (RvApiError, 1);
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  /* parts of a message may quote the request (a parser's complaint about a
   * broken escape, a field name): what goes back is always valid UTF-8 */
  e->message = g_utf8_make_valid (message, -1);
  e->status = status;
  e->type = g_strdup (error_type (status));
  e->code = g_strdup (code);
  e->param = param ? g_utf8_make_valid (param, -1) : NULL;
  return e;
}

void
rv_api_error_free (RvApiError *e)
{
  if (e == NULL)
    return;
  g_free (e->type);
  g_free (e->code);
  g_free (e->param);
  g_free (e->message);
  g_free (e);
}

static void
add_nullable (JsonBuilder *b, const char *name, const char *value)
{
  json_builder_set_member_name (b, name);
  if (value != NULL)
    json_builder_add_string_value (b, value);
  else
    json_builder_add_null_value (b);
}

GBytes *
rv_api_error_to_json (const RvApiError *e)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "error");
  json_builder_begin_object (b);
  add_nullable (b, "message", e->message);
  add_nullable (b, "type", e->type);
  add_nullable (b, "param", e->param);
  add_nullable (b, "code", e->code);
  json_builder_end_object (b);
  json_builder_end_object (b);
  return rv_api_json_bytes (b);
}

GBytes *
rv_api_json_bytes (JsonBuilder *builder)
{
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  gsize len = 0;
  char *text = json_generator_to_data (gen, &len);
  return g_bytes_new_take (text, len);
}

/* ---- sizes ---- */

static gboolean
parse_side (const char **p, int *out)
{
  const char *s = *p;
  int v = 0, digits = 0;
  while (g_ascii_isdigit (*s) && digits < 6)
    {
      v = v * 10 + (*s - '0');
      s++;
      digits++;
    }
  if (digits == 0 || digits == 6)
    return FALSE;
  *out = v;
  *p = s;
  return TRUE;
}

gboolean
rv_api_parse_size (const char *s, int max_size, int *width, int *height)
{
  int w, h;
  if (!parse_side (&s, &w) || *s++ != 'x' || !parse_side (&s, &h) || *s != '\0')
    return FALSE;
  gboolean named = w == h && (w == 256 || w == 512 || w == 1024);
  if (!named && (w < 64 || h < 64 || w % 64 != 0 || h % 64 != 0 || w > max_size || h > max_size))
    return FALSE;
  *width = w;
  *height = h;
  return TRUE;
}

/* ---- the fields of each endpoint ---- */

#define ON_GENERATE  (1u << RV_API_GENERATE)
#define ON_EDIT      (1u << RV_API_EDIT)
#define ON_VARIATION (1u << RV_API_VARIATION)
#define ON_ALL       (ON_GENERATE | ON_EDIT | ON_VARIATION)

typedef enum {
  T_STRING,
  T_INT,
  T_NUMBER,
  T_BOOL,
  T_FILE,
} FieldType;

typedef struct {
  const char *name;
  FieldType   type;
  guint       endpoints;
} Field;

/* OpenAI's fields for dall-e-2, then Reverie's extensions (passed as extra
 * body fields by the official clients). */
static const Field fields[] = {
  { "prompt", T_STRING, ON_GENERATE | ON_EDIT },
  { "n", T_INT, ON_ALL },
  { "size", T_STRING, ON_ALL },
  { "response_format", T_STRING, ON_ALL },
  { "model", T_STRING, ON_ALL },
  { "user", T_STRING, ON_ALL },
  { "quality", T_STRING, ON_GENERATE },
  { "image", T_FILE, ON_EDIT | ON_VARIATION },
  { "mask", T_FILE, ON_EDIT },
  { "stream", T_BOOL, ON_ALL },
  { "seed", T_INT, ON_ALL },
  { "steps", T_INT, ON_ALL },
  { "prior_steps", T_INT, ON_GENERATE | ON_EDIT },
  { "guidance", T_NUMBER, ON_ALL },
  { "prior_guidance", T_NUMBER, ON_GENERATE | ON_EDIT },
  { "negative_prompt", T_STRING, ON_GENERATE | ON_EDIT },
  { "scheduler", T_STRING, ON_ALL },
};

/* One field's value, from JSON or from a form part. */
typedef struct {
  const char *s;       /* T_STRING (borrowed, UTF-8) */
  gint64      i;       /* T_INT */
  double      d;       /* T_NUMBER */
  gboolean    b;       /* T_BOOL */
  GBytes     *file;    /* T_FILE (borrowed) */
} Value;

/* The request being built, with the uploads not decoded yet. */
typedef struct {
  RvApiRequest *r;
  const RvApiLimits *limits;
  gboolean has_prompt, has_size;
  GBytes *image, *mask;
} Parse;

static const Field *
find_field (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    if (strcmp (fields[i].name, name) == 0)
      return &fields[i];
  return NULL;
}

static const char *
endpoint_name (RvApiKind kind)
{
  switch (kind)
    {
    case RV_API_GENERATE: return "/v1/images/generations";
    case RV_API_EDIT: return "/v1/images/edits";
    default: return "/v1/images/variations";
    }
}

static gboolean
check_text (const char *name, const char *s, gsize max_chars, RvApiError **error)
{
  if (g_utf8_strlen (s, -1) > (glong) max_chars)
    {
      *error = rv_api_error_new (400, "string_above_max_length", name,
                                 "'%s' is too long: at most %zu characters are accepted.", name,
                                 max_chars);
      return FALSE;
    }
  return TRUE;
}

static gboolean
in_range (const char *name, double v, double lo, double hi, RvApiError **error)
{
  if (!(v >= lo && v <= hi))
    {
      *error = rv_api_error_new (400, "invalid_value", name,
                                 "'%s' must be between %g and %g (got %g).", name, lo, hi, v);
      return FALSE;
    }
  return TRUE;
}

/* Stores one validated field into the request. */
static gboolean
apply (Parse *p, const Field *f, const Value *v, RvApiError **error)
{
  RvApiRequest *r = p->r;
  const char *name = f->name;

  if (strcmp (name, "prompt") == 0)
    {
      if (!check_text (name, v->s, RV_API_MAX_PROMPT, error))
        return FALSE;
      r->prompt = g_strdup (v->s);
      p->has_prompt = TRUE;
    }
  else if (strcmp (name, "negative_prompt") == 0)
    {
      if (!check_text (name, v->s, RV_API_MAX_PROMPT, error))
        return FALSE;
      r->negative_prompt = v->s[0] ? g_strdup (v->s) : NULL;
    }
  else if (strcmp (name, "n") == 0)
    {
      if (!in_range (name, v->i, 1, RV_API_MAX_N, error))
        return FALSE;
      r->n = (int) v->i;
    }
  else if (strcmp (name, "size") == 0)
    {
      if (!rv_api_parse_size (v->s, p->limits->max_size, &r->width, &r->height))
        {
          *error = rv_api_error_new (400, "invalid_size", name,
                                     "'%s' is not a supported size: use 256x256, 512x512, "
                                     "1024x1024, or WIDTHxHEIGHT with both sides multiples of "
                                     "64 from 64 to %d.", v->s, p->limits->max_size);
          return FALSE;
        }
      p->has_size = TRUE;
    }
  else if (strcmp (name, "response_format") == 0)
    {
      if (strcmp (v->s, "url") == 0)
        r->format = RV_API_URL;
      else if (strcmp (v->s, "b64_json") == 0)
        r->format = RV_API_B64_JSON;
      else
        {
          *error = rv_api_error_new (400, "invalid_value", name,
                                     "'%s' is not a response format: use 'url' or 'b64_json'.",
                                     v->s);
          return FALSE;
        }
    }
  else if (strcmp (name, "model") == 0)
    {
      /* resolved by the server against its model sets ("dall-e-2" = its
       * default set); an unknown one is a 404 there */
      g_free (r->model);
      r->model = g_strdup (v->s);
    }
  else if (strcmp (name, "user") == 0)
    ;   /* accepted for compatibility; nothing is tracked per user */
  else if (strcmp (name, "quality") == 0)
    {
      if (strcmp (v->s, "standard") != 0 && strcmp (v->s, "auto") != 0)
        {
          *error = rv_api_error_new (400, "invalid_value", name,
                                     "'%s' is not a quality of dall-e-2: use 'standard'.", v->s);
          return FALSE;
        }
    }
  else if (strcmp (name, "image") == 0)
    p->image = v->file;
  else if (strcmp (name, "mask") == 0)
    p->mask = v->file;
  else if (strcmp (name, "stream") == 0)
    r->stream = v->b;
  else if (strcmp (name, "seed") == 0)
    {
      /* JSON numbers carry integers exactly up to 2⁵³ */
      if (!in_range (name, v->i, 0, 9007199254740991.0, error))
        return FALSE;
      r->seed = (guint64) v->i;
      r->seed_given = TRUE;
    }
  else if (strcmp (name, "steps") == 0)
    {
      if (!in_range (name, v->i, 1, 1000, error))
        return FALSE;
      r->steps = (int) v->i;
    }
  else if (strcmp (name, "prior_steps") == 0)
    {
      if (!in_range (name, v->i, 2, 1000, error))
        return FALSE;
      r->prior_steps = (int) v->i;
    }
  else if (strcmp (name, "guidance") == 0)
    {
      if (!in_range (name, v->d, 0, 100, error))
        return FALSE;
      r->guidance = v->d;
    }
  else if (strcmp (name, "prior_guidance") == 0)
    {
      if (!in_range (name, v->d, 0, 100, error))
        return FALSE;
      r->prior_guidance = v->d;
    }
  else if (strcmp (name, "scheduler") == 0)
    {
      if (strcmp (v->s, "ddpm") != 0 && strcmp (v->s, "ddim") != 0 && strcmp (v->s, "dpmpp") != 0)
        {
          *error = rv_api_error_new (400, "invalid_value", name,
                                     "'%s' is not a scheduler: use 'ddpm', 'ddim' or 'dpmpp'.",
                                     v->s);
          return FALSE;
        }
      r->scheduler = g_strdup (v->s);
    }
  return TRUE;
}

/* The field of this name on this endpoint, or an error. */
static const Field *
lookup (RvApiKind kind, const char *name, RvApiError **error)
{
  const Field *f = find_field (name);
  if (f == NULL || !(f->endpoints & (1u << kind)))
    {
      *error = rv_api_error_new (400, "unknown_parameter", name,
                                 "Unrecognized request argument supplied: '%s' (%s).", name,
                                 endpoint_name (kind));
      return NULL;
    }
  return f;
}

static RvApiError *
wrong_type (const Field *f)
{
  static const char *const what[] = {
    [T_STRING] = "a string", [T_INT] = "an integer", [T_NUMBER] = "a number",
    [T_BOOL] = "a boolean", [T_FILE] = "a file",
  };
  return rv_api_error_new (400, "invalid_type", f->name, "'%s' must be %s.", f->name,
                           what[f->type]);
}

/* ---- uploads ---- */

static const guint8 png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

static const char *
sniff_format (const guint8 *d, gsize len)
{
  if (len >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
    return "JPEG";
  if (len >= 6 && (memcmp (d, "GIF87a", 6) == 0 || memcmp (d, "GIF89a", 6) == 0))
    return "GIF";
  if (len >= 12 && memcmp (d, "RIFF", 4) == 0 && memcmp (d + 8, "WEBP", 4) == 0)
    return "WebP";
  if (len >= 2 && d[0] == 'B' && d[1] == 'M')
    return "BMP";
  return NULL;
}

/* Checks the PNG signature and the size in its header before anything is
 * decoded, then decodes. */
static RvImage *
load_png (const char *param, GBytes *file, const RvApiLimits *limits, RvApiError **error)
{
  gsize len = 0;
  const guint8 *d = g_bytes_get_data (file, &len);
  if (len < 24 || memcmp (d, png_signature, 8) != 0 || memcmp (d + 12, "IHDR", 4) != 0)
    {
      const char *format = d != NULL ? sniff_format (d, len) : NULL;
      *error = rv_api_error_new (400, "invalid_image_format", param,
                                 "The %s must be a PNG file (got %s).", param,
                                 format ? format : len == 0 ? "an empty file" : "data that is not a PNG");
      return NULL;
    }
  guint32 w = (guint32) d[16] << 24 | (guint32) d[17] << 16 | (guint32) d[18] << 8 | d[19];
  guint32 h = (guint32) d[20] << 24 | (guint32) d[21] << 16 | (guint32) d[22] << 8 | d[23];
  if (w == 0 || h == 0 || w > (guint32) limits->max_image_side || h > (guint32) limits->max_image_side)
    {
      *error = rv_api_error_new (413, "image_too_large", param,
                                 "The %s is %u×%u pixels; images up to %d pixels a side are "
                                 "accepted.", param, w, h, limits->max_image_side);
      return NULL;
    }
  g_autofree char *what = g_strdup_printf ("The %s", param);
  g_autoptr (GError) local = NULL;
  RvImage *img = rv_image_load_bytes (file, what, &local);
  if (img == NULL)
    *error = rv_api_error_new (400, "invalid_image", param, "%s", local->message);
  return img;
}

/* The edit region as an RGBA mask for RV_MASK_ALPHA: alpha 0 where the
 * source's alpha is exactly 0 (fully transparent = edit, as in the Images
 * API), 255 elsewhere; the engine's own threshold would also take pixels that
 * are only partly transparent. Counts the edited pixels. */
static RvImage *
edit_mask (const RvImage *src, gsize *edited)
{
  RvImage *m = rv_image_new (src->width, src->height, 4);
  gsize n = (gsize) src->width * src->height;
  *edited = 0;
  for (gsize p = 0; p < n; p++)
    {
      gboolean edit = src->pixels[p * 4 + 3] == 0;
      memset (m->pixels + p * 4, 0, 3);
      m->pixels[p * 4 + 3] = edit ? 0 : 255;
      *edited += edit;
    }
  return m;
}

static gboolean
decode_uploads (Parse *p, RvApiError **error)
{
  RvApiRequest *r = p->r;
  if (p->image == NULL)
    {
      *error = rv_api_error_new (400, "missing_required_parameter", "image",
                                 "Missing required parameter: 'image' (a PNG file).");
      return FALSE;
    }
  if ((r->image = load_png ("image", p->image, p->limits, error)) == NULL)
    return FALSE;
  gsize len;
  const guint8 *d = g_bytes_get_data (p->image, &len);
  r->image_sha256 = rv_sha256_hex (d, len);
  if (r->kind != RV_API_EDIT)
    return TRUE;

  const RvImage *alpha = r->image;
  const char *from = "image";
  g_autoptr (RvImage) mask_file = NULL;
  if (p->mask != NULL)
    {
      if ((mask_file = load_png ("mask", p->mask, p->limits, error)) == NULL)
        return FALSE;
      d = g_bytes_get_data (p->mask, &len);
      r->mask_sha256 = rv_sha256_hex (d, len);
      if (mask_file->width != r->image->width || mask_file->height != r->image->height)
        {
          *error = rv_api_error_new (400, "image_size_mismatch", "mask",
                                     "The mask is %d×%d pixels but the image is %d×%d: they must "
                                     "be the same size.", mask_file->width, mask_file->height,
                                     r->image->width, r->image->height);
          return FALSE;
        }
      alpha = mask_file;
      from = "mask";
    }
  if (alpha->channels != 4)
    {
      *error = rv_api_error_new (400, "invalid_mask", from,
                                 p->mask ? "The mask has no alpha channel: its fully transparent "
                                           "pixels mark the area to edit."
                                         : "No mask was given and the image has no alpha channel: "
                                           "give a mask, or make the area to edit fully "
                                           "transparent in the image.");
      return FALSE;
    }
  gsize edited = 0;
  r->mask = edit_mask (alpha, &edited);
  if (edited == 0)
    {
      *error = rv_api_error_new (400, "invalid_mask", from,
                                 "The %s has no fully transparent pixels: they mark the area to "
                                 "edit.", from);
      return FALSE;
    }
  r->mask_everything = edited == (gsize) r->image->width * r->image->height;
  return TRUE;
}

/* ---- whole requests ---- */

static Parse
parse_begin (RvApiKind kind, const RvApiLimits *limits)
{
  RvApiRequest *r = g_new0 (RvApiRequest, 1);
  r->kind = kind;
  r->n = 1;
  r->format = RV_API_URL;
  r->guidance = r->prior_guidance = -1;
  Parse p = { .r = r, .limits = limits };
  return p;
}

static RvApiRequest *
parse_end (Parse *p, RvApiError **error)
{
  g_autoptr (RvApiRequest) r = p->r;
  if (r->kind != RV_API_VARIATION)
    {
      if (!p->has_prompt)
        {
          *error = rv_api_error_new (400, "missing_required_parameter", "prompt",
                                     "Missing required parameter: 'prompt'.");
          return NULL;
        }
      gboolean blank = TRUE;
      for (const char *c = r->prompt; *c && blank; c++)
        blank = g_ascii_isspace (*c);
      if (blank)
        {
          *error = rv_api_error_new (400, "invalid_value", "prompt", "The prompt is empty.");
          return NULL;
        }
    }
  r->size_given = p->has_size;
  if (!p->has_size)
    {
      r->width = p->limits->default_width;
      r->height = p->limits->default_height;
    }
  if (r->kind != RV_API_GENERATE && !decode_uploads (p, error))
    return NULL;
  return g_steal_pointer (&r);
}

/* A JSON member as a Value of the field's type. */
static gboolean
json_value (const Field *f, JsonNode *node, Value *v, RvApiError **error)
{
  GType t = json_node_get_value_type (node);
  gboolean ok = FALSE;
  switch (f->type)
    {
    case T_STRING:
      if ((ok = t == G_TYPE_STRING))
        v->s = json_node_get_string (node);
      /* json-glib lets some broken escapes through as bytes that are not UTF-8 */
      if (ok && !g_utf8_validate (v->s, -1, NULL))
        {
          *error = rv_api_error_new (400, "invalid_value", f->name,
                                     "%s is not valid UTF-8 text (check its escapes).", f->name);
          return FALSE;
        }
      break;
    case T_INT:
      if (t == G_TYPE_INT64)
        {
          v->i = json_node_get_int (node);
          ok = TRUE;
        }
      else if (t == G_TYPE_DOUBLE)
        {
          /* 2.0 is an integer; 2.5 is not */
          double d = json_node_get_double (node);
          if ((ok = d == floor (d) && fabs (d) < 9.3e18))
            v->i = (gint64) d;
        }
      break;
    case T_NUMBER:
      if ((ok = t == G_TYPE_INT64 || t == G_TYPE_DOUBLE))
        v->d = json_node_get_double (node);
      break;
    case T_BOOL:
      if ((ok = t == G_TYPE_BOOLEAN))
        v->b = json_node_get_boolean (node);
      break;
    case T_FILE:
      break;
    }
  if (!ok)
    *error = wrong_type (f);
  return ok;
}

/* json-glib parses recursively, so a body of nested brackets would exhaust
 * the stack: the nesting is bounded before it parses. */
static gboolean
json_nesting_ok (const char *d, gsize len, int max_depth)
{
  int depth = 0;
  gboolean in_string = FALSE, escaped = FALSE;
  for (gsize i = 0; i < len; i++)
    {
      char c = d[i];
      if (in_string)
        {
          if (escaped)
            escaped = FALSE;
          else if (c == '\\')
            escaped = TRUE;
          else if (c == '"')
            in_string = FALSE;
        }
      else if (c == '"')
        in_string = TRUE;
      else if ((c == '[' || c == '{') && ++depth > max_depth)
        return FALSE;
      else if (c == ']' || c == '}')
        depth--;
    }
  return TRUE;
}

RvApiRequest *
rv_api_request_parse_json (GBytes *body, const RvApiLimits *limits, RvApiError **error)
{
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);
  if (!json_nesting_ok (data, len, 32))
    {
      *error = rv_api_error_new (400, "invalid_json", NULL,
                                 "The request body nests too deeply to be a request.");
      return NULL;
    }
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (len == 0 || !json_parser_load_from_data (parser, data, (gssize) len, &local))
    {
      *error = rv_api_error_new (400, "invalid_json", NULL,
                                 "The request body is not valid JSON%s%s. Send a JSON object.",
                                 local ? ": " : "", local ? local->message : "");
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      *error = rv_api_error_new (400, "invalid_json", NULL, "The request body must be a JSON object.");
      return NULL;
    }
  JsonObject *o = json_node_get_object (root);
  Parse p = parse_begin (RV_API_GENERATE, limits);
  g_autoptr (RvApiRequest) owned = p.r;
  g_autoptr (GList) members = json_object_get_members (o);
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (o, name);
      const Field *f = lookup (RV_API_GENERATE, name, error);
      if (f == NULL)
        return NULL;
      if (JSON_NODE_HOLDS_NULL (node))
        continue;   /* null = not given, as the SDKs send it */
      Value v = { 0 };
      if (!JSON_NODE_HOLDS_VALUE (node))
        {
          *error = wrong_type (f);
          return NULL;
        }
      if (!json_value (f, node, &v, error) || !apply (&p, f, &v, error))
        return NULL;
    }
  owned = NULL;
  return parse_end (&p, error);
}

/* ---- multipart ---- */

/* Debian 12's libsoup (3.2.3) predates the fixes for CVE-2025-32914 and
 * GNOME/libsoup#447 and #449: soup_multipart_new_from_message() reads out of
 * bounds, or makes a part of negative length, on some crafted bodies. This
 * walks the body the way it does, with bounds checks, so that only bodies it
 * handles safely reach it. */
static const char *
find_boundary (const char *data, const char *start, const char *end, const char *boundary,
               gsize blen)
{
  for (const char *b = memchr (start, '-', end - start); b != NULL && b + blen + 4 < end;
       b = memchr (b + 2, '-', end - (b + 2)))
    {
      if (b[1] != '-' || memcmp (b + 2, boundary, blen) != 0)
        continue;
      if (!(b == start || (b - data >= 2 && b[-1] == '\n' && b[-2] == '\r')))
        continue;
      if ((b[blen + 2] == '-' && b[blen + 3] == '-') || (b[blen + 2] == '\r' && b[blen + 3] == '\n'))
        return b;
    }
  return NULL;
}

#define MAX_PARTS 32

/* NULL if the body is safe to hand to libsoup, else what is wrong with it.
 * The parts are counted here too, before libsoup allocates each of them. */
static const char *
multipart_problem (const char *data, gsize len, const char *boundary)
{
  const char *broken = "its boundaries or part headers are broken";
  gsize blen = strlen (boundary);
  const char *end = data + len;
  if (blen == 0 || blen > 70)
    return "its boundary is empty or longer than 70 characters";
  const char *start = find_boundary (data, data, end, boundary, blen);
  if (start == NULL)
    return broken;
  for (int parts = 1; start[2 + blen] != '-'; parts++)
    {
      if (parts > MAX_PARTS)
        return "it has too many parts";
      const char *next = find_boundary (data, start + 2 + blen, end, boundary, blen);
      if (next == NULL)
        return broken;
      const char *split = g_strstr_len (start, next - start, "\r\n\r\n");
      if (split == NULL || split + 4 > next - 2)
        return broken;
      start = next;
    }
  return NULL;
}

static RvApiError *
malformed (const char *why)
{
  return rv_api_error_new (400, "invalid_multipart", NULL,
                           "The request body is not valid multipart/form-data: %s.", why);
}

/* A form part's text as a Value of the field's type. */
static gboolean
form_value (const Field *f, GBytes *part, char **text, Value *v, RvApiError **error)
{
  if (f->type == T_FILE)
    {
      v->file = part;
      return TRUE;
    }
  gsize len = 0;
  const char *d = g_bytes_get_data (part, &len);
  if (len > 64 * 1024 || (len > 0 && memchr (d, '\0', len) != NULL) ||
      !g_utf8_validate_len (d ? d : "", len, NULL))
    {
      *error = rv_api_error_new (400, "invalid_value", f->name,
                                 "'%s' must be UTF-8 text.", f->name);
      return FALSE;
    }
  *text = g_strndup (d ? d : "", len);
  const char *s = *text;
  char *end = NULL;
  gboolean ok = TRUE;
  switch (f->type)
    {
    case T_STRING:
      v->s = s;
      break;
    case T_INT:
      errno = 0;
      v->i = g_ascii_strtoll (s, &end, 10);
      ok = end != s && *end == '\0' && errno == 0 && !g_ascii_isspace (s[0]);
      break;
    case T_NUMBER:
      v->d = g_ascii_strtod (s, &end);
      ok = end != s && *end == '\0' && isfinite (v->d) && !g_ascii_isspace (s[0]);
      break;
    case T_BOOL:
      ok = strcmp (s, "true") == 0 || strcmp (s, "false") == 0 || strcmp (s, "1") == 0 ||
           strcmp (s, "0") == 0;
      v->b = s[0] == 't' || s[0] == '1';
      break;
    case T_FILE:
      break;
    }
  if (!ok)
    *error = wrong_type (f);
  return ok;
}

RvApiRequest *
rv_api_request_parse_multipart (RvApiKind kind, SoupMessageHeaders *headers, GBytes *body,
                                const RvApiLimits *limits, RvApiError **error)
{
  g_autoptr (GHashTable) params = NULL;
  const char *type = soup_message_headers_get_content_type (headers, &params);
  if (type == NULL || g_ascii_strcasecmp (type, "multipart/form-data") != 0)
    {
      *error = rv_api_error_new (400, "invalid_content_type", NULL,
                                 "%s takes multipart/form-data (got %s).", endpoint_name (kind),
                                 type ? type : "no Content-Type");
      return NULL;
    }
  const char *boundary = g_hash_table_lookup (params, "boundary");
  if (boundary == NULL)
    {
      *error = malformed ("the Content-Type has no boundary");
      return NULL;
    }

  /* A copy with two bytes before it and a NUL after it: the parser looks one
   * or two bytes behind a boundary and searches part headers as C strings. */
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);
  char *padded = g_malloc0 (len + 3);
  if (len > 0)
    memcpy (padded + 2, data, len);
  g_autoptr (GBytes) whole = g_bytes_new_take (padded, len + 3);
  g_autoptr (GBytes) copy = g_bytes_new_from_bytes (whole, 2, len);
  const char *problem = multipart_problem (padded + 2, len, boundary);
  if (problem != NULL)
    {
      *error = malformed (problem);
      return NULL;
    }
  g_autoptr (SoupMultipart) multipart = soup_multipart_new_from_message (headers, copy);
  if (multipart == NULL)
    {
      *error = malformed ("it could not be parsed");
      return NULL;
    }
  int n_parts = soup_multipart_get_length (multipart);
  if (n_parts > MAX_PARTS)
    {
      *error = malformed ("it has too many parts");
      return NULL;
    }

  Parse p = parse_begin (kind, limits);
  g_autoptr (RvApiRequest) owned = p.r;
  g_autoptr (GPtrArray) texts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  for (int i = 0; i < n_parts; i++)
    {
      SoupMessageHeaders *ph = NULL;
      GBytes *part = NULL;
      g_autoptr (GHashTable) dparams = NULL;
      char *disposition = NULL;
      if (!soup_multipart_get_part (multipart, i, &ph, &part) || part == NULL ||
          !soup_message_headers_get_content_disposition (ph, &disposition, &dparams))
        {
          *error = malformed ("a part has no Content-Disposition");
          return NULL;
        }
      gboolean form_data = disposition != NULL && g_ascii_strcasecmp (disposition, "form-data") == 0;
      g_free (disposition);
      const char *name = g_hash_table_lookup (dparams, "name");
      if (!form_data || name == NULL || !g_utf8_validate (name, -1, NULL))
        {
          *error = malformed ("a part is not form-data with a name");
          return NULL;
        }
      /* newer clients send edit images as an array, image[] */
      if (strcmp (name, "image[]") == 0)
        name = "image";
      const Field *f = lookup (kind, name, error);
      if (f == NULL)
        return NULL;
      if (g_hash_table_contains (seen, f->name))
        {
          *error = rv_api_error_new (400, "duplicate_parameter", f->name,
                                     "'%s' is given more than once.", f->name);
          return NULL;
        }
      g_hash_table_add (seen, (gpointer) f->name);
      char *text = NULL;
      Value v = { 0 };
      gboolean ok = form_value (f, part, &text, &v, error);
      if (text != NULL)
        g_ptr_array_add (texts, text);
      if (!ok || !apply (&p, f, &v, error))
        return NULL;
    }
  owned = NULL;
  /* the uploads are slices of copy, which lives until here */
  return parse_end (&p, error);
}

void
rv_api_request_free (RvApiRequest *r)
{
  if (r == NULL)
    return;
  g_free (r->prompt);
  g_free (r->negative_prompt);
  g_free (r->scheduler);
  g_free (r->model);
  g_clear_pointer (&r->image, rv_image_free);
  g_clear_pointer (&r->mask, rv_image_free);
  g_free (r->image_sha256);
  g_free (r->mask_sha256);
  g_free (r);
}
