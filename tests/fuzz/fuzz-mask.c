/* fuzz-mask.c: the repaint-mask extraction of inpainting requests (grey,
 * alpha or automatic masks of any size and shape against any image). The
 * first five bytes choose the mode, the channels and the sizes; the rest
 * are the pixels, repeated as needed. */
#include "fuzz.h"
#include "rv-engine-private.h"

#include <string.h>

static RvImage *
image_from (int w, int h, int channels, const uint8_t *px, size_t n)
{
  RvImage *img = rv_image_new (w, h, channels);
  gsize len = (gsize) w * h * channels;
  for (gsize i = 0; i < len; i++)
    img->pixels[i] = n > 0 ? px[i % n] : 0;
  return img;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 5)
    return 0;
  static const RvMaskMode modes[] = { RV_MASK_AUTO, RV_MASK_GREY, RV_MASK_ALPHA };
  int sel = data[0] & 3;
  int img_channels = data[0] & 4 ? 4 : 3, mask_channels = data[0] & 8 ? 4 : 3;
  int iw = data[1] + 1, ih = data[2] + 1, mw = data[3] + 1, mh = data[4] + 1;
  /* the image's own pixels come after the mask's in the same stream */
  g_autoptr (RvImage) img = image_from (iw, ih, img_channels, data[0] & 16 ? data + 5 : data,
                                        data[0] & 16 ? size - 5 : size);
  g_autoptr (RvImage) mask = sel == 3 ? NULL : image_from (mw, mh, mask_channels, data + 5, size - 5);
  g_autoptr (GError) error = NULL;
  g_autofree float *m = _rv_repaint_mask (img, mask, sel == 3 ? RV_MASK_ALPHA : modes[sel], &error);
  if (m == NULL)
    {
      g_assert (error != NULL && error->domain == RV_ERROR &&
                (error->code == RV_ERROR_IMAGE || error->code == RV_ERROR_INVALID));
      return 0;
    }
  g_assert (error == NULL);
  gsize n = (gsize) iw * ih, count = 0;
  for (gsize p = 0; p < n; p++)
    {
      g_assert (m[p] == 0.0f || m[p] == 1.0f);
      count += m[p] > 0;
    }
  /* all or nothing is refused */
  g_assert (count > 0 && count < n);
  return 0;
}
