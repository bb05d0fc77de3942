/* test-tokenizer.c: the CLIP tokenizer against the golden `tokenizer` case,
 * on texts built here (empty, spaces, emoji, CJK, long, invalid UTF-8), and
 * its BPE and special-token rules on small vocabularies built here. */
#include "rv-reference.h"
#include "rv-test-util.h"
#include "rv-tokenizer.h"

#include <string.h>

#define BOS 49406
#define EOS 49407

/* The CLIP tokenizer of the reference set's prior, loaded once. */
static RvTokenizer *
clip_tokenizer (void)
{
  static RvTokenizer *tok;
  if (tok == NULL)
    {
      g_autofree char *dir = rv_test_reference_path ("models", "kandinsky-2-2-prior-tiny",
                                                     "tokenizer", NULL);
      g_autoptr (GError) error = NULL;
      tok = rv_tokenizer_new (dir, &error);
      g_assert_no_error (error);
    }
  return tok;
}

#define NEED_CLIP(tok) RvTokenizer *tok = clip_tokenizer ()

static GArray *
tokens (RvTokenizer *tok, const char *text)
{
  g_autoptr (GError) error = NULL;
  GArray *a = rv_tokenizer_tokenize (tok, text, &error);
  g_assert_no_error (error);
  return a;
}

static void
assert_same_tokens (RvTokenizer *tok, const char *a, const char *b)
{
  g_autoptr (GArray) x = tokens (tok, a);
  g_autoptr (GArray) y = tokens (tok, b);
  g_assert_cmpmem (x->data, x->len * 4, y->data, y->len * 4);
}

static void
assert_tokens (RvTokenizer *tok, const char *text, const gint32 *want, guint n)
{
  g_autoptr (GArray) x = tokens (tok, text);
  g_assert_cmpmem (x->data, x->len * 4, want, n * 4);
}

/* The golden case: params.texts, padded to params.model_max_length. */
static void
test_golden (void)
{
  NEED_CLIP (tok);
  g_autofree char *dir = rv_test_reference_dir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (RvRefSet) set = rv_ref_set_open (dir, &error);
  g_assert_no_error (error);
  const RvRefCase *c = rv_ref_set_find (set, "tokenizer");
  g_assert_nonnull (c);
  g_autoptr (RvSafetensors) st = rv_safetensors_open (c->file, &error);
  g_assert_no_error (error);
  g_autofree gint64 *want_ids = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, "out.input_ids"), &error);
  g_autofree gint64 *want_mask = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, "out.attention_mask"), &error);
  g_assert_no_error (error);
  JsonArray *texts = json_object_get_array_member (c->params, "texts");
  int length = (int) json_object_get_int_member (c->params, "model_max_length");
  g_assert_cmpint (length, ==, rv_tokenizer_max_length (tok));
  g_assert_cmpint (rv_tokenizer_pad_id (tok), ==, json_object_get_int_member (c->params, "pad_token_id"));
  g_assert_cmpint (rv_tokenizer_bos_id (tok), ==, json_object_get_int_member (c->params, "bos_token_id"));
  g_assert_cmpint (rv_tokenizer_eos_id (tok), ==, json_object_get_int_member (c->params, "eos_token_id"));
  g_autofree gint32 *ids = g_new (gint32, length);
  g_autofree gint32 *mask = g_new (gint32, length);
  for (guint i = 0; i < json_array_get_length (texts); i++)
    {
      int dropped = -1;
      g_assert_true (rv_tokenizer_encode (tok, json_array_get_string_element (texts, i), length,
                                          ids, mask, &dropped, &error));
      for (int k = 0; k < length; k++)
        {
          g_assert_cmpint (ids[k], ==, want_ids[i * length + k]);
          g_assert_cmpint (mask[k], ==, want_mask[i * length + k]);
        }
      /* only the long text is cut, by what does not fit */
      g_autoptr (GArray) all = tokens (tok, json_array_get_string_element (texts, i));
      g_assert_cmpint (dropped, ==, MAX ((int) all->len - (length - 2), 0));
      g_assert_cmpint (dropped > 0, ==, i == 4);
    }
}

static void
test_rows (void)
{
  NEED_CLIP (tok);
  gint32 ids[77], mask[77];
  int dropped;
  g_autoptr (GError) error = NULL;
  for (guint i = 0; i < 3; i++)
    {
      const char *blank[] = { "", "   ", " \t\n\r\v\f \u3000 " };
      g_assert_true (rv_tokenizer_encode (tok, blank[i], 0, ids, mask, &dropped, &error));
      g_assert_cmpint (ids[0], ==, BOS);
      g_assert_cmpint (ids[1], ==, EOS);
      g_assert_cmpint (mask[1], ==, 1);
      g_assert_cmpint (mask[2], ==, 0);
      g_assert_cmpint (ids[76], ==, 0);
      g_assert_cmpint (dropped, ==, 0);
    }
  /* a shorter row when asked */
  gint32 short_ids[5], short_mask[5];
  g_assert_true (rv_tokenizer_encode (tok, "a red cat sitting", 5, short_ids, short_mask, &dropped, &error));
  const gint32 want[5] = { BOS, 320, 736, 2368, EOS };
  g_assert_cmpmem (short_ids, sizeof short_ids, want, sizeof want);
  g_assert_cmpint (dropped, ==, 1);
}

/* Clean-up: case, whitespace, NFC, control characters, accents. */
static void
test_normalization (void)
{
  NEED_CLIP (tok);
  const gint32 world_bang[] = { 1002, 0 };   /* the pad token "!" is matched literally */
  assert_tokens (tok, "world!", world_bang, 2);
  const gint32 hello[] = { 3306 };
  assert_tokens (tok, "HeLLo", hello, 1);
  assert_same_tokens (tok, "a  red\t\tcat\n", "a red cat");
  assert_same_tokens (tok, "  a red cat  ", "a red cat");
  assert_same_tokens (tok, "a\u00a0red\u2003cat", "a red cat");   /* Unicode spaces */
  assert_same_tokens (tok, "a\u2028red", "a red");                  /* line separator */
  assert_same_tokens (tok, "re\x07" "d c\u200bat", "red cat");       /* control, zero-width */
  assert_same_tokens (tok, "caf\u00e9", "cafe\u0301");              /* NFC */
  assert_same_tokens (tok, "CAF\u00c9", "caf\u00e9");               /* lower case, accents kept */
  g_autoptr (GArray) accent = tokens (tok, "d\u00e9j\u00e0");
  g_autoptr (GArray) plain = tokens (tok, "deja");
  g_assert_false (accent->len == plain->len
                  && memcmp (accent->data, plain->data, 4 * plain->len) == 0);
  /* the contraction rule: 's is a word of its own */
  g_autoptr (GArray) its = tokens (tok, "it's");
  g_autoptr (GArray) it = tokens (tok, "it");
  g_autoptr (GArray) s_word = tokens (tok, "'s");
  g_assert_cmpuint (its->len, ==, 2);
  g_assert_cmpint (g_array_index (its, gint32, 0), ==, g_array_index (it, gint32, 0));
  g_assert_cmpint (g_array_index (its, gint32, 1), ==, g_array_index (s_word, gint32, 0));
  /* digits are single pieces */
  assert_same_tokens (tok, "345", "3 4 5");
  /* special tokens are matched in the raw text */
  const gint32 specials[] = { EOS, 320, BOS };
  assert_tokens (tok, "<|endoftext|>a<|startoftext|>", specials, 3);
  /* but not across a case change */
  g_autoptr (GArray) upper = tokens (tok, "<|ENDOFTEXT|>");
  g_assert_cmpuint (upper->len, >, 1);
}

static void
test_unicode (void)
{
  NEED_CLIP (tok);
  /* CJK ideographs are words of their own */
  assert_same_tokens (tok, "\u65e5\u672c", "\u65e5 \u672c");
  g_autoptr (GArray) cjk = tokens (tok, "\u65e5\u672c\u8a9e");
  g_assert_cmpuint (cjk->len, >=, 3);
  /* an emoji is byte-level BPE: "🙂" is ðŁĻĤ</w>, one token */
  const gint32 smile[] = { 14860 };
  assert_tokens (tok, "\U0001F642", smile, 1);
  /* a ZWJ sequence loses its joiner (a format character) */
  assert_same_tokens (tok, "\U0001F469\u200D\U0001F4BB", "\U0001F469\U0001F4BB");
  /* every id is in the vocabulary, none is unknown (eos) */
  g_autoptr (GArray) mixed = tokens (tok, "Ελληνικά русский עברית हिन्दी 한국어 ﷺ \U0001F600x\U00010348");
  g_assert_cmpuint (mixed->len, >, 10);
  for (guint i = 0; i < mixed->len; i++)
    {
      g_assert_cmpint (g_array_index (mixed, gint32, i), >=, 0);
      g_assert_cmpint (g_array_index (mixed, gint32, i), <, BOS);
    }
  /* Greek final sigma and the dotted capital I lower-case as Python does */
  assert_same_tokens (tok, "\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2");
  assert_same_tokens (tok, "\u03a3\u039f", "\u03c3\u03bf");
  assert_same_tokens (tok, "\u0130", "i\u0307");
}

static void
test_long (void)
{
  NEED_CLIP (tok);
  /* 50,000 characters of words, and one 50,000-letter word (BPE in n log n) */
  g_autoptr (GString) words = g_string_new (NULL);
  while (words->len < 50000)
    g_string_append (words, "painting of a lighthouse, ");
  g_autoptr (GString) one = g_string_new (NULL);
  for (int i = 0; i < 50000; i++)
    g_string_append_c (one, "abcdefghij"[(i * 7 + i / 13) % 10]);
  const char *texts[] = { words->str, one->str };
  for (guint t = 0; t < 2; t++)
    {
      gint32 ids[77], mask[77];
      int dropped = 0;
      g_autoptr (GError) error = NULL;
      gint64 t0 = g_get_monotonic_time ();
      g_assert_true (rv_tokenizer_encode (tok, texts[t], 77, ids, mask, &dropped, &error));
      g_test_message ("%zu characters: %d tokens dropped in %.3f s", strlen (texts[t]), dropped,
                      (g_get_monotonic_time () - t0) / 1e6);
      g_assert_cmpint (dropped, >, 1000);
      g_assert_cmpint (ids[0], ==, BOS);
      g_assert_cmpint (ids[76], ==, EOS);
      for (int k = 0; k < 77; k++)
        g_assert_cmpint (mask[k], ==, 1);
      /* the kept tokens are the start of the text's tokens */
      g_autoptr (GArray) all = tokens (tok, texts[t]);
      g_assert_cmpint ((int) all->len, ==, 75 + dropped);
      g_assert_cmpmem (ids + 1, 75 * 4, all->data, 75 * 4);
    }
}

static void
test_invalid_utf8 (void)
{
  NEED_CLIP (tok);
  const char *bad[] = { "abc\xff", "\xc3", "\xed\xa0\x80 surrogate", "over\xf8\x88\x80\x80\x80long" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      gint32 ids[77], mask[77];
      g_autoptr (GError) error = NULL;
      g_assert_false (rv_tokenizer_encode (tok, bad[i], 77, ids, mask, NULL, &error));
      g_assert_error (error, RV_ERROR, RV_ERROR_INVALID);
    }
}

/* ---- small vocabularies ---- */

static RvTokenizer *
small_tokenizer (const char *vocab, const char *merges, const char *config, const char *map,
                 GError **error)
{
  g_autoptr (GBytes) v = g_bytes_new (vocab, strlen (vocab));
  g_autoptr (GBytes) m = g_bytes_new (merges, strlen (merges));
  g_autoptr (GBytes) c = config != NULL ? g_bytes_new (config, strlen (config)) : NULL;
  g_autoptr (GBytes) s = map != NULL ? g_bytes_new (map, strlen (map)) : NULL;
  return rv_tokenizer_new_from_bytes (v, m, c, s, "small", error);
}

#define SMALL_VOCAB                                                                        \
  "{\"a\": 1, \"b\": 2, \"c\": 3, \"x\": 4, \"x</w>\": 5, \"bc\": 6, \"bcb\": 7, "          \
  "\"d</w>\": 8, \"a</w>\": 9, \"aa\": 10, \"aaa</w>\": 11, \"!\": 12, \"!</w>\": 13, "       \
  "\"<|startoftext|>\": 98, \"<|endoftext|>\": 99}"

/* Each rank's pairs are merged everywhere before a lower rank created by
 * those merges is taken: b c b c x -> bc bc x, never bcb c x. */
static void
test_bpe_rank_order (void)
{
  g_autoptr (GError) error = NULL;
  const char *vocab = "{\"a\": 1, \"b\": 2, \"c\": 3, \"x\": 4, \"x</w>\": 5, \"bc\": 6, "
                      "\"bcb\": 7, \"<|startoftext|>\": 98, \"<|endoftext|>\": 99}";
  g_autoptr (RvTokenizer) tok = small_tokenizer (vocab, "#version: 0.2\nbc b\nb c\n", NULL,
                                                 NULL, &error);
  g_assert_no_error (error);
  const gint32 want[] = { 6, 6, 5 };
  assert_tokens (tok, "bcbcx", want, 3);
  /* non-overlapping, left to right: a a a</w> -> aa a</w> */
  g_autoptr (RvTokenizer) tok2 = small_tokenizer (
    "{\"a\": 1, \"aa\": 2, \"a</w>\": 3, \"aaa</w>\": 4, \"<|startoftext|>\": 98, "
    "\"<|endoftext|>\": 99}", "#version: 0.2\na a\n", NULL, NULL, &error);
  g_assert_no_error (error);
  const gint32 want2[] = { 2, 3 };
  assert_tokens (tok2, "aaa", want2, 2);
  g_autoptr (GArray) four = tokens (tok2, "aaaa");
  g_assert_cmpuint (four->len, ==, 3);   /* aa, a, a</w> */
  g_assert_cmpint (g_array_index (four, gint32, 0), ==, 2);
  g_assert_cmpint (g_array_index (four, gint32, 1), ==, 1);
  g_assert_cmpint (g_array_index (four, gint32, 2), ==, 3);
  /* unknown symbols become the unk token (<|endoftext|> by default) */
  const gint32 unk[] = { 99 };
  assert_tokens (tok2, "z", unk, 1);
}

static void
test_specials (void)
{
  g_autoptr (GError) error = NULL;
  const char *merges = "#version: 0.2\na a\n";
  /* without tokenizer_config: pad = eos = unk = <|endoftext|>, max length 77 */
  g_autoptr (RvTokenizer) plain = small_tokenizer (SMALL_VOCAB, merges, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rv_tokenizer_pad_id (plain), ==, 99);
  g_assert_cmpint (rv_tokenizer_bos_id (plain), ==, 98);
  g_assert_cmpint (rv_tokenizer_max_length (plain), ==, 77);
  gint32 ids[8], mask[8];
  g_assert_true (rv_tokenizer_encode (plain, "a", 8, ids, mask, NULL, &error));
  const gint32 padded[8] = { 98, 9, 99, 99, 99, 99, 99, 99 };
  g_assert_cmpmem (ids, sizeof ids, padded, sizeof padded);
  const gint32 bang[] = { 13 };   /* "!" is an ordinary word here: !</w> */
  assert_tokens (plain, "!", bang, 1);

  /* pad from the config, AddedToken forms, the map overriding the config,
   * a huge model_max_length meaning "no limit" (77) */
  const char *config =
    "{\"added_tokens_decoder\": {\"12\": {\"content\": \"!\", \"special\": true, "
    "\"rstrip\": true, \"lstrip\": true}}, \"pad_token\": \"<|startoftext|>\", "
    "\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<|startoftext|>\"}, "
    "\"model_max_length\": 1e30}";
  const char *map = "{\"pad_token\": \"!\"}";
  g_autoptr (RvTokenizer) tok = small_tokenizer (SMALL_VOCAB, merges, config, map, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rv_tokenizer_pad_id (tok), ==, 12);
  g_assert_cmpint (rv_tokenizer_max_length (tok), ==, 77);
  /* "!" is an added token now (lstrip/rstrip: the spaces around it go, as
   * the clean-up would remove them anyway) */
  const gint32 stripped[] = { 9, 12, 9 };
  assert_tokens (tok, "a  !  a", stripped, 3);

  g_autoptr (RvTokenizer) sized = small_tokenizer (SMALL_VOCAB, merges,
                                                   "{\"model_max_length\": 16}", NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (rv_tokenizer_max_length (sized), ==, 16);
}

static void
test_bad_files (void)
{
  static const struct { const char *vocab, *merges, *config, *what; } cases[] = {
    { "[1, 2]", "#v\na b\n", NULL, "vocab.json" },
    { "{\"a\": -1}", "#v\na b\n", NULL, "“a”" },
    { "{\"a\": \"1\"}", "#v\na b\n", NULL, "“a”" },
    { "{}", "#v\na b\n", NULL, "empty" },
    { "{\"a\": 1, \"<|endoftext|>\": 2, \"<|startoftext|>\": 3}", "#version only\n", NULL,
      "merges" },
    { "{\"a\": 1, \"<|endoftext|>\": 2, \"<|startoftext|>\": 3}", "#v\na \xff\n", NULL, "UTF-8" },
    { "{\"a\": 1, \"<|endoftext|>\": 2}", "#v\na a\n", NULL, "bos_token" },
    { "{\"a\": 1, \"<|endoftext|>\": 2, \"<|startoftext|>\": 3}", "#v\na a\n",
      "{\"pad_token\": \"<pad>\"}", "“<pad>”" },
    { "{\"a\": 1, \"<|endoftext|>\": 2, \"<|startoftext|>\": 3}", "#v\na a\n",
      "{\"added_tokens_decoder\": {\"x\": {\"content\": \"q\"}}}", "added token" },
    { "{\"a\": 1, \"<|endoftext|>\": 2, \"<|startoftext|>\": 3}", "#v\na a\n",
      "{\"model_max_length\": 1}", "model_max_length" },
    { "{\"a\": 1, \"<|endoftext|>\": 2, \"<|startoftext|>\": 3}", "#v\na a\n", "{bad json",
      "tokenizer_config.json" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RvTokenizer) tok = small_tokenizer (cases[i].vocab, cases[i].merges,
                                                     cases[i].config, NULL, &error);
      g_assert_null (tok);
      g_assert_error (error, RV_ERROR, RV_ERROR_MODEL);
      if (strstr (error->message, cases[i].what) == NULL)
        g_error ("case %u: “%s” does not mention “%s”", i, error->message, cases[i].what);
    }
  g_autoptr (GError) error = NULL;
  g_autoptr (RvTokenizer) none = rv_tokenizer_new ("/nonexistent/tokenizer", &error);
  g_assert_null (none);
  g_assert_error (error, RV_ERROR, RV_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, "vocab.json"));
}

/* Kandinsky 2.2's published tokenizer pads with <|endoftext|>: the pad id
 * comes from the files. */
static void
test_pad_from_files (void)
{
  g_autofree char *dir = rv_test_reference_path ("models", "kandinsky-2-2-prior-tiny",
                                                 "tokenizer", NULL);
  g_autofree char *vocab_path = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *merges_path = g_build_filename (dir, "merges.txt", NULL);
  g_autoptr (GMappedFile) vf = g_mapped_file_new (vocab_path, FALSE, NULL);
  g_autoptr (GMappedFile) mf = g_mapped_file_new (merges_path, FALSE, NULL);
  g_autoptr (GBytes) vocab = g_mapped_file_get_bytes (vf);
  g_autoptr (GBytes) merges = g_mapped_file_get_bytes (mf);
  const char *config = "{\"pad_token\": \"<|endoftext|>\", \"model_max_length\": 77}";
  g_autoptr (GBytes) cb = g_bytes_new_static (config, strlen (config));
  g_autoptr (GError) error = NULL;
  g_autoptr (RvTokenizer) k22 = rv_tokenizer_new_from_bytes (vocab, merges, cb, NULL, "k22", &error);
  g_assert_no_error (error);
  g_assert_cmpint (rv_tokenizer_pad_id (k22), ==, EOS);
  gint32 ids[77], mask[77];
  g_assert_true (rv_tokenizer_encode (k22, "world!", 77, ids, mask, NULL, &error));
  /* "!" is no added token here: BPE gives !</w> (256) */
  const gint32 want[] = { BOS, 1002, 256, EOS, EOS, EOS };
  g_assert_cmpmem (ids, sizeof want, want, sizeof want);
  g_assert_cmpint (mask[3], ==, 1);
  g_assert_cmpint (mask[4], ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rv_test_add ("/tokenizer/golden", test_golden);
  rv_test_add ("/tokenizer/rows", test_rows);
  rv_test_add ("/tokenizer/normalization", test_normalization);
  rv_test_add ("/tokenizer/unicode", test_unicode);
  rv_test_add ("/tokenizer/long", test_long);
  rv_test_add ("/tokenizer/invalid-utf8", test_invalid_utf8);
  rv_test_add ("/tokenizer/bpe-rank-order", test_bpe_rank_order);
  rv_test_add ("/tokenizer/specials", test_specials);
  rv_test_add ("/tokenizer/bad-files", test_bad_files);
  rv_test_add ("/tokenizer/pad-from-files", test_pad_from_files);
  return g_test_run ();
}
