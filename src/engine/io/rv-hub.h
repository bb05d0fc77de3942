/* rv-hub.h: getting model sets from the Hugging Face Hub (libsoup 3): every
 * file SHA-256-checked as it arrives, staged and resumable, installed by one
 * rename when all are verified; and the store of installed sets. */
#pragma once

#include "reverie.h"
#include "rv-catalogue.h"

G_BEGIN_DECLS

#define RV_HUB_ERROR (rv_hub_error_quark ())
GQuark rv_hub_error_quark (void);

/* Error codes (RV_HUB_ERROR); the messages say what to do. A cancelled pull
 * ends with G_IO_ERROR_CANCELLED. */
typedef enum {
  RV_HUB_ERROR_OFFLINE,        /* HF_HUB_OFFLINE=1: nothing was requested */
  RV_HUB_ERROR_NETWORK,        /* connection refused, no route, name not resolved */
  RV_HUB_ERROR_STALLED,        /* the server sent nothing for the timeout */
  RV_HUB_ERROR_AUTH,           /* 401/403: gated repository, no or wrong token */
  RV_HUB_ERROR_NOT_FOUND,      /* 404: repository, revision or file */
  RV_HUB_ERROR_HTTP,           /* any other HTTP failure */
  RV_HUB_ERROR_PROTOCOL,       /* the server's answer makes no sense */
  RV_HUB_ERROR_INTEGRITY,      /* a file's hash or size is not what the Hub lists */
  RV_HUB_ERROR_DISK_FULL,      /* not enough free space, before or while writing */
  RV_HUB_ERROR_BUSY,           /* another pull of the same set is running */
  RV_HUB_ERROR_NOT_INSTALLED,
  RV_HUB_ERROR_FAILED,         /* anything else (files, state) */
} RvHubError;

/* ---- what the downloader reads from the network, as pure functions (fuzzed) ---- */

typedef struct {
  char    *rfilename;     /* path inside the repository */
  guint64  size;          /* bytes; for LFS files the LFS object's size */
  char    *blob_id;       /* git blob SHA-1 (hex), or NULL */
  char    *lfs_sha256;    /* hex, NULL for files kept in git */
} RvHubSibling;

typedef struct {
  char      *sha;         /* the commit the revision resolved to (40 hex) */
  GPtrArray *siblings;    /* RvHubSibling */
} RvHubRevision;

/* The JSON of GET /api/models/{repo}/revision/{rev}?blobs=true. Refuses
 * what is not that: missing sha, sizes that are not whole numbers, hashes
 * that are not hex, unsafe file names. Errors are RV_HUB_ERROR_PROTOCOL. */
RvHubRevision *rv_hub_parse_revision (const char *json, gsize len, GError **error);
void           rv_hub_revision_free (RvHubRevision *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvHubRevision, rv_hub_revision_free)

/* What a resolve response's headers say about the file. */
typedef struct {
  char    *commit;        /* X-Repo-Commit, or NULL */
  char    *etag;          /* X-Linked-Etag, else ETag, unquoted, no W/ (LFS: the sha256) */
  gboolean linked;        /* X-Linked-Etag was present (an LFS file) */
  gint64   size;          /* X-Linked-Size, else -1 */
} RvHubLinked;

/* Any argument may be NULL (header absent). FALSE with
 * RV_HUB_ERROR_PROTOCOL for a malformed value. */
gboolean       rv_hub_parse_linked_headers (const char *x_repo_commit, const char *x_linked_etag,
                                            const char *x_linked_size, const char *etag,
                                            RvHubLinked *out, GError **error);
void           rv_hub_linked_clear (RvHubLinked *l);
/* "bytes START-END/TOTAL" (TOTAL may be '*': -1). */
gboolean       rv_hub_parse_content_range (const char *value, guint64 *start, guint64 *end,
                                           gint64 *total);
/* The absolute http(s) URL a Location header leads to from `base`; NULL
 * with RV_HUB_ERROR_PROTOCOL for another scheme or a malformed target. */
char          *rv_hub_resolve_redirect (const char *base, const char *location, GError **error);
/* Whether a repository file is pickled (.bin, .ckpt, .pth, .pt, .pkl,
 * .pickle): such files are never downloaded. */
gboolean       rv_hub_file_is_pickled (const char *rfilename);
/* The files of `rev` a source takes for a variant ("fp16" or "full"):
 * includes applied, pickles and other frameworks' weights dropped, and per
 * folder the *.fp16.* safetensors when "fp16" and the folder has them, else
 * the full ones. An array of borrowed RvHubSibling pointers. */
GPtrArray     *rv_hub_select_files (const RvHubRevision *rev, const RvCatalogueSource *src,
                                    const char *variant);

/* ---- pulling a catalogue entry ---- */

typedef enum {
  RV_HUB_STAGE_LISTING,       /* asking the Hub what the repositories hold */
  RV_HUB_STAGE_CHECKING,      /* re-hashing a partial file kept from before */
  RV_HUB_STAGE_DOWNLOADING,
  RV_HUB_STAGE_INSTALLING,
} RvHubStage;

typedef struct {
  RvHubStage  stage;
  guint64     done, total;    /* bytes of the whole set (kept from before included) */
  double      rate;           /* bytes per second, over the last seconds; 0 unknown */
  double      eta;            /* seconds; -1 unknown */
  const char *file;           /* the file, relative to the set's folder */
  guint       file_index, n_files;
} RvHubProgress;

typedef void (*RvHubProgressFunc) (const RvHubProgress *p, gpointer user_data);

typedef struct _RvHubPull RvHubPull;

/* variant: NULL = the entry's default. The entry is copied what is needed. */
RvHubPull  *rv_hub_pull_new (const RvCatalogueEntry *entry, const char *variant);
void        rv_hub_pull_free (RvHubPull *p);
/* Defaults: HF_TOKEN; HF_ENDPOINT or https://huggingface.co; the store's
 * folder (rv_hub_models_dir); REVERIE_HUB_TIMEOUT or 30 s without a byte. */
void        rv_hub_pull_set_token (RvHubPull *p, const char *token);
void        rv_hub_pull_set_endpoint (RvHubPull *p, const char *url);
void        rv_hub_pull_set_models_dir (RvHubPull *p, const char *dir);
void        rv_hub_pull_set_timeout (RvHubPull *p, guint seconds);
/* Called on the pulling thread, at most ~10 times a second. */
void        rv_hub_pull_set_progress (RvHubPull *p, RvHubProgressFunc func, gpointer data);
/* Blocking: run it in a worker thread. Lists the repositories (once: the
 * commits are pinned in the state file), checks free space, fetches and
 * verifies every file, then renames the staged folder into place. Cancel,
 * a crash or an error keeps what was verified and the partial file for the
 * next pull. TRUE at once when the set is already installed. */
gboolean    rv_hub_pull (RvHubPull *p, GCancellable *cancellable, GError **error);
/* After rv_hub_pull: where the set is; whether it was there already; bytes
 * fetched over the network by this pull; its total; the variant used. */
const char *rv_hub_pull_installed_dir (RvHubPull *p);
gboolean    rv_hub_pull_was_installed (RvHubPull *p);
guint64     rv_hub_pull_fetched_bytes (RvHubPull *p);
guint64     rv_hub_pull_total_bytes (RvHubPull *p);
const char *rv_hub_pull_variant (RvHubPull *p);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvHubPull, rv_hub_pull_free)

/* ---- the store: $XDG_DATA_HOME/reverie/models ---- */

/* The folder installed sets live in (new string). */
char       *rv_hub_models_dir (void);
/* The installed set's folder, or NULL when `name` is not installed (a
 * folder with prior/ or a manifest). models_dir NULL = the default. */
char       *rv_hub_installed_dir (const char *models_dir, const char *name);
/* Names of the installed sets, sorted (new array of strings). */
GPtrArray  *rv_hub_list_installed (const char *models_dir);
/* An installed set's variant and bytes from its manifest (FALSE if none). */
gboolean    rv_hub_installed_info (const char *models_dir, const char *name, char **variant,
                                   guint64 *bytes);
/* A staged (partial) pull: bytes verified or kept so far and the total. */
gboolean    rv_hub_staged_info (const char *models_dir, const char *name, guint64 *done,
                                guint64 *total);
/* Removes the installed set and any staged pull of it. */
gboolean    rv_hub_remove (const char *models_dir, const char *name, GError **error);
/* Re-hashes every file of an installed set against its manifest (the Hub's
 * hashes recorded at pull). Progress as for pulls (stage CHECKING). */
gboolean    rv_hub_verify (const char *models_dir, const char *name, RvHubProgressFunc func,
                           gpointer data, GCancellable *cancellable, GError **error);

G_END_DECLS
