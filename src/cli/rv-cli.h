/* rv-cli.h: the subcommands of reverie-cli. Each returns the exit status. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

int rv_cli_devices (int argc, char **argv);
int rv_cli_bench (int argc, char **argv);
int rv_cli_check_reference (int argc, char **argv);
int rv_cli_generate (int argc, char **argv);
int rv_cli_edit (int argc, char **argv);
int rv_cli_vary (int argc, char **argv);
int rv_cli_img2img (int argc, char **argv);
int rv_cli_mix (int argc, char **argv);
int rv_cli_info (int argc, char **argv);
int rv_cli_eval (int argc, char **argv);
int rv_cli_serve (int argc, char **argv);
int rv_cli_bench_pipeline (int argc, char **argv);

/* Prints "reverie-cli: message" on stderr; returns 1. */
int rv_cli_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

G_END_DECLS
