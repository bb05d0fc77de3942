/* rv-content-policy.c: loading content policies and matching prompts against
 * them; the format and the matching rules are described in the header. */
#include "rv-content-policy.h"

#include <string.h>

G_DEFINE_QUARK (rv-content-policy-error-quark, rv_content_policy_error)

/* Readings tried per word are 2^MAX_CHOICES at most; past that, and for
 * words longer than any phrase word can be, only the plainest one is. */
#define MAX_CHOICES 4
#define MAX_VARIANT_BYTES 256
/* Runs of three letters and more are all alike, so "kkk" needs three. */
#define RUN_CAP 3

/* ---- characters ---- */

typedef enum { C_SEP, C_LETTER, C_DIGIT, C_SYMBOL, C_IDEOGRAPH } CharClass;

/* Letters from other alphabets that pass for Latin ones, after lowering. */
static gunichar
lookalike (gunichar c)
{
  if (c < 0x0131)
    return c;
  switch (c)
    {
    /* Cyrillic; в н м т only look Latin as capitals, which casefolding has
     * already turned into these */
    case 0x0430: return 'a';
    case 0x0432: return 'b';
    case 0x0435: return 'e';
    case 0x043A: return 'k';
    case 0x043C: return 'm';
    case 0x043D: return 'h';
    case 0x043E: return 'o';
    case 0x0440: return 'p';
    case 0x0441: return 'c';
    case 0x0442: return 't';
    case 0x0443: return 'y';
    case 0x0445: return 'x';
    case 0x0455: return 's';
    case 0x0456: return 'i';
    case 0x0458: return 'j';
    case 0x04AF: return 'y';
    case 0x04BB: return 'h';
    case 0x04CF: return 'l';
    case 0x0501: return 'd';
    case 0x051B: return 'q';
    case 0x051D: return 'w';
    /* Greek */
    case 0x03B1: return 'a';
    case 0x03B2: return 'b';
    case 0x03B3: return 'y';
    case 0x03B5: return 'e';
    case 0x03B7: return 'n';
    case 0x03B9: return 'i';
    case 0x03BA: return 'k';
    case 0x03BD: return 'v';
    case 0x03BF: return 'o';
    case 0x03C1: return 'p';
    case 0x03C4: return 't';
    case 0x03C5: return 'u';
    case 0x03C7: return 'x';
    case 0x03C9: return 'w';
    /* Latin letters without a decomposition */
    case 0x0131: return 'i';
    case 0x0142: return 'l';
    case 0x00F8: return 'o';
    case 0x0111: return 'd';
    case 0x0127: return 'h';
    case 0x0167: return 't';
    case 0x0180: return 'b';
    case 0x0268: return 'i';
    case 0x0251: return 'a';
    /* small capitals */
    case 0x1D00: return 'a';
    case 0x0299: return 'b';
    case 0x1D04: return 'c';
    case 0x1D05: return 'd';
    case 0x1D07: return 'e';
    case 0xA730: return 'f';
    case 0x0262: return 'g';
    case 0x029C: return 'h';
    case 0x026A: return 'i';
    case 0x1D0A: return 'j';
    case 0x1D0B: return 'k';
    case 0x029F: return 'l';
    case 0x1D0D: return 'm';
    case 0x0274: return 'n';
    case 0x1D0F: return 'o';
    case 0x1D18: return 'p';
    case 0x0280: return 'r';
    case 0xA731: return 's';
    case 0x1D1B: return 't';
    case 0x1D1C: return 'u';
    case 0x1D20: return 'v';
    case 0x1D21: return 'w';
    case 0x028F: return 'y';
    case 0x1D22: return 'z';
    default: return c;
    }
}

/* Symbols that stand for letters inside a word; 0 for the others. '|' has
 * no single answer (see ambiguous()) and reads as l where one is needed. */
static gunichar
symbol_letter (gunichar c)
{
  switch (c)
    {
    case '@': return 'a';
    case '$': return 's';
    case '!': return 'i';
    case '|': return 'l';
    case 0x00A1: return 'i';  /* ¡ */
    case 0x00A2: return 'c';  /* ¢ */
    case 0x00A3: return 'l';  /* £ */
    case 0x20AC: return 'e';  /* € */
    default: return 0;
    }
}

/* The letters that digits inside a word stand for. 2 and 6 have no
 * convincing letter and stay digits. */
static gunichar
digit_letter (gunichar c)
{
  static const char map[] = "oiz" "eas" "gtbg";
  return c == '2' || c == '6' ? c : (gunichar) map[c - '0'];
}

/* 1 and | imitate both i and l, so both readings are tried. */
static gboolean
ambiguous (gunichar c)
{
  return c == '1' || c == '|';
}

static gboolean
is_ideograph (gunichar c)
{
  if (c < 0x2E80)
    return FALSE;
  switch (g_unichar_get_script (c))
    {
    case G_UNICODE_SCRIPT_HAN:
    case G_UNICODE_SCRIPT_HIRAGANA:
    case G_UNICODE_SCRIPT_KATAKANA:
      return TRUE;
    default:
      return FALSE;
    }
}

static CharClass
classify (gunichar c)
{
  if (c < 0x80)
    {
      if (g_ascii_isalpha (c))
        return C_LETTER;
      if (g_ascii_isdigit (c))
        return C_DIGIT;
      return symbol_letter (c) ? C_SYMBOL : C_SEP;
    }
  if (g_unichar_isalpha (c))
    return is_ideograph (c) ? C_IDEOGRAPH : C_LETTER;
  if (g_unichar_isdigit (c))
    return C_DIGIT;
  return symbol_letter (c) ? C_SYMBOL : C_SEP;
}

/* Folds, decomposes and strips text into words of letters, ASCII digits and
 * letter-like symbols separated by single spaces, one ideograph a word.
 * Marks go after decomposition, so canonical ordering does not matter and a
 * per-character decomposition is as good as NFKD. */
static void
prepare (const char *text, GString *out)
{
  g_autofree char *valid = NULL;
  g_autofree char *folded = NULL;

  if (!g_utf8_validate (text, -1, NULL))
    text = valid = g_utf8_make_valid (text, -1);
  folded = g_utf8_casefold (text, -1);

  g_string_truncate (out, 0);
  for (const char *s = folded; *s; s = g_utf8_next_char (s))
    {
      gunichar d[G_UNICHAR_MAX_DECOMPOSITION_LENGTH];
      gsize n = g_unichar_fully_decompose (g_utf8_get_char (s), TRUE, d, G_N_ELEMENTS (d));

      for (gsize i = 0; i < n; i++)
        {
          gunichar c = d[i];

          if (c >= 0x80)
            {
              /* decompositions can bring capitals back (ℌ is H) */
              c = g_unichar_tolower (c);
              switch (g_unichar_type (c))
                {
                case G_UNICODE_NON_SPACING_MARK:
                case G_UNICODE_SPACING_MARK:
                case G_UNICODE_ENCLOSING_MARK:
                case G_UNICODE_FORMAT:  /* zero-width space, soft hyphen, ... */
                  continue;
                default:
                  break;
                }
              c = lookalike (c);
            }
          else
            c = g_ascii_tolower (c);

          switch (classify (c))
            {
            case C_SEP:
              if (out->len && out->str[out->len - 1] != ' ')
                g_string_append_c (out, ' ');
              break;
            case C_IDEOGRAPH:
              if (out->len && out->str[out->len - 1] != ' ')
                g_string_append_c (out, ' ');
              g_string_append_unichar (out, c);
              g_string_append_c (out, ' ');
              break;
            case C_DIGIT:
              g_string_append_c (out, (char) ('0' + g_unichar_digit_value (c)));
              break;
            case C_LETTER:
            case C_SYMBOL:
              g_string_append_unichar (out, c);
              break;
            }
        }
    }
}

/* ---- words ---- */

typedef struct {
  GArray     *chars;  /* gunichar: the word being read */
  GString    *word;   /* one reading, letter runs shortened to one */
  GByteArray *runs;   /* per byte of word: run length at a character's first byte */
} Reader;

static void
reader_init (Reader *r)
{
  r->chars = g_array_new (FALSE, FALSE, sizeof (gunichar));
  r->word = g_string_new (NULL);
  r->runs = g_byte_array_new ();
}

static void
reader_clear (Reader *r)
{
  g_array_unref (r->chars);
  g_string_free (r->word, TRUE);
  g_byte_array_unref (r->runs);
}

static void
push_letter (Reader *r, gunichar c, gunichar *last, gsize *last_at)
{
  if (r->word->len && c == *last)
    {
      if (r->runs->data[*last_at] < RUN_CAP)
        r->runs->data[*last_at]++;
      return;
    }
  gsize at = r->word->len;
  g_string_append_unichar (r->word, c);
  g_byte_array_set_size (r->runs, r->word->len);
  memset (r->runs->data + at, 0, r->word->len - at);
  r->runs->data[at] = 1;
  *last = c;
  *last_at = at;
}

typedef void (*ReadingFunc) (Reader *r, gpointer data);

/* Calls fn with each reading of the prepared word raw (ambiguous symbols and
 * digits resolved one way or the other); with plainest_only, or when raw is
 * longer than any phrase word, with the plainest reading alone. Returns
 * FALSE when raw is punctuation and no word at all. */
static gboolean
read_word (Reader *r, const char *raw, gsize len, gboolean plainest_only,
           ReadingFunc fn, gpointer data)
{
  gboolean has_letter = FALSE, has_digit = FALSE;

  g_array_set_size (r->chars, 0);
  for (const char *s = raw; s < raw + len; s = g_utf8_next_char (s))
    {
      gunichar c = g_utf8_get_char (s);
      CharClass k = classify (c);
      has_letter |= k == C_LETTER || k == C_IDEOGRAPH;
      has_digit |= k == C_DIGIT;
      g_array_append_val (r->chars, c);
    }
  const gunichar *cs = (const gunichar *) (gpointer) r->chars->data;
  guint n = r->chars->len;

  if (!has_letter)
    {
      /* a number: its digits as written, nothing shortened */
      if (!has_digit)
        return FALSE;
      g_string_truncate (r->word, 0);
      for (guint i = 0; i < n; i++)
        if (g_ascii_isdigit (cs[i]))
          g_string_append_c (r->word, (char) cs[i]);
      g_byte_array_set_size (r->runs, r->word->len);
      memset (r->runs->data, 1, r->word->len);
      fn (r, data);
      return TRUE;
    }

  /* choices: symbols leading the word, symbols ending it, each run of 1 or | */
  guint lead = 0, trail = n;
  while (classify (cs[lead]) == C_SYMBOL)
    lead++;
  while (classify (cs[trail - 1]) == C_SYMBOL)
    trail--;
  int bit = 0, lead_bit = -1, trail_bit = -1;
  if (lead > 0)
    lead_bit = bit++;
  if (trail < n)
    trail_bit = bit++;
  int first_ambiguous_bit = bit;
  for (guint i = lead; i < trail; i++)
    if (ambiguous (cs[i]) && (i == lead || !ambiguous (cs[i - 1])))
      bit++;
  int limit = plainest_only || len > MAX_VARIANT_BYTES ? 0 : MIN (bit, MAX_CHOICES);

  for (guint mask = 0; mask < (1u << limit); mask++)
    {
#define CHOSEN(b) ((b) >= 0 && (b) < limit && ((mask >> (b)) & 1))
      gunichar last = 0;
      gsize last_at = 0;
      int ambiguous_bit = first_ambiguous_bit - 1;

      g_string_truncate (r->word, 0);
      g_byte_array_set_size (r->runs, 0);
      for (guint i = 0; i < n; i++)
        {
          gunichar c = cs[i];
          if (i < lead || i >= trail)
            {
              if (!CHOSEN (i < lead ? lead_bit : trail_bit))
                continue;
              c = symbol_letter (c);
            }
          else if (ambiguous (c))
            {
              if (i == lead || !ambiguous (cs[i - 1]))
                ambiguous_bit++;
              c = CHOSEN (ambiguous_bit) ? 'l' : 'i';
            }
          else if (c < 0x80 && g_ascii_isdigit (c))
            c = digit_letter (c);
          else if (classify (c) == C_SYMBOL)
            c = symbol_letter (c);
          push_letter (r, c, &last, &last_at);
        }
      fn (r, data);
#undef CHOSEN
    }
  return TRUE;
}

/* ---- the policy ---- */

/* One spelling of a word: its shortened form is the hash key, need holds
 * the run each of its letters must have (per byte of the key). */
typedef struct {
  guint  id;
  guint8 need[];
} Form;

struct _RvContentPolicy {
  GPtrArray  *categories;     /* char * */
  GHashTable *exact;          /* shortened word → GPtrArray of Form */
  GHashTable *prefix;         /* shortened prefix → GPtrArray of Form */
  GArray     *prefix_lengths; /* guint: distinct prefix key lengths, ascending */
  guint       n_ids;          /* word ids are 1 .. n_ids */
  guint       n_phrases;
  guint       max_words;      /* words in the longest phrase */
  /* the phrases as a trie over word ids, node 0 the root; its edges in an
   * open-addressed table keyed by (parent << 32 | word id) */
  guint64    *edge_keys;
  guint      *edge_children;
  gsize       edge_capacity;  /* a power of two */
  gsize       n_edges;
  GArray     *node_category;  /* guint: 0, or the category index + 1 */
};

static gsize
edge_slot (guint64 key, gsize capacity)
{
  return (gsize) ((key * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)) >> 32) & (capacity - 1);
}

static guint
edge_get (const RvContentPolicy *p, guint parent, guint id)
{
  guint64 key = (guint64) parent << 32 | id;
  for (gsize i = edge_slot (key, p->edge_capacity);; i = (i + 1) & (p->edge_capacity - 1))
    {
      if (p->edge_keys[i] == key)
        return p->edge_children[i];
      if (p->edge_keys[i] == 0)
        return 0;
    }
}

static void
edge_put (guint64 *keys, guint *children, gsize capacity, guint64 key, guint child)
{
  gsize i = edge_slot (key, capacity);
  while (keys[i] != 0)
    i = (i + 1) & (capacity - 1);
  keys[i] = key;
  children[i] = child;
}

/* The child of parent along word id, made if missing. Ids start at 1, so
 * no key is 0 and 0 marks a free slot. */
static guint
edge_child (RvContentPolicy *p, guint parent, guint id)
{
  guint child = edge_get (p, parent, id);
  if (child)
    return child;

  if ((p->n_edges + 1) * 2 > p->edge_capacity)
    {
      gsize capacity = p->edge_capacity * 2;
      guint64 *keys = g_new0 (guint64, capacity);
      guint *children = g_new0 (guint, capacity);
      for (gsize i = 0; i < p->edge_capacity; i++)
        if (p->edge_keys[i])
          edge_put (keys, children, capacity, p->edge_keys[i], p->edge_children[i]);
      g_free (p->edge_keys);
      g_free (p->edge_children);
      p->edge_keys = keys;
      p->edge_children = children;
      p->edge_capacity = capacity;
    }
  child = p->node_category->len;
  g_array_append_val (p->node_category, (guint) { 0 });
  edge_put (p->edge_keys, p->edge_children, p->edge_capacity, (guint64) parent << 32 | id, child);
  p->n_edges++;
  return child;
}

static void
add_phrase (RvContentPolicy *p, const guint *ids, guint n, guint category)
{
  guint node = 0;
  for (guint i = 0; i < n; i++)
    node = edge_child (p, node, ids[i]);
  guint *cat = &g_array_index (p->node_category, guint, node);
  /* a phrase listed twice stays in the category that listed it first */
  if (*cat == 0)
    *cat = category + 1;
  p->max_words = MAX (p->max_words, n);
}

static gboolean
runs_cover (const guint8 *have, const guint8 *need, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if (have[i] < need[i])
      return FALSE;
  return TRUE;
}

/* The id of the word (or prefix) r holds, given one if it is new. */
static guint
word_id (RvContentPolicy *p, Reader *r, gboolean is_prefix)
{
  GHashTable *table = is_prefix ? p->prefix : p->exact;
  GPtrArray *forms = g_hash_table_lookup (table, r->word->str);
  gsize len = r->word->len;

  if (!forms)
    {
      forms = g_ptr_array_new_with_free_func (g_free);
      g_hash_table_insert (table, g_strdup (r->word->str), forms);
      if (is_prefix)
        {
          guint i = 0;
          while (i < p->prefix_lengths->len && g_array_index (p->prefix_lengths, guint, i) < len)
            i++;
          if (i == p->prefix_lengths->len || g_array_index (p->prefix_lengths, guint, i) != len)
            g_array_insert_val (p->prefix_lengths, i, (guint) { (guint) len });
        }
    }
  for (guint i = 0; i < forms->len; i++)
    {
      Form *f = forms->pdata[i];
      if (memcmp (f->need, r->runs->data, len) == 0)
        return f->id;
    }
  Form *f = g_malloc (sizeof (Form) + len);
  f->id = ++p->n_ids;
  memcpy (f->need, r->runs->data, len);
  g_ptr_array_add (forms, f);
  return f->id;
}

static RvContentPolicy *
policy_new (void)
{
  RvContentPolicy *p = g_new0 (RvContentPolicy, 1);
  p->categories = g_ptr_array_new_with_free_func (g_free);
  p->exact = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                    (GDestroyNotify) g_ptr_array_unref);
  p->prefix = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify) g_ptr_array_unref);
  p->prefix_lengths = g_array_new (FALSE, FALSE, sizeof (guint));
  p->edge_capacity = 64;
  p->edge_keys = g_new0 (guint64, p->edge_capacity);
  p->edge_children = g_new0 (guint, p->edge_capacity);
  p->node_category = g_array_new (FALSE, TRUE, sizeof (guint));
  g_array_set_size (p->node_category, 1);
  return p;
}

void
rv_content_policy_free (RvContentPolicy *p)
{
  if (!p)
    return;
  g_ptr_array_unref (p->categories);
  g_hash_table_unref (p->exact);
  g_hash_table_unref (p->prefix);
  g_array_unref (p->prefix_lengths);
  g_free (p->edge_keys);
  g_free (p->edge_children);
  g_array_unref (p->node_category);
  g_free (p);
}

guint
rv_content_policy_n_phrases (RvContentPolicy *p)
{
  return p->n_phrases;
}

guint
rv_content_policy_n_categories (RvContentPolicy *p)
{
  return p->categories->len;
}

/* ---- parsing ---- */

static gboolean G_GNUC_PRINTF (5, 6)
fail (GError **error, int code, const char *origin, guint line, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  g_autofree char *what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, RV_CONTENT_POLICY_ERROR, code, "%s:%u: %s", origin, line, what);
  return FALSE;
}

/* Printable form of c for messages. */
static char *
describe_char (gunichar c)
{
  if (g_unichar_isgraph (c))
    {
      char buf[8] = { 0 };
      g_unichar_to_utf8 (c, buf);
      return g_strdup_printf ("'%s'", buf);
    }
  return g_strdup_printf ("U+%04X", c);
}

static gboolean
is_joiner (gunichar c)
{
  return c == '-' || c == '\'' || c == 0x2019 || c == '.' || c == '/';
}

static gboolean
parse_header (RvContentPolicy *p, const char *line, GHashTable *defined,
              const char *origin, guint line_no, GError **error)
{
  gsize len = strlen (line);
  if (len < 2 || line[len - 1] != ']')
    return fail (error, RV_CONTENT_POLICY_ERROR_BAD_HEADER, origin, line_no,
                 "malformed category header (expected [name])");

  g_autofree char *name = g_strstrip (g_strndup (line + 1, len - 2));
  if (!*name)
    return fail (error, RV_CONTENT_POLICY_ERROR_BAD_HEADER, origin, line_no,
                 "empty category name");
  if (g_utf8_strlen (name, -1) > RV_CONTENT_POLICY_MAX_CATEGORY)
    return fail (error, RV_CONTENT_POLICY_ERROR_BAD_HEADER, origin, line_no,
                 "category name longer than %d characters", RV_CONTENT_POLICY_MAX_CATEGORY);
  for (const char *s = name; *s; s = g_utf8_next_char (s))
    {
      gunichar c = g_utf8_get_char (s);
      if (c == '[' || c == ']' || g_unichar_iscntrl (c))
        {
          g_autofree char *what = describe_char (c);
          return fail (error, RV_CONTENT_POLICY_ERROR_BAD_HEADER, origin, line_no,
                       "malformed category header: %s in the name", what);
        }
    }

  gpointer first = g_hash_table_lookup (defined, name);
  if (first)
    return fail (error, RV_CONTENT_POLICY_ERROR_DUPLICATE_CATEGORY, origin, line_no,
                 "category [%s] is already defined on line %u", name, GPOINTER_TO_UINT (first));
  g_hash_table_insert (defined, g_strdup (name), GUINT_TO_POINTER (line_no));
  g_ptr_array_add (p->categories, g_steal_pointer (&name));
  return TRUE;
}

typedef struct {
  RvContentPolicy *p;
  GArray          *ids;
  gboolean         is_prefix;
  guint            letters;  /* letters of the last word read, runs counted */
} PhraseWord;

static void
phrase_word (Reader *r, gpointer data)
{
  PhraseWord *w = data;
  guint id = word_id (w->p, r, w->is_prefix);
  g_array_append_val (w->ids, id);
  /* letters as written, so that "ass*" counts three */
  w->letters = 0;
  for (guint i = 0; i < r->runs->len; i++)
    w->letters += r->runs->data[i];
}

static gboolean
parse_phrase (RvContentPolicy *p, const char *line, guint category, Reader *r,
              const char *origin, guint line_no, GError **error)
{
  /* strict characters first: whatever is not plainly a word is refused */
  for (const char *s = line; *s; s = g_utf8_next_char (s))
    {
      gunichar c = g_utf8_get_char (s);
      if (c == '*')
        {
          const char *next = s + 1;
          gunichar before = s > line ? g_utf8_get_char (g_utf8_prev_char (s)) : 0;
          gunichar after = g_utf8_get_char (next);
          if (!(before && (g_unichar_isalnum (before) || g_unichar_ismark (before)))
              || !(after == 0 || g_unichar_isspace (after) || is_joiner (after)))
            return fail (error, RV_CONTENT_POLICY_ERROR_BAD_PHRASE, origin, line_no,
                         "'*' may only end a word, as in behead*");
        }
      else if (!g_unichar_isalnum (c) && !g_unichar_ismark (c)
               && !g_unichar_isspace (c) && !is_joiner (c))
        {
          g_autofree char *what = describe_char (c);
          return fail (error, RV_CONTENT_POLICY_ERROR_BAD_PHRASE, origin, line_no,
                       "%s is not allowed in a phrase (write words plainly; "
                       "look-alike spellings are matched anyway)", what);
        }
    }

  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr(GString) prepared = g_string_new (NULL);
  g_autoptr(GString) joined = g_string_new (NULL);
  gboolean can_join = TRUE, last_prefix = FALSE;
  PhraseWord w = { p, ids, FALSE, 0 };
  const char *s = line;

  while (*s)
    {
      /* one word as written, up to a space or joiner */
      const char *start = s;
      while (*s)
        {
          gunichar c = g_utf8_get_char (s);
          if (g_unichar_isspace (c) || is_joiner (c))
            break;
          s = g_utf8_next_char (s);
        }
      gsize len = (gsize) (s - start);
      gboolean is_prefix = len && start[len - 1] == '*';
      if (s == start)
        {
          s = g_utf8_next_char (s);
          continue;
        }
      g_autofree char *written = g_strndup (start, is_prefix ? len - 1 : len);

      /* the written word may read as several (ideographs) or as none (marks) */
      prepare (written, prepared);
      gchar **parts = g_strsplit (prepared->str, " ", -1);
      guint n_before = ids->len;
      int last = -1;
      for (int q = 0; parts[q]; q++)
        if (*parts[q])
          last = q;
      for (int q = 0; q <= last; q++)
        {
          const char *part = parts[q];
          if (!*part)
            continue;
          w.is_prefix = is_prefix && q == last;
          if (!read_word (r, part, strlen (part), TRUE, phrase_word, &w))
            continue;
          if (last_prefix)
            can_join = FALSE;
          last_prefix = w.is_prefix;
          if (w.is_prefix && w.letters < 3)
            {
              g_strfreev (parts);
              return fail (error, RV_CONTENT_POLICY_ERROR_BAD_PHRASE, origin, line_no,
                           "prefix %s* is too short (at least 3 letters)", written);
            }
          gboolean number = TRUE;
          for (const char *t = part; *t; t++)
            number &= g_ascii_isdigit (*t);
          if (number || is_ideograph (g_utf8_get_char (part)))
            can_join = FALSE;
          g_string_append (joined, part);
        }
      g_strfreev (parts);
      if (is_prefix && ids->len == n_before)
        return fail (error, RV_CONTENT_POLICY_ERROR_BAD_PHRASE, origin, line_no,
                     "'*' may only end a word, as in behead*");
    }

  if (ids->len == 0)
    return fail (error, RV_CONTENT_POLICY_ERROR_BAD_PHRASE, origin, line_no,
                 "the phrase has no words");

  add_phrase (p, (const guint *) (gpointer) ids->data, ids->len, category);
  p->n_phrases++;

  /* the words written as one ("selfharm"): a phrase of its own, unless a
   * number, an ideograph or a prefix in the middle would make that odd */
  if (ids->len > 1 && can_join)
    {
      g_array_set_size (ids, 0);
      w.is_prefix = last_prefix;
      read_word (r, joined->str, joined->len, TRUE, phrase_word, &w);
      add_phrase (p, (const guint *) (gpointer) ids->data, ids->len, category);
    }
  return TRUE;
}

RvContentPolicy *
rv_content_policy_new_from_data (const char *data, gsize len, const char *origin,
                                 GError **error)
{
  g_autoptr(RvContentPolicy) p = policy_new ();
  g_autoptr(GHashTable) defined = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  Reader r;
  const char *s = data, *end = data + len;
  guint line_no = 0;
  gboolean ok = TRUE;

  g_return_val_if_fail (data != NULL || len == 0, NULL);
  if (!origin)
    origin = "<policy>";
  if (len >= 3 && memcmp (data, "\xEF\xBB\xBF", 3) == 0)
    s += 3;

  reader_init (&r);
  while (ok && s < end)
    {
      const char *nl = memchr (s, '\n', (gsize) (end - s));
      gsize l = (gsize) ((nl ? nl : end) - s);
      line_no++;
      if (l && s[l - 1] == '\r')
        l--;

      if (l > RV_CONTENT_POLICY_MAX_LINE)
        ok = fail (error, RV_CONTENT_POLICY_ERROR_LINE_TOO_LONG, origin, line_no,
                   "line longer than %d bytes", RV_CONTENT_POLICY_MAX_LINE);
      else if (!g_utf8_validate_len (s, l, NULL))
        ok = fail (error, RV_CONTENT_POLICY_ERROR_BAD_UTF8, origin, line_no,
                   "invalid UTF-8");
      else
        {
          g_autofree char *line = g_strstrip (g_strndup (s, l));
          if (*line == '\0' || *line == '#')
            ;
          else if (*line == '[')
            ok = parse_header (p, line, defined, origin, line_no, error);
          else if (p->categories->len == 0)
            ok = fail (error, RV_CONTENT_POLICY_ERROR_NO_CATEGORY, origin, line_no,
                       "phrase before any [category] header");
          else
            ok = parse_phrase (p, line, p->categories->len - 1, &r, origin, line_no, error);
        }
      s = nl ? nl + 1 : end;
    }
  reader_clear (&r);

  if (!ok)
    return NULL;
  if (p->n_phrases == 0)
    {
      fail (error, RV_CONTENT_POLICY_ERROR_EMPTY, origin, MAX (line_no, 1),
            "the policy has no phrases");
      return NULL;
    }
  return g_steal_pointer (&p);
}

RvContentPolicy *
rv_content_policy_load (const char *path, GError **error)
{
  g_autofree char *data = NULL;
  g_autoptr(GError) local = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &data, &len, &local))
    {
      g_set_error (error, RV_CONTENT_POLICY_ERROR, RV_CONTENT_POLICY_ERROR_READ,
                   "%s: cannot read the content policy: %s", path, local->message);
      return NULL;
    }
  return rv_content_policy_new_from_data (data, len, path, error);
}

/* ---- matching ---- */

typedef struct {
  guint off, len;   /* the word in the prepared text */
  int   position;   /* its entry in Check.positions, -1 for punctuation */
  gboolean single;  /* one character, not an ideograph */
} Token;

typedef struct {
  guint first, n;   /* its ids in Check.ids */
} Position;

typedef struct {
  RvContentPolicy *p;
  Reader           reader;
  GString         *probe;      /* a prefix being looked up */
  GArray          *ids;        /* guint */
  GArray          *positions;  /* Position */
  Position        *current;
} Check;

static void
add_id (Check *c, guint id)
{
  for (guint i = c->current->first; i < c->ids->len; i++)
    if (g_array_index (c->ids, guint, i) == id)
      return;
  g_array_append_val (c->ids, id);
  c->current->n++;
}

static void
add_forms (Check *c, GPtrArray *forms, const guint8 *have, gsize len)
{
  for (guint i = 0; forms && i < forms->len; i++)
    {
      const Form *f = forms->pdata[i];
      if (runs_cover (have, f->need, len))
        add_id (c, f->id);
    }
}

/* Every phrase word one reading of a prompt word can be. */
static void
prompt_reading (Reader *r, gpointer data)
{
  Check *c = data;
  const char *w = r->word->str;
  gsize len = r->word->len;

  add_forms (c, g_hash_table_lookup (c->p->exact, w), r->runs->data, len);
  for (guint i = 0; i < c->p->prefix_lengths->len; i++)
    {
      guint k = g_array_index (c->p->prefix_lengths, guint, i);
      if (k > len)
        break;
      if (k < len && (w[k] & 0xC0) == 0x80)
        continue;
      g_string_truncate (c->probe, 0);
      g_string_append_len (c->probe, w, k);
      add_forms (c, g_hash_table_lookup (c->p->prefix, c->probe->str), r->runs->data, k);
    }
}

static int
add_position (Check *c, const char *raw, gsize len)
{
  Position pos = { c->ids->len, 0 };
  g_array_append_val (c->positions, pos);
  c->current = &g_array_index (c->positions, Position, c->positions->len - 1);
  if (!read_word (&c->reader, raw, len, FALSE, prompt_reading, c))
    {
      g_array_set_size (c->positions, c->positions->len - 1);
      return -1;
    }
  return (int) c->positions->len - 1;
}

/* The category of the first phrase along stream (position indices). */
static const char *
match_stream (Check *c, const GArray *stream, GArray *active, GArray *next)
{
  const RvContentPolicy *p = c->p;
  const guint *st = (const guint *) (gconstpointer) stream->data;

  for (guint i = 0; i < stream->len; i++)
    {
      if (g_array_index (c->positions, Position, st[i]).n == 0)
        continue;
      g_array_set_size (active, 1);
      g_array_index (active, guint, 0) = 0;
      for (guint k = 0; i + k < stream->len && k < p->max_words && active->len; k++)
        {
          const Position *pos = &g_array_index (c->positions, Position, st[i + k]);
          g_array_set_size (next, 0);
          for (guint a = 0; a < active->len; a++)
            for (guint j = 0; j < pos->n; j++)
              {
                guint node = g_array_index (active, guint, a);
                guint child = edge_get (p, node, g_array_index (c->ids, guint, pos->first + j));
                if (!child)
                  continue;
                guint cat = g_array_index (p->node_category, guint, child);
                if (cat)
                  return p->categories->pdata[cat - 1];
                g_array_append_val (next, child);
              }
          GArray *t = active;
          active = next;
          next = t;
        }
    }
  return NULL;
}

/* The words of tokens, with each run of three or more single characters
 * read as one word — less its first and/or last character when drop_first
 * or drop_last say so, for an "a" or "i" standing next to the spelled-out
 * word. */
static void
build_stream (Check *c, const GString *text, const Token *tokens, guint n_tokens,
              gboolean join, gboolean drop_first, gboolean drop_last, GArray *stream,
              GString *joined)
{
  g_array_set_size (stream, 0);
  for (guint t = 0; t < n_tokens;)
    {
      guint run = 0;
      while (join && t + run < n_tokens && tokens[t + run].single)
        run++;
      if (run >= 3u + drop_first + drop_last)
        {
          guint from = t + drop_first, to = t + run - drop_last;
          if (drop_first && tokens[t].position >= 0)
            g_array_append_val (stream, tokens[t].position);
          g_string_truncate (joined, 0);
          for (guint i = from; i < to; i++)
            g_string_append_len (joined, text->str + tokens[i].off, tokens[i].len);
          int pos = add_position (c, joined->str, joined->len);
          if (pos >= 0)
            g_array_append_val (stream, pos);
          if (drop_last && tokens[to].position >= 0)
            g_array_append_val (stream, tokens[to].position);
          t += run;
          continue;
        }
      for (guint i = t; i < t + MAX (run, 1u); i++)
        if (tokens[i].position >= 0)
          g_array_append_val (stream, tokens[i].position);
      t += MAX (run, 1u);
    }
}

const char *
rv_content_policy_check (RvContentPolicy *p, const char *text)
{
  g_return_val_if_fail (p != NULL, NULL);
  if (!text || !*text)
    return NULL;

  g_autoptr(GString) prepared = g_string_new (NULL);
  g_autoptr(GString) joined = g_string_new (NULL);
  g_autoptr(GArray) tokens = g_array_new (FALSE, FALSE, sizeof (Token));
  g_autoptr(GArray) stream = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr(GArray) active = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr(GArray) next = g_array_new (FALSE, FALSE, sizeof (guint));
  Check c = { p, { 0 }, g_string_new (NULL),
              g_array_new (FALSE, FALSE, sizeof (guint)),
              g_array_new (FALSE, FALSE, sizeof (Position)), NULL };
  gboolean has_run = FALSE;
  guint singles = 0;
  const char *found;

  reader_init (&c.reader);
  prepare (text, prepared);
  for (guint off = 0; off < prepared->len;)
    {
      const char *s = prepared->str + off;
      const char *e = strchr (s, ' ');
      guint len = e ? (guint) (e - s) : (guint) strlen (s);
      if (len)
        {
          gunichar first = g_utf8_get_char (s);
          Token t = { off, len, add_position (&c, s, len),
                      (guint) g_utf8_skip[*(const guchar *) s] == len && !is_ideograph (first) };
          g_array_append_val (tokens, t);
          singles = t.single ? singles + 1 : 0;
          has_run |= singles >= 3;
        }
      off += len + 1;
    }

  build_stream (&c, prepared, (const Token *) (gpointer) tokens->data, tokens->len,
                FALSE, FALSE, FALSE, stream, joined);
  found = match_stream (&c, stream, active, next);
  /* spelled-out words ("k i l l"), when there are any */
  for (guint v = 0; !found && has_run && v < 4; v++)
    {
      build_stream (&c, prepared, (const Token *) (gpointer) tokens->data, tokens->len,
                    TRUE, v & 1, v >> 1, stream, joined);
      found = match_stream (&c, stream, active, next);
    }

  reader_clear (&c.reader);
  g_string_free (c.probe, TRUE);
  g_array_unref (c.ids);
  g_array_unref (c.positions);
  return found;
}

static void
append_reading (Reader *r, gpointer data)
{
  GString *out = data;
  if (out->len)
    g_string_append_c (out, ' ');
  g_string_append (out, r->word->str);
}

char *
rv_content_policy_normalize (const char *text)
{
  g_autoptr(GString) prepared = g_string_new (NULL);
  GString *out = g_string_new (NULL);
  Reader r;

  g_return_val_if_fail (text != NULL, NULL);
  reader_init (&r);
  prepare (text, prepared);
  gchar **words = g_strsplit (prepared->str, " ", -1);
  for (gchar **w = words; *w; w++)
    if (**w)
      read_word (&r, *w, strlen (*w), TRUE, append_reading, out);
  g_strfreev (words);
  reader_clear (&r);
  return g_string_free (out, FALSE);
}
