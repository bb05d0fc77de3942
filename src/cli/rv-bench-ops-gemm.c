/* rv-bench-ops-gemm.c: benchmarks of the gemm op family. */
#include "rv-bench.h"

void
rv_bench_ops_gemm (RvBench *b)
{
}
