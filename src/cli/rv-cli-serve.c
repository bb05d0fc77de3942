/* rv-cli-serve.c: `reverie-cli serve`, the local DALL-E 2 Images API: options,
 * the warm engine, signals for a graceful shutdown. */
#include "config.h"

#include "rv-cli.h"
#include "rv-cli-common.h"
#include "rv-server.h"
#include "rv-server-request.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  GMainLoop *loop;
  RvServer  *server;
  gboolean   stopping;
} Serve;

static void
on_stopped (gpointer data)
{
  Serve *sv = data;
  g_printerr ("reverie-cli serve: stopped.\n");
  g_main_loop_quit (sv->loop);
}

static gboolean
on_signal (gpointer data)
{
  Serve *sv = data;
  if (!sv->stopping)
    g_printerr ("reverie-cli serve: shutting down (finishing the running job; signal again to "
                "cancel it)…\n");
  else
    g_printerr ("reverie-cli serve: cancelling the running job…\n");
  sv->stopping = TRUE;
  rv_server_shutdown (sv->server, on_stopped, sv);
  return G_SOURCE_CONTINUE;
}

/* The default set's id in /v1/models: the installed set's name for --model
 * NAME (or a folder of the models folder), else NULL (the engine's model
 * name: "reverie-tiny", reverie.json's name or the folder's). */
static char *
model_id (const char *model)
{
  if (model == NULL)
    return NULL;
  if (strchr (model, G_DIR_SEPARATOR) == NULL && !g_file_test (model, G_FILE_TEST_IS_DIR))
    return g_strdup (model);
  g_autofree char *store = g_build_filename (g_get_user_data_dir (), "reverie", "models", NULL);
  g_autofree char *dir = realpath (model, NULL);
  g_autofree char *root = realpath (store, NULL);
  g_autofree char *parent = dir ? g_path_get_dirname (dir) : NULL;
  if (parent != NULL && root != NULL && strcmp (parent, root) == 0)
    return g_path_get_basename (dir);
  return NULL;
}

static int
serve (RvCliOptions *o, int argc, char **argv)
{
  RvServerConfig config;
  rv_server_config_init (&config);
  g_autofree char *host = NULL, *api_key = NULL, *public_url = NULL, *store = NULL;
  g_autofree char *default_size = NULL, *policy_path = NULL;
  int max_body_mb = (int) (config.max_body >> 20);
  GOptionEntry entries[] = {
    { "host", 0, 0, G_OPTION_ARG_STRING, &host, "Address to listen on (default 127.0.0.1; 0.0.0.0 = every interface)", "ADDR" },
    { "port", 'p', 0, G_OPTION_ARG_INT, &config.port, "Port to listen on (default 8000; 0 = any free port, printed at startup)", "N" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &api_key, "Require “Authorization: Bearer KEY” on /v1/ (default: $REVERIE_API_KEY, else no key)", "KEY" },
    { "queue", 0, 0, G_OPTION_ARG_INT, &config.queue_depth, "Requests that may wait while one runs; more get 429 (default 8)", "N" },
    { "max-body-mb", 0, 0, G_OPTION_ARG_INT, &max_body_mb, "Largest request body in MiB; larger ones get 413 (default 16)", "N" },
    { "max-image-side", 0, 0, G_OPTION_ARG_INT, &config.max_image_side, "Largest side of an uploaded image in pixels; larger ones get 413 (default 4096)", "PX" },
    { "max-size", 0, 0, G_OPTION_ARG_INT, &config.max_size, "Largest side of a requested WxH size (multiples of 64; default 1024)", "PX" },
    { "default-size", 0, 0, G_OPTION_ARG_STRING, &default_size, "Size when a request gives none (default: the model's, rounded up to a multiple of 64)", "WxH" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &config.steps, "Decoder steps when a request gives none (default: the model's)", "N" },
    { "prior-steps", 0, 0, G_OPTION_ARG_INT, &config.prior_steps, "Prior steps when a request gives none (default: the model's)", "N" },
    { "store", 0, 0, G_OPTION_ARG_FILENAME, &store, "Folder for `url` results (default $XDG_CACHE_HOME/reverie/api)", "DIR" },
    { "url-ttl", 0, 0, G_OPTION_ARG_INT, &config.url_ttl, "Seconds a `url` result stays available (default 3600)", "S" },
    { "public-url", 0, 0, G_OPTION_ARG_STRING, &public_url, "Base of `url` results, e.g. behind a proxy (default: the address the client used)", "URL" },
    { "content-policy", 0, 0, G_OPTION_ARG_FILENAME, &policy_path, "Refuse prompts and negative prompts that match this policy file (400 content_policy_violation naming the category; format in data/content-policy.txt)", "FILE" },
    { "shutdown-grace", 0, 0, G_OPTION_ARG_INT, &config.shutdown_grace, "On SIGTERM, seconds the running job may take to finish before it is cancelled (default 30)", "S" },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &o->model, "Folder with prior/, decoder/ and decoder-inpaint/ (default: the embedded model)", "DIR" },
    { "prior", 0, 0, G_OPTION_ARG_FILENAME, &o->prior, "Prior pipeline folder", "DIR" },
    { "decoder", 0, 0, G_OPTION_ARG_FILENAME, &o->decoder, "Decoder pipeline folder", "DIR" },
    { "inpaint-decoder", 0, 0, G_OPTION_ARG_FILENAME, &o->inpaint_decoder, "Inpainting decoder folder (edits need it)", "DIR" },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &o->device, "Vulkan device index or name", "N|NAME" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &o->weights, "Weights on the device: auto, f32 or stored", "KIND" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— serve the DALL-E 2 Images API");
  g_option_context_set_summary (ctx,
    "Endpoints: POST /v1/images/generations (JSON), /v1/images/edits and /v1/images/variations\n"
    "(multipart), GET /v1/models, GET /health, and GET /files/NAME.png for `url` results.\n"
    "GET /v1/models lists the model sets: this one (also “dall-e-2”), the embedded\n"
    "reverie-tiny and those installed with “reverie-cli models pull”; a request's `model`\n"
    "picks one (loaded when first asked for; at most one besides this one is kept).\n"
    "Point an OpenAI client's base URL at http://HOST:PORT/v1. Besides the DALL-E 2 fields a\n"
    "request may give seed, steps, prior_steps, guidance, prior_guidance, negative_prompt,\n"
    "scheduler and stream (server-sent events with step previews). An edit without a mask\n"
    "whose transparent area is larger than the model's native size is outpainted frame by\n"
    "frame. One job runs at a time; the access log goes to stderr. SIGTERM or SIGINT shuts\n"
    "down gracefully.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc > 1)
    return rv_cli_error ("serve takes no arguments (got “%s”); see --help.", argv[1]);
  if (config.port < 0 || config.port > 65535)
    return rv_cli_error ("--port takes 0 to 65535 (got %d).", config.port);
  if (max_body_mb < 1 || max_body_mb > 1024)
    return rv_cli_error ("--max-body-mb takes 1 to 1024 (got %d).", max_body_mb);
  if (config.queue_depth < 0 || config.queue_depth > 10000)
    return rv_cli_error ("--queue takes 0 to 10000 (got %d).", config.queue_depth);
  if (config.max_image_side < 64 || config.max_image_side > 16384)
    return rv_cli_error ("--max-image-side takes 64 to 16384 (got %d).", config.max_image_side);
  if (config.max_size < 64 || config.max_size > 4096)
    return rv_cli_error ("--max-size takes 64 to 4096 (got %d).", config.max_size);
  if (config.steps < 0 || config.steps > 1000 || config.prior_steps < 0 ||
      config.prior_steps > 1000 || config.prior_steps == 1)
    return rv_cli_error ("--steps takes 1 to 1000 and --prior-steps 2 to 1000.");
  if (config.url_ttl < 1 || config.shutdown_grace < 0)
    return rv_cli_error ("--url-ttl takes at least 1 second and --shutdown-grace at least 0.");
  if (default_size != NULL &&
      !rv_api_parse_size (default_size, config.max_size, &config.default_width, &config.default_height))
    return rv_cli_error ("--default-size takes WIDTHxHEIGHT with sides multiples of 64 up to "
                         "--max-size (got “%s”).", default_size);
  if (public_url != NULL && !g_str_has_prefix (public_url, "http://") &&
      !g_str_has_prefix (public_url, "https://"))
    return rv_cli_error ("--public-url takes an http:// or https:// URL (got “%s”).", public_url);
  if (api_key == NULL && g_getenv ("REVERIE_API_KEY") != NULL && g_getenv ("REVERIE_API_KEY")[0])
    api_key = g_strdup (g_getenv ("REVERIE_API_KEY"));
  config.host = host;
  config.api_key = api_key;
  config.public_url = public_url;
  config.store_dir = store;
  config.max_body = (gsize) max_body_mb << 20;
  /* before the engine: a policy that cannot be read stops the server at once */
  g_autoptr (RvContentPolicy) policy = NULL;
  if (policy_path != NULL)
    {
      policy = rv_content_policy_load (policy_path, &error);
      if (policy == NULL)
        return rv_cli_error ("--content-policy: %s", error->message);
      config.content_policy = policy;
    }

  g_autoptr (RvEngine) e = rv_cli_engine (o, &error);
  if (e == NULL)
    return rv_cli_error ("%s", error->message);
  /* other model sets a request names open on the same device */
  g_autofree char *id = model_id (o->model);
  config.model_id = id;
  config.device = o->device;
  config.weights = g_strcmp0 (o->weights, "f32") == 0      ? RV_WEIGHTS_F32
                 : g_strcmp0 (o->weights, "stored") == 0   ? RV_WEIGHTS_AS_STORED
                                                           : RV_WEIGHTS_AUTO;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (RvServer) server = rv_server_new (e, &config, &error);
  if (server == NULL)
    return rv_cli_error ("%s", error->message);

  Serve sv = { .loop = loop, .server = server };
  guint term_id = g_unix_signal_add (SIGTERM, on_signal, &sv);
  guint int_id = g_unix_signal_add (SIGINT, on_signal, &sv);
  /* stdout carries the address alone, for scripts that start the server on
   * --port 0; the rest goes to stderr with the access log */
  printf ("Listening on %s\n", rv_server_url (server));
  fflush (stdout);
  g_printerr ("reverie-cli serve: model %s on %s; base URL for clients: %s/v1%s\n",
              rv_engine_model_name (e), rv_engine_device_name (e), rv_server_url (server),
              api_key ? " (API key required)" : "");
  gboolean loopback = host == NULL || g_ascii_strcasecmp (host, "localhost") == 0 ||
                      g_str_has_prefix (host, "127.") || g_strcmp0 (host, "::1") == 0;
  if (policy != NULL)
    g_printerr ("reverie-cli serve: content policy %s: %u phrases in %u categories\n", policy_path,
                rv_content_policy_n_phrases (policy), rv_content_policy_n_categories (policy));
  if (!loopback && api_key == NULL)
    g_printerr ("reverie-cli serve: warning: listening beyond this machine without --api-key; "
                "anyone who can reach %s can use it.\n", host);
  g_main_loop_run (loop);
  g_source_remove (term_id);
  g_source_remove (int_id);
  return 0;
}

int
rv_cli_serve (int argc, char **argv)
{
  RvCliOptions o;
  rv_cli_options_init (&o);
  int status = serve (&o, argc, argv);
  rv_cli_options_clear (&o);
  return status;
}
