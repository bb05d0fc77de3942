/* rv-content-policy.h: a content policy — named categories of phrases that a
 * shared service refuses in prompts — and the matcher that applies it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Policy file format (plain UTF-8 text, one item a line):
 *
 *   # a comment (only as a whole line)
 *   [violence]                 a category header; the name is what a refused
 *   gore                       client is told, so keep it short and neutral
 *   graphic violence           a phrase: one or more words
 *   behead*                    a trailing * makes a word a prefix (>= 3 letters)
 *
 * Blank lines are ignored, a UTF-8 BOM and CRLF line ends are accepted.
 * Phrases are written plainly: letters, digits, spaces and the joiners
 * - ' ’ . / (which separate words, as in "self-harm"). Any other character
 * — $ @ ! | # and the like — is an error: look-alike spellings are caught by
 * the normalisation below, so listing them is never needed. A phrase before
 * the first header, a malformed or repeated header, invalid UTF-8, a line of
 * more than RV_CONTENT_POLICY_MAX_LINE bytes and a file without any phrase
 * are errors, reported as "FILE:LINE: what is wrong".
 *
 * Matching (the same normalisation is applied to phrases and to prompts):
 * - Unicode compatibility decomposition, accents and other marks dropped,
 *   case folded; invisible format characters (zero-width space, soft hyphen)
 *   removed; Cyrillic, Greek and small-capital look-alikes of Latin letters
 *   read as those letters.
 * - Inside a word that has a letter, digits and symbols are read as the
 *   letters they imitate: 0 o, 3 e, 4 a, 5 s, 7 t, 8 b, 9 g, @ a, $ s, € e,
 *   £ l, ¢ c, ! i; 1 and | are tried both as i and as l. A symbol at either
 *   end of a word is tried both as a letter and as punctuation ("$ex",
 *   "kill!"). A word of digits only is a number and is left alone. (Phrases
 *   have no symbols, and a digit inside a phrase word reads as above, 1 as i.)
 * - A run of one letter matches any longer run of it ("kill" matches
 *   "kiiilll") but not a shorter one ("kill" does not match "kil"), so that
 *   "ass", "butt" and "teen" do not match "as", "but" and "ten".
 * - Anything else separates words. A phrase matches when its words are
 *   consecutive whole words of the prompt: "kill" matches neither "skill" nor
 *   "killer"; "kill*" matches "killer" but not "kiln".
 * - Three or more single characters in a row ("k i l l", "k.i.l.l") are also
 *   read as one word, with or without a leading or trailing one ("a k i l l").
 *   Longer pieces are never joined: that is how "pen is" or "the rapist"
 *   would turn innocent text into matches.
 * - A phrase of several words also matches them written as one word
 *   ("self harm" matches "selfharm").
 * - Han, Hiragana and Katakana characters are one word each, so a phrase in
 *   those scripts matches inside unspaced text. Other scripts written without
 *   spaces (Thai, for one) only match whole space-separated words. */

#define RV_CONTENT_POLICY_ERROR (rv_content_policy_error_quark ())
GQuark rv_content_policy_error_quark (void);

typedef enum {
  RV_CONTENT_POLICY_ERROR_READ,               /* the file cannot be read */
  RV_CONTENT_POLICY_ERROR_EMPTY,              /* no phrase in the whole policy */
  RV_CONTENT_POLICY_ERROR_NO_CATEGORY,        /* a phrase before any [header] */
  RV_CONTENT_POLICY_ERROR_BAD_HEADER,         /* "[name" , "[]", "[a]b", ... */
  RV_CONTENT_POLICY_ERROR_DUPLICATE_CATEGORY, /* the same [header] twice */
  RV_CONTENT_POLICY_ERROR_BAD_UTF8,
  RV_CONTENT_POLICY_ERROR_LINE_TOO_LONG,
  RV_CONTENT_POLICY_ERROR_BAD_PHRASE,         /* a character or * out of place */
} RvContentPolicyError;

/* Longest line accepted, in bytes, without its line end. */
#define RV_CONTENT_POLICY_MAX_LINE 512
/* Longest category name, in characters. */
#define RV_CONTENT_POLICY_MAX_CATEGORY 64

typedef struct _RvContentPolicy RvContentPolicy;

RvContentPolicy *rv_content_policy_load          (const char *path, GError **error);
/* origin names the data in error messages (a file name, "<builtin>"). */
RvContentPolicy *rv_content_policy_new_from_data (const char *data, gsize len,
                                                  const char *origin, GError **error);
void             rv_content_policy_free          (RvContentPolicy *p);

/* The category of the first phrase found in text, or NULL. A policy does
 * not change once loaded, so any number of threads may check at once. The
 * result lives as long as the policy; it is the category name only, never
 * the phrase, which is what a refusal may show. */
const char      *rv_content_policy_check         (RvContentPolicy *p, const char *text);

/* Phrase lines and categories of the policy. */
guint            rv_content_policy_n_phrases     (RvContentPolicy *p);
guint            rv_content_policy_n_categories  (RvContentPolicy *p);

/* The words text is read as, space-separated, in their plainest reading
 * (1 as i, symbols at word ends dropped, letter runs shortened to one):
 * for tests and for working out why a prompt was or was not refused. */
char            *rv_content_policy_normalize     (const char *text);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvContentPolicy, rv_content_policy_free)

G_END_DECLS
