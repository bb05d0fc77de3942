/* rv-server.c: the Images API server. Requests are parsed on the main loop,
 * jobs run one at a time in a worker thread from a bounded queue, and paused
 * messages are answered when their job ends (or streamed as server-sent
 * events while it runs). */
#include "config.h"

#include "rv-server.h"
#include "rv-server-request.h"
#include "rv-server-store.h"
#include "rv-image-io.h"

#include <errno.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <libsoup/soup.h>
#include <math.h>
#include <string.h>
#include <sys/socket.h>

typedef struct _Job Job;

struct _RvServer {
  RvServerConfig config;         /* strings below are owned copies */
  char          *host, *api_key, *public_url, *store_dir;
  guint8         key_hash[32];
  RvEngine      *engine;
  SoupServer    *soup;
  RvStore       *store;
  RvApiLimits    limits;
  char          *url;
  GMainContext  *context;
  gint64         started;        /* unix time, for /v1/models */
  guint          sweep_id;

  GQueue         waiting;        /* Job*, oldest first */
  Job           *running;
  double         job_seconds;    /* running mean, for Retry-After */

  gboolean       stopping;
  guint          grace_id, force_id, done_id;
  RvServerDone   done;
  gpointer       done_data;
  int            open;           /* messages not yet finished */

  guint64        completed, failed, cancelled, rejected;
};

/* Per-message state, attached to the SoupServerMessage. */
typedef struct {
  RvServer   *server;
  gint64      start;             /* monotonic µs */
  GByteArray *body;              /* collected by got-chunk, NULL once over the limit */
  gboolean    too_large;
  gboolean    finished;          /* finished or disconnected: no more I/O on it */
  Job        *job;               /* the job it waits for (borrowed) */
} MsgState;

struct _Job {
  gint               ref;
  RvServer          *server;
  SoupServerMessage *msg;        /* NULL once answered or gone; main thread only */
  RvApiRequest      *req;
  GCancellable      *cancellable;
  char              *base_url;
  GSource           *watch;      /* notices a client that hangs up while paused */
  gint64             started;
  /* written by the worker, read after it ends */
  GBytes            *response;   /* JSON, or the closing events when streaming */
  RvApiError        *error;
  gboolean           cancelled;
  int                partial;    /* previews streamed */
};

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

static void
set_json (SoupServerMessage *msg, guint status, GBytes *json)
{
  gsize len = 0;
  const char *data = g_bytes_get_data (json, &len);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, data, len);
}

static void
set_error (SoupServerMessage *msg, const RvApiError *e)
{
  g_autoptr (GBytes) json = rv_api_error_to_json (e);
  set_json (msg, e->status, json);
}

static void
fail (SoupServerMessage *msg, guint status, const char *code, const char *param,
      const char *message)
{
  g_autoptr (RvApiError) e = rv_api_error_new (status, code, param, "%s", message);
  set_error (msg, e);
}

/* ---- jobs ---- */

static Job *
job_ref (Job *job)
{
  g_atomic_int_inc (&job->ref);
  return job;
}

static void
job_unref (Job *job)
{
  if (!g_atomic_int_dec_and_test (&job->ref))
    return;
  g_assert (job->msg == NULL && job->watch == NULL);
  rv_api_request_free (job->req);
  g_object_unref (job->cancellable);
  g_free (job->base_url);
  g_clear_pointer (&job->response, g_bytes_unref);
  rv_api_error_free (job->error);
  g_free (job);
}

static MsgState *
msg_state (SoupServerMessage *msg)
{
  return g_object_get_data (G_OBJECT (msg), MSG_STATE);
}

/* Lets the job's message go: answered, or its client is gone. */
static SoupServerMessage *
job_take_msg (Job *job)
{
  if (job->watch != NULL)
    {
      g_source_destroy (job->watch);
      g_clear_pointer (&job->watch, g_source_unref);
    }
  SoupServerMessage *msg = g_steal_pointer (&job->msg);
  if (msg != NULL)
    msg_state (msg)->job = NULL;
  return msg;
}

/* Sends what the message holds now; nothing if its connection is gone. */
static void
resume (SoupServerMessage *msg)
{
  MsgState *st = msg_state (msg);
  if (!st->finished)
    soup_server_message_unpause (msg);
}

static void start_next (RvServer *s);
static void check_stopped (RvServer *s);

/* Answers a job's message (if still there) and drops it. */
static void
job_answer (Job *job, const RvApiError *e)
{
  g_autoptr (SoupServerMessage) msg = job_take_msg (job);
  if (msg == NULL)
    return;
  if (job->req->stream)
    {
      /* the 200 and the event stream have started: the error is an event */
      g_autoptr (GBytes) json = rv_api_error_to_json (e);
      g_autofree char *event = g_strdup_printf ("event: error\ndata: %.*s\n\n",
                                                (int) g_bytes_get_size (json),
                                                (const char *) g_bytes_get_data (json, NULL));
      SoupMessageBody *body = soup_server_message_get_response_body (msg);
      soup_message_body_append (body, SOUP_MEMORY_COPY, event, strlen (event));
      soup_message_body_complete (body);
    }
  else
    set_error (msg, e);
  resume (msg);
}

/* ---- the worker ---- */

/* The engine rounds sizes up to what the model produces (a multiple of its
 * latent grid); the API promises the requested size, so images that come out
 * larger are scaled to it. Inpainting also composites at the source image's
 * size, which may differ from the requested one. */
static RvImage *
fit_size (RvImage *img, int width, int height)
{
  if (img->width == width && img->height == height)
    return img;
  g_autoptr (GBytes) pixels = g_bytes_new_static (img->pixels,
                                                  (gsize) img->width * img->height * img->channels);
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new_from_bytes (pixels, GDK_COLORSPACE_RGB,
                                                        img->channels == 4, 8, img->width,
                                                        img->height, img->width * img->channels);
  g_autoptr (GdkPixbuf) scaled = gdk_pixbuf_scale_simple (pb, width, height, GDK_INTERP_HYPER);
  RvImage *out = rv_image_new (width, height, img->channels);
  const guint8 *src = gdk_pixbuf_read_pixels (scaled);
  int stride = gdk_pixbuf_get_rowstride (scaled);
  for (int y = 0; y < height; y++)
    memcpy (out->pixels + (gsize) y * width * img->channels, src + (gsize) y * stride,
            (gsize) width * img->channels);
  rv_image_free (img);
  return out;
}

/* The recipe stored in each result's PNG text chunks. */
static RvRecipe *
job_recipe (Job *job, const RvRequest *rr, guint64 seed)
{
  RvEngine *e = job->server->engine;
  const RvApiRequest *a = job->req;
  RvRecipe *r = rv_recipe_for_request (e, rr, seed, a->width, a->height);
  r->source_sha256 = g_strdup (a->image_sha256);
  r->mask_sha256 = g_strdup (a->mask_sha256);
  if (rr->kind == RV_JOB_INPAINT)
    r->mask_mode = g_strdup ("alpha");
  return r;
}

static const char *
event_prefix (const Job *job)
{
  switch (job->req->kind)
    {
    case RV_API_EDIT: return "image_edit";
    case RV_API_VARIATION: return "image_variation";
    default: return "image_generation";
    }
}

/* "event: NAME\ndata: JSON\n\n" */
static void
append_event (GString *out, const char *name, JsonBuilder *b)
{
  g_autoptr (GBytes) json = rv_api_json_bytes (b);
  g_string_append_printf (out, "event: %s\ndata: ", name);
  g_string_append_len (out, g_bytes_get_data (json, NULL), g_bytes_get_size (json));
  g_string_append (out, "\n\n");
}

static void
begin_event (JsonBuilder *b, const char *type, const Job *job)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, type);
  json_builder_set_member_name (b, "created_at");
  json_builder_add_int_value (b, g_get_real_time () / G_USEC_PER_SEC);
  json_builder_set_member_name (b, "size");
  g_autofree char *size = g_strdup_printf ("%dx%d", job->req->width, job->req->height);
  json_builder_add_string_value (b, size);
  json_builder_set_member_name (b, "output_format");
  json_builder_add_string_value (b, "png");
}

static gboolean deliver_event (gpointer data);

typedef struct {
  Job    *job;
  GBytes *bytes;
} Event;

static void
event_free (gpointer data)
{
  Event *ev = data;
  job_unref (ev->job);
  g_bytes_unref (ev->bytes);
  g_free (ev);
}

static void
post_event (Job *job, GString *text)
{
  Event *ev = g_new0 (Event, 1);
  ev->job = job_ref (job);
  ev->bytes = g_string_free_to_bytes (text);
  g_main_context_invoke_full (job->server->context, G_PRIORITY_DEFAULT, deliver_event, ev,
                              event_free);
}

static const char *
stage_name (RvStage s)
{
  switch (s)
    {
    case RV_STAGE_LOAD: return "load";
    case RV_STAGE_ENCODE: return "encode";
    case RV_STAGE_PRIOR: return "prior";
    case RV_STAGE_DECODER: return "decoder";
    default: return "decode";
    }
}

/* Worker thread: progress of a streamed job as events. */
static void
on_progress (const RvProgress *p, gpointer data)
{
  Job *job = data;
  GString *out = g_string_new (NULL);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "progress");
  json_builder_set_member_name (b, "stage");
  json_builder_add_string_value (b, stage_name (p->stage));
  json_builder_set_member_name (b, "image_index");
  json_builder_add_int_value (b, p->image);
  json_builder_set_member_name (b, "step");
  json_builder_add_int_value (b, p->step);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, p->steps);
  json_builder_set_member_name (b, "fraction");
  json_builder_add_double_value (b, p->fraction);
  json_builder_set_member_name (b, "eta");
  json_builder_add_double_value (b, p->eta);
  json_builder_end_object (b);
  append_event (out, "progress", b);

  if (p->preview != NULL)
    {
      g_autoptr (RvImage) img = fit_size (rv_image_copy (p->preview), job->req->width,
                                          job->req->height);
      g_autoptr (GBytes) png = rv_image_encode_png (img, NULL, NULL);
      if (png != NULL)
        {
          g_autofree char *name = g_strconcat (event_prefix (job), ".partial_image", NULL);
          g_autofree char *b64 = g_base64_encode (g_bytes_get_data (png, NULL), g_bytes_get_size (png));
          g_autoptr (JsonBuilder) pb = json_builder_new ();
          begin_event (pb, name, job);
          json_builder_set_member_name (pb, "b64_json");
          json_builder_add_string_value (pb, b64);
          json_builder_set_member_name (pb, "partial_image_index");
          json_builder_add_int_value (pb, job->partial++);
          json_builder_set_member_name (pb, "image_index");
          json_builder_add_int_value (pb, p->image);
          json_builder_end_object (pb);
          append_event (out, name, pb);
        }
    }
  post_event (job, out);
}

/* One result as {"url"|"b64_json": …, "seed": …}, members of the open object. */
static gboolean
add_result (Job *job, JsonBuilder *b, GBytes *png, guint64 seed, GError **error)
{
  if (job->req->format == RV_API_B64_JSON)
    {
      g_autofree char *b64 = g_base64_encode (g_bytes_get_data (png, NULL), g_bytes_get_size (png));
      json_builder_set_member_name (b, "b64_json");
      json_builder_add_string_value (b, b64);
    }
  else
    {
      g_autofree char *name = rv_store_put (job->server->store, png, error);
      if (name == NULL)
        return FALSE;
      g_autofree char *url = g_strdup_printf ("%s/files/%s", job->base_url, name);
      json_builder_set_member_name (b, "url");
      json_builder_add_string_value (b, url);
    }
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, (gint64) seed);
  return TRUE;
}

static RvApiError *
engine_error (const GError *error)
{
  if (error->domain == RV_ERROR && (error->code == RV_ERROR_INVALID || error->code == RV_ERROR_IMAGE))
    return rv_api_error_new (400, "invalid_request", NULL, "%s", error->message);
  /* the engine stays usable after these: the next request may succeed */
  if (g_error_matches (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY))
    return rv_api_error_new (507, "out_of_memory", NULL, "The image could not be made: %s",
                             error->message);
  if (g_error_matches (error, RV_ERROR, RV_ERROR_DEVICE_LOST))
    return rv_api_error_new (503, "device_lost", NULL, "The image could not be made: %s",
                             error->message);
  if (g_error_matches (error, RV_ERROR, RV_ERROR_MODEL))
    return rv_api_error_new (500, "model_error", NULL, "The image could not be made: %s",
                             error->message);
  return rv_api_error_new (500, "engine_error", NULL, "The image could not be made: %s",
                           error->message);
}

static void
job_thread (GTask *task, gpointer source, gpointer data, GCancellable *unused)
{
  Job *job = data;
  RvServer *s = job->server;
  const RvApiRequest *a = job->req;
  RvJobKind kind = a->kind == RV_API_VARIATION ? RV_JOB_VARIATION
                 : a->kind == RV_API_EDIT && !a->mask_everything ? RV_JOB_INPAINT
                 : RV_JOB_GENERATE;   /* an edit of every pixel is a generation */
  RvRequest rr;
  rv_request_init (&rr, kind);
  rr.prompt = a->prompt;
  rr.negative_prompt = a->negative_prompt;
  rr.width = a->width;
  rr.height = a->height;
  rr.n = a->n;
  rr.seed = a->seed_given ? a->seed : rv_random_seed ();
  rr.decoder_steps = a->steps ? a->steps : s->config.steps;
  rr.prior_steps = a->prior_steps ? a->prior_steps : s->config.prior_steps;
  rr.decoder_guidance = (float) a->guidance;
  rr.prior_guidance = (float) a->prior_guidance;
  rr.scheduler = a->scheduler;
  rr.previews = a->stream;
  if (kind != RV_JOB_GENERATE)
    rr.image = a->image;
  if (kind == RV_JOB_INPAINT)
    {
      rr.mask = a->mask;
      rr.mask_mode = RV_MASK_ALPHA;
    }

  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) results = rv_engine_run (s->engine, &rr, a->stream ? on_progress : NULL,
                                                 job, job->cancellable, &error);
  if (results == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
          g_error_matches (error, RV_ERROR, RV_ERROR_CANCELLED))
        job->cancelled = TRUE;
      else
        job->error = engine_error (error);
      return;
    }

  gint64 created = g_get_real_time () / G_USEC_PER_SEC;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, created);
  json_builder_set_member_name (b, "data");
  json_builder_begin_array (b);
  GString *events = a->stream ? g_string_new (NULL) : NULL;
  for (guint i = 0; i < results->len; i++)
    {
      RvResult *res = g_ptr_array_index (results, i);
      res->image = fit_size (res->image, a->width, a->height);
      g_autoptr (RvRecipe) recipe = job_recipe (job, &rr, res->seed);
      g_autoptr (GHashTable) text = rv_recipe_to_text (recipe);
      g_autoptr (GBytes) png = rv_image_encode_png (res->image, text, &error);
      if (png == NULL)
        break;
      if (events != NULL)
        {
          g_autofree char *name = g_strconcat (event_prefix (job), ".completed", NULL);
          g_autoptr (JsonBuilder) eb = json_builder_new ();
          begin_event (eb, name, job);
          json_builder_set_member_name (eb, "image_index");
          json_builder_add_int_value (eb, i);
          if (!add_result (job, eb, png, res->seed, &error))
            break;
          json_builder_end_object (eb);
          append_event (events, name, eb);
          continue;
        }
      json_builder_begin_object (b);
      if (!add_result (job, b, png, res->seed, &error))
        break;
      json_builder_end_object (b);
    }
  if (error != NULL)
    {
      job->error = rv_api_error_new (500, "storage_error", NULL, "The result could not be "
                                     "stored: %s", error->message);
      if (events != NULL)
        g_string_free (events, TRUE);
      return;
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  job->response = events ? g_string_free_to_bytes (events) : rv_api_json_bytes (b);
}

/* Main thread: a job's worker has ended. */
static void
job_finished (GObject *source, GAsyncResult *result, gpointer data)
{
  Job *job = data;
  RvServer *s = job->server;
  double took = (g_get_monotonic_time () - job->started) / 1e6;
  s->job_seconds = s->job_seconds > 0 ? 0.7 * s->job_seconds + 0.3 * took : took;
  s->running = NULL;
  g_clear_handle_id (&s->grace_id, g_source_remove);

  if (job->cancelled)
    {
      s->cancelled++;
      g_autoptr (RvApiError) e = rv_api_error_new (503, "shutting_down", NULL,
                                                   "The server is shutting down; the job was "
                                                   "cancelled. Try again later.");
      job_answer (job, e);
    }
  else if (job->error != NULL)
    {
      s->failed++;
      job_answer (job, job->error);
    }
  else
    {
      s->completed++;
      g_autoptr (SoupServerMessage) msg = job_take_msg (job);
      if (msg != NULL)
        {
          if (job->req->stream)
            {
              SoupMessageBody *body = soup_server_message_get_response_body (msg);
              soup_message_body_append_bytes (body, job->response);
              soup_message_body_complete (body);
            }
          else
            set_json (msg, SOUP_STATUS_OK, job->response);
          resume (msg);
        }
    }
  job_unref (job);
  start_next (s);
  check_stopped (s);
}

static void
start_next (RvServer *s)
{
  if (s->running != NULL || s->stopping)
    return;
  Job *job = g_queue_pop_head (&s->waiting);
  if (job == NULL)
    return;
  s->running = job;
  job->started = g_get_monotonic_time ();
  g_autoptr (GTask) task = g_task_new (NULL, NULL, job_finished, job);
  g_task_set_task_data (task, job, NULL);
  g_task_run_in_thread (task, job_thread);
}

/* Main thread: streamed progress reaches the client. */
static gboolean
deliver_event (gpointer data)
{
  Event *ev = data;
  Job *job = ev->job;
  if (job->msg != NULL && !msg_state (job->msg)->finished)
    {
      soup_message_body_append_bytes (soup_server_message_get_response_body (job->msg), ev->bytes);
      soup_server_message_unpause (job->msg);
    }
  return G_SOURCE_REMOVE;
}

/* ---- clients that go away ---- */

/* A job's client is gone: a waiting job is dropped, a running one cancelled
 * (the engine stops within a step). */
static void
job_abandon (Job *job)
{
  RvServer *s = job->server;
  g_autoptr (SoupServerMessage) msg = job_take_msg (job);
  if (msg != NULL && !msg_state (msg)->finished)
    {
      /* nobody reads this; it lets libsoup finish the message and close */
      if (job->req->stream)
        soup_message_body_complete (soup_server_message_get_response_body (msg));
      else
        soup_server_message_set_status (msg, 499, "Client Closed Request");
      soup_server_message_unpause (msg);
    }
  if (job == s->running)
    g_cancellable_cancel (job->cancellable);
  else if (g_queue_remove (&s->waiting, job))
    {
      s->cancelled++;
      job_unref (job);
    }
}

/* While a message is paused libsoup does not read its socket, so a client
 * that hangs up would go unnoticed until the answer is written: watch for the
 * end of the stream. */
static gboolean
on_socket_readable (GSocket *socket, GIOCondition cond, gpointer data)
{
  Job *job = data;
  char c;
  ssize_t n = recv (g_socket_get_fd (socket), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (n > 0)
    {
      /* a pipelined request: libsoup reads it after this answer */
      g_clear_pointer (&job->watch, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  job_ref (job);
  job_abandon (job);
  job_unref (job);
  return G_SOURCE_REMOVE;
}

static void
watch_client (Job *job)
{
  GSocket *socket = soup_server_message_get_socket (job->msg);
  if (socket == NULL)
    return;
  job->watch = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback (job->watch, (GSourceFunc) (GCallback) on_socket_readable, job, NULL);
  g_source_attach (job->watch, job->server->context);
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
    job_abandon (st->job);
  st->server->open--;
  check_stopped (st->server);
}

static void
msg_state_free (gpointer data)
{
  MsgState *st = data;
  g_clear_pointer (&st->body, g_byte_array_unref);
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
  set_error (msg, e);
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

/* The base of `url` results: --public-url, else the address the client used. */
static char *
base_url (RvServer *s, SoupServerMessage *msg)
{
  if (s->public_url != NULL)
    return g_strdup (s->public_url);
  const char *host = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                   "Host");
  gboolean ok = host != NULL && host[0] != '\0' && strlen (host) <= 255;
  for (const char *c = host; ok && *c; c++)
    ok = g_ascii_isalnum (*c) || strchr (".-:[]", *c) != NULL;
  return ok ? g_strdup_printf ("http://%s", host) : g_strdup (s->url);
}

static void
handle_images (RvServer *s, SoupServerMessage *msg, RvApiKind kind)
{
  MsgState *st = msg_state (msg);
  if (s->running != NULL && g_queue_get_length (&s->waiting) >= (guint) s->config.queue_depth)
    {
      s->rejected++;
      double wait = (s->job_seconds > 0 ? s->job_seconds : 10) * (g_queue_get_length (&s->waiting) + 1);
      g_autofree char *after = g_strdup_printf ("%d", (int) CLAMP (ceil (wait), 1, 3600));
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Retry-After", after);
      g_autoptr (RvApiError) e = rv_api_error_new (429, "queue_full", NULL,
                                                   "The server is busy: %u requests are waiting "
                                                   "for the one running. Try again in about %s s.",
                                                   g_queue_get_length (&s->waiting), after);
      set_error (msg, e);
      return;
    }
  g_autoptr (GBytes) body = take_body (st);
  g_autoptr (RvApiError) error = NULL;
  RvApiRequest *req = kind == RV_API_GENERATE
    ? rv_api_request_parse_json (body, &s->limits, &error)
    : rv_api_request_parse_multipart (kind, soup_server_message_get_request_headers (msg), body,
                                      &s->limits, &error);
  if (req == NULL)
    {
      set_error (msg, error);
      return;
    }
  if (kind == RV_API_EDIT && !req->mask_everything && !rv_engine_can_inpaint (s->engine))
    {
      rv_api_request_free (req);
      fail (msg, 400, "unsupported", NULL,
            "This server's model set has no inpainting decoder, so it cannot make edits.");
      return;
    }

  Job *job = g_new0 (Job, 1);
  job->ref = 1;
  job->server = s;
  job->req = req;
  job->cancellable = g_cancellable_new ();
  job->base_url = base_url (s, msg);
  job->msg = g_object_ref (msg);
  st->job = job;
  if (req->stream)
    {
      soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
      SoupMessageHeaders *h = soup_server_message_get_response_headers (msg);
      soup_message_headers_set_content_type (h, "text/event-stream", NULL);
      soup_message_headers_replace (h, "Cache-Control", "no-cache");
      soup_message_headers_set_encoding (h, SOUP_ENCODING_CHUNKED);
      soup_message_body_append (soup_server_message_get_response_body (msg), SOUP_MEMORY_STATIC,
                                ": queued\n\n", 11);
    }
  else
    soup_server_message_pause (msg);
  watch_client (job);
  g_queue_push_tail (&s->waiting, job);
  start_next (s);
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
    { "cancelled", s->cancelled }, { "rejected", s->rejected },
  };
  for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
    {
      json_builder_set_member_name (b, counts[i].name);
      json_builder_add_int_value (b, (gint64) counts[i].v);
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  g_autoptr (GBytes) json = rv_api_json_bytes (b);
  set_json (msg, SOUP_STATUS_OK, json);
}

static void
add_model (RvServer *s, JsonBuilder *b, const char *id)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, id);
  json_builder_set_member_name (b, "object");
  json_builder_add_string_value (b, "model");
  json_builder_set_member_name (b, "created");
  json_builder_add_int_value (b, s->started);
  json_builder_set_member_name (b, "owned_by");
  json_builder_add_string_value (b, "reverie");
  json_builder_end_object (b);
}

static void
handle_models (RvServer *s, SoupServerMessage *msg, const char *id)
{
  const char *ids[] = { "dall-e-2", rv_engine_model_name (s->engine) };
  g_autoptr (JsonBuilder) b = json_builder_new ();
  if (id == NULL)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "object");
      json_builder_add_string_value (b, "list");
      json_builder_set_member_name (b, "data");
      json_builder_begin_array (b);
      for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
        add_model (s, b, ids[i]);
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  else if (g_strcmp0 (id, ids[0]) == 0 || g_strcmp0 (id, ids[1]) == 0)
    add_model (s, b, id);
  else
    {
      g_autoptr (RvApiError) e = rv_api_error_new (404, "model_not_found", "model",
                                                   "The model '%s' does not exist.", id);
      set_error (msg, e);
      return;
    }
  g_autoptr (GBytes) json = rv_api_json_bytes (b);
  set_json (msg, SOUP_STATUS_OK, json);
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
  set_error (msg, e);
}

/* After the body is read: routes. */
static void
handler (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer data)
{
  RvServer *s = data;
  MsgState *st = msg_state (msg);
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
  set_error (msg, e);
}

/* ---- the access log ---- */

static void
log_request (SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
  MsgState *st = msg_state (msg);
  double took = st ? (g_get_monotonic_time () - st->start) / 1e6 : 0;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *when = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  GUri *uri = soup_server_message_get_uri (msg);
  SoupHTTPVersion v = soup_server_message_get_http_version (msg);
  const char *remote = st ? soup_server_message_get_remote_host (msg) : NULL;
  SoupMessageBody *body = soup_server_message_get_response_body (msg);
  g_printerr ("%s %s \"%s %s HTTP/%s\" %u %" G_GINT64_FORMAT " %.3fs\n", when,
              remote ? remote : "-", soup_server_message_get_method (msg),
              uri ? g_uri_get_path (uri) : "-",
              v == SOUP_HTTP_1_0 ? "1.0" : v == SOUP_HTTP_2_0 ? "2" : "1.1",
              soup_server_message_get_status (msg), (gint64) (body ? body->length : 0), took);
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
  s->started = g_get_real_time () / G_USEC_PER_SEC;
  g_queue_init (&s->waiting);
  if (s->api_key != NULL)
    {
      gsize len = sizeof s->key_hash;
      g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
      g_checksum_update (sum, (const guchar *) s->api_key, strlen (s->api_key));
      g_checksum_get_digest (sum, s->key_hash, &len);
    }

  const RvDefaults *d = rv_engine_defaults (engine);
  s->limits.model_name = rv_engine_model_name (engine);
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

static void
check_stopped (RvServer *s)
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
  check_stopped (s);
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
      job_answer (job, e);
      job_unref (job);
    }
  if (s->running != NULL)
    s->grace_id = g_timeout_add_seconds (MAX (s->config.shutdown_grace, 0), grace_over, s);
  s->force_id = g_timeout_add_seconds (MAX (s->config.shutdown_grace, 0) + 5, force_done, s);
  check_stopped (s);
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
      g_autoptr (SoupServerMessage) msg = job_take_msg (job);
      job_unref (job);
    }
  rv_store_free (s->store);
  rv_engine_unref (s->engine);
  g_main_context_unref (s->context);
  g_free (s->host);
  g_free (s->api_key);
  g_free (s->public_url);
  g_free (s->store_dir);
  g_free (s->url);
  g_free (s);
}
