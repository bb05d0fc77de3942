/* rv-bench-ops-attention.c: benchmarks of the attention op family. */
#include "rv-bench.h"

void
rv_bench_ops_attention (RvBench *b)
{
}
