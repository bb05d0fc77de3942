/* rv-cli-edit.c: the image-input commands of reverie-cli: `edit` (inpaint
 * with a mask), `vary` (variations), `img2img`, `mix` (interpolation of
 * prompts and images), `upscale` and `extend` (outpainting). */
#include "config.h"

#include "rv-cli.h"
#include "rv-cli-common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gboolean
load_image (const char *path, RvImage **out, char **sha, GError **error)
{
  *out = rv_image_load_file (path, error);
  if (*out == NULL)
    return FALSE;
  if (sha != NULL)
    *sha = rv_image_sha256 (*out);
  return TRUE;
}

static RvEngine *
open_engine (RvCliOptions *o, GError **error)
{
  return rv_cli_engine (o, error);
}

/* Runs the request and writes the results with a recipe built from `base`. */
static int
run_and_write (RvEngine *e, RvCliOptions *o, RvRequest *req, RvRecipe *extra)
{
  g_autoptr (GError) error = NULL;
  RvCliProgress cp = { .quiet = o->quiet, .preview_dir = o->preview_dir };
  g_autoptr (GPtrArray) results = rv_engine_run (e, req, rv_cli_progress, &cp, NULL, &error);
  rv_cli_progress_done (&cp);
  if (results == NULL)
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvRecipe) r = rv_cli_recipe (e, req, req->seed);
  if (extra->source_sha256 != NULL)
    {
      g_free (r->source_sha256);
      r->source_sha256 = g_strdup (extra->source_sha256);
    }
  r->mask_sha256 = g_strdup (extra->mask_sha256);
  r->mask_png_base64 = g_strdup (extra->mask_png_base64);
  r->mask_mode = g_strdup (extra->mask_mode);
  r->mix = g_strdup (extra->mix);
  r->strength = extra->strength;
  r->feather = extra->feather;
  return rv_cli_write_results (e, req, results, o->output, r);
}

/* Common start of every command: options, then the output check. */
static gboolean
parse (GOptionContext *ctx, RvCliOptions *o, GOptionEntry *extra, int *argc, char ***argv,
       GError **error)
{
  g_option_context_set_main_group (ctx, rv_cli_options_group (o));
  if (extra != NULL)
    g_option_context_add_main_entries (ctx, extra, NULL);
  return g_option_context_parse (ctx, argc, argv, error) && rv_cli_prepare_output (o, error);
}

/* ---- edit ---- */

static int
edit (RvCliOptions *o, int argc, char **argv)
{
  char *image_path = NULL, *mask_path = NULL, *mode = NULL;
  GOptionEntry entries[] = {
    { "image", 'i', 0, G_OPTION_ARG_FILENAME, &image_path, "The picture to edit", "FILE" },
    { "mask", 'm', 0, G_OPTION_ARG_FILENAME, &mask_path,
      "What to repaint: white on black, or transparent pixels (default: the image's transparency)", "FILE" },
    { "mask-mode", 0, 0, G_OPTION_ARG_STRING, &mode, "How to read the mask: auto, grey (white = repaint) or alpha (transparent = repaint)", "MODE" },
    { "feather", 0, 0, G_OPTION_ARG_DOUBLE, &o->feather, "Blend the repainted area's edge over this many pixels (inside the mask)", "PX" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("--image IN [--mask MASK] \"PROMPT\" -o OUT — repaint part of a picture");
  g_autoptr (GError) error = NULL;
  int status = 0;
  g_autoptr (RvImage) image = NULL, mask = NULL;
  g_autoptr (RvRecipe) extra = rv_recipe_new ();
  g_autoptr (RvEngine) e = NULL;
  RvRequest req;
  rv_request_init (&req, RV_JOB_INPAINT);
  if (!parse (ctx, o, entries, &argc, &argv, &error))
    status = rv_cli_error ("%s", error->message);
  else if (image_path == NULL || argc != 2)
    status = rv_cli_error ("usage: reverie-cli edit --image IN [--mask MASK] \"PROMPT\" -o OUT.png");
  else if (mode != NULL && !g_str_equal (mode, "auto") && !g_str_equal (mode, "grey") &&
           !g_str_equal (mode, "gray") && !g_str_equal (mode, "alpha"))
    status = rv_cli_error ("--mask-mode takes auto, grey or alpha (got “%s”)", mode);
  else if (!load_image (image_path, &image, &extra->source_sha256, &error) ||
           (mask_path != NULL && !load_image (mask_path, &mask, &extra->mask_sha256, &error)) ||
           !rv_cli_options_to_request (o, &req, NULL, &error) || (e = open_engine (o, &error)) == NULL)
    status = rv_cli_error ("%s", error->message);
  if (status == 0)
    {
      req.prompt = argv[1];
      req.image = image;
      req.mask = mask;
      req.mask_mode = mode == NULL || g_str_equal (mode, "auto") ? RV_MASK_AUTO
                    : g_str_equal (mode, "alpha") ? RV_MASK_ALPHA : RV_MASK_GREY;
      RvMaskMode used = mask == NULL ? RV_MASK_ALPHA
                      : req.mask_mode == RV_MASK_AUTO ? rv_mask_mode_detect (mask) : req.mask_mode;
      extra->mask_mode = g_strdup (used == RV_MASK_ALPHA ? "alpha" : "grey");
      extra->feather = req.feather;
      if (!o->quiet)
        g_printerr ("reverie-cli: mask: %s\n",
                    mask == NULL ? "the image's transparency (transparent pixels are repainted)"
                    : used == RV_MASK_ALPHA ? "alpha (transparent pixels are repainted)"
                                            : "grey (white pixels are repainted)");
      if (mask != NULL)
        {
          g_autoptr (GBytes) png = rv_image_encode_png (mask, NULL, NULL);
          if (png != NULL)
            {
              gsize len;
              const guchar *d = g_bytes_get_data (png, &len);
              extra->mask_png_base64 = g_base64_encode (d, len);
            }
        }
      status = run_and_write (e, o, &req, extra);
    }
  g_free (image_path);
  g_free (mask_path);
  g_free (mode);
  return status;
}

/* ---- vary ---- */

static int
vary (RvCliOptions *o, int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("IN -o OUT [-n N] — variations of a picture");
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) image = NULL;
  g_autoptr (RvRecipe) extra = rv_recipe_new ();
  g_autoptr (RvEngine) e = NULL;
  RvRequest req;
  rv_request_init (&req, RV_JOB_VARIATION);
  if (!parse (ctx, o, NULL, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc != 2)
    return rv_cli_error ("usage: reverie-cli vary IN.png -o OUT.png [-n N]");
  if (!load_image (argv[1], &image, &extra->source_sha256, &error) ||
      !rv_cli_options_to_request (o, &req, NULL, &error) || (e = open_engine (o, &error)) == NULL)
    return rv_cli_error ("%s", error->message);
  req.image = image;
  return run_and_write (e, o, &req, extra);
}

/* ---- img2img ---- */

static int
img2img (RvCliOptions *o, int argc, char **argv)
{
  o->strength = 0.3;
  GOptionEntry entries[] = {
    { "strength", 's', 0, G_OPTION_ARG_DOUBLE, &o->strength, "How much to change, 0…1 (default 0.3)", "S" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("IN \"PROMPT\" -o OUT [--strength S] — repaint a picture toward a prompt");
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) image = NULL;
  g_autoptr (RvRecipe) extra = rv_recipe_new ();
  g_autoptr (RvEngine) e = NULL;
  RvRequest req;
  rv_request_init (&req, RV_JOB_IMG2IMG);
  if (!parse (ctx, o, entries, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc != 3)
    return rv_cli_error ("usage: reverie-cli img2img IN.png \"PROMPT\" -o OUT.png [--strength S]");
  if (!(o->strength > 0 && o->strength <= 1))
    return rv_cli_error ("--strength takes a number above 0 and at most 1 (got %g)", o->strength);
  if (!load_image (argv[1], &image, &extra->source_sha256, &error) ||
      !rv_cli_options_to_request (o, &req, NULL, &error) || (e = open_engine (o, &error)) == NULL)
    return rv_cli_error ("%s", error->message);
  req.image = image;
  req.prompt = argv[2];
  extra->strength = req.strength;
  return run_and_write (e, o, &req, extra);
}

/* ---- mix ---- */

/* "TEXT:WEIGHT" or "FILE:WEIGHT" (the weight after the last colon; 1 when
 * there is none). */
static char *
split_weight (const char *arg, float *weight, GError **error)
{
  const char *colon = strrchr (arg, ':');
  *weight = 1.0f;
  if (colon == NULL)
    return g_strdup (arg);
  char *end = NULL;
  double w = g_ascii_strtod (colon + 1, &end);
  if (end == colon + 1 || *end != '\0')
    return g_strdup (arg);   /* a colon inside the text: no weight given */
  if (!isfinite (w))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "“%s”: the weight is not a number", arg);
      return NULL;
    }
  *weight = (float) w;
  return g_strndup (arg, colon - arg);
}

static int
mix (RvCliOptions *o, int argc, char **argv)
{
  char **images = NULL, **prompts = NULL;
  GOptionEntry entries[] = {
    { "image", 'i', 0, G_OPTION_ARG_FILENAME_ARRAY, &images, "A picture and its weight", "FILE:W" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING_ARRAY, &prompts, "A prompt and its weight", "TEXT:W" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("--image A.png:0.5 --prompt \"text\":0.5 -o OUT — blend pictures and prompts");
  g_autoptr (GError) error = NULL;
  g_autoptr (RvEngine) e = NULL;
  g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) pictures = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_image_free);
  g_autoptr (GArray) items = g_array_new (FALSE, TRUE, sizeof (RvMixItem));
  g_autoptr (RvRecipe) extra = rv_recipe_new ();
  int status = 0;
  RvRequest req;
  rv_request_init (&req, RV_JOB_MIX);
  GString *desc = g_string_new ("[");
  if (!parse (ctx, o, entries, &argc, &argv, &error))
    status = rv_cli_error ("%s", error->message);
  else if (argc != 1 || (images == NULL && prompts == NULL))
    status = rv_cli_error ("usage: reverie-cli mix --image A.png:0.5 --prompt \"text\":0.5 -o OUT.png");
  for (int i = 0; status == 0 && prompts && prompts[i]; i++)
    {
      RvMixItem it = { 0 };
      char *text = split_weight (prompts[i], &it.weight, &error);
      if (text == NULL)
        status = rv_cli_error ("%s", error->message);
      else
        {
          g_ptr_array_add (owned, text);
          it.prompt = text;
          g_array_append_val (items, it);
          g_autofree char *q = g_strescape (text, NULL);
          g_string_append_printf (desc, "%s{\"prompt\": \"%s\", \"weight\": %g}", desc->len > 1 ? ", " : "", q, it.weight);
        }
    }
  for (int i = 0; status == 0 && images && images[i]; i++)
    {
      RvMixItem it = { 0 };
      g_autofree char *path = split_weight (images[i], &it.weight, &error);
      RvImage *img = NULL;
      g_autofree char *sha = NULL;
      if (path == NULL || !load_image (path, &img, &sha, &error))
        status = rv_cli_error ("%s", error->message);
      else
        {
          g_ptr_array_add (pictures, img);
          it.image = img;
          g_array_append_val (items, it);
          g_string_append_printf (desc, "%s{\"image_sha256\": \"%s\", \"weight\": %g}", desc->len > 1 ? ", " : "", sha, it.weight);
        }
    }
  g_string_append (desc, "]");
  if (status == 0 && (!rv_cli_options_to_request (o, &req, NULL, &error) || (e = open_engine (o, &error)) == NULL))
    status = rv_cli_error ("%s", error->message);
  if (status == 0)
    {
      req.mix = (const RvMixItem *) items->data;
      req.n_mix = items->len;
      extra->mix = g_strdup (desc->str);
      status = run_and_write (e, o, &req, extra);
    }
  g_string_free (desc, TRUE);
  g_strfreev (images);
  g_strfreev (prompts);
  return status;
}

/* ---- upscale ---- */

static int
upscale (RvCliOptions *o, int argc, char **argv)
{
  int scale = 0;
  char *size = NULL;
  GOptionEntry entries[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o->output, "Write the picture to FILE", "FILE" },
    { "scale", 's', 0, G_OPTION_ARG_INT, &scale, "Enlarge this many times: the upscaler's scale (default) or a power of it", "N" },
    { "size", 0, 0, G_OPTION_ARG_STRING, &size, "Enlarge, then resize to exactly this size", "WxH" },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &o->upscaler, "A Real-ESRGAN-family folder (config.json + model.safetensors; default: the embedded model's upscaler)", "DIR" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &o->device, "Vulkan device index or name", "N|NAME" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &o->weights, "Weights on the device: auto, f32 or stored", "KIND" },
    { "preview-dir", 0, 0, G_OPTION_ARG_FILENAME, &o->preview_dir, "Write the picture after each tile into DIR", "DIR" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "No progress bar", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("IN.png -o OUT.png — enlarge a picture with a super-resolution network");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) image = NULL;
  g_autoptr (RvRecipe) extra = rv_recipe_new ();
  g_autoptr (RvEngine) e = NULL;
  int status = 0;
  RvRequest req;
  rv_request_init (&req, RV_JOB_UPSCALE);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || !rv_cli_prepare_output (o, &error))
    status = rv_cli_error ("%s", error->message);
  else if (argc != 2)
    status = rv_cli_error ("usage: reverie-cli upscale IN.png -o OUT.png [--scale N] [--model DIR]");
  else if (scale < 0)
    status = rv_cli_error ("--scale must be a positive number (got %d)", scale);
  else if (size != NULL && sscanf (size, "%dx%d", &req.width, &req.height) != 2)
    status = rv_cli_error ("--size takes WxH, e.g. 1024x1024 (got “%s”)", size);
  else if (!load_image (argv[1], &image, &extra->source_sha256, &error) ||
           (e = open_engine (o, &error)) == NULL)
    status = rv_cli_error ("%s", error->message);
  if (status == 0)
    {
      req.image = image;
      req.upscale = scale;
      req.previews = o->preview_dir != NULL;
      status = run_and_write (e, o, &req, extra);
    }
  g_free (size);
  return status;
}

/* ---- extend ---- */

static int
extend (RvCliOptions *o, int argc, char **argv)
{
  int left = 0, right = 0, top = 0, bottom = 0;
  double context = -1;
  GOptionEntry entries[] = {
    { "left", 0, 0, G_OPTION_ARG_INT, &left, "Pixels to add on the left", "N" },
    { "right", 0, 0, G_OPTION_ARG_INT, &right, "Pixels to add on the right", "N" },
    { "top", 0, 0, G_OPTION_ARG_INT, &top, "Pixels to add at the top", "N" },
    { "bottom", 0, 0, G_OPTION_ARG_INT, &bottom, "Pixels to add at the bottom", "N" },
    { "feather", 0, 0, G_OPTION_ARG_DOUBLE, &o->feather, "Blend each frame into the frames before it over this many pixels (default: an eighth of a frame)", "PX" },
    { "context", 0, 0, G_OPTION_ARG_DOUBLE, &context, "How much each frame follows the picture around it rather than the prompt, 0 to 1 (default: the model set's; 0.8 for reverie-tiny, 0 without a setting)", "W" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("IN \"PROMPT\" [--left N] [--right N] [--top N] [--bottom N] -o OUT — extend a picture beyond its borders (outpainting)");
  g_option_context_set_summary (ctx,
    "The picture is placed on a larger canvas and the new area, with any transparent pixels\n"
    "of the picture, is painted in frames of the model's own size, outward from the picture;\n"
    "the picture's own pixels are kept exactly. The recipe lists the frames.");
  g_autoptr (GError) error = NULL;
  g_autoptr (RvImage) image = NULL;
  g_autoptr (RvRecipe) extra = rv_recipe_new ();
  g_autoptr (RvEngine) e = NULL;
  RvRequest req;
  rv_request_init (&req, RV_JOB_EXTEND);
  if (!parse (ctx, o, entries, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc != 3)
    return rv_cli_error ("usage: reverie-cli extend IN.png \"PROMPT\" [--left N] [--right N] "
                         "[--top N] [--bottom N] -o OUT.png");
  if (left < 0 || right < 0 || top < 0 || bottom < 0)
    return rv_cli_error ("--left, --right, --top and --bottom take 0 or more pixels.");
  if (context != -1 && !(context >= 0 && context <= 1))
    return rv_cli_error ("--context takes a weight from 0 (the prompt) to 1 (the picture).");
  if (!load_image (argv[1], &image, &extra->source_sha256, &error) ||
      !rv_cli_options_to_request (o, &req, NULL, &error))
    return rv_cli_error ("%s", error->message);
  req.image = image;
  req.prompt = argv[2];
  req.extend_left = left;
  req.extend_right = right;
  req.extend_top = top;
  req.extend_bottom = bottom;
  req.extend_context = (float) context;
  req.width = req.height = 0;   /* the canvas decides */
  if ((e = open_engine (o, &error)) == NULL)
    return rv_cli_error ("%s", error->message);
  /* bad borders are refused before any model loads */
  g_autoptr (GArray) frames = rv_engine_plan_extend (e, &req, NULL, NULL, &error);
  if (frames == NULL)
    return rv_cli_error ("%s", error->message);
  if (!o->quiet)
    g_printerr ("reverie-cli: %u frame%s\n", frames->len, frames->len == 1 ? "" : "s");
  extra->feather = req.feather > 0 ? req.feather : -1;
  return run_and_write (e, o, &req, extra);
}

/* ---- entry points ---- */

typedef int (*Command) (RvCliOptions *o, int argc, char **argv);

static int
with_options (Command cmd, int argc, char **argv)
{
  RvCliOptions o;
  rv_cli_options_init (&o);
  int status = cmd (&o, argc, argv);
  rv_cli_options_clear (&o);
  return status;
}

int
rv_cli_edit (int argc, char **argv)
{
  return with_options (edit, argc, argv);
}

int
rv_cli_vary (int argc, char **argv)
{
  return with_options (vary, argc, argv);
}

int
rv_cli_img2img (int argc, char **argv)
{
  return with_options (img2img, argc, argv);
}

int
rv_cli_mix (int argc, char **argv)
{
  return with_options (mix, argc, argv);
}

int
rv_cli_upscale (int argc, char **argv)
{
  return with_options (upscale, argc, argv);
}

int
rv_cli_extend (int argc, char **argv)
{
  return with_options (extend, argc, argv);
}
