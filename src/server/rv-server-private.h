/* rv-server-private.h: the server object, its messages and its jobs, shared
 * by rv-server.c (routes, authentication, lifetime) and rv-server-queue.c
 * (the job queue, the worker, streaming and results). */
#pragma once

#include "rv-server.h"
#include "rv-server-request.h"
#include "rv-server-store.h"

#include <libsoup/soup.h>

G_BEGIN_DECLS

typedef struct _Job Job;

/* A model set a request may name (rv-server-models.c). */
typedef struct {
  char    *id;            /* as named: "dall-e-2", the set's id */
  char    *dir;           /* an installed set's folder; NULL: the default or the embedded set */
  gboolean is_default;    /* the server's own engine */
  gint64   created;       /* unix time of the install, or 0 */
} RvServerModel;

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

  /* model sets (rv-server-models.c): the default's id, where installed sets
   * are, and the engines of other sets, used by the worker only */
  char          *model_id, *models_dir, *device;
  gint64         model_created;
  RvEngine      *other;          /* the one set kept besides the default */
  char          *other_id;
  RvEngine      *last;           /* the engine the last job used (borrowed) */
  char          *last_id;
  guint64        device_memory;  /* bytes, 0 unknown */
  gboolean       device_memory_asked;
  struct _RvCatalogue *catalogue;
  gboolean       catalogue_tried;
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
  guint64        refused;        /* by the content policy */
};

/* Per-message state, attached to the SoupServerMessage. */
typedef struct {
  RvServer   *server;
  gint64      start;             /* monotonic µs */
  GByteArray *body;              /* collected by got-chunk, NULL once over the limit */
  gboolean    too_large;
  gboolean    finished;          /* finished or disconnected: no more I/O on it */
  Job        *job;               /* the job it waits for (borrowed) */
  char       *log_note;          /* appended to its access log line (never request text) */
} MsgState;

struct _Job {
  gint               ref;
  RvServer          *server;
  SoupServerMessage *msg;        /* NULL once answered or gone; main thread only */
  RvApiRequest      *req;
  RvServerModel      model;      /* the set it asked for */
  RvEngine          *engine;     /* that set's engine, set by the worker */
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

/* ---- rv-server.c ---- */

void      _rv_server_set_json (SoupServerMessage *msg, guint status, GBytes *json);
/* An OpenAI-style error body with the error's status. */
void      _rv_server_set_error (SoupServerMessage *msg, const RvApiError *e);
MsgState *_rv_server_msg_state (SoupServerMessage *msg);
/* Once shutting down: calls the done callback when no job runs and no
 * message is open. */
void      _rv_server_check_stopped (RvServer *s);

/* ---- rv-server-models.c ---- */

void       _rv_server_models_init (RvServer *s, const RvServerConfig *config);
void       _rv_server_models_free (RvServer *s);
void       _rv_server_model_clear (RvServerModel *m);
/* A request's `model` (NULL: absent): FALSE when no set has that id. */
gboolean   _rv_server_model_find (RvServer *s, const char *id, RvServerModel *out);
/* Every set, as listed by GET /v1/models: "dall-e-2" (the default set)
 * first, then the default set, the embedded one and the installed ones. */
GPtrArray *_rv_server_model_list (RvServer *s);
/* Worker thread: the engine for a job's set (a new reference), opened when
 * first asked for; applies the memory rule of rv-server.h. */
RvEngine  *_rv_server_model_engine (RvServer *s, const RvServerModel *m, int side,
                                    GError **error);

/* ---- rv-server-queue.c ---- */

/* When the queue is full: answers 429 with a Retry-After, and returns TRUE. */
gboolean  _rv_server_queue_full (RvServer *s, SoupServerMessage *msg);
/* Queues a job for a parsed request (taken) and its model set (taken) of
 * `msg`, which waits paused for its answer, or streams events from now on. */
void      _rv_server_queue_add (RvServer *s, SoupServerMessage *msg, RvApiRequest *req,
                                RvServerModel *model);
void      _rv_server_job_unref (Job *job);
/* Lets the job's message go (answered, or its client is gone): returns it. */
SoupServerMessage *_rv_server_job_take_msg (Job *job);
/* Answers a job's message (if still there) and drops it. */
void      _rv_server_job_answer (Job *job, const RvApiError *e);
/* A job's client is gone: a waiting job is dropped, a running one cancelled. */
void      _rv_server_job_abandon (Job *job);

G_END_DECLS
