/* test-ops-attention.c: the attention op family against double-precision CPU references. */
#include "rv-test-util.h"

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  return g_test_run ();
}
