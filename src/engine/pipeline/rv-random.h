/* rv-random.h: the engine's random numbers. Documented so that a seed means
 * the same noise everywhere:
 *   state ← seed; next() = SplitMix64 (state += 0x9e3779b97f4a7c15, then the
 *   two xor-shift-multiply rounds); a uniform u = (next() >> 11 + 1) · 2⁻⁵³ in
 *   (0, 1]; normals come in Box–Muller pairs from two uniforms u1, u2:
 *   r = √(−2 ln u1), z0 = r·cos(2πu2), z1 = r·sin(2πu2), computed in double
 *   and rounded to float. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  guint64 state;
  gboolean has_spare;
  double spare;
} RvRandom;

void    rv_random_init (RvRandom *r, guint64 seed);
guint64 rv_random_next (RvRandom *r);
double  rv_random_uniform (RvRandom *r);
/* n standard-normal floats */
void    rv_random_normal (RvRandom *r, float *out, gsize n);

G_END_DECLS
