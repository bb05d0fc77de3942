/* rv-weights.c: host-side conversion of PyTorch-layout weights into the
 * device layouts of rv-ops.h, and f16 conversion. */
#include "rv-ops.h"

#include <math.h>
#include <string.h>

guint16
rv_f32_to_f16 (float f)
{
  guint32 x;
  memcpy (&x, &f, 4);
  guint32 sign = (x >> 16) & 0x8000;
  guint32 exp = (x >> 23) & 0xff;
  guint32 man = x & 0x7fffff;
  if (exp == 0xff)                                   /* inf / nan */
    return sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0);
  int e = (int) exp - 127 + 15;
  if (e >= 0x1f)                                     /* overflow -> inf */
    return sign | 0x7c00;
  if (e <= 0)
    {
      if (e < -10)                                   /* underflow -> ±0 */
        return sign;
      man |= 0x800000;                               /* subnormal half */
      guint32 shift = 14 - e;
      guint32 half = man >> shift;
      guint32 rem = man & ((1u << shift) - 1);
      guint32 mid = 1u << (shift - 1);
      if (rem > mid || (rem == mid && (half & 1)))
        half++;
      return sign | half;
    }
  guint32 half = sign | ((guint32) e << 10) | (man >> 13);
  guint32 rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    half++;                                          /* may carry into the exponent: correct */
  return half;
}

float
rv_f16_to_f32 (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000) << 16;
  guint32 exp = (h >> 10) & 0x1f;
  guint32 man = h & 0x3ff;
  guint32 x;
  if (exp == 0)
    {
      if (man == 0)
        x = sign;
      else
        {
          float f = ldexpf ((float) man, -24);
          memcpy (&x, &f, 4);
          x |= sign;
        }
    }
  else if (exp == 0x1f)
    x = sign | 0x7f800000 | (man << 13);
  else
    x = sign | ((exp - 15 + 127) << 23) | (man << 13);
  float f;
  memcpy (&f, &x, 4);
  return f;
}

void
rv_tensor_upload_f32 (RvCmd *cmd, RvTensor *y, const float *data, gint64 n)
{
  g_return_if_fail (n <= rv_tensor_numel (y));
  if (y->dtype == RV_DTYPE_F16)
    {
      g_autofree guint16 *h = g_new (guint16, n);
      for (gint64 i = 0; i < n; i++)
        h[i] = rv_f32_to_f16 (data[i]);
      rv_cmd_upload (cmd, y, h, n * 2);
    }
  else
    rv_cmd_upload (cmd, y, data, n * 4);
}

RvTensor *
rv_weight_plain (RvCmd *cmd, const float *data, int ndim, const gint64 *shape, RvDType dtype,
                 GError **error)
{
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), dtype, ndim, shape, error);
  if (t != NULL)
    rv_tensor_upload_f32 (cmd, t, data, rv_tensor_numel (t));
  return t;
}

RvTensor *
rv_weight_linear (RvCmd *cmd, const float *data, gint64 n, gint64 k, RvDType dtype, GError **error)
{
  gint64 shape[2] = { k, n };
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), dtype, 2, shape, error);
  if (t == NULL)
    return NULL;
  g_autofree float *tr = g_new (float, n * k);
  for (gint64 i = 0; i < n; i++)
    for (gint64 j = 0; j < k; j++)
      tr[j * n + i] = data[i * k + j];
  rv_tensor_upload_f32 (cmd, t, tr, n * k);
  return t;
}

RvTensor *
rv_weight_conv (RvCmd *cmd, const float *data, gint64 cout, gint64 cin, gint64 kh, gint64 kw,
                RvDType dtype, GError **error)
{
  gint64 shape[4] = { kh, kw, cin, cout };
  RvTensor *t = rv_tensor_new (rv_cmd_device (cmd), dtype, 4, shape, error);
  if (t == NULL)
    return NULL;
  g_autofree float *tr = g_new (float, cout * cin * kh * kw);
  for (gint64 o = 0; o < cout; o++)
    for (gint64 i = 0; i < cin; i++)
      for (gint64 y = 0; y < kh; y++)
        for (gint64 x = 0; x < kw; x++)
          tr[((y * kw + x) * cin + i) * cout + o] = data[((o * cin + i) * kh + y) * kw + x];
  rv_tensor_upload_f32 (cmd, t, tr, cout * cin * kh * kw);
  return t;
}
