/* rv-server.h: the local DALL-E 2 Images API (libsoup 3) over one warm
 * RvEngine: generations, edits, variations, models, health, `url` results.
 *
 * Model sets: GET /v1/models lists the server's default set (the engine it
 * was started with; also answered to as "dall-e-2"), the embedded
 * reverie-tiny and every set installed in the models folder. A request's
 * `model` picks one by id (absent or "dall-e-2": the default); an unknown id
 * is answered 404 model_not_found before any work. Another set's engine is
 * opened on the same device when first asked for (in the worker). Memory
 * rule: besides the default set at most one other set is kept (asking for a
 * third drops the second: weights and device memory freed), and on every
 * switch between sets the previously used set's weights are released
 * (rv_engine_release) unless both sets' device memory needs are known (the
 * catalogue's figure for the job's size, else the peak measured when the
 * set last ran) and fit in the device's memory together. */
#pragma once

#include "reverie.h"
#include "rv-content-policy.h"

G_BEGIN_DECLS

typedef struct {
  const char *host;              /* address to bind; NULL = 127.0.0.1 */
  int         port;              /* 0 = any free port */
  const char *api_key;           /* Bearer key; NULL = no authentication */
  const char *public_url;        /* base of `url` results; NULL = from the request's Host */
  gsize       max_body;          /* request body, bytes */
  int         max_image_side;    /* uploaded images, pixels */
  int         max_size;          /* largest side of a requested WxH size */
  int         default_width;     /* size when a request gives none; 0 = the model's */
  int         default_height;
  int         steps;             /* decoder steps when a request gives none; 0 = the model's */
  int         prior_steps;       /* prior steps likewise */
  int         queue_depth;       /* requests that may wait while one runs; more get 429 */
  const char *store_dir;         /* `url` results; NULL = $XDG_CACHE_HOME/reverie/api */
  int         url_ttl;           /* seconds a `url` result stays */
  int         shutdown_grace;    /* seconds a running job may take to finish on shutdown */
  RvContentPolicy *content_policy;  /* prompts and negative prompts matching it are refused
                                   * with 400 content_policy_violation before any work;
                                   * NULL = none. Borrowed: it must outlive the server. */
  const char *model_id;          /* the default set's id; NULL = the engine's model name */
  const char *device;            /* device selector for other sets (as rv_engine_new) */
  RvWeightPolicy weights;        /* and their weight policy */
  const char *models_dir;        /* installed sets; NULL = $XDG_DATA_HOME/reverie/models */
} RvServerConfig;

void        rv_server_config_init (RvServerConfig *config);

typedef struct _RvServer RvServer;
typedef void (*RvServerDone) (gpointer user_data);

/* Listens on the thread-default main context; the engine is kept (and its
 * weights stay loaded) for the server's lifetime. */
RvServer   *rv_server_new         (RvEngine *engine, const RvServerConfig *config,
                                   GError **error);
void        rv_server_free        (RvServer *server);
/* The address it listens on, e.g. "http://127.0.0.1:8000". */
const char *rv_server_url         (RvServer *server);
/* Graceful shutdown: new requests get 503, queued ones are answered with
 * 503, the running job may finish within shutdown_grace seconds (then it is
 * cancelled); done runs once every response is out. A second call cancels
 * the running job at once. */
void        rv_server_shutdown    (RvServer *server, RvServerDone done, gpointer user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvServer, rv_server_free)

G_END_DECLS
