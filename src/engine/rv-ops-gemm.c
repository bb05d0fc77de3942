/* rv-ops-gemm.c: linear, batched matmul and conv2d. */
#include "rv-ops-private.h"

void
rv_op_linear (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
              const RvTensor *bias, RvAct act, const RvTensor *residual)
{
  _rv_op_invalid (cmd, "linear", "not implemented yet");
}

void
rv_op_matmul (RvCmd *cmd, RvTensor *y, const RvTensor *a, gboolean trans_a,
              const RvTensor *b, gboolean trans_b, float alpha)
{
  _rv_op_invalid (cmd, "matmul", "not implemented yet");
}

void
rv_op_conv2d (RvCmd *cmd, RvTensor *y, const RvTensor *x, const RvTensor *w,
              const RvTensor *bias, const RvConv2d *p, const RvTensor *residual)
{
  _rv_op_invalid (cmd, "conv2d", "not implemented yet");
}
