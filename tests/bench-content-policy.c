/* bench-content-policy.c: how long a prompt check takes against a large
 * generated policy (10,000 phrases by default). Prints figures only; the
 * same seed gives the same policy and prompts on every run. */
#include "rv-content-policy.h"

#include <string.h>
#include <time.h>

static const char *const consonants[] = {
  "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
  "ch", "sh", "th", "br", "st", "tr", "pl", "gr",
};
static const char *const vowels[] = { "a", "e", "i", "o", "u", "ai", "ou", "ee" };
/* no policy word has a y, so prompts are clean unless a policy word is put in */
static const char *const prompt_vowels[] = { "y", "ya", "ye", "yo" };
static const char *const common[] = {
  "a", "the", "of", "and", "in", "with", "on", "portrait", "photo", "painting", "cat",
  "city", "at", "night", "oil", "on", "canvas", "highly", "detailed", "4k", "blurry",
  "lowres", "watermark", "soft", "light", "by", "artist", "style", "cinematic",
};

static void
pseudo_word (GRand *rand, const char *const *vs, int n_vs, GString *out)
{
  int syllables = g_rand_int_range (rand, 2, 5);
  for (int i = 0; i < syllables; i++)
    {
      g_string_append (out, consonants[g_rand_int_range (rand, 0, G_N_ELEMENTS (consonants))]);
      g_string_append (out, vs[g_rand_int_range (rand, 0, n_vs)]);
    }
}

/* One word of a prompt, now and then written the ways evaders write. */
static void
prompt_word (GRand *rand, GPtrArray *policy_words, GString *out)
{
  g_autoptr(GString) w = g_string_new (NULL);
  int kind = g_rand_int_range (rand, 0, 1000);

  /* about one prompt in seven holds a policy word */
  if (kind < 550)
    g_string_append (w, common[g_rand_int_range (rand, 0, G_N_ELEMENTS (common))]);
  else if (kind < 999)
    pseudo_word (rand, prompt_vowels, G_N_ELEMENTS (prompt_vowels), w);
  else
    g_string_append (w, policy_words->pdata[g_rand_int_range (rand, 0, policy_words->len)]);

  switch (g_rand_int_range (rand, 0, 20))
    {
    case 0:  /* leet */
      for (gsize i = 0; i < w->len; i++)
        w->str[i] = w->str[i] == 'e' ? '3' : w->str[i] == 'a' ? '@' : w->str[i] == 'i' ? '1' : w->str[i];
      break;
    case 1:  /* spelled out */
      {
        g_autoptr(GString) spaced = g_string_new (NULL);
        for (gsize i = 0; i < w->len; i++)
          g_string_append_printf (spaced, "%s%c", i ? "." : "", w->str[i]);
        g_string_assign (w, spaced->str);
      }
      break;
    case 2:
      g_string_ascii_up (w);
      break;
    case 3:
      g_string_append (w, "!!");
      break;
    default:
      break;
    }
  g_string_append (out, w->str);
  g_string_append (out, g_rand_int_range (rand, 0, 8) ? " " : ", ");
}

static double
now_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Time this thread ran: on a busy machine wall time also counts the time
 * other processes had the core. */
static double
cpu_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
compare_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
main (int argc, char **argv)
{
  guint n_phrases = argc > 1 ? (guint) g_ascii_strtoull (argv[1], NULL, 10) : 10000;
  guint n_prompts = argc > 2 ? (guint) g_ascii_strtoull (argv[2], NULL, 10) : 1000;
  g_autoptr(GRand) rand = g_rand_new_with_seed (20220406);
  g_autoptr(GString) text = g_string_new ("# generated for the benchmark\n");
  g_autoptr(GPtrArray) policy_words = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;

  /* the policy: 20 categories; phrases of 1 to 3 words, one in ten a prefix */
  for (guint i = 0; i < n_phrases; i++)
    {
      if (i % (n_phrases / 20 + 1) == 0)
        g_string_append_printf (text, "[category %u]\n", i / (n_phrases / 20 + 1));
      int words = g_rand_int_range (rand, 0, 10) < 6 ? 1 : g_rand_int_range (rand, 2, 4);
      for (int j = 0; j < words; j++)
        {
          g_autoptr(GString) w = g_string_new (NULL);
          pseudo_word (rand, vowels, G_N_ELEMENTS (vowels), w);
          g_ptr_array_add (policy_words, g_strdup (w->str));
          g_string_append_printf (text, "%s%s", j ? " " : "", w->str);
        }
      if (words == 1 && g_rand_int_range (rand, 0, 10) == 0)
        g_string_append_c (text, '*');
      g_string_append_c (text, '\n');
    }

  double t0 = now_us ();
  g_autoptr(RvContentPolicy) p = rv_content_policy_new_from_data (text->str, text->len,
                                                                  "<generated>", &error);
  double load_us = now_us () - t0;
  if (!p)
    g_error ("%s", error->message);

  /* the prompts: 5 to 300 words each */
  g_autoptr(GPtrArray) prompts = g_ptr_array_new_with_free_func (g_free);
  gsize total_chars = 0;
  for (guint i = 0; i < n_prompts; i++)
    {
      g_autoptr(GString) s = g_string_new (NULL);
      int words = g_rand_int_range (rand, 5, 301);
      for (int j = 0; j < words; j++)
        prompt_word (rand, policy_words, s);
      total_chars += s->len;
      g_ptr_array_add (prompts, g_string_free (g_steal_pointer (&s), FALSE));
    }

  /* one round to warm caches, then the timed one */
  for (guint i = 0; i < prompts->len; i++)
    rv_content_policy_check (p, prompts->pdata[i]);
  g_autofree double *times = g_new (double, prompts->len);
  g_autofree double *walls = g_new (double, prompts->len);
  double sum = 0, clean_sum = 0, wall_sum = 0;
  guint refused = 0;
  for (guint i = 0; i < prompts->len; i++)
    {
      double wall = now_us (), start = cpu_us ();
      gboolean found = rv_content_policy_check (p, prompts->pdata[i]) != NULL;
      times[i] = cpu_us () - start;
      walls[i] = now_us () - wall;
      sum += times[i];
      wall_sum += walls[i];
      refused += found;
      if (!found)
        clean_sum += times[i];
    }
  qsort (times, prompts->len, sizeof (double), compare_double);
  qsort (walls, prompts->len, sizeof (double), compare_double);

  /* one 50,000-character prompt of ordinary words */
  g_autoptr(GString) huge = g_string_new (NULL);
  while (huge->len < 50000)
    {
      g_string_append (huge, common[g_rand_int_range (rand, 0, G_N_ELEMENTS (common))]);
      g_string_append_c (huge, ' ');
    }
  double start = cpu_us ();
  const char *huge_found = rv_content_policy_check (p, huge->str);
  double huge_us = cpu_us () - start;

  g_print ("policy: %u phrases in %u categories, %zu bytes, loaded in %.1f ms\n",
           rv_content_policy_n_phrases (p), rv_content_policy_n_categories (p),
           text->len, load_us / 1000);
  g_print ("prompts: %u, %.0f characters on average, %u refused\n",
           prompts->len, (double) total_chars / prompts->len, refused);
  g_print ("check, CPU time: mean %.1f us, median %.1f us, p99 %.1f us, max %.1f us\n",
           sum / prompts->len, times[prompts->len / 2], times[prompts->len * 99 / 100],
           times[prompts->len - 1]);
  if (refused < prompts->len)
    g_print ("check, CPU time, prompts passed whole: mean %.1f us\n",
             clean_sum / (prompts->len - refused));
  g_print ("check, wall time: mean %.1f us, median %.1f us, p99 %.1f us, max %.1f us\n",
           wall_sum / prompts->len, walls[prompts->len / 2], walls[prompts->len * 99 / 100],
           walls[prompts->len - 1]);
  g_print ("50,000-character prompt, CPU time: %.1f us (%s)\n", huge_us, huge_found ? "refused" : "passed");
  return 0;
}
