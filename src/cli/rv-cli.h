/* rv-cli.h: the subcommands of reverie-cli. Each returns the exit status.
 * The developer commands (bench, check-reference, eval) are reverie-dev's
 * (src/dev). */
#pragma once

#include "rv-cli-common.h"

G_BEGIN_DECLS

int rv_cli_devices (int argc, char **argv);
int rv_cli_generate (int argc, char **argv);
int rv_cli_edit (int argc, char **argv);
int rv_cli_vary (int argc, char **argv);
int rv_cli_img2img (int argc, char **argv);
int rv_cli_mix (int argc, char **argv);
int rv_cli_upscale (int argc, char **argv);
int rv_cli_extend (int argc, char **argv);
int rv_cli_info (int argc, char **argv);
int rv_cli_serve (int argc, char **argv);
int rv_cli_models (int argc, char **argv);

G_END_DECLS
