/* rv-cli-common.c: what the image commands of reverie-cli and reverie-dev
 * share: the image options, the engine they open, the progress bar, writing
 * the results, and error messages under the program's name. */
#include "config.h"

#include "rv-cli-common.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *program_name = "reverie-cli";

void
rv_cli_set_program_name (const char *name)
{
  program_name = name;
}

const char *
rv_cli_program_name (void)
{
  return program_name;
}

int
rv_cli_error (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_printerr ("%s: %s\n", program_name, msg);
  return 1;
}

void
rv_cli_options_init (RvCliOptions *o)
{
  memset (o, 0, sizeof *o);
  o->n = 1;
  o->steps = o->prior_steps = -1;
  o->guidance = o->prior_guidance = -1;
  o->strength = -1;
  o->feather = -1;
}

void
rv_cli_options_clear (RvCliOptions *o)
{
  g_free (o->output);
  g_free (o->negative);
  g_free (o->size);
  g_free (o->seed);
  g_free (o->scheduler);
  g_free (o->model);
  g_free (o->prior);
  g_free (o->decoder);
  g_free (o->inpaint_decoder);
  g_free (o->preview_dir);
  g_free (o->device);
  g_free (o->from);
  g_free (o->upscaler);
  g_free (o->weights);
}

GOptionGroup *
rv_cli_options_group (RvCliOptions *o)
{
  GOptionEntry entries[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o->output, "Write the image to FILE (with -n N: FILE-1 … FILE-N)", "FILE" },
    { "negative", 0, 0, G_OPTION_ARG_STRING, &o->negative, "What the image should not show", "TEXT" },
    { "size", 0, 0, G_OPTION_ARG_STRING, &o->size, "Image size (rounded up to what the model produces)", "WxH" },
    { "n", 'n', 0, G_OPTION_ARG_INT, &o->n, "Number of images (each with its own seed)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &o->seed, "Seed of the first image (default: random)", "S" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &o->steps, "Decoder steps", "N" },
    { "prior-steps", 0, 0, G_OPTION_ARG_INT, &o->prior_steps, "Prior steps", "N" },
    { "guidance", 0, 0, G_OPTION_ARG_DOUBLE, &o->guidance, "Decoder guidance scale", "G" },
    { "prior-guidance", 0, 0, G_OPTION_ARG_DOUBLE, &o->prior_guidance, "Prior guidance scale", "G" },
    { "scheduler", 0, 0, G_OPTION_ARG_STRING, &o->scheduler, "Decoder scheduler: ddpm, ddim or dpmpp", "NAME" },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &o->model, "Folder with prior/, decoder/ and decoder-inpaint/, or the NAME of an installed set (reverie-cli models)", "DIR|NAME" },
    { "prior", 0, 0, G_OPTION_ARG_FILENAME, &o->prior, "Prior pipeline folder", "DIR" },
    { "decoder", 0, 0, G_OPTION_ARG_FILENAME, &o->decoder, "Decoder pipeline folder", "DIR" },
    { "inpaint-decoder", 0, 0, G_OPTION_ARG_FILENAME, &o->inpaint_decoder, "Inpainting decoder folder", "DIR" },
    { "upscaler", 0, 0, G_OPTION_ARG_FILENAME, &o->upscaler, "Enlarge sizes beyond the model's own with this Real-ESRGAN folder (config.json + model.safetensors)", "DIR" },
    { "preview-dir", 0, 0, G_OPTION_ARG_FILENAME, &o->preview_dir, "Write each step's preview into DIR", "DIR" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &o->device, "Vulkan device index or name", "N|NAME" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &o->weights, "Weights on the device: auto, f32 or stored", "KIND" },
    { "from", 0, 0, G_OPTION_ARG_FILENAME, &o->from, "Take the recipe of a Reverie PNG (options given override it)", "FILE.png" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "No progress bar", NULL },
    { NULL }
  };
  GOptionGroup *g = g_option_group_new ("image", "Image options", "Show image options", NULL, NULL);
  g_option_group_add_entries (g, entries);   /* copied by the group */
  return g;
}

static gboolean
parse_size (const char *s, int *w, int *h)
{
  char *end = NULL;
  gint64 a = g_ascii_strtoll (s, &end, 10);
  if (end == s || (*end != 'x' && *end != 'X'))
    return FALSE;
  const char *rest = end + 1;
  gint64 b = g_ascii_strtoll (rest, &end, 10);
  if (end == rest || *end != '\0' || a < 1 || b < 1 || a > 4096 || b > 4096)
    return FALSE;
  *w = (int) a;
  *h = (int) b;
  return TRUE;
}

gboolean
rv_cli_options_to_request (RvCliOptions *o, RvRequest *req, RvRecipe *from, GError **error)
{
  if (from != NULL)
    {
      if (req->prompt == NULL)
        req->prompt = from->prompt;
      req->negative_prompt = from->negative_prompt;
      req->seed = from->seed;
      req->width = from->width;
      req->height = from->height;
      req->prior_steps = from->prior_steps;
      req->decoder_steps = from->decoder_steps;
      req->prior_guidance = from->prior_guidance;
      req->decoder_guidance = from->decoder_guidance;
      req->scheduler = from->scheduler;
      o->seed_given = TRUE;
    }
  if (o->negative)
    req->negative_prompt = o->negative;
  if (o->size && !parse_size (o->size, &req->width, &req->height))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "--size takes WIDTHxHEIGHT, e.g. 512x512 (got “%s”).", o->size);
      return FALSE;
    }
  if (o->n < 1 || o->n > 64)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "-n takes 1 to 64 (got %d).", o->n);
      return FALSE;
    }
  req->n = o->n;
  if (o->seed)
    {
      char *end = NULL;
      guint64 s = g_ascii_strtoull (o->seed, &end, 10);
      if (end == o->seed || *end != '\0' || o->seed[0] == '-')
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       "--seed takes a whole number ≥ 0 (got “%s”).", o->seed);
          return FALSE;
        }
      req->seed = s;
      o->seed_given = TRUE;
    }
  if (!o->seed_given)
    req->seed = rv_random_seed ();
  if (o->steps >= 0)
    req->decoder_steps = o->steps;
  if (o->prior_steps >= 0)
    req->prior_steps = o->prior_steps;
  if (o->guidance >= 0)
    req->decoder_guidance = (float) o->guidance;
  if (o->prior_guidance >= 0)
    req->prior_guidance = (float) o->prior_guidance;
  if (o->scheduler)
    req->scheduler = o->scheduler;
  if (o->strength >= 0)
    req->strength = (float) o->strength;
  if (o->feather >= 0)
    req->feather = (float) o->feather;
  req->previews = o->preview_dir != NULL;
  return TRUE;
}

/* --model NAME: a name (no '/') that is not a folder here names a set
 * installed by `reverie-cli models pull` in $XDG_DATA_HOME/reverie/models;
 * "reverie-tiny" is the embedded one. *dir gets NULL for the embedded set. */
static gboolean
resolve_model (const char *model, char **dir, GError **error)
{
  *dir = NULL;
  if (model == NULL)
    return TRUE;
  if (strchr (model, G_DIR_SEPARATOR) != NULL || g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      *dir = g_strdup (model);
      return TRUE;
    }
  g_autofree char *installed = g_build_filename (g_get_user_data_dir (), "reverie", "models",
                                                 model, NULL);
  if (model[0] != '.' && g_file_test (installed, G_FILE_TEST_IS_DIR))
    *dir = g_steal_pointer (&installed);
  else if (!g_str_equal (model, "reverie-tiny"))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "--model %s: no such folder, and no model set of that name is installed in "
                   "%s/reverie/models. Get it with “reverie-cli models pull %s” (the names: "
                   "reverie-cli models), or give a folder.", model, g_get_user_data_dir (), model);
      return FALSE;
    }
  return TRUE;
}

RvEngine *
rv_cli_engine (RvCliOptions *o, GError **error)
{
  g_autofree char *model_dir = NULL;
  if (!resolve_model (o->model, &model_dir, error))
    return NULL;
  RvWeightPolicy policy = RV_WEIGHTS_AUTO;
  if (o->weights != NULL)
    {
      if (g_str_equal (o->weights, "f32"))
        policy = RV_WEIGHTS_F32;
      else if (g_str_equal (o->weights, "stored"))
        policy = RV_WEIGHTS_AS_STORED;
      else if (!g_str_equal (o->weights, "auto"))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       "--weights takes auto, f32 or stored (got “%s”).", o->weights);
          return NULL;
        }
    }
  g_autoptr (RvEngine) e = rv_engine_new (o->device, model_dir, o->prior, o->decoder,
                                          o->inpaint_decoder, policy, error);
  if (e != NULL && o->upscaler != NULL && !rv_engine_set_upscaler (e, o->upscaler, error))
    return NULL;
  return g_steal_pointer (&e);
}

/* ---- progress ---- */

static const char *
stage_name (RvStage s)
{
  switch (s)
    {
    case RV_STAGE_LOAD: return "loading";
    case RV_STAGE_ENCODE: return "encoding";
    case RV_STAGE_PRIOR: return "prior";
    case RV_STAGE_DECODER: return "decoder";
    case RV_STAGE_DECODE: return "decoding";
    case RV_STAGE_UPSCALE: return "upscaling";
    default: return "";
    }
}

void
rv_cli_progress (const RvProgress *p, gpointer data)
{
  RvCliProgress *cp = data;
  if (cp->preview_dir != NULL && p->preview != NULL)
    {
      g_autofree char *name =
        p->n_frames > 0
          ? (p->stage == RV_STAGE_DECODE
               ? g_strdup_printf ("canvas-%d-frame%03d.png", p->image + 1, p->frame + 1)
               : g_strdup_printf ("preview-%d-frame%03d-%03d.png", p->image + 1, p->frame + 1, p->step))
          : g_strdup_printf ("%s-%d-%03d.png", p->stage == RV_STAGE_UPSCALE ? "upscale" : "preview",
                             p->image + 1, p->step);
      g_autofree char *path = g_build_filename (cp->preview_dir, name, NULL);
      g_autoptr (GError) error = NULL;
      if (!rv_image_save_png (p->preview, path, NULL, &error))
        g_printerr ("\n%s: %s\n", program_name, error->message);
      cp->previews_written++;
    }
  if (cp->quiet)
    return;
  gboolean tty = isatty (fileno (stderr));
  if (!tty && p->step != p->steps && p->stage != RV_STAGE_LOAD)
    return;   /* a log gets one line per stage */
  int width = 24;
  int filled = p->steps > 0 ? (int) ((double) p->step / p->steps * width) : 0;
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < filled ? '#' : '.';
  bar[width] = '\0';
  char eta[32] = "";
  if (p->eta >= 0)
    g_snprintf (eta, sizeof eta, "  ETA %.1fs", p->eta);
  char frame[32] = "";
  if (p->n_frames > 0 && p->frames_at_once > 1)
    g_snprintf (frame, sizeof frame, " frames %d-%d/%d", p->frame + 1, p->frame + p->frames_at_once,
                p->n_frames);
  else if (p->n_frames > 0)
    g_snprintf (frame, sizeof frame, " frame %d/%d", p->frame + 1, p->n_frames);
  g_printerr ("%simage %d/%d%s %-8s [%s] %3d/%-3d %5.1fs%s%s", tty ? "\r" : "", p->image + 1,
              p->n_images, frame, stage_name (p->stage), bar, p->step, p->steps, p->elapsed, eta,
              tty ? "\033[K" : "\n");
  cp->dirty = tty;
}

void
rv_cli_progress_done (RvCliProgress *cp)
{
  if (cp->dirty)
    g_printerr ("\n");
  cp->dirty = FALSE;
}

/* ---- output ---- */

char *
rv_cli_output_path (const char *output, int index, int n)
{
  if (n == 1)
    return g_strdup (output);
  const char *dot = strrchr (output, '.');
  const char *slash = strrchr (output, G_DIR_SEPARATOR);
  if (dot == NULL || (slash != NULL && dot < slash))
    return g_strdup_printf ("%s-%d", output, index + 1);
  return g_strdup_printf ("%.*s-%d%s", (int) (dot - output), output, index + 1, dot);
}

RvRecipe *
rv_cli_recipe (RvEngine *e, const RvRequest *req, guint64 seed)
{
  const RvDefaults *d = rv_engine_defaults (e);
  return rv_recipe_for_request (e, req, seed, req->width ? req->width : d->width,
                                req->height ? req->height : d->height);
}

/* Writes every result; nothing is written unless all images were made. */
int
rv_cli_write_results (RvEngine *e, const RvRequest *req, GPtrArray *results, const char *output,
                      RvRecipe *base)
{
  for (guint i = 0; i < results->len; i++)
    {
      RvResult *res = g_ptr_array_index (results, i);
      g_autofree char *path = rv_cli_output_path (output, i, results->len);
      g_autoptr (RvRecipe) r = base ? rv_recipe_copy (base) : rv_cli_recipe (e, req, res->seed);
      r->seed = res->seed;
      r->width = res->image->width;
      r->height = res->image->height;
      g_autoptr (GHashTable) text = rv_recipe_to_text (r);
      g_autoptr (GError) error = NULL;
      if (!rv_image_save_png (res->image, path, text, &error))
        return rv_cli_error ("%s", error->message);
      g_print ("%s  seed %" G_GUINT64_FORMAT "  %dx%d\n", path, res->seed, res->image->width,
               res->image->height);
    }
  return 0;
}

gboolean
rv_cli_prepare_output (RvCliOptions *o, GError **error)
{
  if (o->output == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "Say where to write the image with -o FILE.png.");
      return FALSE;
    }
  g_autofree char *dir = g_path_get_dirname (o->output);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "The folder %s does not exist.", dir);
      return FALSE;
    }
  if (o->preview_dir != NULL && g_mkdir_with_parents (o->preview_dir, 0755) != 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID, "Cannot create the preview folder %s.",
                   o->preview_dir);
      return FALSE;
    }
  return TRUE;
}

/* ---- the program ---- */

static void
usage (FILE *out, const char *program, const RvCliCommand *commands, guint n, const char *footer)
{
  fprintf (out, "Usage: %s COMMAND [OPTIONS…]\n\nCommands:\n", program);
  for (guint i = 0; i < n; i++)
    fprintf (out, "  %-16s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nRun “%s COMMAND --help” for a command's options.\n%s", program, footer);
}

int
rv_cli_main (const char *program, const RvCliCommand *commands, guint n, const char *footer,
             int argc, char **argv)
{
  setlocale (LC_ALL, "");
  rv_cli_set_program_name (program);
  if (argc < 2)
    {
      usage (stderr, program, commands, n, footer);
      return 2;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      usage (stdout, program, commands, n, footer);
      return 0;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("%s %s\n", program, PACKAGE_VERSION);
      return 0;
    }
  for (guint i = 0; i < n; i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      {
        g_autofree char *prgname = g_strdup_printf ("%s %s", program, commands[i].name);
        g_set_prgname (prgname);
        return commands[i].run (argc - 1, argv + 1);
      }
  fprintf (stderr, "%s: unknown command “%s”\n\n", program, argv[1]);
  usage (stderr, program, commands, n, footer);
  return 2;
}
