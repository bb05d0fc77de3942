/* rv-image-io.h: image files for the front ends (GdkPixbuf): loading with
 * limits and clear errors, atomic PNG writing with the recipe in text chunks. */
#pragma once

#include "reverie.h"

G_BEGIN_DECLS

/* Larger images are refused (64 megapixels, 16384 px a side). */
#define RV_IMAGE_MAX_PIXELS  (64 * 1024 * 1024)
#define RV_IMAGE_MAX_SIDE    16384

/* PNG, JPEG or WebP (where a GdkPixbuf loader is installed) → RGB or RGBA;
 * other formats are refused by their signature, before any loader runs. */
RvImage   *rv_image_load_file (const char *path, GError **error);
RvImage   *rv_image_load_bytes (GBytes *data, const char *what, GError **error);

/* text: key → UTF-8 value, written as PNG text chunks (may be NULL). The
 * file is written to a temporary name in the same folder and renamed. */
gboolean   rv_image_save_png (const RvImage *img, const char *path, GHashTable *text,
                              GError **error);
GBytes    *rv_image_encode_png (const RvImage *img, GHashTable *text, GError **error);
/* The text chunks of a PNG file: key → value (new table). */
GHashTable *rv_image_read_text (const char *path, GError **error);

/* The text chunks of PNG data in memory into table; FALSE if not a PNG. */
gboolean   _rv_png_parse_text (const guint8 *data, gsize len, GHashTable *table);

/* Writes bytes to path atomically (temporary file + rename). */
gboolean   rv_file_write_atomic (const char *path, const void *data, gsize len, GError **error);

char      *rv_sha256_hex (const void *data, gsize len);
char      *rv_image_sha256 (const RvImage *img);

/* ---- recipes ---- */

typedef struct {
  char    *kind;             /* "generate", "inpaint", "variation", "img2img", "mix", "upscale",
                                "extend" */
  char    *prompt;
  char    *negative_prompt;
  guint64  seed;
  int      width, height;
  int      prior_steps;
  double   prior_guidance;
  int      decoder_steps;
  double   decoder_guidance;
  char    *scheduler;
  char    *model;
  char    *model_hash;
  char    *engine_version;
  double   strength;         /* img2img */
  double   feather;          /* inpaint */
  char    *source_sha256;    /* edits, variations, img2img, upscale, extend */
  char    *mask_sha256;
  char    *mask_png_base64;  /* the mask itself, inpaint */
  char    *mask_mode;        /* "grey" or "alpha" */
  char    *mix;              /* JSON list of {prompt|image_sha256, weight} */
  char    *upscaler;         /* what enlarged the picture, if anything */
  char    *upscaler_hash;
  int      upscale;          /* upscale jobs: the factor asked for */
  int      extend_left, extend_right, extend_top, extend_bottom;   /* extend: borders, px */
  double   extend_context;   /* extend: picture vs prompt weight of the frames (< 0: none) */
  char    *frames;           /* extend: JSON list of the frames in the order they ran,
                                [{"x", "y", "width", "height"}, …] on the canvas */
  gint64   created;          /* unix time */
} RvRecipe;

RvRecipe   *rv_recipe_new (void);
void        rv_recipe_free (RvRecipe *r);
RvRecipe   *rv_recipe_copy (const RvRecipe *r);
/* "generate", "inpaint", "variation", "img2img", "mix", "upscale" or "extend". */
const char *rv_job_kind_name (RvJobKind kind);
/* The recipe of one result of `req` run by `e`: the request's settings with
 * the model's defaults filled in, the model and engine. Source and mask
 * fields are the caller's, except that an extend recipe also gets the source
 * picture's hash (rv_image_sha256), its borders and its frames (and the
 * canvas size instead of width and height). */
RvRecipe   *rv_recipe_for_request (RvEngine *e, const RvRequest *req, guint64 seed, int width, int height);
/* key → value table of "reverie:*" entries plus Software and Description. */
GHashTable *rv_recipe_to_text (const RvRecipe *r);
/* NULL with an error if the table holds no Reverie recipe. */
RvRecipe   *rv_recipe_from_text (GHashTable *text, GError **error);
RvRecipe   *rv_recipe_from_file (const char *path, GError **error);
char       *rv_recipe_to_string (const RvRecipe *r);   /* human-readable lines */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvRecipe, rv_recipe_free)

G_END_DECLS
