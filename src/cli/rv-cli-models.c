/* rv-cli-models.c: `reverie-cli models`: list the catalogue's model sets
 * (installed or not, sizes, memory, whether they fit), pull, rm, verify. */
#include "config.h"

#include "rv-cli.h"
#include "rv-catalogue.h"
#include "rv-hub.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char *
gb (guint64 bytes)
{
  return g_format_size (bytes);   /* SI units: "12.4 GB" */
}

static char *
duration (double s)
{
  if (s < 0 || s > 360000)
    return g_strdup ("?");
  int t = (int) (s + 0.5);
  if (t >= 3600)
    return g_strdup_printf ("%dh%02dm", t / 3600, t / 60 % 60);
  if (t >= 60)
    return g_strdup_printf ("%dm%02ds", t / 60, t % 60);
  return g_strdup_printf ("%ds", t);
}

/* ---- list ---- */

static const char *
fits_text (const RvCatalogueEntry *e, guint64 device_bytes)
{
  if (device_bytes == 0 || e->n_memory == 0)
    return "unknown";
  guint64 m512 = rv_catalogue_entry_memory (e, 512), m768 = rv_catalogue_entry_memory (e, 768);
  if (m768 <= device_bytes)
    return "yes (512² and 768²)";
  if (m512 <= device_bytes)
    return "512² only";
  return "no: too little device memory";
}

static int
list (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RvCatalogue) cat = rv_catalogue_load_default (&error);
  if (cat == NULL)
    return rv_cli_error ("%s", error->message);
  g_autofree char *root = rv_hub_models_dir ();

  /* the device the engine would open, for "fits" */
  guint64 device_bytes = 0;
  g_autofree char *device_name = NULL;
  g_autoptr (GArray) devs = rv_engine_list_device_info (NULL);
  for (guint i = 0; devs != NULL && i < devs->len; i++)
    {
      const RvDeviceInfo *d = &g_array_index (devs, RvDeviceInfo, i);
      if (d->selected)
        {
          device_bytes = d->memory_bytes;
          device_name = g_strdup (d->name);
        }
    }
  if (device_name != NULL)
    {
      g_autofree char *m = gb (device_bytes);
      g_print ("Device: %s, %s of device memory\n", device_name, m);
    }
  else
    g_print ("Device: none found (install a Vulkan driver; see reverie-cli devices)\n");
  g_print ("Model sets (installed in %s):\n\n", root);

  g_autoptr (GPtrArray) installed = rv_hub_list_installed (root);
  for (guint i = 0; i < rv_catalogue_size (cat); i++)
    {
      const RvCatalogueEntry *e = rv_catalogue_get (cat, i);
      g_autofree char *status = NULL;
      g_autofree char *variant = NULL;
      guint64 bytes = 0, done = 0, total = 0;
      if (e->kind == RV_CATALOGUE_EMBEDDED)
        status = g_strdup ("installed (built in)");
      else if (rv_hub_installed_info (root, e->name, &variant, &bytes))
        {
          g_autofree char *b = gb (bytes);
          status = g_strdup_printf ("installed (%s, %s)", variant ? variant : "?", b);
        }
      else if (g_ptr_array_find_with_equal_func (installed, e->name, g_str_equal, NULL))
        status = g_strdup ("installed");
      else if (rv_hub_staged_info (root, e->name, &done, &total) && total > 0)
        status = g_strdup_printf ("partly downloaded (%.0f%%): pull again to resume",
                                  100.0 * done / total);
      else
        status = g_strdup ("available");
      g_print ("%-16s %s — %s\n", e->name, e->title, status);
      if (e->kind != RV_CATALOGUE_EMBEDDED)
        {
          g_autoptr (GString) dl = g_string_new (NULL);
          for (guint v = 0; v < e->n_variants; v++)
            {
              g_autofree char *s = gb (e->variants[v].download_bytes);
              g_string_append_printf (dl, "%s%s %s%s", v ? ", " : "", s, e->variants[v].name,
                                      v == 0 ? " (default)"
                                      : g_str_equal (e->variants[v].name, "full") ? " (--full-precision)" : "");
            }
          g_print ("    download:       %s\n", dl->str);
        }
      if (e->n_memory > 0)
        {
          g_autoptr (GString) mem = g_string_new (NULL);
          for (guint m = 0; m < e->n_memory; m++)
            {
              g_autofree char *s = gb (e->memory[m].bytes);
              g_string_append_printf (mem, "%s%s at %d²", m ? ", " : "", s, e->memory[m].size);
            }
          g_print ("    device memory:  %s\n", mem->str);
          g_print ("    fits this device: %s\n", fits_text (e, device_bytes));
        }
      if (e->licence_name != NULL)
        g_print ("    licence:        %s (%s)\n", e->licence_name, e->licence_url);
      g_print ("\n");
    }
  /* folders put there by hand, or sets since dropped from the catalogue */
  for (guint i = 0; i < installed->len; i++)
    {
      const char *n = g_ptr_array_index (installed, i);
      if (rv_catalogue_lookup (cat, n) == NULL)
        g_print ("%-16s (not in the catalogue) — installed\n\n", n);
    }
  g_print ("Get one with: reverie-cli models pull NAME; use it with: reverie-cli generate "
           "--model NAME …\n");
  return 0;
}

/* ---- pull ---- */

typedef struct {
  RvHubPull    *pull;
  GCancellable *cancel;
  GError       *error;
  gboolean      ok;
  GMainLoop    *loop;
  gboolean      tty;
  gboolean      dirty;
  gboolean      listed;
  char         *licence;
  gint64        last_line;
  char         *name;
} PullJob;

static void
on_progress (const RvHubProgress *p, gpointer data)
{
  PullJob *j = data;
  if (p->stage == RV_HUB_STAGE_LISTING)
    {
      /* the licence comes before anything is fetched, and only then:
       * an offline or installed set shows none */
      if (!j->listed && j->licence != NULL)
        g_printerr ("%s\n\n", j->licence);
      if (!j->listed)
        g_printerr ("%s: asking the Hub which files to fetch…\n", j->name);
      j->listed = TRUE;
      return;
    }
  gint64 now = g_get_monotonic_time ();
  /* a log gets a line every few seconds, a terminal a live one */
  if (!j->tty && now - j->last_line < 3 * G_USEC_PER_SEC && p->done != p->total)
    return;
  j->last_line = now;
  g_autofree char *done = gb (p->done), *total = gb (p->total), *eta = duration (p->eta);
  const char *what = p->stage == RV_HUB_STAGE_LISTING ? "listing"
                     : p->stage == RV_HUB_STAGE_CHECKING ? "checking"
                     : p->stage == RV_HUB_STAGE_INSTALLING ? "installing" : "";
  double pct = p->total > 0 ? 100.0 * p->done / p->total : 0;
  g_printerr ("%s%s %s / %s %5.1f%%  %6.1f MB/s  ETA %s  %s%s%s%s", j->tty ? "\r" : "", j->name,
              done, total, pct, p->rate / 1e6, eta, what[0] ? what : "",
              what[0] && p->file ? " " : "", p->file ? p->file : "", j->tty ? "\033[K" : "\n");
  j->dirty = j->tty;
}

static gboolean
quit_loop (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

static gpointer
pull_thread (gpointer data)
{
  PullJob *j = data;
  j->ok = rv_hub_pull (j->pull, j->cancel, &j->error);
  /* through the main context: a quit before the loop runs would be lost */
  g_idle_add (quit_loop, j->loop);
  return NULL;
}

static gboolean
on_signal (gpointer data)
{
  PullJob *j = data;
  g_cancellable_cancel (j->cancel);
  return G_SOURCE_CONTINUE;
}

/* VmRSS / VmHWM of this process in KiB (REVERIE_DEBUG_RSS). */
static long
proc_status_kib (const char *key)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents ("/proc/self/status", &text, NULL, NULL))
    return -1;
  const char *p = strstr (text, key);
  return p ? strtol (p + strlen (key) + 1, NULL, 10) : -1;
}

static int
pull (int argc, char **argv)
{
  gboolean full = FALSE;
  g_autofree char *token = NULL;
  GOptionEntry entries[] = {
    { "full-precision", 0, 0, G_OPTION_ARG_NONE, &full, "Fetch the full-precision weights (about twice the download)", NULL },
    { "token", 0, 0, G_OPTION_ARG_STRING, &token, "Hugging Face access token for gated repositories (default: HF_TOKEN)", "T" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("NAME — download a model set from the Hugging Face Hub");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
    "Every file is checked against the Hub's SHA-256 as it arrives; the set is installed only\n"
    "when all are. Ctrl-C stops; pulling again resumes. HF_ENDPOINT picks a mirror,\n"
    "HF_HUB_OFFLINE=1 forbids network use.");
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc != 2)
    return rv_cli_error ("usage: reverie-cli models pull NAME [--full-precision] (names: "
                         "reverie-cli models)");
  const char *name = argv[1];
  g_autoptr (RvCatalogue) cat = rv_catalogue_load_default (&error);
  if (cat == NULL)
    return rv_cli_error ("%s", error->message);
  const RvCatalogueEntry *e = rv_catalogue_lookup (cat, name);
  if (e == NULL)
    return rv_cli_error ("The catalogue has no model set named “%s”. See the names with "
                         "“reverie-cli models”.", name);
  if (e->kind == RV_CATALOGUE_EMBEDDED)
    {
      g_print ("%s ships with Reverie and is always installed.\n", name);
      return 0;
    }
  const char *variant = full ? "full" : NULL;
  if (full && rv_catalogue_entry_variant (e, "full") == NULL)
    return rv_cli_error ("%s has no full-precision variant in the catalogue.", name);
  long rss_start = proc_status_kib ("VmRSS:");

  g_autoptr (RvHubPull) p = rv_hub_pull_new (e, variant);
  if (token != NULL)
    rv_hub_pull_set_token (p, token);
  const RvCatalogueVariant *v = rv_catalogue_entry_variant (e, variant);
  g_autofree char *size = gb (v->download_bytes);
  g_autofree char *licence = g_strdup_printf ("%s (%s weights, about %s) is published under the %s "
                                              "licence (%s):\n%s", e->title, v->name, size,
                                              e->licence_name, e->licence_url, e->licence_text);

  PullJob j = { .pull = p, .cancel = g_cancellable_new (), .loop = g_main_loop_new (NULL, FALSE),
                .tty = isatty (fileno (stderr)), .name = g_strdup (name), .licence = licence };
  rv_hub_pull_set_progress (p, on_progress, &j);
  guint sigint = g_unix_signal_add (SIGINT, on_signal, &j);
  guint sigterm = g_unix_signal_add (SIGTERM, on_signal, &j);
  gint64 t0 = g_get_monotonic_time ();
  GThread *th = g_thread_new ("pull", pull_thread, &j);
  g_main_loop_run (j.loop);
  g_thread_join (th);
  double secs = (g_get_monotonic_time () - t0) / 1e6;
  g_source_remove (sigint);
  g_source_remove (sigterm);
  if (j.dirty)
    g_printerr ("\n");
  g_main_loop_unref (j.loop);
  g_object_unref (j.cancel);
  g_free (j.name);

  if (g_getenv ("REVERIE_DEBUG_RSS") != NULL)
    g_printerr ("rss: start %ld KiB, peak %ld KiB\n", rss_start, proc_status_kib ("VmHWM:"));
  g_autoptr (GError) perr = j.error;
  if (!j.ok)
    {
      if (g_error_matches (perr, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_printerr ("%s: stopped; nothing was installed. What was downloaded is kept: run "
                      "“reverie-cli models pull %s%s” to resume.\n", rv_cli_program_name (),
                      name, full ? " --full-precision" : "");
          return 130;
        }
      return rv_cli_error ("%s", perr->message);
    }
  if (rv_hub_pull_was_installed (p))
    {
      g_print ("%s is already installed in %s.\n", name, rv_hub_pull_installed_dir (p));
      return 0;
    }
  guint64 fetched = rv_hub_pull_fetched_bytes (p);
  g_autofree char *total = gb (rv_hub_pull_total_bytes (p)), *got = gb (fetched);
  g_autofree char *took = duration (secs);
  g_print ("Installed %s (%s weights, %s) in %s.\n", name, rv_hub_pull_variant (p), total,
           rv_hub_pull_installed_dir (p));
  g_print ("Fetched %s in %s (%.1f MB/s).\n", got, took, secs > 0 ? fetched / secs / 1e6 : 0.0);
  if (e->kind == RV_CATALOGUE_MODEL_SET)
    g_print ("Try it: reverie-cli generate --model %s \"a lighthouse at dawn\" -o out.png\n", name);
  return 0;
}

/* ---- rm, verify ---- */

static int
rm (int argc, char **argv)
{
  if (argc != 2)
    return rv_cli_error ("usage: reverie-cli models rm NAME");
  g_autoptr (GError) error = NULL;
  if (g_str_equal (argv[1], "reverie-tiny") && rv_hub_installed_dir (NULL, argv[1]) == NULL)
    return rv_cli_error ("reverie-tiny ships with Reverie and cannot be removed.");
  if (!rv_hub_remove (NULL, argv[1], &error))
    return rv_cli_error ("%s", error->message);
  g_print ("Removed %s.\n", argv[1]);
  return 0;
}

static void
on_verify_progress (const RvHubProgress *p, gpointer data)
{
  gboolean *dirty = data;
  if (!isatty (fileno (stderr)))
    return;
  g_printerr ("\rchecking %5.1f%%  %s\033[K", p->total ? 100.0 * p->done / p->total : 100.0,
              p->file ? p->file : "");
  *dirty = TRUE;
}

static int
verify (int argc, char **argv)
{
  if (argc != 2)
    return rv_cli_error ("usage: reverie-cli models verify NAME");
  g_autoptr (GError) error = NULL;
  gboolean dirty = FALSE;
  gboolean ok = rv_hub_verify (NULL, argv[1], on_verify_progress, &dirty, NULL, &error);
  if (dirty)
    g_printerr ("\n");
  if (!ok)
    return rv_cli_error ("%s", error->message);
  g_autofree char *variant = NULL;
  guint64 bytes = 0;
  rv_hub_installed_info (NULL, argv[1], &variant, &bytes);
  g_autofree char *b = gb (bytes);
  g_print ("%s is intact: every file (%s) matches the Hub's SHA-256.\n", argv[1], b);
  return 0;
}

int
rv_cli_models (int argc, char **argv)
{
  const char *sub = argc >= 2 ? argv[1] : "list";
  if (g_str_equal (sub, "--help") || g_str_equal (sub, "-h") || g_str_equal (sub, "help"))
    {
      g_print ("Usage: reverie-cli models [list]\n"
               "       reverie-cli models pull NAME [--full-precision] [--token T]\n"
               "       reverie-cli models rm NAME\n"
               "       reverie-cli models verify NAME\n\n"
               "Model sets live in $XDG_DATA_HOME/reverie/models (~/.local/share/reverie/models);\n"
               "“--model NAME” in every image command uses an installed one.\n");
      return 0;
    }
  int n = argc >= 2 ? argc - 1 : 1;
  char **args = argc >= 2 ? argv + 1 : argv;
  if (g_str_equal (sub, "list"))
    return list (n, args);
  if (g_str_equal (sub, "pull"))
    return pull (n, args);
  if (g_str_equal (sub, "rm"))
    return rm (n, args);
  if (g_str_equal (sub, "verify"))
    return verify (n, args);
  return rv_cli_error ("unknown models command “%s”: use list, pull, rm or verify.", sub);
}
