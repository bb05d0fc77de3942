/* rv-cli-generate.c: `reverie-cli generate` and `reverie-cli info` (what
 * the image commands share is in rv-cli-common.c). */
#include "config.h"

#include "rv-cli.h"
#include "rv-cli-common.h"

/* ---- generate ---- */

static int
generate (RvCliOptions *o, int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("\"PROMPT\" -o FILE.png — make images from a prompt");
  g_option_context_set_main_group (ctx, rv_cli_options_group (o));
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvRecipe) from = NULL;
  if (o->from != NULL && (from = rv_recipe_from_file (o->from, &error)) == NULL)
    return rv_cli_error ("%s", error->message);
  if (argc > 2)
    return rv_cli_error ("Give the prompt as one argument (in quotes).");
  RvRequest req;
  rv_request_init (&req, RV_JOB_GENERATE);
  req.prompt = argc == 2 ? argv[1] : NULL;
  if (req.prompt == NULL && from == NULL)
    return rv_cli_error ("Give a prompt: reverie-cli generate \"a red circle\" -o out.png");
  if (!rv_cli_prepare_output (o, &error) || !rv_cli_options_to_request (o, &req, from, &error))
    return rv_cli_error ("%s", error->message);
  g_autoptr (RvEngine) e = rv_cli_engine (o, &error);
  if (e == NULL)
    return rv_cli_error ("%s", error->message);
  int dropped = rv_engine_prompt_overflow (e, req.prompt, NULL);
  if (dropped > 0)
    g_printerr ("reverie-cli: the prompt is longer than the model reads; its last %d tokens are "
                "ignored.\n", dropped);
  RvCliProgress cp = { .quiet = o->quiet, .preview_dir = o->preview_dir };
  g_autoptr (GPtrArray) results = rv_engine_run (e, &req, rv_cli_progress, &cp, NULL, &error);
  rv_cli_progress_done (&cp);
  if (results == NULL)
    return rv_cli_error ("%s", error->message);
  return rv_cli_write_results (e, &req, results, o->output, NULL);
}

int
rv_cli_generate (int argc, char **argv)
{
  RvCliOptions o;
  rv_cli_options_init (&o);
  int status = generate (&o, argc, argv);
  rv_cli_options_clear (&o);
  return status;
}

/* ---- info ---- */

int
rv_cli_info (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("FILE.png — print the recipe of a Reverie image");
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc != 2)
    return rv_cli_error ("usage: reverie-cli info FILE.png");
  g_autoptr (RvRecipe) r = rv_recipe_from_file (argv[1], &error);
  if (r == NULL)
    return rv_cli_error ("%s", error->message);
  g_autofree char *s = rv_recipe_to_string (r);
  g_print ("%s", s);
  return 0;
}
