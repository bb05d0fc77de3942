/* rv-random.c: SplitMix64 and Box–Muller, as documented in rv-random.h. */
#include "rv-random.h"
#include "reverie.h"

#include <math.h>

void
rv_random_init (RvRandom *r, guint64 seed)
{
  r->state = seed;
  r->has_spare = FALSE;
  r->spare = 0;
}

guint64
rv_random_next (RvRandom *r)
{
  guint64 z = (r->state += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

double
rv_random_uniform (RvRandom *r)
{
  return (double) ((rv_random_next (r) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

void
rv_random_normal (RvRandom *r, float *out, gsize n)
{
  for (gsize i = 0; i < n; i++)
    {
      if (r->has_spare)
        {
          out[i] = (float) r->spare;
          r->has_spare = FALSE;
          continue;
        }
      double u1 = rv_random_uniform (r), u2 = rv_random_uniform (r);
      double rad = sqrt (-2.0 * log (u1));
      out[i] = (float) (rad * cos (2.0 * G_PI * u2));
      r->spare = rad * sin (2.0 * G_PI * u2);
      r->has_spare = TRUE;
    }
}

guint64
rv_random_seed (void)
{
  /* g_random draws from /dev/urandom at first use; mix in the clock. */
  guint64 s = ((guint64) g_random_int () << 32) ^ g_random_int () ^ (guint64) g_get_real_time ();
  /* keep seeds in the range JSON and JavaScript numbers carry exactly */
  return s & G_GUINT64_CONSTANT (0x1fffffffffffff);
}
