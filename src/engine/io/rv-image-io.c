/* rv-image-io.c: image loading with limits (GdkPixbuf), atomic PNG writing
 * with text chunks, and a small PNG text-chunk reader that does not decode the
 * pixels (for recipes and galleries). */
#include "config.h"

#include "rv-image-io.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <string.h>

typedef struct {
  gboolean too_big;
  int      width, height;
  int      rows;            /* decoded so far: the bottom of the updated areas */
} SizeCheck;

/* Loaders fill the rows a damaged stream never reaches with blank pixels and
 * report success; the areas they update say how far they got. */
static void
on_area_updated (GdkPixbufLoader *loader, int x, int y, int width, int height, gpointer data)
{
  SizeCheck *c = data;
  c->rows = MAX (c->rows, y + height);
}

static void
on_size_prepared (GdkPixbufLoader *loader, int width, int height, gpointer data)
{
  SizeCheck *c = data;
  c->width = width;
  c->height = height;
  if (width <= 0 || height <= 0 || width > RV_IMAGE_MAX_SIDE || height > RV_IMAGE_MAX_SIDE ||
      (gint64) width * height > RV_IMAGE_MAX_PIXELS)
    {
      c->too_big = TRUE;
      /* a size of 0 × 0 makes the loaders stop before they allocate the
       * pixels (any other size is applied after a full-size decode) */
      gdk_pixbuf_loader_set_size (loader, 0, 0);
    }
}

static RvImage *
image_from_pixbuf (GdkPixbuf *pb)
{
  int w = gdk_pixbuf_get_width (pb), h = gdk_pixbuf_get_height (pb);
  int nc = gdk_pixbuf_get_n_channels (pb), stride = gdk_pixbuf_get_rowstride (pb);
  gboolean alpha = gdk_pixbuf_get_has_alpha (pb);
  const guint8 *src = gdk_pixbuf_read_pixels (pb);
  RvImage *img = rv_image_new (w, h, alpha ? 4 : 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      memcpy (img->pixels + ((gsize) y * w + x) * img->channels, src + (gsize) y * stride + x * nc,
              img->channels);
  return img;
}

static guint32
be32 (const guint8 *p)
{
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

/* Whether the data holds the whole image: the loaders decode a truncated
 * PNG, baseline JPEG or lossy WebP without an error, with rows that were
 * never decoded. PNG: the chunks run to IEND. JPEG: the segments, then the
 * scans, run to EOI. WebP: the RIFF container is as long as it says. */
static gboolean
stream_complete (const char *type, const guint8 *p, gsize len)
{
  if (strcmp (type, "png") == 0)
    {
      gsize off = 8;
      while (off + 12 <= len)
        {
          guint32 clen = be32 (p + off);
          if (clen > len - off - 12)
            return FALSE;
          if (memcmp (p + off + 4, "IEND", 4) == 0)
            return TRUE;
          off += 12 + (gsize) clen;
        }
      return FALSE;
    }
  if (strcmp (type, "jpeg") == 0)
    {
      gsize off = 2;
      while (off + 2 <= len)
        {
          if (p[off] != 0xff)
            return FALSE;
          guint8 m = p[off + 1];
          if (m == 0xd9)
            return TRUE;                       /* EOI */
          if (m == 0xff)
            {
              off++;                           /* fill byte */
              continue;
            }
          if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
            {
              off += 2;                        /* no length */
              continue;
            }
          if (off + 4 > len)
            return FALSE;
          gsize seg = ((gsize) p[off + 2] << 8) | p[off + 3];
          if (seg < 2 || seg > len - off - 2)
            return FALSE;
          off += 2 + seg;
          if (m != 0xda)
            continue;
          /* entropy-coded data: up to the next marker other than RSTn or a
           * stuffed 0xff 0x00 */
          while (off + 1 < len && !(p[off] == 0xff && p[off + 1] != 0 &&
                                    !(p[off + 1] >= 0xd0 && p[off + 1] <= 0xd7)))
            off++;
        }
      return FALSE;
    }
  /* webp */
  guint32 riff = (guint32) p[4] | (guint32) p[5] << 8 | (guint32) p[6] << 16 | (guint32) p[7] << 24;
  return riff >= 4 && riff <= len - 8;
}

/* The GdkPixbuf loader for the formats Reverie takes, chosen by the file's
 * signature: the other installed loaders (ANI, ICNS, QTIF, TGA, XPM, SVG, …)
 * never see outside data. */
static const char *
loader_type (const guint8 *p, gsize len, const char **format)
{
  static const guint8 png[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  *format = NULL;
  if (len >= 8 && memcmp (p, png, 8) == 0)
    return "png";
  if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
    return "jpeg";
  if (len >= 12 && memcmp (p, "RIFF", 4) == 0 && memcmp (p + 8, "WEBP", 4) == 0)
    return "webp";
  if (len >= 6 && (memcmp (p, "GIF87a", 6) == 0 || memcmp (p, "GIF89a", 6) == 0))
    *format = "a GIF";
  else if (len >= 2 && p[0] == 'B' && p[1] == 'M')
    *format = "a BMP";
  else if (len >= 4 && (memcmp (p, "II*", 4) == 0 || memcmp (p, "MM\0*", 4) == 0))
    *format = "a TIFF";
  return NULL;
}

RvImage *
rv_image_load_bytes (GBytes *data, const char *what, GError **error)
{
  gsize len = 0;
  const guint8 *p = g_bytes_get_data (data, &len);
  if (len == 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "%s is empty.", what);
      return NULL;
    }
  const char *format = NULL;
  const char *type = loader_type (p, len, &format);
  if (type == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s is %s, not a PNG, JPEG or WebP image. Convert it to PNG first.", what,
                   format ? format : "in an unknown format");
      return NULL;
    }
  if (!stream_complete (type, p, len))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s is truncated or damaged: the file ends before the image does.", what);
      return NULL;
    }
  GError *e = NULL;
  g_autoptr (GdkPixbufLoader) loader = gdk_pixbuf_loader_new_with_type (type, &e);
  if (loader == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s cannot be read: this system has no %s loader for GdkPixbuf (%s)%s.", what,
                   type, e->message,
                   strcmp (type, "webp") == 0 ? "; install webp-pixbuf-loader" : "");
      g_error_free (e);
      return NULL;
    }
  SizeCheck check = { 0 };
  g_signal_connect (loader, "size-prepared", G_CALLBACK (on_size_prepared), &check);
  g_signal_connect (loader, "area-updated", G_CALLBACK (on_area_updated), &check);
  gboolean ok = TRUE;
  for (gsize off = 0; off < len && ok && !check.too_big; off += 65536)
    ok = gdk_pixbuf_loader_write (loader, p + off, MIN (65536, len - off), &e);
  gboolean closed = gdk_pixbuf_loader_close (loader, ok ? &e : NULL);
  if (check.too_big)
    {
      g_clear_error (&e);
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s is %d×%d pixels; images up to %d megapixels and %d pixels a side are "
                   "accepted. Scale it down first.", what, check.width, check.height,
                   RV_IMAGE_MAX_PIXELS / (1024 * 1024), RV_IMAGE_MAX_SIDE);
      return NULL;
    }
  if (!ok || !closed)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s could not be read as an image (%s). It may be truncated, corrupt, or in "
                   "a format without a loader; PNG, JPEG and WebP are supported.", what,
                   e ? e->message : "unknown format");
      g_clear_error (&e);
      return NULL;
    }
  GdkPixbuf *pb = gdk_pixbuf_loader_get_pixbuf (loader);
  if (pb == NULL || gdk_pixbuf_get_bits_per_sample (pb) != 8)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "%s holds no 8-bit image.", what);
      return NULL;
    }
  if (check.rows < gdk_pixbuf_get_height (pb))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s is damaged: only %d of its %d rows could be decoded.", what, check.rows,
                   gdk_pixbuf_get_height (pb));
      return NULL;
    }
  g_autoptr (GdkPixbuf) oriented = gdk_pixbuf_apply_embedded_orientation (pb);
  return image_from_pixbuf (oriented ? oriented : pb);
}

RvImage *
rv_image_load_file (const char *path, GError **error)
{
  g_autofree char *display = g_filename_display_name (path);
  g_autofree char *what = g_strdup_printf ("“%s”", display);
  GStatBuf st;
  if (g_stat (path, &st) != 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "%s does not exist or cannot be read.", what);
      return NULL;
    }
  if (st.st_size > (goffset) 1 << 30)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE,
                   "%s is larger than 1 GiB; it is not an image Reverie can use.", what);
      return NULL;
    }
  GError *e = NULL;
  char *contents = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &contents, &len, &e))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "%s cannot be read: %s", what, e->message);
      g_error_free (e);
      return NULL;
    }
  g_autoptr (GBytes) bytes = g_bytes_new_take (contents, len);
  return rv_image_load_bytes (bytes, what, error);
}

static GdkPixbuf *
pixbuf_of (const RvImage *img)
{
  GBytes *b = g_bytes_new (img->pixels, (gsize) img->width * img->height * img->channels);
  GdkPixbuf *pb = gdk_pixbuf_new_from_bytes (b, GDK_COLORSPACE_RGB, img->channels == 4, 8,
                                             img->width, img->height, img->width * img->channels);
  g_bytes_unref (b);
  return pb;
}

GBytes *
rv_image_encode_png (const RvImage *img, GHashTable *text, GError **error)
{
  g_autoptr (GdkPixbuf) pb = pixbuf_of (img);
  g_autoptr (GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) values = g_ptr_array_new ();
  if (text != NULL)
    {
      GHashTableIter it;
      gpointer k, v;
      g_hash_table_iter_init (&it, text);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          gsize kl = strlen (k);
          if (kl == 0 || kl > 79 || v == NULL)
            continue;
          g_ptr_array_add (keys, g_strconcat ("tEXt::", k, NULL));
          g_ptr_array_add (values, v);
        }
    }
  g_ptr_array_add (keys, g_strdup ("compression"));
  g_ptr_array_add (values, "6");
  g_ptr_array_add (keys, NULL);
  g_ptr_array_add (values, NULL);
  char *buf = NULL;
  gsize len = 0;
  GError *e = NULL;
  if (!gdk_pixbuf_save_to_bufferv (pb, &buf, &len, "png", (char **) keys->pdata,
                                   (char **) values->pdata, &e))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "Could not encode the PNG: %s", e->message);
      g_error_free (e);
      return NULL;
    }
  return g_bytes_new_take (buf, len);
}

gboolean
rv_file_write_atomic (const char *path, const void *data, gsize len, GError **error)
{
  /* g_file_set_contents writes a temporary file in the same folder, syncs it
   * and renames it over the target. */
  GError *e = NULL;
  if (!g_file_set_contents_full (path, data, len, G_FILE_SET_CONTENTS_CONSISTENT, 0644, &e))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "Could not write “%s”: %s", path, e->message);
      g_error_free (e);
      return FALSE;
    }
  return TRUE;
}

gboolean
rv_image_save_png (const RvImage *img, const char *path, GHashTable *text, GError **error)
{
  g_autoptr (GBytes) png = rv_image_encode_png (img, text, error);
  if (png == NULL)
    return FALSE;
  gsize len;
  const void *data = g_bytes_get_data (png, &len);
  return rv_file_write_atomic (path, data, len, error);
}

/* ---- PNG text chunks without decoding pixels ---- */

#define MAX_TEXT (4 << 20)


static char *
inflate_text (const guint8 *data, gsize len)
{
  g_autoptr (GConverter) z = G_CONVERTER (g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_ZLIB));
  GByteArray *out = g_byte_array_new ();
  guint8 buf[16384];
  gsize in_off = 0;
  for (;;)
    {
      gsize read = 0, written = 0;
      GError *e = NULL;
      GConverterResult r = g_converter_convert (z, data + in_off, len - in_off, buf, sizeof buf,
                                                G_CONVERTER_INPUT_AT_END, &read, &written, &e);
      in_off += read;
      g_byte_array_append (out, buf, written);
      if (r == G_CONVERTER_ERROR || out->len > MAX_TEXT)
        {
          g_clear_error (&e);
          g_byte_array_unref (out);
          return NULL;
        }
      if (r == G_CONVERTER_FINISHED)
        break;
      if (read == 0 && written == 0)
        {
          g_byte_array_unref (out);
          return NULL;
        }
    }
  g_byte_array_append (out, (const guint8 *) "", 1);
  return (char *) g_byte_array_free (out, FALSE);
}

static char *
latin1_to_utf8 (const char *s, gsize len)
{
  return g_convert (s, len, "UTF-8", "ISO-8859-1", NULL, NULL, NULL);
}

/* Parses the text chunks of PNG data into table; FALSE if it is not a PNG. */
gboolean
_rv_png_parse_text (const guint8 *p, gsize len, GHashTable *table)
{
  static const guint8 sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  if (len < 8 || memcmp (p, sig, 8) != 0)
    return FALSE;
  gsize off = 8;
  while (off + 12 <= len)
    {
      guint32 clen = be32 (p + off);
      const guint8 *type = p + off + 4;
      if (clen > len - off - 12)
        break;
      const guint8 *d = p + off + 8;
      if (memcmp (type, "IEND", 4) == 0)
        break;
      gboolean t = memcmp (type, "tEXt", 4) == 0, z = memcmp (type, "zTXt", 4) == 0,
               i = memcmp (type, "iTXt", 4) == 0;
      if (t || z || i)
        {
          const guint8 *nul = memchr (d, 0, clen);
          if (nul != NULL && nul > d && nul - d <= 79)
            {
              g_autofree char *key = latin1_to_utf8 ((const char *) d, nul - d);
              gsize rest = clen - (nul - d) - 1;
              const guint8 *v = nul + 1;
              char *value = NULL;
              if (t)
                value = latin1_to_utf8 ((const char *) v, rest);
              else if (z && rest >= 1 && v[0] == 0)
                {
                  g_autofree char *raw = inflate_text (v + 1, rest - 1);
                  value = raw ? latin1_to_utf8 (raw, strlen (raw)) : NULL;
                }
              else if (i && rest >= 2)
                {
                  gboolean compressed = v[0] == 1;
                  const guint8 *q = v + 2, *end = v + rest;
                  const guint8 *lang_end = memchr (q, 0, end - q);
                  const guint8 *trans_end = lang_end ? memchr (lang_end + 1, 0, end - lang_end - 1) : NULL;
                  if (trans_end != NULL)
                    {
                      const guint8 *txt = trans_end + 1;
                      gsize tl = end - txt;
                      if (compressed)
                        value = inflate_text (txt, tl);
                      else
                        value = g_strndup ((const char *) txt, tl);
                      if (value && !g_utf8_validate (value, -1, NULL))
                        g_clear_pointer (&value, g_free);
                    }
                }
              if (key != NULL && value != NULL && strlen (value) <= MAX_TEXT)
                g_hash_table_replace (table, g_steal_pointer (&key), value);
              else
                g_free (value);
            }
        }
      off += 12 + (gsize) clen;
    }
  return TRUE;
}

GHashTable *
rv_image_read_text (const char *path, GError **error)
{
  g_autoptr (GMappedFile) mf = g_mapped_file_new (path, FALSE, NULL);
  g_autofree char *display = g_filename_display_name (path);
  if (mf == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "“%s” cannot be read.", display);
      return NULL;
    }
  GHashTable *table = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (!_rv_png_parse_text ((const guint8 *) g_mapped_file_get_contents (mf),
                           g_mapped_file_get_length (mf), table))
    {
      g_hash_table_unref (table);
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "“%s” is not a PNG file.", display);
      return NULL;
    }
  return table;
}

char *
rv_sha256_hex (const void *data, gsize len)
{
  return g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, len);
}

char *
rv_image_sha256 (const RvImage *img)
{
  g_autoptr (GChecksum) c = g_checksum_new (G_CHECKSUM_SHA256);
  gint32 dims[3] = { img->width, img->height, img->channels };
  g_checksum_update (c, (const guchar *) dims, sizeof dims);
  g_checksum_update (c, img->pixels, (gsize) img->width * img->height * img->channels);
  return g_strdup (g_checksum_get_string (c));
}

/* ---- recipes ---- */

RvRecipe *
rv_recipe_new (void)
{
  RvRecipe *r = g_new0 (RvRecipe, 1);
  r->prior_guidance = r->decoder_guidance = -1;
  r->strength = r->feather = r->extend_context = -1;
  return r;
}

void
rv_recipe_free (RvRecipe *r)
{
  if (r == NULL)
    return;
  g_free (r->kind);
  g_free (r->prompt);
  g_free (r->negative_prompt);
  g_free (r->scheduler);
  g_free (r->model);
  g_free (r->model_hash);
  g_free (r->engine_version);
  g_free (r->source_sha256);
  g_free (r->mask_sha256);
  g_free (r->mask_png_base64);
  g_free (r->mask_mode);
  g_free (r->mix);
  g_free (r->upscaler);
  g_free (r->upscaler_hash);
  g_free (r->frames);
  g_free (r);
}

const char *
rv_job_kind_name (RvJobKind kind)
{
  switch (kind)
    {
    case RV_JOB_GENERATE: return "generate";
    case RV_JOB_INPAINT: return "inpaint";
    case RV_JOB_VARIATION: return "variation";
    case RV_JOB_IMG2IMG: return "img2img";
    case RV_JOB_MIX: return "mix";
    case RV_JOB_UPSCALE: return "upscale";
    case RV_JOB_EXTEND: return "extend";
    default: g_return_val_if_reached ("generate");
    }
}

RvRecipe *
rv_recipe_for_request (RvEngine *e, const RvRequest *req, guint64 seed, int width, int height)
{
  const RvDefaults *d = rv_engine_defaults (e);
  RvRecipe *r = rv_recipe_new ();
  r->kind = g_strdup (rv_job_kind_name (req->kind));
  r->prompt = req->prompt && req->prompt[0] ? g_strdup (req->prompt) : NULL;
  r->negative_prompt = req->negative_prompt && req->negative_prompt[0] ? g_strdup (req->negative_prompt) : NULL;
  r->seed = seed;
  r->width = width;
  r->height = height;
  r->prior_steps = req->prior_steps ? req->prior_steps : d->prior_steps;
  r->prior_guidance = req->prior_guidance >= 0 ? req->prior_guidance : d->prior_guidance;
  r->decoder_steps = req->decoder_steps ? req->decoder_steps : d->decoder_steps;
  r->decoder_guidance = req->decoder_guidance >= 0 ? req->decoder_guidance
                      : req->kind == RV_JOB_EXTEND ? d->extend_guidance : d->decoder_guidance;
  r->scheduler = g_strdup (req->scheduler ? req->scheduler : d->scheduler);
  r->model = g_strdup (rv_engine_model_name (e));
  r->model_hash = g_strdup (rv_engine_model_hash (e));
  r->engine_version = g_strdup (PACKAGE_VERSION);
  r->created = g_get_real_time () / G_USEC_PER_SEC;
  int gw, gh;
  if (req->kind == RV_JOB_UPSCALE || rv_engine_plan_upscale (e, req, &gw, &gh))
    {
      r->upscaler = g_strdup (rv_engine_upscaler_name (e));
      r->upscaler_hash = g_strdup (rv_engine_upscaler_hash (e));
    }
  if (req->kind == RV_JOB_UPSCALE)
    r->upscale = req->upscale > 0 ? req->upscale : rv_engine_upscaler_scale (e);
  if (req->kind == RV_JOB_EXTEND)
    {
      r->extend_left = req->extend_left;
      r->extend_right = req->extend_right;
      r->extend_top = req->extend_top;
      r->extend_bottom = req->extend_bottom;
      r->extend_context = req->extend_context >= 0 ? req->extend_context : d->extend_context;
      if (req->image != NULL)
        r->source_sha256 = rv_image_sha256 (req->image);
      int cw = 0, ch = 0;
      g_autoptr (GArray) frames = rv_engine_plan_extend (e, req, &cw, &ch, NULL);
      if (frames != NULL)
        {
          r->width = cw;
          r->height = ch;
          GString *json = g_string_new ("[");
          for (guint i = 0; i < frames->len; i++)
            {
              RvRect *f = &g_array_index (frames, RvRect, i);
              g_string_append_printf (json, "%s{\"x\": %d, \"y\": %d, \"width\": %d, \"height\": %d}",
                                      i ? ", " : "", f->x, f->y, f->width, f->height);
            }
          g_string_append (json, "]");
          r->frames = g_string_free (json, FALSE);
        }
    }
  return r;
}

RvRecipe *
rv_recipe_copy (const RvRecipe *r)
{
  RvRecipe *c = g_new0 (RvRecipe, 1);
  *c = *r;
  c->kind = g_strdup (r->kind);
  c->prompt = g_strdup (r->prompt);
  c->negative_prompt = g_strdup (r->negative_prompt);
  c->scheduler = g_strdup (r->scheduler);
  c->model = g_strdup (r->model);
  c->model_hash = g_strdup (r->model_hash);
  c->engine_version = g_strdup (r->engine_version);
  c->source_sha256 = g_strdup (r->source_sha256);
  c->mask_sha256 = g_strdup (r->mask_sha256);
  c->mask_png_base64 = g_strdup (r->mask_png_base64);
  c->mask_mode = g_strdup (r->mask_mode);
  c->mix = g_strdup (r->mix);
  c->upscaler = g_strdup (r->upscaler);
  c->upscaler_hash = g_strdup (r->upscaler_hash);
  c->frames = g_strdup (r->frames);
  return c;
}

typedef enum { F_STR, F_U64, F_INT, F_DBL, F_I64 } FieldType;

typedef struct {
  const char *key;
  FieldType   type;
  gsize       offset;
} Field;

#define FIELD(name, type) { "reverie:" #name, type, G_STRUCT_OFFSET (RvRecipe, name) }
static const Field fields[] = {
  FIELD (kind, F_STR), FIELD (prompt, F_STR), FIELD (negative_prompt, F_STR),
  FIELD (seed, F_U64), FIELD (width, F_INT), FIELD (height, F_INT),
  FIELD (prior_steps, F_INT), FIELD (prior_guidance, F_DBL), FIELD (decoder_steps, F_INT),
  FIELD (decoder_guidance, F_DBL), FIELD (scheduler, F_STR), FIELD (model, F_STR),
  FIELD (model_hash, F_STR), FIELD (engine_version, F_STR), FIELD (strength, F_DBL),
  FIELD (feather, F_DBL), FIELD (source_sha256, F_STR), FIELD (mask_sha256, F_STR),
  FIELD (mask_png_base64, F_STR), FIELD (mask_mode, F_STR), FIELD (mix, F_STR),
  FIELD (created, F_I64), FIELD (upscaler, F_STR), FIELD (upscaler_hash, F_STR),
  FIELD (upscale, F_INT), FIELD (extend_left, F_INT), FIELD (extend_right, F_INT),
  FIELD (extend_top, F_INT), FIELD (extend_bottom, F_INT), FIELD (frames, F_STR),
  FIELD (extend_context, F_DBL),
};

GHashTable *
rv_recipe_to_text (const RvRecipe *r)
{
  GHashTable *t = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    {
      const void *p = (const guint8 *) r + fields[i].offset;
      char *v = NULL;
      switch (fields[i].type)
        {
        case F_STR: v = g_strdup (*(char *const *) p); break;
        case F_U64: v = g_strdup_printf ("%" G_GUINT64_FORMAT, *(const guint64 *) p); break;
        case F_I64:
          if (*(const gint64 *) p > 0)
            v = g_strdup_printf ("%" G_GINT64_FORMAT, *(const gint64 *) p);
          break;
        case F_INT:
          if (*(const int *) p > 0)
            v = g_strdup_printf ("%d", *(const int *) p);
          break;
        case F_DBL:
          if (*(const double *) p >= 0)
            {
              char buf[G_ASCII_DTOSTR_BUF_SIZE];
              v = g_strdup (g_ascii_dtostr (buf, sizeof buf, *(const double *) p));
            }
          break;
        }
      if (v != NULL)
        g_hash_table_insert (t, g_strdup (fields[i].key), v);
    }
  g_hash_table_insert (t, g_strdup ("Software"), g_strdup ("Reverie " PACKAGE_VERSION));
  if (r->prompt != NULL)
    g_hash_table_insert (t, g_strdup ("Description"), g_strdup (r->prompt));
  return t;
}

RvRecipe *
rv_recipe_from_text (GHashTable *text, GError **error)
{
  if (g_hash_table_lookup (text, "reverie:kind") == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_IMAGE, "The image holds no Reverie recipe.");
      return NULL;
    }
  RvRecipe *r = rv_recipe_new ();
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    {
      const char *v = g_hash_table_lookup (text, fields[i].key);
      if (v == NULL)
        continue;
      void *p = (guint8 *) r + fields[i].offset;
      switch (fields[i].type)
        {
        case F_STR: *(char **) p = g_strdup (v); break;
        case F_U64: *(guint64 *) p = g_ascii_strtoull (v, NULL, 10); break;
        case F_I64: *(gint64 *) p = g_ascii_strtoll (v, NULL, 10); break;
        case F_INT: *(int *) p = (int) CLAMP (g_ascii_strtoll (v, NULL, 10), 0, G_MAXINT); break;
        case F_DBL: *(double *) p = g_ascii_strtod (v, NULL); break;
        }
    }
  return r;
}

RvRecipe *
rv_recipe_from_file (const char *path, GError **error)
{
  g_autoptr (GHashTable) t = rv_image_read_text (path, error);
  if (t == NULL)
    return NULL;
  return rv_recipe_from_text (t, error);
}

char *
rv_recipe_to_string (const RvRecipe *r)
{
  GString *s = g_string_new (NULL);
  g_autoptr (GHashTable) t = rv_recipe_to_text (r);
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    {
      const char *v = g_hash_table_lookup (t, fields[i].key);
      if (v == NULL || g_str_equal (fields[i].key, "reverie:mask_png_base64"))
        continue;
      g_string_append_printf (s, "%-18s %s\n", fields[i].key + strlen ("reverie:"), v);
    }
  if (r->mask_png_base64 != NULL)
    g_string_append_printf (s, "%-18s (a %zu-byte PNG)\n", "mask",
                            strlen (r->mask_png_base64) * 3 / 4);
  return g_string_free (s, FALSE);
}
