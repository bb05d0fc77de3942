/* fuzz-tokenizer.c: the CLIP tokenizer. The first byte picks what the rest
 * is: text to encode with a real CLIP vocabulary (0, 1), a
 * tokenizer_config.json (2) or a merges.txt (3) for a small vocabulary. */
#include "config.h"

#include "fuzz.h"
#include "rv-tokenizer.h"

#include <string.h>

/* A real CLIP tokenizer folder: the embedded model's or the reference data's;
 * without either the small vocabulary stands in. */
static const char *const tokenizer_dirs[] = {
  SOURCE_MODELDIR "/reverie-tiny/prior/tokenizer",
  FUZZ_REFERENCE_DIR "/models/kandinsky-2-2-prior-tiny/tokenizer",
};

static const char small_merges[] =
  "#version: 0.2\nt h\nth e</w>\na n\nan d</w>\ni n\nin g</w>\ne r\n! !\n< |\n";

static GBytes *
small_vocab (void)
{
  GString *s = g_string_new ("{\"<|startoftext|>\": 1000, \"<|endoftext|>\": 1001");
  int id = 0;
  for (int c = '!'; c <= '~'; c++)
    {
      const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : NULL;
      char one[2] = { (char) c, 0 };
      g_string_append_printf (s, ", \"%s\": %d, \"%s</w>\": %d", esc ? esc : one, id, esc ? esc : one,
                              id + 1);
      id += 2;
    }
  g_string_append (s, ", \"th\": 500, \"the</w>\": 501, \"an\": 502, \"in\": 503}");
  return g_string_free_to_bytes (s);
}

static RvTokenizer *
clip_tokenizer (void)
{
  static RvTokenizer *tok;
  if (tok != NULL)
    return tok;
  for (guint i = 0; i < G_N_ELEMENTS (tokenizer_dirs) && tok == NULL; i++)
    if (g_file_test (tokenizer_dirs[i], G_FILE_TEST_IS_DIR))
      tok = rv_tokenizer_new (tokenizer_dirs[i], NULL);
  if (tok == NULL)
    {
      g_autoptr (GBytes) vocab = small_vocab ();
      g_autoptr (GBytes) merges = g_bytes_new_static (small_merges, strlen (small_merges));
      tok = rv_tokenizer_new_from_bytes (vocab, merges, NULL, NULL, "small", NULL);
    }
  g_assert (tok != NULL);
  return tok;
}

static void
encode (RvTokenizer *tok, const char *text)
{
  gint32 ids[77], mask[77];
  int dropped = -1;
  g_autoptr (GError) error = NULL;
  if (!rv_tokenizer_encode (tok, text, 77, ids, mask, &dropped, &error))
    {
      g_assert (!g_utf8_validate (text, -1, NULL));
      return;
    }
  g_assert (ids[0] == rv_tokenizer_bos_id (tok) && mask[0] == 1 && dropped >= 0);
  int n = 0;
  while (n < 77 && mask[n] == 1)
    n++;
  g_assert (n >= 2 && ids[n - 1] == rv_tokenizer_eos_id (tok));
  for (int i = n; i < 77; i++)
    g_assert (mask[i] == 0 && ids[i] == rv_tokenizer_pad_id (tok));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  g_autofree char *rest = g_strndup ((const char *) data + 1, size - 1);
  g_autoptr (GBytes) rest_bytes = g_bytes_new_static (data + 1, size - 1);
  g_autoptr (GBytes) vocab = NULL, merges = NULL;
  g_autoptr (RvTokenizer) tok = NULL;
  switch (data[0] % 4)
    {
    case 0:
    case 1:
      encode (clip_tokenizer (), rest);
      break;
    case 2:
      vocab = small_vocab ();
      merges = g_bytes_new_static (small_merges, strlen (small_merges));
      tok = rv_tokenizer_new_from_bytes (vocab, merges, rest_bytes, NULL, "fuzz", NULL);
      break;
    default:
      vocab = small_vocab ();
      tok = rv_tokenizer_new_from_bytes (vocab, rest_bytes, NULL, NULL, "fuzz", NULL);
      break;
    }
  if (tok != NULL)
    {
      encode (tok, "the end and the thing!! <|endoftext|> <|startoftext|>x");
      encode (tok, rest);
    }
  return 0;
}
