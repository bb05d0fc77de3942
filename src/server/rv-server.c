/* rv-server.c: the Images API server: the soup server and its routes, the
 * API key check, request body limits, OpenAI-style errors, the access log and
 * the server's lifetime. Jobs are queued and run by rv-server-queue.c. */
#include "config.h"

#include "rv-server-private.h"

#include <string.h>

#define MSG_STATE "rv-server-state"

/* ---- configuration ---- */

void
rv_server_config_init (RvServerConfig *c)
{
  memset (c, 0, sizeof *c);
  c->port = 8000;
  c->max_body = 16 * 1024 * 1024;
  c->max_image_side = 4096;
  c->max_size = 1024;
  c->queue_depth = 8;
  c->url_ttl = 3600;
  c->shutdown_grace = 30;
}

/* ---- responses ---- */

void
_rv_server_set_json (SoupServerMessage *msg, guint status, GBytes *json)
{
  gsize len = 0;
  const char *data = g_bytes_get_data (json, &len);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, data, len);
}

void
_rv_server_set_error (SoupServerMessage *msg, const RvApiError *e)
{
  g_autoptr (GBytes) json = rv_api_error_to_json (e);
  _rv_server_set_json (msg, e->status, json);
}

static void
fail (SoupServerMessage *msg, guint status, const char *code, const char *param,
      const char *message)
{
  g_autoptr (RvApiError) e = rv_api_error_new (status, code, param, "%s", message);
  _rv_server_set_error (msg, e);
}

MsgState *
_rv_server_msg_state (SoupServerMessage *msg)
{
  return g_object_get_data (G_OBJECT (msg), MSG_STATE);
}

/* ---- messages ---- */

static void
on_got_chunk (SoupServerMessage *msg, GBytes *chunk, gpointer data)
{
  MsgState *st = data;
  if (st->body == NULL)
    return;
  gsize len = g_bytes_get_size (chunk);
  if (st->body->len + len > st->server->config.max_body)
    {
      st->too_large = TRUE;
      g_clear_pointer (&st->body, g_byte_array_unref);
      return;
    }
  g_byte_array_append (st->body, g_bytes_get_data (chunk, NULL), len);
}

static void
on_msg_finished (SoupServerMessage *msg, gpointer data)
{
  MsgState *st = data;
  if (st->finished)
    return;
  st->finished = TRUE;
  if (st->job != NULL)
    _rv_server_job_abandon (st->job);
  st->server->open--;
  _rv_server_check_stopped (st->server);
}

static void
msg_state_free (gpointer data)
{
  MsgState *st = data;
  g_clear_pointer (&st->body, g_byte_array_unref);
  g_free (st->log_note);
  g_free (st);
}

static gboolean
key_matches (RvServer *s, const char *given)
{
  /* compare digests so that the time taken says nothing about the key,
   * not even its length */
  guint8 digest[32];
  gsize len = sizeof digest;
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, (const guchar *) given, strlen (given));
  g_checksum_get_digest (sum, digest, &len);
  guint8 diff = 0;
  for (guint i = 0; i < sizeof digest; i++)
    diff |= digest[i] ^ s->key_hash[i];
  return diff == 0;
}

static gboolean
authorized (RvServer *s, SoupServerMessage *msg)
{
  const char *auth = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                   "Authorization");
  if (auth == NULL || g_ascii_strncasecmp (auth, "Bearer ", 7) != 0)
    {
      fail (msg, 401, "missing_api_key", NULL,
            "You didn't provide an API key: send it as 'Authorization: Bearer KEY'.");
      return FALSE;
    }
  const char *key = auth + 7;
  while (*key == ' ')
    key++;
  if (!key_matches (s, key))
    {
      fail (msg, 401, "invalid_api_key", NULL, "Incorrect API key provided.");
      return FALSE;
    }
  return TRUE;
}

static void
too_large (RvServer *s, SoupServerMessage *msg)
{
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection",
                                "close");
  g_autoptr (RvApiError) e = rv_api_error_new (413, "request_too_large", NULL,
                                               "The request body is larger than this server's "
                                               "limit of %zu bytes.", s->config.max_body);
  _rv_server_set_error (msg, e);
}

/* Before the body is read: state, authentication, the body limit. */
static void
early_handler (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
               gpointer data)
{
  RvServer *s = data;
  MsgState *st = g_new0 (MsgState, 1);
  st->server = s;
  st->start = g_get_monotonic_time ();
  g_object_set_data_full (G_OBJECT (msg), MSG_STATE, st, msg_state_free);
  s->open++;
  g_signal_connect (msg, "finished", G_CALLBACK (on_msg_finished), st);
  g_signal_connect (msg, "disconnected", G_CALLBACK (on_msg_finished), st);
  /* asked now, while connected: libsoup keeps the answer for the access log */
  soup_server_message_get_remote_host (msg);

  SoupMessageHeaders *req_headers = soup_server_message_get_request_headers (msg);
  /* the body is collected below, up to the limit, instead of by libsoup */
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg), FALSE);
  if (s->stopping)
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "Connection", "close");
      fail (msg, 503, "shutting_down", NULL, "The server is shutting down.");
      return;
    }
  if (s->api_key != NULL && g_str_has_prefix (path, "/v1/") && !authorized (s, msg))
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "WWW-Authenticate", "Bearer");
      return;
    }
  goffset declared = soup_message_headers_get_encoding (req_headers) == SOUP_ENCODING_CONTENT_LENGTH
                   ? soup_message_headers_get_content_length (req_headers) : 0;
  if (declared > (goffset) s->config.max_body)
    {
      /* answered now, so that a client waiting for 100 Continue sends nothing */
      too_large (s, msg);
      return;
    }
  st->body = g_byte_array_sized_new ((guint) declared);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (on_got_chunk), st);
}

static GBytes *
take_body (MsgState *st)
{
  if (st->body == NULL)
    return g_bytes_new (NULL, 0);
  return g_byte_array_free_to_bytes (g_steal_pointer (&st->body));
}

/* The content policy, before any work: a prompt or negative prompt that
 * matches is answered 400 content_policy_violation naming the category only
 * (never the phrase, nor the list), and the access log line says so without
 * the prompt. */
static gboolean
refused_by_policy (RvServer *s, SoupServerMessage *msg, const RvApiRequest *req)
{
  if (s->config.content_policy == NULL)
    return FALSE;
  const char *param = "prompt";
  const char *category = req->prompt ? rv_content_policy_check (s->config.content_policy, req->prompt)
                                     : NULL;
  if (category == NULL && req->negative_prompt != NULL)
    {
      param = "negative_prompt";
      category = rv_content_policy_check (s->config.content_policy, req->negative_prompt);
    }
  if (category == NULL)
    return FALSE;
  s->refused++;
  MsgState *st = _rv_server_msg_state (msg);
  g_autofree char *quoted = g_strescape (category, NULL);
  g_free (st->log_note);
  st->log_note = g_strdup_printf ("content_policy_violation category=\"%s\" param=%s", quoted, param);
  g_autoptr (RvApiError) e =
    rv_api_error_new (400, "content_policy_violation", param,
                      "Your request was rejected by this server's content policy: the %s falls "
                      "under the category \"%s\". Rephrase it and try again.",
                      g_str_equal (param, "prompt") ? "prompt" : "negative prompt", category);
  _rv_server_set_error (msg, e);
  return TRUE;
}

/* The request's `model`, before any work: an id no set has is answered 404
 * model_not_found (and the access log line names it). */
static gboolean
find_model (RvServer *s, SoupServerMessage *msg, const RvApiRequest *req, RvServerModel *model)
{
  if (_rv_server_model_find (s, req->model, model))
    return TRUE;
  MsgState *st = _rv_server_msg_state (msg);
  g_autofree char *shown = g_utf8_substring (req->model, 0, MIN (g_utf8_strlen (req->model, -1), 100));
  g_autofree char *quoted = g_strescape (shown, NULL);
  g_free (st->log_note);
  st->log_note = g_strdup_printf ("model_not_found model=\"%s\"", quoted);
  g_autoptr (RvApiError) e = rv_api_error_new (404, "model_not_found", NULL,
                                               "The model '%s' does not exist", req->model);
  _rv_server_set_error (msg, e);
  return FALSE;
}

static void
handle_images (RvServer *s, SoupServerMessage *msg, RvApiKind kind)
{
  MsgState *st = _rv_server_msg_state (msg);
  if (_rv_server_queue_full (s, msg))
    return;
  g_autoptr (GBytes) body = take_body (st);
  g_autoptr (RvApiError) error = NULL;
  RvApiRequest *req = kind == RV_API_GENERATE
    ? rv_api_request_parse_json (body, &s->limits, &error)
    : rv_api_request_parse_multipart (kind, soup_server_message_get_request_headers (msg), body,
                                      &s->limits, &error);
  if (req == NULL)
    {
      _rv_server_set_error (msg, error);
      return;
    }
  RvServerModel model;
  if (!find_model (s, msg, req, &model) || refused_by_policy (s, msg, req))
    {
      _rv_server_model_clear (&model);
      rv_api_request_free (req);
      return;
    }
  /* another set's engine is opened by the worker, which checks this then */
  if (kind == RV_API_EDIT && !req->mask_everything && model.is_default &&
      !rv_engine_can_inpaint (s->engine))
    {
      _rv_server_model_clear (&model);
      rv_api_request_free (req);
      fail (msg, 400, "unsupported", NULL,
            "This server's model set has no inpainting decoder, so it cannot make edits.");
      return;
    }

  _rv_server_queue_add (s, msg, req, &model);
}

static void
handle_health (RvServer *s, SoupServerMessage *msg)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "status");
  json_builder_add_string_value (b, "ok");
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, PACKAGE_VERSION);
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, rv_engine_model_name (s->engine));
  json_builder_set_member_name (b, "device");
  json_builder_add_string_value (b, rv_engine_device_name (s->engine));
  json_builder_set_member_name (b, "queue");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "running");
  json_builder_add_int_value (b, s->running != NULL);
  json_builder_set_member_name (b, "waiting");
  json_builder_add_int_value (b, g_queue_get_length (&s->waiting));
  json_builder_set_member_name (b, "depth");
  json_builder_add_int_value (b, s->config.queue_depth);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "jobs");
  json_builder_begin_object (b);
  const struct { const char *name; guint64 v; } counts[] = {
    { "completed", s->completed }, { "failed", s->failed },
    { "cancelled", s->cancelled }, { "rejected", s->rejected }, { "refused", s->refused },
  };
  for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
    {
      json_builder_set_member_name (b, counts[i].name);
      json_builder_add_int_value (b, (gint64) counts[i].v);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (GBytes) json = rv_api_json_bytes (b);
  _rv_server_set_json (msg, SOUP_STATUS_OK, json);
}

static void
add_model (JsonBuilder *b, const RvServerModel *m)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, m->id);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, "model");
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, m->created);
  json_builder_set_member_name (b, "owned_by");
  json_builder_add_string_value (b, "reverie");
  json_builder_end_object (b);
}

/* GET /v1/models and /v1/models/{id}: the sets a request's `model` may name,
 * read from the models folder each time (a set pulled while the server runs
 * is there at once). */
static void
handle_models (RvServer *s, SoupServerMessage *msg, const char *id)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  if (id == NULL)
    {
      g_autoptr (GPtrArray) models = _rv_server_model_list (s);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "object");
      json_builder_add_string_value (b, "list");
      json_builder_set_member_name (b, "data");
      json_builder_begin_array (b);
      for (guint i = 0; i < models->len; i++)
        add_model (b, g_ptr_array_index (models, i));
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  else
    {
      RvServerModel m;
      if (!_rv_server_model_find (s, id, &m))
        {
          g_autoptr (RvApiError) e = rv_api_error_new (404, "model_not_found", NULL,
                                                       "The model '%s' does not exist", id);
          _rv_server_set_error (msg, e);
          return;
        }
      add_model (b, &m);
      _rv_server_model_clear (&m);
    }
  g_autoptr (GBytes) json = rv_api_json_bytes (b);
  _rv_server_set_json (msg, SOUP_STATUS_OK, json);
}

static void
handle_file (RvServer *s, SoupServerMessage *msg, const char *name)
{
  gint64 left = 0;
  g_autoptr (GBytes) png = rv_store_get (s->store, name, &left);
  if (png == NULL)
    {
      fail (msg, 404, "not_found", NULL, "No such image: it may have expired.");
      return;
    }
  g_autofree char *cache = g_strdup_printf ("private, max-age=%" G_GINT64_FORMAT, left);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Cache-Control", cache);
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  gsize len = 0;
  const void *data = g_bytes_get_data (png, &len);
  soup_server_message_set_response (msg, "image/png", SOUP_MEMORY_COPY, data, len);
}

static void
wrong_method (SoupServerMessage *msg, const char *allow)
{
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow", allow);
  g_autoptr (RvApiError) e = rv_api_error_new (405, "method_not_allowed", NULL,
                                               "%s is not allowed here; use %s.",
                                               soup_server_message_get_method (msg), allow);
  _rv_server_set_error (msg, e);
}

/* After the body is read: routes. */
static void
handler (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer data)
{
  RvServer *s = data;
  MsgState *st = _rv_server_msg_state (msg);
  const char *method = soup_server_message_get_method (msg);
  gboolean get = method == SOUP_METHOD_GET || method == SOUP_METHOD_HEAD;
  gboolean post = method == SOUP_METHOD_POST;
  if (st == NULL)
    {
      fail (msg, 500, "internal_error", NULL, "The request was not set up.");
      return;
    }
  if (st->too_large)
    {
      too_large (s, msg);
      return;
    }

  static const struct { const char *path; RvApiKind kind; } images[] = {
    { "/v1/images/generations", RV_API_GENERATE },
    { "/v1/images/edits", RV_API_EDIT },
    { "/v1/images/variations", RV_API_VARIATION },
  };
  for (guint i = 0; i < G_N_ELEMENTS (images); i++)
    if (strcmp (path, images[i].path) == 0)
      {
        if (post)
          handle_images (s, msg, images[i].kind);
        else
          wrong_method (msg, "POST");
        return;
      }
  if (strcmp (path, "/health") == 0 || strcmp (path, "/v1/models") == 0 ||
      g_str_has_prefix (path, "/v1/models/") || g_str_has_prefix (path, "/files/"))
    {
      if (!get)
        wrong_method (msg, "GET");
      else if (path[1] == 'h')
        handle_health (s, msg);
      else if (path[1] == 'f')
        handle_file (s, msg, path + strlen ("/files/"));
      else
        handle_models (s, msg, path[strlen ("/v1/models")] ? path + strlen ("/v1/models/") : NULL);
      return;
    }
  g_autoptr (RvApiError) e = rv_api_error_new (404, "unknown_url", NULL,
                                               "Unknown request URL: %s %s.", method, path);
  _rv_server_set_error (msg, e);
}

/* ---- the access log ---- */

static void
log_request (SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
  MsgState *st = _rv_server_msg_state (msg);
  double took = st ? (g_get_monotonic_time () - st->start) / 1e6 : 0;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *when = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  GUri *uri = soup_server_message_get_uri (msg);
  SoupHTTPVersion v = soup_server_message_get_http_version (msg);
  const char *remote = st ? soup_server_message_get_remote_host (msg) : NULL;
  SoupMessageBody *body = soup_server_message_get_response_body (msg);
  const char *note = st ? st->log_note : NULL;
  g_printerr ("%s %s \"%s %s HTTP/%s\" %u %" G_GINT64_FORMAT " %.3fs%s%s\n", when,
              remote ? remote : "-", soup_server_message_get_method (msg),
              uri ? g_uri_get_path (uri) : "-",
              v == SOUP_HTTP_1_0 ? "1.0" : v == SOUP_HTTP_2_0 ? "2" : "1.1",
              soup_server_message_get_status (msg), (gint64) (body ? body->length : 0), took,
              note ? " " : "", note ? note : "");
}

/* ---- lifetime ---- */

static gboolean
sweep (gpointer data)
{
  RvServer *s = data;
  rv_store_sweep (s->store);
  return G_SOURCE_CONTINUE;
}

static gboolean
listen_on (RvServer *s, GError **error)
{
  const char *host = s->host ? s->host : "127.0.0.1";
  g_autoptr (GError) local = NULL;
  gboolean ok;
  if (g_ascii_strcasecmp (host, "localhost") == 0)
    ok = soup_server_listen_local (s->soup, s->config.port, 0, &local);
  else
    {
      g_autoptr (GInetAddress) addr = g_inet_address_new_from_string (host);
      if (addr == NULL)
        {
          g_autoptr (GResolver) resolver = g_resolver_get_default ();
          g_autolist (GInetAddress) found = g_resolver_lookup_by_name (resolver, host, NULL, NULL);
          if (found == NULL)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "Cannot listen on “%s”: it is neither an IP address nor a host name "
                           "that resolves.", host);
              return FALSE;
            }
          addr = g_object_ref (found->data);
        }
      g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (addr, (guint16) s->config.port);
      ok = soup_server_listen (s->soup, sa, 0, &local);
    }
  if (!ok)
    {
      if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE))
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                     "Port %d on %s is already in use: stop what uses it, or pick another "
                     "port with --port (--port 0 takes any free one).", s->config.port, host);
      else
        g_set_error (error, local->domain, local->code, "Cannot listen on %s port %d: %s", host,
                     s->config.port, local->message);
      return FALSE;
    }
  GSList *uris = soup_server_get_uris (s->soup);
  if (uris != NULL)
    {
      GUri *u = uris->data;
      s->url = g_strdup_printf ("http://%s:%d", g_uri_get_host (u), g_uri_get_port (u));
      if (strchr (g_uri_get_host (u), ':') != NULL)
        {
          g_free (s->url);
          s->url = g_strdup_printf ("http://[%s]:%d", g_uri_get_host (u), g_uri_get_port (u));
        }
    }
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  return s->url != NULL;
}

static int
round64 (int v)
{
  return MAX (64, (v + 63) / 64 * 64);
}

RvServer *
rv_server_new (RvEngine *engine, const RvServerConfig *config, GError **error)
{
  g_autoptr (RvServer) s = g_new0 (RvServer, 1);
  s->config = *config;
  s->host = g_strdup (config->host);
  s->api_key = config->api_key && config->api_key[0] ? g_strdup (config->api_key) : NULL;
  s->public_url = config->public_url ? g_strdup (config->public_url) : NULL;
  if (s->public_url != NULL && g_str_has_suffix (s->public_url, "/"))
    s->public_url[strlen (s->public_url) - 1] = '\0';
  s->store_dir = g_strdup (config->store_dir);
  s->engine = rv_engine_ref (engine);
  s->context = g_main_context_ref_thread_default ();
  _rv_server_models_init (s, config);
  g_queue_init (&s->waiting);
  if (s->api_key != NULL)
    {
      gsize len = sizeof s->key_hash;
      g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
      g_checksum_update (sum, (const guchar *) s->api_key, strlen (s->api_key));
      g_checksum_get_digest (sum, s->key_hash, &len);
    }

  const RvDefaults *d = rv_engine_defaults (engine);
  s->limits.model_name = s->model_id;
  s->limits.max_size = MAX (config->max_size, 64);
  s->limits.max_image_side = config->max_image_side;
  /* the model's own size by default, as an API size: a multiple of 64 */
  int largest = s->limits.max_size / 64 * 64;
  s->limits.default_width = config->default_width > 0 ? config->default_width
                                                      : MIN (round64 (d->width), largest);
  s->limits.default_height = config->default_height > 0 ? config->default_height
                                                        : MIN (round64 (d->height), largest);
  if (config->queue_depth < 0 || config->max_body < 1024 || config->max_image_side < 64)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "The queue depth must be ≥ 0, the body limit ≥ 1 KiB and the image limit "
                   "≥ 64 pixels.");
      return NULL;
    }

  s->store = rv_store_new (s->store_dir, config->url_ttl, error);
  if (s->store == NULL)
    return NULL;
  rv_store_sweep (s->store);
  s->sweep_id = g_timeout_add_seconds (CLAMP (config->url_ttl / 10, 1, 60), sweep, s);

  g_autofree char *header = g_strdup_printf ("reverie/%s", PACKAGE_VERSION);
  s->soup = soup_server_new ("server-header", header, NULL);
  soup_server_add_early_handler (s->soup, NULL, early_handler, s, NULL);
  soup_server_add_handler (s->soup, NULL, handler, s, NULL);
  g_signal_connect (s->soup, "request-finished", G_CALLBACK (log_request), s);
  g_signal_connect (s->soup, "request-aborted", G_CALLBACK (log_request), s);
  if (!listen_on (s, error))
    return NULL;
  return g_steal_pointer (&s);
}

const char *
rv_server_url (RvServer *s)
{
  return s->url;
}

static gboolean
call_done (gpointer data)
{
  RvServer *s = data;
  RvServerDone done = g_steal_pointer (&s->done);
  s->done_id = 0;
  g_clear_handle_id (&s->force_id, g_source_remove);
  if (done != NULL)
    done (s->done_data);
  return G_SOURCE_REMOVE;
}

void
_rv_server_check_stopped (RvServer *s)
{
  if (s->stopping && s->done != NULL && s->running == NULL && s->open <= 0 && s->done_id == 0)
    s->done_id = g_idle_add (call_done, s);
}

/* Responses that are still being written after the jobs have ended get a few
 * more seconds, then shutdown goes on without them. */
static gboolean
force_done (gpointer data)
{
  RvServer *s = data;
  s->force_id = 0;
  s->open = 0;   /* done follows now, or when the cancelled job ends */
  _rv_server_check_stopped (s);
  return G_SOURCE_REMOVE;
}

static gboolean
grace_over (gpointer data)
{
  RvServer *s = data;
  s->grace_id = 0;
  if (s->running != NULL)
    {
      g_printerr ("reverie-cli serve: the running job did not finish within %d s; cancelling it.\n",
                  s->config.shutdown_grace);
      g_cancellable_cancel (s->running->cancellable);
    }
  return G_SOURCE_REMOVE;
}

void
rv_server_shutdown (RvServer *s, RvServerDone done, gpointer user_data)
{
  if (s->stopping)
    {
      grace_over (s);
      return;
    }
  s->stopping = TRUE;
  s->done = done;
  s->done_data = user_data;
  Job *job;
  while ((job = g_queue_pop_head (&s->waiting)) != NULL)
    {
      g_autoptr (RvApiError) e = rv_api_error_new (503, "shutting_down", NULL,
                                                   "The server is shutting down; the request "
                                                   "was not started. Try again later.");
      s->cancelled++;
      _rv_server_job_answer (job, e);
      _rv_server_job_unref (job);
    }
  if (s->running != NULL)
    s->grace_id = g_timeout_add_seconds (MAX (s->config.shutdown_grace, 0), grace_over, s);
  s->force_id = g_timeout_add_seconds (MAX (s->config.shutdown_grace, 0) + 5, force_done, s);
  _rv_server_check_stopped (s);
}

void
rv_server_free (RvServer *s)
{
  if (s == NULL)
    return;
  g_clear_handle_id (&s->sweep_id, g_source_remove);
  g_clear_handle_id (&s->grace_id, g_source_remove);
  g_clear_handle_id (&s->force_id, g_source_remove);
  g_clear_handle_id (&s->done_id, g_source_remove);
  if (s->soup != NULL)
    {
      soup_server_disconnect (s->soup);
      g_clear_object (&s->soup);
    }
  Job *job;
  while ((job = g_queue_pop_head (&s->waiting)) != NULL)
    {
      g_autoptr (SoupServerMessage) msg = _rv_server_job_take_msg (job);
      _rv_server_job_unref (job);
    }
  rv_store_free (s->store);
  _rv_server_models_free (s);
  rv_engine_unref (s->engine);
  g_main_context_unref (s->context);
  g_free (s->host);
  g_free (s->api_key);
  g_free (s->public_url);
  g_free (s->store_dir);
  g_free (s->url);
  g_free (s);
}
