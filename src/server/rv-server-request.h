/* rv-server-request.h: requests of the Images API — JSON and multipart bodies
 * parsed and validated into one struct — and the API's error shape. */
#pragma once

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "reverie.h"

G_BEGIN_DECLS

/* ---- errors: {"error": {"message", "type", "param", "code"}} ---- */

typedef struct {
  guint status;     /* HTTP status */
  char *type;       /* "invalid_request_error", "rate_limit_error", "server_error" */
  char *code;       /* machine-readable, may be NULL */
  char *param;      /* the request field at fault, may be NULL */
  char *message;
} RvApiError;

RvApiError *rv_api_error_new     (guint status, const char *code, const char *param,
                                  const char *format, ...) G_GNUC_PRINTF (4, 5);
void        rv_api_error_free    (RvApiError *e);
GBytes     *rv_api_error_to_json (const RvApiError *e);
/* The builder's value as compact JSON text. */
GBytes     *rv_api_json_bytes    (JsonBuilder *builder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvApiError, rv_api_error_free)

/* ---- requests ---- */

typedef enum {
  RV_API_GENERATE,    /* POST /v1/images/generations, JSON */
  RV_API_EDIT,        /* POST /v1/images/edits, multipart */
  RV_API_VARIATION,   /* POST /v1/images/variations, multipart */
} RvApiKind;

typedef enum {
  RV_API_URL,
  RV_API_B64_JSON,
} RvApiFormat;

/* What the server accepts; filled from its options. */
typedef struct {
  const char *model_name;       /* the server's default set (the parser does not check
                                 * `model`: the server resolves it, see rv-server.h) */
  int         max_size;         /* largest side of a WxH size */
  int         default_width, default_height;
  int         max_image_side;   /* of uploaded images */
} RvApiLimits;

#define RV_API_MAX_PROMPT 1000  /* characters, as dall-e-2 */
#define RV_API_MAX_N      10

typedef struct {
  RvApiKind   kind;
  char       *prompt;
  char       *negative_prompt;   /* NULL = none */
  int         n;
  char       *model;             /* as given; NULL = absent (the server's default set) */
  int         width, height;     /* the size of the images returned */
  gboolean    size_given;        /* FALSE: width and height are the limits' default */
  RvApiFormat format;
  gboolean    stream;            /* server-sent events with step previews */
  gboolean    seed_given;
  guint64     seed;
  int         steps, prior_steps;          /* 0 = the server's default */
  double      guidance, prior_guidance;    /* < 0 = the model's default */
  char       *scheduler;                   /* NULL = the model's default */
  RvImage    *image;             /* edits and variations */
  RvImage    *mask;              /* edits: RGBA, alpha 0 = edit, 255 = keep */
  gboolean    mask_everything;   /* every pixel is to be edited: generate instead */
  char       *image_sha256, *mask_sha256;  /* of the uploaded files, for the recipe */
} RvApiRequest;

RvApiRequest *rv_api_request_parse_json      (GBytes *body, const RvApiLimits *limits,
                                              RvApiError **error);
RvApiRequest *rv_api_request_parse_multipart (RvApiKind kind, SoupMessageHeaders *headers,
                                              GBytes *body, const RvApiLimits *limits,
                                              RvApiError **error);
void          rv_api_request_free            (RvApiRequest *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvApiRequest, rv_api_request_free)

/* "WxH" with both sides multiples of 64 up to max_size, or one of the
 * DALL-E 2 sizes; FALSE otherwise. */
gboolean      rv_api_parse_size              (const char *s, int max_size, int *width, int *height);

G_END_DECLS
