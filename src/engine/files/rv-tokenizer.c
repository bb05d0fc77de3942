/* rv-tokenizer.c: CLIP byte-level BPE. Symbols (byte characters and every
 * merge result) are interned as integers at load time, so encoding a word is
 * integer work: a heap of candidate pairs, merged rank by rank. */
#include "rv-tokenizer.h"

#include "rv-device.h"
#include "rv-safetensors.h"

#include <string.h>

/* CLIP's tokenizer (and transformers') uses only the first 49152 − 256 − 2
 * lines after the version line of merges.txt. */
#define CLIP_MAX_MERGES (49152 - 256 - 2)
#define CACHE_MAX 16384          /* words; the cache is emptied when full */
#define CACHE_WORD_MAX 64        /* bytes; longer words are not cached */

static const char clip_pattern[] =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]"
  "|[^\\s\\p{L}\\p{N}]+";

typedef struct {
  char    *content;
  int      id;
  gboolean lstrip, rstrip;   /* strip whitespace left / right of the token */
} Added;

typedef struct {
  guint32 rank;
  guint32 merged;            /* symbol */
} Merge;

struct _RvTokenizer {
  guint64    *merge_keys;    /* left << 32 | right */
  Merge      *merge_values;
  GHashTable *merges;        /* &merge_keys[i] -> &merge_values[i] */
  gint32     *sym_id;        /* symbol -> token id */
  guint32     byte_sym[256];
  guint32     byte_end_sym[256];   /* with "</w>" */
  GArray     *added;         /* Added, longest first */
  int         bos, eos, pad, unk;
  int         max_length;
  GMutex      lock;
  GHashTable *cache;         /* word -> GArray of gint32 */
};

void
rv_tokenizer_free (RvTokenizer *tok)
{
  if (tok == NULL)
    return;
  g_clear_pointer (&tok->merges, g_hash_table_unref);
  g_free (tok->merge_keys);
  g_free (tok->merge_values);
  g_free (tok->sym_id);
  if (tok->added != NULL)
    for (guint i = 0; i < tok->added->len; i++)
      g_free (g_array_index (tok->added, Added, i).content);
  g_clear_pointer (&tok->added, g_array_unref);
  g_clear_pointer (&tok->cache, g_hash_table_unref);
  g_mutex_clear (&tok->lock);
  g_free (tok);
}

int
rv_tokenizer_max_length (RvTokenizer *tok)
{
  return tok->max_length;
}

int
rv_tokenizer_bos_id (RvTokenizer *tok)
{
  return tok->bos;
}

int
rv_tokenizer_eos_id (RvTokenizer *tok)
{
  return tok->eos;
}

int
rv_tokenizer_pad_id (RvTokenizer *tok)
{
  return tok->pad;
}

/* ---- loading ---- */

typedef struct {
  const char *origin;
  GHashTable *vocab;         /* token -> id + 1 */
  GHashTable *interned;      /* string -> symbol + 1 */
  GPtrArray  *symbols;       /* symbol -> string (owned by `interned`) */
} Build;

static guint32
intern (Build *b, const char *s)
{
  gpointer v = g_hash_table_lookup (b->interned, s);
  if (v != NULL)
    return GPOINTER_TO_UINT (v) - 1;
  char *copy = g_strdup (s);
  g_hash_table_insert (b->interned, copy, GUINT_TO_POINTER (b->symbols->len + 1));
  g_ptr_array_add (b->symbols, copy);
  return b->symbols->len - 1;
}

/* GPT-2's reversible map of bytes to printable characters. */
static void
bytes_to_unicode (gunichar map[256])
{
  int n = 0;
  for (int c = 0; c < 256; c++)
    {
      gboolean printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
      map[c] = printable ? (gunichar) c : (gunichar) (256 + n++);
    }
}

/* Python's str.isspace(), which str.split() and str.strip() use. */
static gboolean
py_isspace (gunichar c)
{
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0
         || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029
         || c == 0x202F || c == 0x205F || c == 0x3000;
}

static gboolean
load_vocab (Build *b, GBytes *bytes, GError **error)
{
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  g_autofree char *origin = g_strdup_printf ("%s (vocab.json)", b->origin);
  g_autoptr (JsonNode) root = rv_json_parse (data != NULL ? data : "", len, origin, error);
  if (root == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: expected an object of token -> id", origin);
      return FALSE;
    }
  JsonObject *o = json_node_get_object (root);
  g_autoptr (GList) names = json_object_get_members (o);
  for (GList *l = names; l != NULL; l = l->next)
    {
      JsonNode *v = json_object_get_member (o, l->data);
      gint64 id = JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_INT64
                  ? json_node_get_int (v) : -1;
      if (id < 0 || id >= G_MAXINT32)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: the id of token “%s” is not a non-negative integer", origin,
                       (const char *) l->data);
          return FALSE;
        }
      g_hash_table_insert (b->vocab, g_strdup (l->data), GINT_TO_POINTER ((int) id + 1));
    }
  if (g_hash_table_size (b->vocab) == 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: the vocabulary is empty",
                   origin);
      return FALSE;
    }
  return TRUE;
}

/* g_int64_hash would fold the two symbols together with a xor: collisions */
static guint
pair_hash (gconstpointer key)
{
  return (guint) ((*(const guint64 *) key * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)) >> 32);
}

static gboolean
load_merges (RvTokenizer *tok, Build *b, GBytes *bytes, GError **error)
{
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  if (data == NULL)
    data = "";
  if (!g_utf8_validate_len (data, len, NULL))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s (merges.txt): not UTF-8 text", b->origin);
      return FALSE;
    }
  /* as transformers: text.strip().split("\n")[1 : 48895], each line split on
   * whitespace; a line's rank is its index, malformed lines included. (The
   * byte-level symbols contain no whitespace, so ASCII whitespace is enough.) */
  const char *p = data, *end = data + len;
  while (p < end && g_ascii_isspace (*p))
    p++;
  const char *nl = memchr (p, '\n', end - p);
  p = nl != NULL ? nl + 1 : end;   /* the "#version" line */
  guint n_lines = 1;
  for (const char *q = p; q < end && n_lines < CLIP_MAX_MERGES; q++)
    n_lines += *q == '\n';
  tok->merge_keys = g_new (guint64, n_lines);
  tok->merge_values = g_new (Merge, n_lines);
  tok->merges = g_hash_table_new (pair_hash, g_int64_equal);
  g_autoptr (GString) left = g_string_new (NULL), right = g_string_new (NULL);
  guint valid = 0;
  for (guint r = 0; r < n_lines && p < end; r++)
    {
      nl = memchr (p, '\n', end - p);
      const char *line_end = nl != NULL ? nl : end;
      GString *field[2] = { left, right };
      guint k = 0;
      for (const char *q = p; q < line_end;)
        {
          while (q < line_end && g_ascii_isspace (*q))
            q++;
          const char *start_field = q;
          while (q < line_end && !g_ascii_isspace (*q))
            q++;
          if (q > start_field && k++ < 2)
            {
              g_string_truncate (field[k - 1], 0);
              g_string_append_len (field[k - 1], start_field, q - start_field);
            }
        }
      p = line_end + 1;
      if (k != 2)
        continue;   /* never matches a pair, as in transformers */
      guint32 l = intern (b, left->str), r_sym = intern (b, right->str);
      g_string_append_len (left, right->str, right->len);
      tok->merge_keys[valid] = (guint64) l << 32 | r_sym;
      tok->merge_values[valid] = (Merge) { r, intern (b, left->str) };
      /* a repeated pair keeps its last rank, like a Python dict */
      g_hash_table_replace (tok->merges, &tok->merge_keys[valid], &tok->merge_values[valid]);
      valid++;
    }
  if (valid == 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s (merges.txt): no merges (expected a “#version” line, then one "
                   "“left right” pair per line)", b->origin);
      return FALSE;
    }
  return TRUE;
}

/* A token given as "text" or {"content": "text", "lstrip": …, …}; NULL when
 * absent or malformed. */
static const char *
token_content (JsonNode *n, gboolean *lstrip, gboolean *rstrip)
{
  if (n == NULL)
    return NULL;
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    return json_node_get_string (n);
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return NULL;
  JsonObject *t = json_node_get_object (n);
  JsonNode *c = json_object_get_member (t, "content");
  if (c == NULL || json_node_get_value_type (c) != G_TYPE_STRING)
    return NULL;
  JsonNode *l = json_object_get_member (t, "lstrip"), *r = json_object_get_member (t, "rstrip");
  *lstrip = l != NULL && json_node_get_value_type (l) == G_TYPE_BOOLEAN && json_node_get_boolean (l);
  *rstrip = r != NULL && json_node_get_value_type (r) == G_TYPE_BOOLEAN && json_node_get_boolean (r);
  return json_node_get_string (c);
}

static JsonNode *
member (JsonObject *o, const char *key)
{
  return o != NULL ? json_object_get_member (o, key) : NULL;
}

static JsonNode *
parse_optional (GBytes *bytes, const char *origin, const char *file, GError **error)
{
  if (bytes == NULL)
    return NULL;
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);
  g_autofree char *where = g_strdup_printf ("%s (%s)", origin, file);
  JsonNode *root = rv_json_parse (data != NULL ? data : "", len, where, error);
  if (root != NULL && !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: expected an object", where);
      g_clear_pointer (&root, json_node_unref);
    }
  return root;
}

static Added *
find_added (RvTokenizer *tok, const char *content)
{
  for (guint i = 0; i < tok->added->len; i++)
    if (strcmp (g_array_index (tok->added, Added, i).content, content) == 0)
      return &g_array_index (tok->added, Added, i);
  return NULL;
}

static int
added_cmp (gconstpointer a, gconstpointer b)
{
  gsize la = strlen (((const Added *) a)->content), lb = strlen (((const Added *) b)->content);
  return la > lb ? -1 : la < lb ? 1 : 0;
}

static gboolean
load_specials (RvTokenizer *tok, Build *b, JsonObject *config, JsonObject *map, GError **error)
{
  /* added_tokens_decoder: {"id": {"content": …, "lstrip": …, "rstrip": …}} */
  JsonNode *dec = member (config, "added_tokens_decoder");
  if (dec != NULL && JSON_NODE_HOLDS_OBJECT (dec))
    {
      JsonObject *d = json_node_get_object (dec);
      g_autoptr (GList) ids = json_object_get_members (d);
      for (GList *l = ids; l != NULL; l = l->next)
        {
          gint64 id;
          Added a = { 0 };
          const char *content = token_content (json_object_get_member (d, l->data), &a.lstrip,
                                               &a.rstrip);
          if (!g_ascii_string_to_signed (l->data, 10, 0, G_MAXINT32 - 1, &id, NULL)
              || content == NULL || content[0] == '\0')
            {
              g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                           "%s (tokenizer_config.json): added token “%s” needs an id and a "
                           "\"content\" string", b->origin, (const char *) l->data);
              return FALSE;
            }
          if (find_added (tok, content) != NULL)
            continue;
          a.content = g_strdup (content);
          a.id = (int) id;
          g_array_append_val (tok->added, a);
        }
    }

  /* the named special tokens; special_tokens_map.json overrides the config */
  static const char *const keys[] = { "bos_token", "eos_token", "unk_token", "pad_token" };
  static const char *const defaults[] = { "<|startoftext|>", "<|endoftext|>", "<|endoftext|>",
                                          "<|endoftext|>" };
  int *slots[] = { &tok->bos, &tok->eos, &tok->unk, &tok->pad };
  for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
    {
      Added a = { 0 };
      const char *content = token_content (member (map, keys[k]), &a.lstrip, &a.rstrip);
      if (content == NULL)
        content = token_content (member (config, keys[k]), &a.lstrip, &a.rstrip);
      if (content == NULL)
        content = defaults[k];
      Added *known = find_added (tok, content);
      if (known == NULL)
        {
          gpointer v = g_hash_table_lookup (b->vocab, content);
          if (v == NULL)
            {
              g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                           "%s: the %s “%s” is neither in vocab.json nor an added token",
                           b->origin, keys[k], content);
              return FALSE;
            }
          a.content = g_strdup (content);
          a.id = GPOINTER_TO_INT (v) - 1;
          g_array_append_val (tok->added, a);
          known = &g_array_index (tok->added, Added, tok->added->len - 1);
        }
      *slots[k] = known->id;
    }
  g_array_sort (tok->added, added_cmp);

  /* model_max_length: transformers writes a huge number for "no limit" */
  tok->max_length = 77;
  JsonNode *ml = member (config, "model_max_length");
  if (ml != NULL && JSON_NODE_HOLDS_VALUE (ml)
      && (json_node_get_value_type (ml) == G_TYPE_INT64
          || json_node_get_value_type (ml) == G_TYPE_DOUBLE))
    {
      double v = json_node_get_value_type (ml) == G_TYPE_INT64 ? (double) json_node_get_int (ml)
                                                                : json_node_get_double (ml);
      if (v < 2)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s (tokenizer_config.json): model_max_length %g leaves no room for the "
                       "start and end tokens", b->origin, v);
          return FALSE;
        }
      if (v <= 65536)
        tok->max_length = (int) v;
    }
  return TRUE;
}

RvTokenizer *
rv_tokenizer_new_from_bytes (GBytes *vocab_json, GBytes *merges_txt,
                             GBytes *tokenizer_config_json, GBytes *special_tokens_map_json,
                             const char *origin, GError **error)
{
  g_return_val_if_fail (vocab_json != NULL && merges_txt != NULL, NULL);
  g_autoptr (RvTokenizer) tok = g_new0 (RvTokenizer, 1);
  g_mutex_init (&tok->lock);
  tok->added = g_array_new (FALSE, TRUE, sizeof (Added));
  Build b = {
    .origin = origin != NULL ? origin : "tokenizer",
    .vocab = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL),
    .interned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL),
    .symbols = g_ptr_array_new (),
  };
  g_autoptr (JsonNode) config = NULL, map = NULL;
  gboolean ok = load_vocab (&b, vocab_json, error) && load_merges (tok, &b, merges_txt, error);
  if (ok)
    {
      GError *local = NULL;
      config = parse_optional (tokenizer_config_json, b.origin, "tokenizer_config.json", &local);
      if (local == NULL)
        map = parse_optional (special_tokens_map_json, b.origin, "special_tokens_map.json",
                              &local);
      if (local != NULL)
        {
          g_propagate_error (error, local);
          ok = FALSE;
        }
    }
  ok = ok && load_specials (tok, &b,
                            config != NULL ? json_node_get_object (config) : NULL,
                            map != NULL ? json_node_get_object (map) : NULL, error);
  if (ok)
    {
      gunichar map_b2u[256];
      bytes_to_unicode (map_b2u);
      for (int c = 0; c < 256; c++)
        {
          char s[12];
          int n = g_unichar_to_utf8 (map_b2u[c], s);
          s[n] = '\0';
          tok->byte_sym[c] = intern (&b, s);
          strcpy (s + n, "</w>");
          tok->byte_end_sym[c] = intern (&b, s);
        }
      /* a symbol's id: an added token's, else the vocabulary's, else unk */
      tok->sym_id = g_new (gint32, b.symbols->len);
      for (guint i = 0; i < b.symbols->len; i++)
        {
          const char *s = g_ptr_array_index (b.symbols, i);
          Added *a = find_added (tok, s);
          gpointer v = g_hash_table_lookup (b.vocab, s);
          tok->sym_id[i] = a != NULL ? a->id : v != NULL ? GPOINTER_TO_INT (v) - 1 : tok->unk;
        }
      tok->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify) g_array_unref);
    }
  g_hash_table_unref (b.vocab);
  g_hash_table_unref (b.interned);
  g_ptr_array_unref (b.symbols);
  return ok ? g_steal_pointer (&tok) : NULL;
}

static GBytes *
read_file (const char *dir, const char *name, gboolean optional, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *contents;
  gsize len;
  GError *local = NULL;
  if (optional && !g_file_test (path, G_FILE_TEST_EXISTS))
    return NULL;
  if (!g_file_get_contents (path, &contents, &len, &local))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Cannot read the tokenizer "
                   "file %s: %s", path, local->message);
      g_error_free (local);
      return NULL;
    }
  return g_bytes_new_take (contents, len);
}

RvTokenizer *
rv_tokenizer_new (const char *dir, GError **error)
{
  GError *local = NULL;
  g_autoptr (GBytes) vocab = read_file (dir, "vocab.json", FALSE, &local);
  g_autoptr (GBytes) merges = local == NULL ? read_file (dir, "merges.txt", FALSE, &local) : NULL;
  g_autoptr (GBytes) config = local == NULL ? read_file (dir, "tokenizer_config.json", TRUE, &local)
                                            : NULL;
  g_autoptr (GBytes) map = local == NULL ? read_file (dir, "special_tokens_map.json", TRUE, &local)
                                         : NULL;
  if (local != NULL)
    {
      g_propagate_error (error, local);
      return NULL;
    }
  return rv_tokenizer_new_from_bytes (vocab, merges, config, map, dir, error);
}

/* ---- text clean-up (transformers' BasicTokenizer without accent stripping) ---- */

static gboolean
is_cjk (gunichar c)
{
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF)
         || (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F)
         || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF)
         || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static gboolean
is_cased (gunichar c)
{
  return g_unichar_isupper (c) || g_unichar_islower (c) || g_unichar_istitle (c);
}

static gboolean
is_case_ignorable (gunichar c)
{
  switch (g_unichar_type (c))
    {
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_FORMAT:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_MODIFIER_SYMBOL:
      return TRUE;
    default:
      return c == '\'' || c == '.' || c == ':' || c == 0xB7 || c == 0x2018 || c == 0x2019
             || c == 0x2024 || c == 0xFE52 || c == 0xFF07 || c == 0xFF0E;
    }
}

/* Python's str.lower(): full lower-casing, locale-independent (GLib's
 * g_utf8_strdown follows the locale, e.g. Turkish dotless i). */
static void
append_lower (GString *out, const gunichar *w, glong n)
{
  for (glong i = 0; i < n; i++)
    {
      gunichar c = w[i];
      if (c == 0x130)   /* İ -> i + combining dot above */
        {
          g_string_append (out, "i\xcc\x87");
          continue;
        }
      if (c == 0x3A3)   /* Σ: final form at the end of a word */
        {
          glong p = i - 1, q = i + 1;
          while (p >= 0 && is_case_ignorable (w[p]))
            p--;
          while (q < n && is_case_ignorable (w[q]))
            q++;
          g_string_append_unichar (out, p >= 0 && is_cased (w[p]) && !(q < n && is_cased (w[q]))
                                        ? 0x3C2 : 0x3C3);
          continue;
        }
      g_string_append_unichar (out, g_unichar_tolower (c));
    }
}

/* One piece of text between added tokens, cleaned: control characters
 * dropped, CJK ideographs spaced, NFC, whitespace collapsed, lower-cased. */
static char *
clean_text (const char *text, gsize len)
{
  g_autoptr (GString) s = g_string_sized_new (len + 8);
  for (const char *p = text; p < text + len; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      GUnicodeType type = g_unichar_type (c);
      if (c == 0 || c == 0xFFFD)
        continue;
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || type == G_UNICODE_SPACE_SEPARATOR)
        g_string_append_c (s, ' ');
      else if (type == G_UNICODE_CONTROL || type == G_UNICODE_FORMAT
               || type == G_UNICODE_UNASSIGNED || type == G_UNICODE_PRIVATE_USE
               || type == G_UNICODE_SURROGATE)
        continue;
      else if (is_cjk (c))
        {
          g_string_append_c (s, ' ');
          g_string_append_unichar (s, c);
          g_string_append_c (s, ' ');
        }
      else
        g_string_append_unichar (s, c);
    }
  g_autofree char *nfc = g_utf8_normalize (s->str, s->len, G_NORMALIZE_NFC);
  glong n = 0;
  g_autofree gunichar *u = g_utf8_to_ucs4_fast (nfc, -1, &n);
  GString *out = g_string_sized_new (s->len);
  for (glong i = 0; i < n;)
    {
      while (i < n && py_isspace (u[i]))
        i++;
      glong start = i;
      while (i < n && !py_isspace (u[i]))
        i++;
      if (i > start)
        {
          if (out->len > 0)
            g_string_append_c (out, ' ');
          append_lower (out, u + start, i - start);
        }
    }
  return g_string_free (out, FALSE);
}

/* The CLIP pre-tokenizer, compiled once for the process (matching with a
 * GRegex is thread-safe). */
static GRegex *
clip_regex (void)
{
  static GRegex *regex;
  if (g_once_init_enter (&regex))
    {
      GError *error = NULL;
      GRegex *r = g_regex_new (clip_pattern, G_REGEX_CASELESS | G_REGEX_OPTIMIZE, 0, &error);
      g_assert_no_error (error);   /* a constant pattern */
      g_once_init_leave (&regex, r);
    }
  return regex;
}

/* ---- BPE ---- */

typedef struct {
  guint32 rank;
  guint32 pos;              /* node of the pair's left symbol */
  guint32 left, right;      /* the symbols when it was pushed */
} Candidate;

static gboolean
cand_less (const Candidate *a, const Candidate *b)
{
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push (GArray *h, Candidate c)
{
  g_array_append_val (h, c);
  Candidate *v = (Candidate *) h->data;
  for (guint i = h->len - 1; i > 0;)
    {
      guint parent = (i - 1) / 2;
      if (!cand_less (&v[i], &v[parent]))
        break;
      Candidate t = v[i];
      v[i] = v[parent];
      v[parent] = t;
      i = parent;
    }
}

static Candidate
heap_pop (GArray *h)
{
  Candidate *v = (Candidate *) h->data;
  Candidate top = v[0];
  v[0] = v[h->len - 1];
  g_array_set_size (h, h->len - 1);
  for (guint i = 0;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      if (l < h->len && cand_less (&v[l], &v[m]))
        m = l;
      if (r < h->len && cand_less (&v[r], &v[m]))
        m = r;
      if (m == i)
        break;
      Candidate t = v[i];
      v[i] = v[m];
      v[m] = t;
      i = m;
    }
  return top;
}

static void
push_pair (RvTokenizer *tok, GArray *heap, const guint32 *sym, guint32 pos, guint32 next)
{
  guint64 key = (guint64) sym[pos] << 32 | sym[next];
  const Merge *m = g_hash_table_lookup (tok->merges, &key);
  if (m != NULL)
    heap_push (heap, (Candidate) { m->rank, pos, sym[pos], sym[next] });
}

/* transformers' bpe(): repeatedly take the lowest-ranked pair present and
 * merge all its occurrences left to right. A merge never recreates a pair of
 * its own rank, so taking each rank's candidates in position order, skipping
 * stale ones, gives the same result in O(n log n). */
static void
bpe_word (RvTokenizer *tok, const guint8 *word, gsize n, GArray *out)
{
  g_autofree guint32 *sym = g_new (guint32, n);
  g_autofree gint64 *next = g_new (gint64, n);
  g_autofree gint64 *prev = g_new (gint64, n);
  g_autofree gboolean *alive = g_new (gboolean, n);
  g_autoptr (GArray) heap = g_array_new (FALSE, FALSE, sizeof (Candidate));
  g_autoptr (GArray) batch = g_array_new (FALSE, FALSE, sizeof (Candidate));
  for (gsize i = 0; i < n; i++)
    {
      sym[i] = i + 1 < n ? tok->byte_sym[word[i]] : tok->byte_end_sym[word[i]];
      next[i] = i + 1 < n ? (gint64) i + 1 : -1;
      prev[i] = (gint64) i - 1;
      alive[i] = TRUE;
    }
  for (gsize i = 0; i + 1 < n; i++)
    push_pair (tok, heap, sym, i, i + 1);
  while (heap->len > 0)
    {
      guint32 rank = g_array_index (heap, Candidate, 0).rank;
      g_array_set_size (batch, 0);
      while (heap->len > 0 && g_array_index (heap, Candidate, 0).rank == rank)
        {
          Candidate c = heap_pop (heap);
          g_array_append_val (batch, c);
        }
      for (guint k = 0; k < batch->len; k++)
        {
          const Candidate *c = &g_array_index (batch, Candidate, k);
          guint32 p = c->pos;
          gint64 q = next[p];
          if (!alive[p] || sym[p] != c->left || q < 0 || sym[q] != c->right)
            continue;
          guint64 key = (guint64) c->left << 32 | c->right;
          sym[p] = ((const Merge *) g_hash_table_lookup (tok->merges, &key))->merged;
          alive[q] = FALSE;
          next[p] = next[q];
          if (next[q] >= 0)
            prev[next[q]] = p;
          if (prev[p] >= 0)
            push_pair (tok, heap, sym, (guint32) prev[p], p);
          if (next[p] >= 0)
            push_pair (tok, heap, sym, p, (guint32) next[p]);
        }
    }
  for (gint64 i = 0; i >= 0; i = next[i])   /* node 0 always survives */
    {
      gint32 id = tok->sym_id[sym[i]];
      g_array_append_val (out, id);
    }
}

static void
encode_word (RvTokenizer *tok, const char *word, gsize n, GArray *out)
{
  if (n == 0)
    return;
  g_autofree char *key = n <= CACHE_WORD_MAX ? g_strndup (word, n) : NULL;
  if (key != NULL)
    {
      g_mutex_lock (&tok->lock);
      GArray *hit = g_hash_table_lookup (tok->cache, key);
      if (hit != NULL)
        g_array_append_vals (out, hit->data, hit->len);
      g_mutex_unlock (&tok->lock);
      if (hit != NULL)
        return;
    }
  guint start = out->len;
  bpe_word (tok, (const guint8 *) word, n, out);
  if (key != NULL)
    {
      GArray *ids = g_array_sized_new (FALSE, FALSE, sizeof (gint32), out->len - start);
      g_array_append_vals (ids, &g_array_index (out, gint32, start), out->len - start);
      g_mutex_lock (&tok->lock);
      if (g_hash_table_size (tok->cache) >= CACHE_MAX)
        g_hash_table_remove_all (tok->cache);
      g_hash_table_replace (tok->cache, g_steal_pointer (&key), ids);
      g_mutex_unlock (&tok->lock);
    }
}

static void
encode_piece (RvTokenizer *tok, const char *text, gsize len, GArray *out)
{
  g_autofree char *clean = clean_text (text, len);
  g_autoptr (GMatchInfo) match = NULL;
  g_regex_match (clip_regex (), clean, 0, &match);
  while (g_match_info_matches (match))
    {
      int start, end;
      g_match_info_fetch_pos (match, 0, &start, &end);
      encode_word (tok, clean + start, end - start, out);
      g_match_info_next (match, NULL);
    }
}

/* Python's str.strip() on one side of [*start, *end). */
static void
strip_side (const char **start, const char **end, gboolean left)
{
  if (left)
    while (*start < *end && py_isspace (g_utf8_get_char (*start)))
      *start = g_utf8_next_char (*start);
  else
    while (*start < *end)
      {
        const char *p = g_utf8_find_prev_char (*start, *end);
        if (p == NULL || !py_isspace (g_utf8_get_char (p)))
          break;
        *end = p;
      }
}

GArray *
rv_tokenizer_tokenize (RvTokenizer *tok, const char *text, GError **error)
{
  g_return_val_if_fail (tok != NULL && text != NULL, NULL);
  if (!g_utf8_validate (text, -1, NULL))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "The text is not valid UTF-8");
      return NULL;
    }
  GArray *out = g_array_new (FALSE, FALSE, sizeof (gint32));
  gsize len = strlen (text);
  const char *piece = text;
  gboolean strip_next = FALSE;   /* the last added token had rstrip */
  for (gsize i = 0; i <= len;)
    {
      const Added *hit = NULL;
      for (guint k = 0; i < len && k < tok->added->len && hit == NULL; k++)
        {
          const Added *a = &g_array_index (tok->added, Added, k);
          gsize n = strlen (a->content);
          if (n <= len - i && memcmp (text + i, a->content, n) == 0)
            hit = a;
        }
      if (hit == NULL && i < len)
        {
          i++;
          continue;
        }
      /* the text before the added token (or the end) */
      const char *start = piece, *end = text + i;
      if (strip_next)
        strip_side (&start, &end, TRUE);
      if (hit != NULL && hit->lstrip)
        strip_side (&start, &end, FALSE);
      encode_piece (tok, start, end - start, out);
      if (hit == NULL)
        break;
      g_array_append_val (out, hit->id);
      strip_next = hit->rstrip;
      i += strlen (hit->content);
      piece = text + i;
    }
  return out;
}

gboolean
rv_tokenizer_encode (RvTokenizer *tok, const char *text, int max_length, gint32 *ids,
                     gint32 *mask, int *n_dropped, GError **error)
{
  if (max_length <= 0)
    max_length = tok->max_length;
  g_return_val_if_fail (max_length >= 2, FALSE);
  g_autoptr (GArray) tokens = rv_tokenizer_tokenize (tok, text, error);
  if (tokens == NULL)
    return FALSE;
  int keep = MIN ((int) tokens->len, max_length - 2);
  ids[0] = tok->bos;
  for (int i = 0; i < keep; i++)
    ids[1 + i] = g_array_index (tokens, gint32, i);
  ids[1 + keep] = tok->eos;
  for (int i = 0; i < max_length; i++)
    {
      if (i >= keep + 2)
        ids[i] = tok->pad;
      if (mask != NULL)
        mask[i] = i < keep + 2;
    }
  if (n_dropped != NULL)
    *n_dropped = (int) tokens->len - keep;
  return TRUE;
}
