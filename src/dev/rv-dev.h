/* rv-dev.h: the subcommands of reverie-dev, the developer program. Each
 * returns the exit status. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

int rv_dev_bench (int argc, char **argv);
int rv_dev_bench_pipeline (int argc, char **argv);
int rv_dev_bench_upscale (int argc, char **argv);
int rv_dev_check_reference (int argc, char **argv);
int rv_dev_eval (int argc, char **argv);
int rv_dev_eval_upscale (int argc, char **argv);

G_END_DECLS
