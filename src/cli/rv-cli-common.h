/* rv-cli-common.h: what the image commands of reverie-cli and reverie-dev
 * share (rv-cli-common.c, the reverie-cli-common library). Public engine
 * headers only. */
#pragma once

#include "reverie.h"
#include "rv-image-io.h"

G_BEGIN_DECLS

typedef struct {
  char    *output;
  char    *negative;
  char    *size;
  int      n;
  char    *seed;
  gboolean seed_given;
  int      steps, prior_steps;
  double   guidance, prior_guidance;
  char    *scheduler;
  char    *model, *prior, *decoder, *inpaint_decoder;
  char    *preview_dir;
  char    *device;
  char    *weights;
  char    *from;
  char    *upscaler;
  gboolean quiet;
  double   strength;     /* img2img */
  double   feather;      /* edit */
} RvCliOptions;

typedef struct {
  gboolean    quiet;
  const char *preview_dir;
  gboolean    dirty;
  int         previews_written;
} RvCliProgress;

/* The name error messages start with ("reverie-cli" unless set). */
void          rv_cli_set_program_name (const char *name);

/* A program of subcommands: `program COMMAND [OPTIONS…]`. */
typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} RvCliCommand;

/* Dispatches argv[1] to its command, with --help, --version and usage
 * (ending with `footer`); returns the exit status. */
int           rv_cli_main (const char *program, const RvCliCommand *commands, guint n_commands,
                           const char *footer, int argc, char **argv);
const char   *rv_cli_program_name (void);
/* Prints "PROGRAM: message" on stderr; returns 1. */
int           rv_cli_error (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

void          rv_cli_options_init (RvCliOptions *o);
void          rv_cli_options_clear (RvCliOptions *o);
GOptionGroup *rv_cli_options_group (RvCliOptions *o);
gboolean      rv_cli_options_to_request (RvCliOptions *o, RvRequest *req, RvRecipe *from,
                                         GError **error);
gboolean      rv_cli_prepare_output (RvCliOptions *o, GError **error);
RvEngine     *rv_cli_engine (RvCliOptions *o, GError **error);
void          rv_cli_progress (const RvProgress *p, gpointer data);
void          rv_cli_progress_done (RvCliProgress *cp);
char         *rv_cli_output_path (const char *output, int index, int n);
RvRecipe     *rv_cli_recipe (RvEngine *e, const RvRequest *req, guint64 seed);
int           rv_cli_write_results (RvEngine *e, const RvRequest *req, GPtrArray *results,
                                    const char *output, RvRecipe *base);

G_END_DECLS
