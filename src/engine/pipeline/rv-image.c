/* rv-image.c: RvImage, 8-bit RGB(A) images in memory: new, copy, free. (The
 * resampling is Pillow's, in nets/rv-clip-preprocess.c.) */
#include "reverie.h"

#include <string.h>

RvImage *
rv_image_new (int width, int height, int channels)
{
  g_return_val_if_fail (width > 0 && height > 0 && (channels == 3 || channels == 4), NULL);
  RvImage *img = g_new0 (RvImage, 1);
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->pixels = g_malloc0 ((gsize) width * height * channels);
  return img;
}

RvImage *
rv_image_copy (const RvImage *img)
{
  RvImage *c = rv_image_new (img->width, img->height, img->channels);
  memcpy (c->pixels, img->pixels, (gsize) img->width * img->height * img->channels);
  return c;
}

void
rv_image_free (RvImage *img)
{
  if (img == NULL)
    return;
  g_free (img->pixels);
  g_free (img);
}

