/* reverie-cli.c: the command-line front end. */
#include "config.h"

#include "rv-cli.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "generate", rv_cli_generate, "Make images from a prompt" },
  { "edit", rv_cli_edit, "Repaint the masked part of a picture from a prompt" },
  { "vary", rv_cli_vary, "Make variations of a picture" },
  { "img2img", rv_cli_img2img, "Repaint a whole picture toward a prompt" },
  { "mix", rv_cli_mix, "Blend pictures and prompts into new images" },
  { "extend", rv_cli_extend, "Extend a picture beyond its borders (outpainting)" },
  { "upscale", rv_cli_upscale, "Enlarge a picture with a super-resolution network" },
  { "info", rv_cli_info, "Print the recipe stored in a Reverie PNG" },
#ifdef RV_HAVE_SERVER
  { "serve", rv_cli_serve, "Serve the DALL-E 2 Images API on this machine" },
#endif
  { "devices", rv_cli_devices, "List Vulkan devices and the features Reverie uses" },
#ifdef RV_HAVE_HUB
  { "models", rv_cli_models, "List, pull, verify and remove model sets (Hugging Face Hub)" },
#endif
};

static void
usage (FILE *out)
{
  fprintf (out, "Usage: reverie-cli COMMAND [OPTIONS…]\n\nCommands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-16s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nRun “reverie-cli COMMAND --help” for a command's options.\n"
                "Benchmarks (bench), reference checks (check-reference) and the prompt-following\n"
                "measurement (eval) are in the developer program, reverie-dev (not installed;\n"
                "build/src/dev/reverie-dev in a build folder).\n");
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  rv_cli_set_program_name ("reverie-cli");
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
      printf ("reverie-cli %s\n", PACKAGE_VERSION);
      return 0;
    }
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      {
        g_autofree char *prgname = g_strdup_printf ("reverie-cli %s", commands[i].name);
        g_set_prgname (prgname);
        return commands[i].run (argc - 1, argv + 1);
      }
  fprintf (stderr, "reverie-cli: unknown command “%s”\n\n", argv[1]);
  usage (stderr);
  return 2;
}
