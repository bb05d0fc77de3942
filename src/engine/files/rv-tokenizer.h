/* rv-tokenizer.h: the CLIP byte-level BPE tokenizer, as transformers'
 * CLIPTokenizer without ftfy (docs/model-spec.md §3, tests/reference/kandinsky-2-2-tiny/README.md §2). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _RvTokenizer RvTokenizer;

/* From a tokenizer folder: vocab.json, merges.txt and, when present,
 * tokenizer_config.json and special_tokens_map.json. */
RvTokenizer *rv_tokenizer_new (const char *dir, GError **error);
/* The same from file contents; the last two may be NULL. `origin` names the
 * data in messages. */
RvTokenizer *rv_tokenizer_new_from_bytes (GBytes *vocab_json, GBytes *merges_txt,
                                          GBytes *tokenizer_config_json,
                                          GBytes *special_tokens_map_json, const char *origin,
                                          GError **error);
void         rv_tokenizer_free (RvTokenizer *tok);

int          rv_tokenizer_max_length (RvTokenizer *tok);   /* model_max_length, 77 */
int          rv_tokenizer_bos_id (RvTokenizer *tok);
int          rv_tokenizer_eos_id (RvTokenizer *tok);
int          rv_tokenizer_pad_id (RvTokenizer *tok);       /* from the files */

/* The token ids of `text` (gint32), without bos/eos and without truncation.
 * Added tokens (tokenizer_config's added_tokens_decoder, bos, eos, unk, pad)
 * are matched literally first; the pieces between them are cleaned (NFC,
 * control characters dropped, whitespace runs to one space, trimmed,
 * lower-cased), split with the CLIP pattern and BPE-encoded.
 * Text that is not valid UTF-8 is an error (RV_ERROR_INVALID); NUL
 * ends the text. Thread-safe. */
GArray      *rv_tokenizer_tokenize (RvTokenizer *tok, const char *text, GError **error);

/* One model input row: bos, the first max_length − 2 tokens, eos, then the
 * pad id up to max_length (≤ 0: the tokenizer's model_max_length). ids and
 * mask (1 on bos…eos, 0 on padding) have max_length entries. *n_dropped (may
 * be NULL) receives the number of tokens cut off, to tell the user. */
gboolean     rv_tokenizer_encode (RvTokenizer *tok, const char *text, int max_length,
                                  gint32 *ids, gint32 *mask, int *n_dropped, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvTokenizer, rv_tokenizer_free)

G_END_DECLS
