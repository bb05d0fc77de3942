/* reverie-dev.c: the developer program: benchmarks, reference checks and
 * the prompt-following measurement. Not installed; what a user runs is in
 * reverie-cli. */
#include "config.h"

#include "rv-dev.h"
#include "rv-cli-common.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "bench", rv_dev_bench, "Measure ops (bench ops), pipelines (bench pipeline) and upscalers (bench upscale)" },
  { "check-reference", rv_dev_check_reference, "Check the engine against a reference folder" },
  { "eval", rv_dev_eval, "Measure prompt following on the scene grammar" },
  { "eval-upscale", rv_dev_eval_upscale, "Measure an upscaler against exact renders of held-out scenes" },
};

static void
usage (FILE *out)
{
  fprintf (out, "Usage: reverie-dev COMMAND [OPTIONS…]\n\nCommands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-16s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nRun “reverie-dev COMMAND --help” for a command's options.\n"
                "Making and editing images is reverie-cli's (“reverie-cli --help”).\n");
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  rv_cli_set_program_name ("reverie-dev");
  if (argc < 2)
    {
      usage (stderr);
      return 2;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      usage (stdout);
      return 0;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("reverie-dev %s\n", PACKAGE_VERSION);
      return 0;
    }
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      {
        g_autofree char *prgname = g_strdup_printf ("reverie-dev %s", commands[i].name);
        g_set_prgname (prgname);
        return commands[i].run (argc - 1, argv + 1);
      }
  fprintf (stderr, "reverie-dev: unknown command “%s”\n\n", argv[1]);
  usage (stderr);
  return 2;
}
