/* rv-safetensors.c: safetensors files (8-byte little-endian header length,
 * JSON header, raw little-endian data), mapped read-only and validated in full
 * before any tensor is handed out; and the strict JSON reader. */
#include "rv-safetensors.h"

#include "rv-device.h"
#include "rv-ops.h"

#include <string.h>

G_DEFINE_QUARK (rv-safetensors-error-quark, rv_safetensors_error)

/* ---- dtypes ---- */

static const struct {
  const char *name;
  gsize       size;
} dtypes[] = {
  [RV_ST_BOOL] = { "BOOL", 1 },
  [RV_ST_U8] = { "U8", 1 },
  [RV_ST_I8] = { "I8", 1 },
  [RV_ST_I16] = { "I16", 2 },
  [RV_ST_U16] = { "U16", 2 },
  [RV_ST_I32] = { "I32", 4 },
  [RV_ST_U32] = { "U32", 4 },
  [RV_ST_I64] = { "I64", 8 },
  [RV_ST_U64] = { "U64", 8 },
  [RV_ST_F8_E4M3] = { "F8_E4M3", 1 },
  [RV_ST_F8_E5M2] = { "F8_E5M2", 1 },
  [RV_ST_F16] = { "F16", 2 },
  [RV_ST_BF16] = { "BF16", 2 },
  [RV_ST_F32] = { "F32", 4 },
  [RV_ST_F64] = { "F64", 8 },
};

const char *
rv_st_dtype_name (RvStDType dtype)
{
  g_return_val_if_fail (dtype < G_N_ELEMENTS (dtypes), "?");
  return dtypes[dtype].name;
}

gsize
rv_st_dtype_size (RvStDType dtype)
{
  g_return_val_if_fail (dtype < G_N_ELEMENTS (dtypes), 1);
  return dtypes[dtype].size;
}

gboolean
rv_st_dtype_is_float (RvStDType dtype)
{
  return dtype == RV_ST_F16 || dtype == RV_ST_BF16 || dtype == RV_ST_F32 || dtype == RV_ST_F64;
}

gboolean
rv_st_dtype_is_integer (RvStDType dtype)
{
  return dtype <= RV_ST_U64;
}

static gboolean
dtype_from_name (const char *name, RvStDType *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtypes); i++)
    if (strcmp (dtypes[i].name, name) == 0)
      {
        *out = i;
        return TRUE;
      }
  return FALSE;
}

/* ---- strict JSON ---- */

#define JSON_MAX_DEPTH 64

typedef struct {
  GArray *counts;          /* members seen per open object */
  char   *duplicate;       /* first duplicated member name */
} DupCheck;

static void
on_object_start (JsonParser *parser, gpointer user_data)
{
  DupCheck *d = user_data;
  guint zero = 0;
  g_array_append_val (d->counts, zero);
}

static void
on_object_member (JsonParser *parser, JsonObject *object, const char *name, gpointer user_data)
{
  DupCheck *d = user_data;
  if (d->counts->len == 0)
    return;
  guint *count = &g_array_index (d->counts, guint, d->counts->len - 1);
  (*count)++;
  /* json-glib replaces a repeated member silently: the object did not grow */
  if (json_object_get_size (object) < *count && d->duplicate == NULL)
    d->duplicate = g_strdup (name);
}

static void
on_object_end (JsonParser *parser, JsonObject *object, gpointer user_data)
{
  DupCheck *d = user_data;
  if (d->counts->len > 0)
    g_array_set_size (d->counts, d->counts->len - 1);
}

/* Checks what json-glib does not (nesting depth — its recursive parser would
 * overflow the stack —, NUL, integers beyond 64 bits, more than one
 * top-level value, which it accepts) and rewrites Python's bare non-finite
 * numbers as strings. Returns NULL when no rewrite was needed. */
static GString *
json_prescan (const char *data, gsize len, const char *origin, GError **error)
{
  static const struct { const char *token, *string; } nonfinite[] = {
    { "-Infinity", "\"-inf\"" }, { "Infinity", "\"inf\"" }, { "NaN", "\"nan\"" },
  };
  GString *out = NULL;
  gsize copied = 0;            /* data[0, copied) is in `out` */
  int depth = 0;
  gboolean top_done = FALSE;   /* a whole top-level value was seen */

  if (memchr (data, 0, len) != NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: not valid JSON: contains a NUL byte", origin);
      return NULL;
    }
  for (gsize i = 0; i < len; i++)
    {
      char c = data[i];
      if (g_ascii_isspace (c))
        continue;
      gboolean top = depth == 0;
      if (top && top_done)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: not valid JSON: more than one value at the top level", origin);
          goto fail;
        }
      if (c == '"')
        {
          for (i++; i < len && data[i] != '"'; i++)
            if (data[i] == '\\' && i + 1 < len)
              {
                i++;
                if (data[i] == 'u' && i + 4 < len && strncmp (data + i + 1, "0000", 4) == 0)
                  {
                    g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                                 "%s: not valid JSON: a string contains a NUL character", origin);
                    goto fail;
                  }
              }
          top_done = top;
          continue;
        }
      if (c == '[' || c == '{')
        {
          if (++depth > JSON_MAX_DEPTH)
            {
              g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                           "%s: JSON nested deeper than %d levels", origin, JSON_MAX_DEPTH);
              goto fail;
            }
          continue;
        }
      if (c == ']' || c == '}')
        {
          if (--depth == 0)
            top_done = TRUE;
          else if (depth < 0)
            break;   /* json-glib reports it */
          continue;
        }
      gboolean replaced = FALSE;
      for (guint k = 0; k < G_N_ELEMENTS (nonfinite) && !replaced; k++)
        {
          gsize n = strlen (nonfinite[k].token);
          if (len - i >= n && memcmp (data + i, nonfinite[k].token, n) == 0)
            {
              if (out == NULL)
                out = g_string_sized_new (len + 16);
              g_string_append_len (out, data + copied, i - copied);
              g_string_append (out, nonfinite[k].string);
              i += n - 1;
              copied = i + 1;
              replaced = TRUE;
            }
        }
      if (!replaced && (c == '-' || g_ascii_isalnum (c)))
        {
          /* a number or a literal (true, false, null) */
          gsize start = i, digits = 0;
          gboolean integer = TRUE;
          while (i < len && (g_ascii_isalnum (data[i]) || strchr ("+-.", data[i]) != NULL))
            {
              if (g_ascii_isdigit (data[i]))
                digits++;
              else if (data[i] != '-' || i != start)
                integer = FALSE;
              i++;
            }
          i--;
          if (integer && digits >= 19)
            {
              g_autofree char *num = g_strndup (data + start, i + 1 - start);
              if (!g_ascii_string_to_signed (num, 10, G_MININT64, G_MAXINT64, NULL, NULL))
                {
                  g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                               "%s: the integer %s does not fit in 64 bits", origin, num);
                  goto fail;
                }
            }
        }
      top_done = top && (replaced || c == '-' || g_ascii_isalnum (c));
    }
  if (out != NULL)
    g_string_append_len (out, data + copied, len - copied);
  return out;

fail:
  if (out != NULL)
    g_string_free (out, TRUE);
  return NULL;
}

/* rv_json_parse, also telling a duplicated member name apart from other errors. */
static JsonNode *
json_parse (const char *data, gsize len, const char *origin, char **duplicate, GError **error)
{
  GError *local = NULL;
  g_autoptr (GString) rewritten = json_prescan (data, len, origin, &local);
  if (local != NULL)
    {
      g_propagate_error (error, local);
      return NULL;
    }
  if (rewritten != NULL)
    {
      data = rewritten->str;
      len = rewritten->len;
    }

  g_autoptr (JsonParser) parser = json_parser_new ();
  DupCheck d = { g_array_new (FALSE, FALSE, sizeof (guint)), NULL };
  g_signal_connect (parser, "object-start", G_CALLBACK (on_object_start), &d);
  g_signal_connect (parser, "object-member", G_CALLBACK (on_object_member), &d);
  g_signal_connect (parser, "object-end", G_CALLBACK (on_object_end), &d);
  gboolean ok = json_parser_load_from_data (parser, data, (gssize) len, &local);
  g_array_unref (d.counts);
  if (!ok)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: not valid JSON: %s",
                   origin, local->message);
      g_error_free (local);
      g_free (d.duplicate);
      return NULL;
    }
  if (d.duplicate != NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: the name “%s” appears twice in one JSON object", origin, d.duplicate);
      if (duplicate != NULL)
        *duplicate = d.duplicate;
      else
        g_free (d.duplicate);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: empty JSON", origin);
      return NULL;
    }
  return json_node_ref (root);
}

JsonNode *
rv_json_parse (const char *data, gsize len, const char *origin, GError **error)
{
  return json_parse (data, len, origin, NULL, error);
}

JsonNode *
rv_json_load_object (const char *path, GError **error)
{
  g_autofree char *contents = NULL;
  gsize len = 0;
  GError *local = NULL;
  if (!g_file_get_contents (path, &contents, &len, &local))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Cannot read %s: %s", path,
                   local->message);
      g_error_free (local);
      return NULL;
    }
  JsonNode *root = rv_json_parse (contents, len, path, error);
  if (root != NULL && !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: expected a JSON object at the top level", path);
      g_clear_pointer (&root, json_node_unref);
    }
  return root;
}

/* ---- files ---- */

struct _RvSafetensors {
  char         *path;
  GBytes       *bytes;
  GArray       *tensors;     /* RvStTensor, by data offset */
  GHashTable   *by_name;     /* name -> index + 1 */
  GHashTable   *metadata;    /* string -> string */
};

static gboolean
st_fail (GError **error, RvSafetensorsErrorCode code, const char *origin, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);

static gboolean
st_fail (GError **error, RvSafetensorsErrorCode code, const char *origin, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, RV_SAFETENSORS_ERROR, code, "%s: %s", origin, msg);
  return FALSE;
}

/* A non-negative JSON integer. */
static gboolean
json_uint (JsonNode *node, guint64 *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

static gboolean
parse_entry (RvSafetensors *st, const char *name, JsonNode *node, gsize data_len,
             RvStTensor *t, guint64 *begin, GError **error)
{
  const char *origin = st->path;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                    "the header entry of tensor “%s” is not an object", name);
  JsonObject *o = json_node_get_object (node);

  JsonNode *dn = json_object_get_member (o, "dtype");
  if (dn == NULL || json_node_get_value_type (dn) != G_TYPE_STRING)
    return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                    "tensor “%s” has no \"dtype\" string", name);
  if (!dtype_from_name (json_node_get_string (dn), &t->dtype))
    return st_fail (error, RV_SAFETENSORS_ERROR_UNKNOWN_DTYPE, origin,
                    "tensor “%s” has the unknown dtype “%s”", name, json_node_get_string (dn));

  JsonNode *sn = json_object_get_member (o, "shape");
  if (sn == NULL || !JSON_NODE_HOLDS_ARRAY (sn))
    return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                    "tensor “%s” has no \"shape\" array", name);
  JsonArray *sa = json_node_get_array (sn);
  guint ndim = json_array_get_length (sa);
  if (ndim > RV_ST_MAX_DIMS)
    return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                    "tensor “%s” has %u dimensions (at most %d are supported)", name, ndim,
                    RV_ST_MAX_DIMS);
  guint64 numel = 1;
  gboolean overflow = FALSE;
  t->ndim = (int) ndim;
  for (guint i = 0; i < ndim; i++)
    {
      guint64 d;
      if (!json_uint (json_array_get_element (sa, i), &d) || d > G_MAXINT64)
        return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                        "tensor “%s”: shape entries must be non-negative integers", name);
      t->shape[i] = (gint64) d;
      overflow |= !g_uint64_checked_mul (&numel, numel, d);
    }

  JsonNode *on = json_object_get_member (o, "data_offsets");
  guint64 b = 0, e = 0;
  if (on == NULL || !JSON_NODE_HOLDS_ARRAY (on)
      || json_array_get_length (json_node_get_array (on)) != 2
      || !json_uint (json_array_get_element (json_node_get_array (on), 0), &b)
      || !json_uint (json_array_get_element (json_node_get_array (on), 1), &e) || e < b)
    return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                    "tensor “%s” needs \"data_offsets\": [begin, end] with 0 ≤ begin ≤ end", name);

  guint64 nbytes = 0;
  overflow |= !g_uint64_checked_mul (&nbytes, numel, rv_st_dtype_size (t->dtype));
  if (overflow || nbytes != e - b)
    {
      g_autofree char *desc = rv_st_tensor_describe (t);
      return st_fail (error, RV_SAFETENSORS_ERROR_SIZE_MISMATCH, origin,
                      "tensor “%s” is %s, which needs %s%" G_GUINT64_FORMAT " bytes, but its "
                      "data_offsets span %" G_GUINT64_FORMAT " bytes", name, desc,
                      overflow ? "more than " : "", overflow ? G_MAXUINT64 : nbytes, e - b);
    }
  if (e > data_len)
    return st_fail (error, RV_SAFETENSORS_ERROR_OUT_OF_BOUNDS, origin,
                    "tensor “%s” spans bytes [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") of "
                    "the data area, which has only %" G_GSIZE_FORMAT " bytes (is the file "
                    "truncated?)", name, b, e, data_len);
  t->numel = (gint64) numel;
  t->nbytes = (gsize) nbytes;
  *begin = b;
  return TRUE;
}

typedef struct {
  guint64 begin;
  guint   index;
} Span;

static int
span_cmp (gconstpointer a, gconstpointer b)
{
  const Span *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static gboolean
parse_header (RvSafetensors *st, GError **error)
{
  const char *origin = st->path;
  gsize len;
  const guint8 *data = g_bytes_get_data (st->bytes, &len);

  if (len < 8)
    return st_fail (error, RV_SAFETENSORS_ERROR_TRUNCATED, origin,
                    "%" G_GSIZE_FORMAT " bytes is too short for a safetensors file (the header "
                    "length alone takes 8)", len);
  guint64 n;
  memcpy (&n, data, 8);
  n = GUINT64_FROM_LE (n);
  if (n < 2 || n > RV_SAFETENSORS_MAX_HEADER)
    return st_fail (error, RV_SAFETENSORS_ERROR_HEADER_SIZE, origin,
                    "the header length is %" G_GUINT64_FORMAT " bytes, outside 2 to %d: this is "
                    "not a safetensors file, or it is damaged", n, RV_SAFETENSORS_MAX_HEADER);
  if (n > len - 8)
    return st_fail (error, RV_SAFETENSORS_ERROR_TRUNCATED, origin,
                    "the header says it is %" G_GUINT64_FORMAT " bytes long but the file has "
                    "only %" G_GSIZE_FORMAT " bytes after the length: the file is truncated",
                    n, len - 8);
  gsize data_len = len - 8 - (gsize) n;
  const guint8 *base = data + 8 + n;

  GError *local = NULL;
  g_autofree char *duplicate = NULL;
  g_autoptr (JsonNode) root = json_parse ((const char *) data + 8, (gsize) n, origin, &duplicate,
                                          &local);
  if (root == NULL)
    {
      /* the JSON error already names the file */
      g_set_error_literal (error, RV_SAFETENSORS_ERROR,
                           duplicate != NULL ? RV_SAFETENSORS_ERROR_DUPLICATE
                                             : RV_SAFETENSORS_ERROR_BAD_JSON,
                           local->message);
      g_error_free (local);
      return FALSE;
    }
  if (!JSON_NODE_HOLDS_OBJECT (root))
    return st_fail (error, RV_SAFETENSORS_ERROR_BAD_JSON, origin,
                    "the header is not a JSON object");

  JsonObject *obj = json_node_get_object (root);
  g_autoptr (GList) names = json_object_get_members (obj);
  g_autoptr (GArray) begins = g_array_new (FALSE, FALSE, sizeof (Span));
  for (GList *l = names; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (obj, name);
      if (strcmp (name, "__metadata__") == 0)
        {
          JsonObject *meta = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
          g_autoptr (GList) keys = meta != NULL ? json_object_get_members (meta) : NULL;
          for (GList *k = keys; k != NULL; k = k->next)
            {
              JsonNode *v = json_object_get_member (meta, k->data);
              if (json_node_get_value_type (v) != G_TYPE_STRING)
                {
                  meta = NULL;
                  break;
                }
              g_hash_table_insert (st->metadata, g_strdup (k->data),
                                   g_strdup (json_node_get_string (v)));
            }
          if (meta == NULL)
            return st_fail (error, RV_SAFETENSORS_ERROR_BAD_ENTRY, origin,
                            "\"__metadata__\" must map names to strings");
          continue;
        }
      RvStTensor t = { 0 };
      Span s;
      if (!parse_entry (st, name, node, data_len, &t, &s.begin, error))
        return FALSE;
      t.file = st->path;
      t.name = g_strdup (name);
      s.index = st->tensors->len;
      g_array_append_val (st->tensors, t);
      g_array_append_val (begins, s);
    }

  /* spans must not overlap; holes (alignment padding) are allowed */
  g_array_sort (begins, span_cmp);
  guint64 max_end = 0;
  const char *max_name = NULL;
  for (guint i = 0; i < begins->len; i++)
    {
      const Span *s = &g_array_index (begins, Span, i);
      const RvStTensor *t = &g_array_index (st->tensors, RvStTensor, s->index);
      if (t->nbytes == 0)
        continue;
      if (max_name != NULL && s->begin < max_end)
        return st_fail (error, RV_SAFETENSORS_ERROR_OVERLAP, origin,
                        "the data of tensors “%s” and “%s” overlap (the first ends at byte "
                        "%" G_GUINT64_FORMAT ", the second starts at %" G_GUINT64_FORMAT ")",
                        max_name, t->name, max_end, s->begin);
      if (s->begin + t->nbytes > max_end)
        {
          max_end = s->begin + t->nbytes;
          max_name = t->name;
        }
    }

  /* reorder by offset and index by name */
  g_autoptr (GArray) sorted = g_array_sized_new (FALSE, FALSE, sizeof (RvStTensor), begins->len);
  for (guint i = 0; i < begins->len; i++)
    {
      const Span *s = &g_array_index (begins, Span, i);
      RvStTensor t = g_array_index (st->tensors, RvStTensor, s->index);
      t.data = base + s->begin;
      g_array_append_val (sorted, t);
    }
  g_array_set_size (st->tensors, 0);
  g_array_append_vals (st->tensors, sorted->data, sorted->len);
  for (guint i = 0; i < st->tensors->len; i++)
    g_hash_table_insert (st->by_name, (gpointer) g_array_index (st->tensors, RvStTensor, i).name,
                         GUINT_TO_POINTER (i + 1));
  return TRUE;
}

RvSafetensors *
rv_safetensors_new_from_bytes (GBytes *bytes, const char *origin, GError **error)
{
  g_return_val_if_fail (bytes != NULL, NULL);
  RvSafetensors *st = g_new0 (RvSafetensors, 1);
  st->path = g_strdup (origin != NULL ? origin : "safetensors data");
  st->bytes = g_bytes_ref (bytes);
  st->tensors = g_array_new (FALSE, TRUE, sizeof (RvStTensor));   /* names owned */
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (!parse_header (st, error))
    {
      rv_safetensors_free (st);
      return NULL;
    }
  return st;
}

RvSafetensors *
rv_safetensors_open (const char *path, GError **error)
{
  GError *local = NULL;
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    {
      g_set_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_IO,
                   "Cannot read the weights file %s: %s", path, local->message);
      g_error_free (local);
      return NULL;
    }
  g_autoptr (GBytes) bytes = g_mapped_file_get_bytes (map);
  return rv_safetensors_new_from_bytes (bytes, path, error);
}

void
rv_safetensors_free (RvSafetensors *st)
{
  if (st == NULL)
    return;
  g_hash_table_unref (st->by_name);
  g_hash_table_unref (st->metadata);
  for (guint i = 0; i < st->tensors->len; i++)
    g_free ((char *) g_array_index (st->tensors, RvStTensor, i).name);
  g_array_unref (st->tensors);
  g_bytes_unref (st->bytes);
  g_free (st->path);
  g_free (st);
}

const char *
rv_safetensors_path (RvSafetensors *st)
{
  return st->path;
}

guint
rv_safetensors_n_tensors (RvSafetensors *st)
{
  return st->tensors->len;
}

const RvStTensor *
rv_safetensors_nth (RvSafetensors *st, guint i)
{
  g_return_val_if_fail (i < st->tensors->len, NULL);
  return &g_array_index (st->tensors, RvStTensor, i);
}

const RvStTensor *
rv_safetensors_lookup (RvSafetensors *st, const char *name)
{
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (st->by_name, name));
  return i == 0 ? NULL : &g_array_index (st->tensors, RvStTensor, i - 1);
}

const char *
rv_safetensors_metadata (RvSafetensors *st, const char *key)
{
  return g_hash_table_lookup (st->metadata, key);
}

/* ---- conversion ---- */

char *
rv_st_tensor_describe (const RvStTensor *t)
{
  GString *s = g_string_new (rv_st_dtype_name (t->dtype));
  g_string_append (s, " (");
  for (int i = 0; i < t->ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i > 0 ? ", " : "", t->shape[i]);
  g_string_append (s, t->ndim == 1 ? ",)" : ")");
  return g_string_free (s, FALSE);
}

static gpointer
alloc_values (const RvStTensor *t, gsize elem, GError **error)
{
  gpointer p = g_try_malloc_n (MAX (t->numel, 1), elem);
  if (p == NULL)
    g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                 "Out of memory reading tensor “%s” of %s (%" G_GINT64_FORMAT " values)", t->name,
                 t->file, t->numel);
  return p;
}

/* little-endian loads from unaligned data */
static inline guint16
ld16 (const guint8 *p)
{
  guint16 v;
  memcpy (&v, p, 2);
  return GUINT16_FROM_LE (v);
}

static inline guint32
ld32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static inline guint64
ld64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

float *
rv_st_tensor_to_f32 (const RvStTensor *t, GError **error)
{
  if (!rv_st_dtype_is_float (t->dtype))
    {
      g_set_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_WRONG_DTYPE,
                   "%s: tensor “%s” is %s, expected a floating-point tensor (F32, F16, BF16)",
                   t->file, t->name, rv_st_dtype_name (t->dtype));
      return NULL;
    }
  float *v = alloc_values (t, sizeof (float), error);
  if (v == NULL)
    return NULL;
  const guint8 *p = t->data;
  for (gint64 i = 0; i < t->numel; i++)
    {
      guint32 bits;
      double d;
      switch (t->dtype)
        {
        case RV_ST_F16:
          v[i] = rv_f16_to_f32 (ld16 (p + 2 * i));
          break;
        case RV_ST_BF16:
          bits = (guint32) ld16 (p + 2 * i) << 16;
          memcpy (&v[i], &bits, 4);
          break;
        case RV_ST_F32:
          bits = ld32 (p + 4 * i);
          memcpy (&v[i], &bits, 4);
          break;
        default:
          {
            guint64 b64 = ld64 (p + 8 * i);
            memcpy (&d, &b64, 8);
            v[i] = (float) d;
          }
          break;
        }
    }
  return v;
}

gint64 *
rv_st_tensor_to_i64 (const RvStTensor *t, GError **error)
{
  if (!rv_st_dtype_is_integer (t->dtype))
    {
      g_set_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_WRONG_DTYPE,
                   "%s: tensor “%s” is %s, expected an integer or boolean tensor", t->file,
                   t->name, rv_st_dtype_name (t->dtype));
      return NULL;
    }
  gint64 *v = alloc_values (t, sizeof (gint64), error);
  if (v == NULL)
    return NULL;
  const guint8 *p = t->data;
  for (gint64 i = 0; i < t->numel; i++)
    switch (t->dtype)
      {
      case RV_ST_BOOL: v[i] = p[i] != 0; break;
      case RV_ST_U8: v[i] = p[i]; break;
      case RV_ST_I8: v[i] = (gint8) p[i]; break;
      case RV_ST_I16: v[i] = (gint16) ld16 (p + 2 * i); break;
      case RV_ST_U16: v[i] = ld16 (p + 2 * i); break;
      case RV_ST_I32: v[i] = (gint32) ld32 (p + 4 * i); break;
      case RV_ST_U32: v[i] = ld32 (p + 4 * i); break;
      case RV_ST_I64: v[i] = (gint64) ld64 (p + 8 * i); break;
      default:
        if (ld64 (p + 8 * i) > G_MAXINT64)
          {
            g_set_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_WRONG_DTYPE,
                         "%s: tensor “%s” holds a U64 value beyond the int64 range", t->file,
                         t->name);
            g_free (v);
            return NULL;
          }
        v[i] = (gint64) ld64 (p + 8 * i);
        break;
      }
  return v;
}

/* ---- writing ---- */

gboolean
rv_safetensors_save (const char *path, const RvStTensor *tensors, guint n, GHashTable *metadata,
                     GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  if (metadata != NULL && g_hash_table_size (metadata) > 0)
    {
      GHashTableIter it;
      gpointer k, v;
      json_builder_set_member_name (b, "__metadata__");
      json_builder_begin_object (b);
      g_hash_table_iter_init (&it, metadata);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          json_builder_set_member_name (b, k);
          json_builder_add_string_value (b, v);
        }
      json_builder_end_object (b);
    }
  guint64 offset = 0;
  for (guint i = 0; i < n; i++)
    {
      const RvStTensor *t = &tensors[i];
      json_builder_set_member_name (b, t->name);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, rv_st_dtype_name (t->dtype));
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (int d = 0; d < t->ndim; d++)
        json_builder_add_int_value (b, t->shape[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "data_offsets");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, (gint64) offset);
      json_builder_add_int_value (b, (gint64) (offset + t->nbytes));
      json_builder_end_array (b);
      json_builder_end_object (b);
      offset += (t->nbytes + 7) / 8 * 8;
    }
  json_builder_end_object (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  gsize header_len;
  g_autofree char *header = json_generator_to_data (gen, &header_len);

  gsize padded = (header_len + 7) / 8 * 8;
  g_autoptr (GByteArray) out = g_byte_array_sized_new (8 + padded + offset);
  guint64 le = GUINT64_TO_LE ((guint64) padded);
  g_byte_array_append (out, (const guint8 *) &le, 8);
  g_byte_array_append (out, (const guint8 *) header, header_len);
  for (gsize i = header_len; i < padded; i++)
    g_byte_array_append (out, (const guint8 *) " ", 1);
  static const guint8 zeros[8] = { 0 };
  for (guint i = 0; i < n; i++)
    {
      g_byte_array_append (out, tensors[i].data, tensors[i].nbytes);
      g_byte_array_append (out, zeros, (8 - tensors[i].nbytes % 8) % 8);
    }
  return g_file_set_contents (path, (const char *) out->data, out->len, error);
}
