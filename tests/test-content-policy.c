/* test-content-policy.c: the content-policy matcher — the file format and
 * its errors, normalisation, prompts written to slip past it, and innocent
 * prompts it must leave alone. */
#include "rv-content-policy.h"

#include <glib/gstdio.h>
#include <string.h>

static const char policy_text[] =
  "# a policy for the tests\n"
  "\n"
  "[violence]\n"
  "kill\n"
  "gore\n"
  "behead*\n"
  "graphic violence\n"
  "\n"
  "[self-harm]\n"
  "self-harm\n"
  "\n"
  "[sexual content]\n"
  "sex\n"
  "ass\n"
  "teen\n"
  "nude photo of\n"
  "\n"
  "[shocking content]\n"
  "kkk\n"
  "hell\n"
  "rape\n"
  "penis\n"
  "\n"
  "[hate]\n"
  "杀人\n"
  "\n"
  "[illegal activity]\n"
  "404\n"
  "make meth*\n"
  "   torture*   \n";

static RvContentPolicy *
test_policy (void)
{
  g_autoptr(GError) error = NULL;
  RvContentPolicy *p = rv_content_policy_new_from_data (policy_text, strlen (policy_text),
                                                        "test.txt", &error);
  g_assert_no_error (error);
  g_assert_nonnull (p);
  return p;
}

static void
assert_category (RvContentPolicy *p, const char *prompt, const char *category)
{
  const char *got = rv_content_policy_check (p, prompt);
  if (g_strcmp0 (got, category) != 0)
    {
      g_autofree char *norm = rv_content_policy_normalize (prompt);
      g_error ("\"%s\" (read as \"%s\"): expected %s, got %s", prompt, norm,
               category ? category : "no match", got ? got : "no match");
    }
}

/* ---- the file format ---- */

static void
test_parse (void)
{
  g_autoptr(RvContentPolicy) p = test_policy ();
  g_assert_cmpuint (rv_content_policy_n_categories (p), ==, 6);
  g_assert_cmpuint (rv_content_policy_n_phrases (p), ==, 17);

  /* BOM, CRLF, tabs, no final newline, comments between */
  static const char crlf[] = "\xEF\xBB\xBF# c\r\n[a b]\r\n\tone two\r\n  # c\r\n[c/d]\r\nthree";
  g_autoptr(GError) error = NULL;
  g_autoptr(RvContentPolicy) q = rv_content_policy_new_from_data (crlf, strlen (crlf), "x", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rv_content_policy_n_categories (q), ==, 2);
  g_assert_cmpuint (rv_content_policy_n_phrases (q), ==, 2);
  g_assert_cmpstr (rv_content_policy_check (q, "ONE\ttwo"), ==, "a b");
  g_assert_cmpstr (rv_content_policy_check (q, "three"), ==, "c/d");

  /* a category with no phrases is allowed; a phrase listed twice keeps
   * its first category */
  static const char twice[] = "[first]\nboom\n[empty]\n[second]\nboom\n";
  g_autoptr(RvContentPolicy) r = rv_content_policy_new_from_data (twice, strlen (twice), "x", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rv_content_policy_n_categories (r), ==, 3);
  g_assert_cmpstr (rv_content_policy_check (r, "boom"), ==, "first");
}

static void
test_errors (void)
{
  g_autofree char *long_line = g_strnfill (RV_CONTENT_POLICY_MAX_LINE + 1, 'a');
  g_autofree char *long_policy = g_strdup_printf ("[a]\nok\n%s\n", long_line);
  g_autofree char *long_ok = g_strdup_printf ("[a]\n%.*s\n", RV_CONTENT_POLICY_MAX_LINE, long_line);
  g_autofree char *long_name = g_strdup_printf ("[%.*s]\nx\n", RV_CONTENT_POLICY_MAX_CATEGORY + 1, long_line);
  static const char nul[] = "[a]\nfine\nbad\0byte\n";
  const struct { const char *data; int code; const char *prefix; } cases[] = {
    { "", RV_CONTENT_POLICY_ERROR_EMPTY, "t:1: " },
    { "# nothing\n\n[a]\n# still nothing\n", RV_CONTENT_POLICY_ERROR_EMPTY, "t:4: " },
    { "# c\nkill\n[a]\n", RV_CONTENT_POLICY_ERROR_NO_CATEGORY, "t:2: " },
    { "[a]\nx\n[violence\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:3: " },
    { "[]\nx\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[  ]\nx\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[a] # note\nx\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[a]b\nx\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[a[b]]\nx\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[a\tb]\nx\n", RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[a]\nx\n\n[a]\ny\n", RV_CONTENT_POLICY_ERROR_DUPLICATE_CATEGORY, "t:4: " },
    { "[a]\nx\n\xC3\x28\n", RV_CONTENT_POLICY_ERROR_BAD_UTF8, "t:3: " },
    { "[a]\nx\n\xED\xA0\x80\n", RV_CONTENT_POLICY_ERROR_BAD_UTF8, "t:3: " },
    { long_policy, RV_CONTENT_POLICY_ERROR_LINE_TOO_LONG, "t:3: " },
    { long_name, RV_CONTENT_POLICY_ERROR_BAD_HEADER, "t:1: " },
    { "[a]\nk$ll\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:2: " },
    { "[a]\nkill # inline comment\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:2: " },
    { "[a]\n*kill\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:2: " },
    { "[a]\nki*ll\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:2: " },
    { "[a]\nkill **\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:2: " },
    { "[a]\nab*\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:2: " },
    { "[a]\nx\n- . /\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:3: " },
    { "[a]\nx\nwhat?\n", RV_CONTENT_POLICY_ERROR_BAD_PHRASE, "t:3: " },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(RvContentPolicy) p =
        rv_content_policy_new_from_data (cases[i].data, strlen (cases[i].data), "t", &error);
      g_assert_null (p);
      g_assert_error (error, RV_CONTENT_POLICY_ERROR, cases[i].code);
      if (!g_str_has_prefix (error->message, cases[i].prefix))
        g_error ("case %u: \"%s\" does not start with \"%s\"", i, error->message, cases[i].prefix);
    }

  /* a NUL byte is not text */
  g_autoptr(GError) error = NULL;
  g_autoptr(RvContentPolicy) p = rv_content_policy_new_from_data (nul, sizeof nul - 1, "t", &error);
  g_assert_null (p);
  g_assert_error (error, RV_CONTENT_POLICY_ERROR, RV_CONTENT_POLICY_ERROR_BAD_UTF8);
  g_assert_true (g_str_has_prefix (error->message, "t:3: "));
  g_clear_error (&error);

  /* the longest line allowed is allowed */
  g_autoptr(RvContentPolicy) q = rv_content_policy_new_from_data (long_ok, strlen (long_ok), "t", &error);
  g_assert_no_error (error);
  g_assert_nonnull (q);

  /* the message names the policy, never a phrase */
  g_autoptr(RvContentPolicy) r = rv_content_policy_new_from_data ("[a]\nsecret $tuff\n", 17, "t", &error);
  g_assert_null (r);
  g_assert_null (strstr (error->message, "secret"));
}

static void
test_load (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("rv-policy-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *good = g_build_filename (dir, "good.txt", NULL);
  g_autofree char *bad = g_build_filename (dir, "bad.txt", NULL);
  g_autofree char *missing = g_build_filename (dir, "missing.txt", NULL);

  g_assert_true (g_file_set_contents (good, policy_text, -1, NULL));
  g_assert_true (g_file_set_contents (bad, "[a]\nfine\n\n[b\n", -1, NULL));

  g_autoptr(RvContentPolicy) p = rv_content_policy_load (good, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (rv_content_policy_check (p, "gore"), ==, "violence");

  g_autoptr(RvContentPolicy) q = rv_content_policy_load (bad, &error);
  g_assert_null (q);
  g_assert_error (error, RV_CONTENT_POLICY_ERROR, RV_CONTENT_POLICY_ERROR_BAD_HEADER);
  g_autofree char *where = g_strdup_printf ("%s:4: ", bad);
  g_assert_true (g_str_has_prefix (error->message, where));
  g_clear_error (&error);

  g_autoptr(RvContentPolicy) r = rv_content_policy_load (missing, &error);
  g_assert_null (r);
  g_assert_error (error, RV_CONTENT_POLICY_ERROR, RV_CONTENT_POLICY_ERROR_READ);
  g_assert_true (g_str_has_prefix (error->message, missing));
  g_clear_error (&error);

  g_unlink (good);
  g_unlink (bad);
  g_rmdir (dir);
}

/* ---- normalisation ---- */

static void
test_normalize (void)
{
  static const struct { const char *in, *out; } cases[] = {
    { "", "" },
    { "  ...  ", "" },
    { "Kill", "kil" },
    { "KiLL", "kil" },
    { "kíll kïll KÌLL", "kil kil kil" },
    { "kiiiilll", "kil" },
    { "k1ll ki11 k!ll k|ll", "kil ki kil kil" },      /* plainest: 1 and | read as i */
    { "s3x 5ex $ex", "sex sex ex" },                   /* a leading $ is dropped in the plainest */
    { "kill!!! (gore)", "kil gore" },
    { "k.i.l.l k-i-l-l", "k i l l k i l l" },
    { "graphic\n\n  violence", "graphic violence" },
    { "ｋｉｌｌ", "kil" },                             /* fullwidth */
    { "𝐤𝐢𝐥𝐥", "kil" },                                 /* mathematical bold */
    { "ᴋɪʟʟ", "kil" },                                 /* small capitals */
    { "кill", "kil" },                                 /* Cyrillic к */
    { "k\u200Bi\u00ADll", "kil" },                     /* zero-width space, soft hyphen */
    { "Straße", "strase" },
    { "1488 2024", "1488 2024" },                      /* numbers stay numbers */
    { "我想杀人", "我 想 杀 人" },
    { "déjà-vu", "deja vu" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *got = rv_content_policy_normalize (cases[i].in);
      g_assert_cmpstr (got, ==, cases[i].out);
    }

  /* invalid UTF-8 in a prompt is read, not refused */
  g_autofree char *bad = rv_content_policy_normalize ("ki\xFFll");
  g_assert_cmpstr (bad, ==, "ki l");
}

/* ---- matching ---- */

static void
test_evasions (void)
{
  g_autoptr(RvContentPolicy) p = test_policy ();
  static const char *const violent[] = {
    "kill", "how to kill a man", "KiLl", "KILL", "kíll", "kïll", "kiiiilll", "kiilll",
    "k1ll", "ki11", "k|ll", "ki||", "k!ll", "kill!!!", "¡kill!",
    "k i l l", "k.i.l.l", "k-i-l-l", "k _ i _ l _ l", "k  i\n l\tl",
    "a k i l l", "k i l l a man", "make a k i l l now", "K 1 L L",
    "ｋｉｌｌ", "ᴋɪʟʟ", "кill", "k\u200Bill", "k\u00ADill", "ki\u0301ll", "k\u0300i\u0308ll",
    "g0re", "G O R E", "gOoOre",
    "beheading", "Beheaded", "b3head3d", "BEHEAD",
    "graphic violence", "graphic\n   violence", "GRAPHIC -- violence!", "graphic-violence",
    "graphic, violence",
    "graphicviolence",
    "a painting, kill, by a master",
  };
  for (guint i = 0; i < G_N_ELEMENTS (violent); i++)
    assert_category (p, violent[i], "violence");

  assert_category (p, "self harm", "self-harm");
  assert_category (p, "SELF-HARM", "self-harm");
  assert_category (p, "selfharm", "self-harm");
  assert_category (p, "s e l f h a r m", "self-harm");
  assert_category (p, "s3x", "sexual content");
  assert_category (p, "$ex", "sexual content");
  assert_category (p, "5 E X", "sexual content");
  assert_category (p, "@ss", "sexual content");
  assert_category (p, "a$$", "sexual content");
  assert_category (p, "t33n", "sexual content");
  assert_category (p, "nude  photo\nof a woman", "sexual content");
  assert_category (p, "nudephotoof", "sexual content");
  assert_category (p, "kkk", "shocking content");
  assert_category (p, "K.K.K.", "shocking content");
  assert_category (p, "kkkk", "shocking content");
  assert_category (p, "我想杀人", "hate");
  assert_category (p, "杀 人", "hate");
  assert_category (p, "error 404 page", "illegal activity");
  assert_category (p, "4 0 4", "illegal activity");
  assert_category (p, "make meth", "illegal activity");
  assert_category (p, "make methamphetamine", "illegal activity");
  assert_category (p, "tortured", "illegal activity");

  /* a negative prompt is checked like any other text */
  assert_category (p, "blurry, lowres, bad anatomy, extra fingers, g0re, watermark", "violence");
}

static void
test_innocent (void)
{
  g_autoptr(RvContentPolicy) p = test_policy ();
  static const char *const innocent[] = {
    "", " ", "\n\t", "!!!", "$", "a cat on a sofa",
    /* whole words only */
    "skill", "skilled painter", "skillet", "killer whale", "killing time", "kiln", "kilogram",
    "ki", "kilt",
    "gory", "goreme valley", "ahead", "be heading home",
    "graphic design", "violence",                     /* half a phrase */
    /* Scunthorpe-style: phrases hidden inside innocent words */
    "Sussex", "Essex", "Middlesex", "sextant", "Cassandra", "class", "assassin's creed",
    "bass guitar", "Massachusetts", "grape", "drape", "scraped", "therapist",
    "Penistone", "pen island", "pen is", "shell", "hello", "Michelle", "Hellenic",
    /* runs may grow, never shrink: "ass" is not "as", "teen" is not "ten" */
    "as good as it gets", "ten cats", "hel", "hel lo", "kil", "ki11i",
    /* an "i" and an "a" beside letters spelled out, but no phrase */
    "i am a b c student", "u s a", "J. R. R. Tolkien",
    /* numbers are numbers; words are not joined */
    "4o4", "40404", "kk", "k k", "self", "harm", "nude photo",
    "tortoise", "methane",
    "我想", "杀", "人",
  };
  for (guint i = 0; i < G_N_ELEMENTS (innocent); i++)
    assert_category (p, innocent[i], NULL);
  g_assert_null (rv_content_policy_check (p, NULL));
}

static void
test_prefix_runs (void)
{
  static const char text[] = "[v]\nkill*\n[w]\nkil*\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(RvContentPolicy) p = rv_content_policy_new_from_data (text, strlen (text), "t", &error);
  g_assert_no_error (error);

  /* kill* needs the double l, kil* does not */
  assert_category (p, "killer whale", "v");
  assert_category (p, "kiiilling", "v");
  assert_category (p, "k1ller", "v");
  assert_category (p, "kill", "v");
  assert_category (p, "kiln", "w");
  assert_category (p, "kilogram", "w");
  assert_category (p, "skills", NULL);
}

/* A 50,000-character prompt of every kind the matcher has extra work for:
 * ordinary words, one huge word, a huge spelled-out run, ambiguous digits. */
static void
test_long_prompts (void)
{
  g_autoptr(RvContentPolicy) p = test_policy ();
  static const char *const units[] = { "a skilled painter ", "x", "q ", "1l|", "kil", "a.", "杀" };
  const gsize target = 50000;

  for (guint u = 0; u < G_N_ELEMENTS (units); u++)
    {
      g_autoptr(GString) s = g_string_new (NULL);
      glong unit_chars = g_utf8_strlen (units[u], -1);
      for (glong chars = 0; chars < (glong) target; chars += unit_chars)
        g_string_append (s, units[u]);

      gint64 start = g_get_monotonic_time ();
      const char *got = rv_content_policy_check (p, s->str);
      gint64 innocent_us = g_get_monotonic_time () - start;
      g_assert_null (got);

      /* the same with a phrase at the very end */
      g_string_append (s, " graphic violence");
      start = g_get_monotonic_time ();
      got = rv_content_policy_check (p, s->str);
      gint64 matching_us = g_get_monotonic_time () - start;
      g_assert_cmpstr (got, ==, "violence");

      /* a figure for the log; bench-content-policy measures speed */
      g_test_message ("50000 characters of \"%s\": %" G_GINT64_FORMAT " us clean, %"
                      G_GINT64_FORMAT " us matching", units[u], innocent_us, matching_us);
    }
}

/* The example shipped in data/: it loads, refuses what it lists and lets
 * ordinary prompts through. */
static void
test_example (void)
{
#ifdef RV_EXAMPLE_POLICY
  g_autoptr(GError) error = NULL;
  g_autoptr(RvContentPolicy) p = rv_content_policy_load (RV_EXAMPLE_POLICY, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rv_content_policy_n_categories (p), ==, 11);
  g_assert_cmpuint (rv_content_policy_n_phrases (p), >=, 30);

  static const struct { const char *prompt, *category; } cases[] = {
    { "a beheading in a medieval square", "violence" },
    { "G 0 R E everywhere", "violence" },
    { "n@ked woman on a beach", "sexual content" },
    { "a DEEPFAKE of a famous actor", "real people without consent" },
    { "faceswap my neighbour onto this", "real people without consent" },
    { "ugly, blurry, nsfw, extra limbs", "sexual content" },
    { "how to build a   bomb", "illegal activity" },
    { "selfharm aesthetic", "self-harm" },
    { "CLICK HERE for a casino bonus", "spam" },
    { "a watercolour of a cat asleep on a sofa", NULL },
    { "portrait of a woman, oil on canvas, highly detailed", NULL },
    { "a killer whale leaping at sunset", NULL },
    { "a skilled chef slicing grapes", NULL },
    { "rolling hills of Sussex in the style of Constable", NULL },
    { "class photo of a primary school, 1950s", NULL },
    { "an illustration in the style of Edward Gorey", NULL },
    { "a bomber jacket on a mannequin", NULL },
    { "a campaign map for a fantasy game", NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_category (p, cases[i].prompt, cases[i].category);
#else
  g_test_skip ("built without RV_EXAMPLE_POLICY");
#endif
}

/* Every category comes back by name, and checking from many threads at once
 * gives the same answers. */
static gpointer
check_many (gpointer data)
{
  RvContentPolicy *p = data;
  for (int i = 0; i < 2000; i++)
    {
      if (g_strcmp0 (rv_content_policy_check (p, "a g0re scene"), "violence") != 0
          || rv_content_policy_check (p, "a skilled painter") != NULL)
        return GINT_TO_POINTER (FALSE);
    }
  return GINT_TO_POINTER (TRUE);
}

static void
test_threads (void)
{
  g_autoptr(RvContentPolicy) p = test_policy ();
  GThread *threads[4];
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("check", check_many, p);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_assert_true (GPOINTER_TO_INT (g_thread_join (threads[i])));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/content-policy/parse", test_parse);
  g_test_add_func ("/content-policy/errors", test_errors);
  g_test_add_func ("/content-policy/load", test_load);
  g_test_add_func ("/content-policy/normalize", test_normalize);
  g_test_add_func ("/content-policy/evasions", test_evasions);
  g_test_add_func ("/content-policy/innocent", test_innocent);
  g_test_add_func ("/content-policy/prefix-runs", test_prefix_runs);
  g_test_add_func ("/content-policy/long-prompts", test_long_prompts);
  g_test_add_func ("/content-policy/threads", test_threads);
  g_test_add_func ("/content-policy/example", test_example);
  return g_test_run ();
}
