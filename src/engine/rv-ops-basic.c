/* rv-ops-basic.c: normalization, elementwise ops and resampling. */
#include "rv-ops-private.h"

void
rv_op_affine (RvCmd *cmd, RvTensor *y, const RvTensor *x, float alpha, float beta)
{
  if (!_rv_op_begin (cmd))
    return;
  if (x->dtype != RV_DTYPE_F32 || y->dtype != RV_DTYPE_F32 || rv_tensor_numel (x) != rv_tensor_numel (y))
    {
      _rv_op_invalid (cmd, "affine", "x and y must be f32 with the same element count");
      return;
    }
  RvKernel *k = _rv_op_kernel (cmd, "affine", "SS", NULL, 0);
  struct { guint32 n, stride; float alpha, beta; } pc;
  guint32 gx, gy;
  _rv_grid_1d (cmd, rv_tensor_numel (x), 256, &gx, &gy);
  pc.n = (guint32) rv_tensor_numel (x);
  pc.stride = gx * 256;
  pc.alpha = alpha;
  pc.beta = beta;
  RvBinding b[2] = { { x, RV_READ }, { y, RV_WRITE } };
  rv_cmd_dispatch (cmd, k, b, 2, &pc, sizeof pc, gx, gy, 1);
}
