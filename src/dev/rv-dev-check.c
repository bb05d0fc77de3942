/* rv-dev-check.c: `reverie-dev check-reference DIR`: runs the cases of a
 * reference folder (golden format) and prints each checked tensor's error. */
#include "config.h"

#include "rv-dev.h"
#include "rv-cli-common.h"
#include "rv-reference.h"

#include <math.h>
#include <string.h>

/* How many not-run tensors of a case are named without --verbose. */
#define NOT_RUN_SHOWN 4

static void
print_result (const RvRefResult *r, gboolean verbose)
{
  g_autofree char *err = NULL;
  if (r->status == RV_REF_NOT_RUN)
    err = g_strdup ("");
  else if (r->exact)
    err = g_strdup_printf ("%.0f of %" G_GINT64_FORMAT " differ", r->error, r->numel);
  else
    err = g_strdup_printf ("rel L2 %.3e  (tol %.0e)", r->error, r->tolerance);
  g_print ("  %-8s %-52s %s", rv_ref_status_name (r->status), r->name, err);
  if (verbose && r->status != RV_REF_NOT_RUN && !r->exact)
    g_print ("  max |diff| %.3e", r->max_abs);
  if (verbose && r->handler != NULL)
    g_print ("  [%s]", r->handler);
  if (r->note != NULL && (r->status == RV_REF_FAIL || verbose))
    g_print ("\n           %s", r->note);
  g_print ("\n");
}

static void
print_case (const RvRefCaseResult *res, gboolean verbose)
{
  const RvRefCase *c = res->rcase;
  guint n_not_run = 0;
  for (guint i = 0; i < res->results->len; i++)
    n_not_run += g_array_index (res->results, RvRefResult, i).status == RV_REF_NOT_RUN;
  g_print ("%-24s %-10s %-8s %6.2f s   %u checked tensors%s\n", c->name, c->kind,
           rv_ref_status_name (res->status), res->seconds, res->results->len,
           n_not_run > 0 && n_not_run < res->results->len ? ", some not run" : "");
  if (verbose && c->description != NULL)
    g_print ("  %s\n", c->description);
  if (res->error != NULL)
    {
      g_print ("  error: %s\n", res->error);
      return;
    }
  guint shown = 0;
  for (guint i = 0; i < res->results->len; i++)
    {
      const RvRefResult *r = &g_array_index (res->results, RvRefResult, i);
      if (r->status != RV_REF_NOT_RUN || verbose)
        print_result (r, verbose);
      else if (shown++ < NOT_RUN_SHOWN)
        g_print ("  %-8s %-52s %s\n", "NOT RUN", r->name, r->note);
    }
  if (!verbose && shown > NOT_RUN_SHOWN)
    g_print ("  %-8s … and %u more without a handler yet (--verbose lists them)\n", "NOT RUN",
             shown - NOT_RUN_SHOWN);
}

int
rv_dev_check_reference (int argc, char **argv)
{
  g_auto (GStrv) cases = NULL;
  g_autofree char *device = NULL;
  gboolean verbose = FALSE;
  GOptionEntry entries[] = {
    { "case", 0, 0, G_OPTION_ARG_STRING_ARRAY, &cases, "Run only this case (repeatable)", "NAME" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Vulkan device (index or name)", "DEVICE" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
      "Show every tensor, maximum differences and handlers", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("DIR — check the engine against a "
                                                          "reference folder");
  g_option_context_set_description (ctx,
    "DIR holds cases.json, cases/*.safetensors and the model folders it names (the formats of\n"
    "tests/reference, docs/reference-format.md). Every case is run with the engine and each output is compared with the\n"
    "recorded one. Exit status: 0 when every selected case passes; 1 when any fails or is\n"
    "not run yet; 2 for a usage error.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      rv_cli_error ("%s", error->message);
      return 2;
    }
  if (argc != 2)
    {
      rv_cli_error ("give one reference folder (see --help)");
      return 2;
    }

  g_autoptr (RvRefSet) set = rv_ref_set_open (argv[1], &error);
  if (set == NULL)
    {
      rv_cli_error ("%s", error->message);
      return 2;
    }
  g_autoptr (GPtrArray) selected = g_ptr_array_new ();
  for (guint i = 0; cases != NULL && cases[i] != NULL; i++)
    {
      const RvRefCase *c = rv_ref_set_find (set, cases[i]);
      if (c == NULL)
        {
          g_autoptr (GString) names = g_string_new (NULL);
          for (guint k = 0; k < rv_ref_set_n_cases (set); k++)
            g_string_append_printf (names, "%s%s", k > 0 ? ", " : "",
                                    rv_ref_set_case (set, k)->name);
          rv_cli_error ("%s has no case “%s” (it has: %s)", argv[1], cases[i], names->str);
          return 2;
        }
      g_ptr_array_add (selected, (gpointer) c);
    }
  if (cases == NULL)
    for (guint k = 0; k < rv_ref_set_n_cases (set); k++)
      g_ptr_array_add (selected, (gpointer) rv_ref_set_case (set, k));

  JsonObject *index = rv_ref_set_index (set);
  JsonNode *version = json_object_get_member (index, "format_version");
  gint64 known = rv_ref_set_known_version (set);
  if (version != NULL && json_node_get_value_type (version) == G_TYPE_INT64
      && json_node_get_int (version) != known)
    g_printerr ("%s: warning: %s has format version %" G_GINT64_FORMAT "; this reader "
                "knows version %" G_GINT64_FORMAT "\n", rv_cli_program_name (), argv[1],
                json_node_get_int (version), known);
  g_print ("Reference folder %s: %u of %u cases\n\n", argv[1], selected->len,
           rv_ref_set_n_cases (set));

  g_autoptr (RvRefRun) run = rv_ref_run_new (set, device);
  guint counts[3] = { 0 }, tensor_counts[3] = { 0 };
  for (guint i = 0; i < selected->len; i++)
    {
      g_autoptr (RvRefCaseResult) res = rv_ref_run_case (run, g_ptr_array_index (selected, i));
      print_case (res, verbose);
      counts[res->status]++;
      for (guint k = 0; k < res->results->len; k++)
        tensor_counts[g_array_index (res->results, RvRefResult, k).status]++;
    }
  g_print ("\nSummary: %u of %u cases passed, %u failed, %u not run (fully or in part); "
           "tensors: %u passed, %u failed, %u not run\n", counts[RV_REF_PASS], selected->len,
           counts[RV_REF_FAIL], counts[RV_REF_NOT_RUN], tensor_counts[RV_REF_PASS],
           tensor_counts[RV_REF_FAIL], tensor_counts[RV_REF_NOT_RUN]);
  if (rv_validation_message_count () > 0)
    {
      g_print ("FAIL: the Vulkan validation layer reported %u messages\n",
               rv_validation_message_count ());
      return 1;
    }
  return counts[RV_REF_PASS] == selected->len ? 0 : 1;
}
