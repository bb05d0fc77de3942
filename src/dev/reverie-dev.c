/* reverie-dev.c: the developer program: benchmarks, reference checks and
 * the prompt-following measurement. Not installed; what a user runs is in
 * reverie-cli. */
#include "config.h"

#include "rv-dev.h"
#include "rv-cli-common.h"


static const RvCliCommand commands[] = {
  { "bench", rv_dev_bench, "Measure ops (bench ops), pipelines (bench pipeline) and upscalers (bench upscale)" },
  { "check-reference", rv_dev_check_reference, "Check the engine against a reference folder" },
  { "eval", rv_dev_eval, "Measure prompt following on the scene grammar" },
  { "eval-upscale", rv_dev_eval_upscale, "Measure an upscaler against exact renders of held-out scenes" },
};

int
main (int argc, char **argv)
{
  return rv_cli_main ("reverie-dev", commands, G_N_ELEMENTS (commands),
                      "Making and editing images is reverie-cli's (“reverie-cli --help”).\n", argc, argv);
}
