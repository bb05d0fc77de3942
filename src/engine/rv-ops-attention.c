/* rv-ops-attention.c: attention and softmax. */
#include "rv-ops-private.h"

void
rv_op_attention (RvCmd *cmd, RvTensor *o, const RvTensor *q, const RvTensor *k,
                 const RvTensor *v, int heads, float scale, const RvTensor *mask,
                 gboolean causal)
{
  _rv_op_invalid (cmd, "attention", "not implemented yet");
}

void
rv_op_softmax (RvCmd *cmd, RvTensor *y, const RvTensor *x)
{
  _rv_op_invalid (cmd, "softmax", "not implemented yet");
}
