/* reverie-cli.c: the command-line front end. */
#include "config.h"

#include "rv-cli.h"
#include "rv-cli-common.h"


static const RvCliCommand commands[] = {
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

int
main (int argc, char **argv)
{
  return rv_cli_main ("reverie-cli", commands, G_N_ELEMENTS (commands),
                      "Benchmarks (bench), reference checks (check-reference) and the prompt-following\n"
                      "measurement (eval) are in the developer program, reverie-dev (not installed;\n"
                      "build/src/dev/reverie-dev in a build folder).\n", argc, argv);
}
