/* rv-server-queue.c: the Images API's job queue: jobs run one at a time in a
 * worker thread from a bounded queue; paused messages are answered when their
 * job ends, or streamed as server-sent events (progress, partial images)
 * while it runs; results are stored for `url` answers or sent inline. */
#include "config.h"

#include "rv-server-private.h"
#include "rv-image-io.h"

#include <errno.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <math.h>
#include <string.h>
#include <sys/socket.h>

/* ---- jobs ---- */

static Job *
job_ref (Job *job)
{
  g_atomic_int_inc (&job->ref);
  return job;
}

void
_rv_server_job_unref (Job *job)
{
  if (!g_atomic_int_dec_and_test (&job->ref))
    return;
  g_assert (job->msg == NULL && job->watch == NULL);
  rv_api_request_free (job->req);
  _rv_server_model_clear (&job->model);
  g_clear_pointer (&job->engine, rv_engine_unref);
  g_object_unref (job->cancellable);
  g_free (job->base_url);
  g_clear_pointer (&job->response, g_bytes_unref);
  rv_api_error_free (job->error);
  g_free (job);
}

/* Lets the job's message go: answered, or its client is gone. */
SoupServerMessage *
_rv_server_job_take_msg (Job *job)
{
  if (job->watch != NULL)
    {
      g_source_destroy (job->watch);
      g_clear_pointer (&job->watch, g_source_unref);
    }
  SoupServerMessage *msg = g_steal_pointer (&job->msg);
  if (msg != NULL)
    _rv_server_msg_state (msg)->job = NULL;
  return msg;
}

/* Sends what the message holds now; nothing if its connection is gone. */
static void
resume (SoupServerMessage *msg)
{
  MsgState *st = _rv_server_msg_state (msg);
  if (!st->finished)
    soup_server_message_unpause (msg);
}

static void start_next (RvServer *s);

/* Answers a job's message (if still there) and drops it. */
void
_rv_server_job_answer (Job *job, const RvApiError *e)
{
  g_autoptr (SoupServerMessage) msg = _rv_server_job_take_msg (job);
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
    _rv_server_set_error (msg, e);
  resume (msg);
}

/* ---- the worker ---- */

/* The engine rounds sizes up to what the model produces (a multiple of its
 * latent grid); the API promises the requested size, so images that come out
 * larger are scaled to it. Inpainting also composites at the source image's
 * size, which may differ from the requested one. */
static RvImage *
fit_size_with (RvImage *img, int width, int height, GdkInterpType interp)
{
  if (img->width == width && img->height == height)
    return img;
  g_autoptr (GBytes) pixels = g_bytes_new_static (img->pixels,
                                                  (gsize) img->width * img->height * img->channels);
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new_from_bytes (pixels, GDK_COLORSPACE_RGB,
                                                        img->channels == 4, 8, img->width,
                                                        img->height, img->width * img->channels);
  g_autoptr (GdkPixbuf) scaled = gdk_pixbuf_scale_simple (pb, width, height, interp);
  RvImage *out = rv_image_new (width, height, img->channels);
  const guint8 *src = gdk_pixbuf_read_pixels (scaled);
  int stride = gdk_pixbuf_get_rowstride (scaled);
  for (int y = 0; y < height; y++)
    memcpy (out->pixels + (gsize) y * width * img->channels, src + (gsize) y * stride,
            (gsize) width * img->channels);
  rv_image_free (img);
  return out;
}

static RvImage *
fit_size (RvImage *img, int width, int height)
{
  return fit_size_with (img, width, height, GDK_INTERP_HYPER);
}

/* Outpainting through edits: an image whose transparent pixels (the edit
 * region when no mask is given) reach further than one frame of the model's
 * native size is filled frame by frame (RV_JOB_EXTEND with no borders and
 * that region to fill), as DALL-E 2 clients outpaint: they send the picture
 * on a larger transparent canvas. The image and its region are taken to the
 * requested size first (where they differ), as inpainting works at that
 * size too; *image and *mask receive them. */
static gboolean
edit_needs_frames (RvEngine *engine, const RvApiRequest *a, RvImage **image, RvImage **mask)
{
  if (a->kind != RV_API_EDIT || a->mask_sha256 != NULL || a->mask_everything || a->mask == NULL)
    return FALSE;
  RvImage *img = rv_image_copy (a->image), *m = rv_image_copy (a->mask);
  if (img->width != a->width || img->height != a->height)
    {
      img = fit_size (img, a->width, a->height);
      m = fit_size_with (m, a->width, a->height, GDK_INTERP_NEAREST);
    }
  int x0 = m->width, y0 = m->height, x1 = -1, y1 = -1;
  for (int y = 0; y < m->height; y++)
    for (int x = 0; x < m->width; x++)
      if (m->pixels[((gsize) y * m->width + x) * 4 + 3] == 0)
        {
          x0 = MIN (x0, x);
          y0 = MIN (y0, y);
          x1 = MAX (x1, x);
          y1 = MAX (y1, y);
        }
  int native = rv_engine_native_size (engine);
  if (x1 < 0 || (x1 - x0 + 1 <= native && y1 - y0 + 1 <= native))
    {
      rv_image_free (img);
      rv_image_free (m);
      return FALSE;
    }
  *image = img;
  *mask = m;
  return TRUE;
}

/* The recipe stored in each result's PNG text chunks. */
static RvRecipe *
job_recipe (Job *job, const RvRequest *rr, guint64 seed)
{
  RvEngine *e = job->engine;
  const RvApiRequest *a = job->req;
  RvRecipe *r = rv_recipe_for_request (e, rr, seed, a->width, a->height);
  r->width = a->width;     /* what is returned, whatever the engine worked at */
  r->height = a->height;
  g_free (r->source_sha256);
  r->source_sha256 = g_strdup (a->image_sha256);
  r->mask_sha256 = g_strdup (a->mask_sha256);
  if (rr->kind == RV_JOB_INPAINT || rr->kind == RV_JOB_EXTEND)
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
  _rv_server_job_unref (ev->job);
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
  if (p->n_frames > 0)
    {
      /* outpainting: the frame running and how many there are */
      json_builder_set_member_name (b, "frame");
      json_builder_add_int_value (b, p->frame);
      json_builder_set_member_name (b, "frames");
      json_builder_add_int_value (b, p->n_frames);
    }
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

static int
round64 (int v)
{
  return MAX (64, (v + 63) / 64 * 64);
}

static void
job_thread (GTask *task, gpointer source, gpointer data, GCancellable *unused)
{
  Job *job = data;
  RvServer *s = job->server;
  RvApiRequest *a = job->req;
  g_autoptr (GError) error = NULL;
  job->engine = _rv_server_model_engine (s, &job->model, MAX (a->width, a->height), &error);
  if (job->engine == NULL)
    {
      job->error = engine_error (error);
      return;
    }
  RvEngine *engine = job->engine;
  if (!job->model.is_default && !a->size_given && s->config.default_width <= 0)
    {
      /* another set's own size, as the default set's is the limits' */
      const RvDefaults *d = rv_engine_defaults (engine);
      int largest = s->limits.max_size / 64 * 64;
      a->width = MIN (round64 (d->width), largest);
      a->height = MIN (round64 (d->height), largest);
    }
  RvJobKind kind = a->kind == RV_API_VARIATION ? RV_JOB_VARIATION
                 : a->kind == RV_API_EDIT && !a->mask_everything ? RV_JOB_INPAINT
                 : RV_JOB_GENERATE;   /* an edit of every pixel is a generation */
  if (kind == RV_JOB_INPAINT && !rv_engine_can_inpaint (engine))
    {
      job->error = rv_api_error_new (400, "unsupported", "model",
                                     "The model set '%s' has no inpainting decoder, so it cannot "
                                     "make edits.", job->model.id);
      return;
    }
  g_autoptr (RvImage) ext_image = NULL, ext_mask = NULL;
  if (kind == RV_JOB_INPAINT && edit_needs_frames (engine, a, &ext_image, &ext_mask))
    kind = RV_JOB_EXTEND;
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
  if (kind == RV_JOB_EXTEND)
    {
      rr.image = ext_image;
      rr.mask = ext_mask;
      rr.mask_mode = RV_MASK_ALPHA;
    }

  g_autoptr (GPtrArray) results = rv_engine_run (engine, &rr, a->stream ? on_progress : NULL,
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
      _rv_server_job_answer (job, e);
    }
  else if (job->error != NULL)
    {
      s->failed++;
      _rv_server_job_answer (job, job->error);
    }
  else
    {
      s->completed++;
      g_autoptr (SoupServerMessage) msg = _rv_server_job_take_msg (job);
      if (msg != NULL)
        {
          if (job->req->stream)
            {
              SoupMessageBody *body = soup_server_message_get_response_body (msg);
              soup_message_body_append_bytes (body, job->response);
              soup_message_body_complete (body);
            }
          else
            _rv_server_set_json (msg, SOUP_STATUS_OK, job->response);
          resume (msg);
        }
    }
  _rv_server_job_unref (job);
  start_next (s);
  _rv_server_check_stopped (s);
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
  if (job->msg != NULL && !_rv_server_msg_state (job->msg)->finished)
    {
      soup_message_body_append_bytes (soup_server_message_get_response_body (job->msg), ev->bytes);
      soup_server_message_unpause (job->msg);
    }
  return G_SOURCE_REMOVE;
}

/* ---- clients that go away ---- */

/* A job's client is gone: a waiting job is dropped, a running one cancelled
 * (the engine stops within a step). */
void
_rv_server_job_abandon (Job *job)
{
  RvServer *s = job->server;
  g_autoptr (SoupServerMessage) msg = _rv_server_job_take_msg (job);
  if (msg != NULL && !_rv_server_msg_state (msg)->finished)
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
      _rv_server_job_unref (job);
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
  _rv_server_job_abandon (job);
  _rv_server_job_unref (job);
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

/* ---- the queue ---- */

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

/* When the queue is full: answers 429, with a Retry-After from the mean time
 * a job takes, and returns TRUE. */
gboolean
_rv_server_queue_full (RvServer *s, SoupServerMessage *msg)
{
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
      _rv_server_set_error (msg, e);
      return TRUE;
    }
  return FALSE;
}

/* Queues a job for a parsed request (taken) of `msg`: a streamed one starts
 * its event stream now, any other waits paused until its job ends. */
void
_rv_server_queue_add (RvServer *s, SoupServerMessage *msg, RvApiRequest *req,
                      RvServerModel *model)
{
  MsgState *st = _rv_server_msg_state (msg);
  Job *job = g_new0 (Job, 1);
  job->ref = 1;
  job->server = s;
  job->req = req;
  job->model = *model;
  memset (model, 0, sizeof *model);
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
