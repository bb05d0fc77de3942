/* fuzz-extend.c: outpainting on the host: the plan of frames for any picture,
 * mask and borders, then every frame's crop and compositing with made-up
 * decoder output. Checks that the frames cover every empty pixel, that each
 * frame has something filled to continue, and that the source's kept pixels
 * come out unchanged. Bytes: channels and mask flags, image size, four
 * borders, the native size; then pixels, repeated as needed. */
#include "fuzz.h"
#include "rv-engine-private.h"

#include <string.h>

static RvImage *
image_from (int w, int h, int channels, const uint8_t *px, size_t n, size_t skip)
{
  RvImage *img = rv_image_new (w, h, channels);
  gsize len = (gsize) w * h * channels;
  for (gsize i = 0; i < len; i++)
    img->pixels[i] = n > 0 ? px[(i + skip) % n] : 0;
  return img;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 9)
    return 0;
  int channels = data[0] & 1 ? 4 : 3;
  gboolean with_mask = (data[0] & 2) != 0;
  int w = data[1] % 48 + 1, h = data[2] % 48 + 1;
  RvRequest req;
  rv_request_init (&req, RV_JOB_EXTEND);
  /* mostly small borders; the top bit of a byte makes it negative or huge */
  int *borders[4] = { &req.extend_left, &req.extend_right, &req.extend_top, &req.extend_bottom };
  for (int k = 0; k < 4; k++)
    *borders[k] = data[3 + k] & 0x80 ? (data[3 + k] & 0x40 ? -1 : 5000) : data[3 + k] % 40;
  int native = data[7] % 64 + 8;
  const uint8_t *px = data + 8;
  size_t n = size - 8;
  g_autoptr (RvImage) img = image_from (w, h, channels, px, n, 0);
  g_autoptr (RvImage) mask = with_mask ? image_from (w, h, 4, px, n, 7) : NULL;
  req.image = img;
  req.mask = mask;
  req.mask_mode = data[0] & 4 ? RV_MASK_GREY : RV_MASK_ALPHA;

  g_autoptr (GError) error = NULL;
  g_autoptr (RvExtendPlan) plan = _rv_extend_plan (&req, native, &error);
  if (plan == NULL)
    {
      g_assert (error != NULL && error->domain == RV_ERROR && error->code == RV_ERROR_INVALID);
      return 0;
    }
  g_assert (plan->frames->len >= 1);
  g_autoptr (RvImage) canvas = _rv_extend_canvas (plan, img);
  g_autoptr (RvImage) before = rv_image_copy (canvas);
  gsize cn = (gsize) plan->width * plan->height;
  g_autofree gint32 *owner = g_memdup2 (plan->owner, cn * sizeof (gint32));
  g_autofree float *repaint = g_new (float, (gsize) plan->fw * plan->fh);
  guint nf = plan->frames->len;
  g_assert (plan->waves != NULL && plan->waves->len == nf);
  int n_waves = 0;
  for (guint f = 0; f < nf; f++)
    n_waves = MAX (n_waves, g_array_index (plan->waves, int, f) + 1);
  /* as the job runs them: a wave's frames all cropped first, then pasted */
  g_autoptr (GPtrArray) gens = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_image_free);
  for (int wave = 0; wave < n_waves; wave++)
    {
      g_ptr_array_set_size (gens, 0);
      for (guint f = 0; f < nf; f++)
        {
          if (g_array_index (plan->waves, int, f) != wave)
            continue;
          RvRect r = g_array_index (plan->frames, RvRect, f);
          g_assert (r.x >= 0 && r.y >= 0 && r.x + r.width <= plan->width && r.y + r.height <= plan->height);
          g_assert (r.width == plan->fw && r.height == plan->fh);
          g_autoptr (RvImage) crop = _rv_extend_crop (canvas, owner, r, repaint);
          g_autoptr (RvImage) seen = _rv_extend_context_crop (canvas, owner, r);
          g_assert (crop->width == r.width && seen->width == r.width && seen->height == r.height &&
                    seen->channels == 3);
          gsize empty = 0;
          for (gsize i = 0; i < (gsize) r.width * r.height; i++)
            empty += repaint[i] > 0;
          /* something to fill, and something there to continue */
          g_assert (empty > 0 && empty < (gsize) r.width * r.height);
          g_ptr_array_add (gens, image_from (r.width, r.height, 3, px, n, f * 13));
        }
      g_assert (gens->len > 0);
      guint k = 0;
      for (guint f = 0; f < nf; f++)
        if (g_array_index (plan->waves, int, f) == wave)
          _rv_extend_paste (canvas, owner, g_array_index (plan->frames, RvRect, f),
                            g_ptr_array_index (gens, k++), (int) f, (float) (data[0] >> 4));
    }
  _rv_extend_smooth_seams (canvas, owner);
  for (gsize i = 0; i < cn; i++)
    {
      g_assert (owner[i] >= 0);
      if (plan->owner[i] == 0)
        g_assert (memcmp (canvas->pixels + i * channels, before->pixels + i * channels, channels) == 0);
      else if (channels == 4)
        g_assert (canvas->pixels[i * 4 + 3] == 255);
    }
  return 0;
}
