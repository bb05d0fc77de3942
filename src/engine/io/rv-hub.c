/* rv-hub.c: the Hugging Face Hub downloader on libsoup 3 and the store of
 * installed model sets. Design notes are in docs/architecture.md §7. */
#define _GNU_SOURCE   /* syncfs */
#include "config.h"

#include "rv-hub.h"
#include "rv-safetensors.h"   /* rv_json_parse: the engine's strict JSON reader */
#include "rv-weight-files.h"

#include <gnutls/crypto.h>   /* SHA-256 at ~6× GChecksum's speed: the hashing paces a download */
#include <libsoup/soup.h>
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

G_DEFINE_QUARK (rv-hub-error-quark, rv_hub_error)

#define STATE_FILE     ".reverie-pull.json"
#define MANIFEST_FILE  ".reverie-manifest.json"
#define STAGING_DIR    ".staging"
#define CHUNK          (256 * 1024)
/* A resumed file keeps its bytes up to the last boundary of this size: a
 * tail torn by a crash is fetched again, never more than this. */
#define RESUME_GRAIN   ((guint64) 1 << 20)
#define MAX_REDIRECTS  8
#define MAX_ATTEMPTS   3
#define DEFAULT_TIMEOUT 30
/* Files this large are flushed to the disk when they are verified, and kept
 * as verified across a restart; smaller ones are flushed together before the
 * install, and re-hashed if a restart finds them (cheap), so that a power cut
 * never leaves a file counted as verified that did not reach the disk. */
#define DURABLE_SIZE   ((guint64) 16 << 20)

/* ---- small checks ---- */

static gboolean
is_hex (const char *s, gsize min_len, gsize max_len)
{
  gsize n = 0;
  for (; s[n]; n++)
    if (!g_ascii_isxdigit (s[n]))
      return FALSE;
  return n >= min_len && n <= max_len;
}

/* A path inside a repository: plain components, no "..", no absolute path,
 * no backslashes or control characters (it becomes a path on disk). */
static gboolean
repo_path_is_safe (const char *p)
{
  gsize len = strlen (p);
  if (len == 0 || len > 1000 || p[0] == '/' || p[len - 1] == '/' || strchr (p, '\\') != NULL
      || !g_utf8_validate (p, -1, NULL))
    return FALSE;
  g_auto (GStrv) parts = g_strsplit (p, "/", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      if (parts[i][0] == '\0' || g_str_equal (parts[i], ".") || g_str_equal (parts[i], ".."))
        return FALSE;
      for (const char *c = parts[i]; *c; c++)
        if ((guchar) *c < 0x20 || *c == 0x7f)
          return FALSE;
    }
  return TRUE;
}

static char *
format_bytes (guint64 b)
{
  return g_format_size_full (b, G_FORMAT_SIZE_DEFAULT);
}

/* ---- the revision JSON ---- */

void
rv_hub_revision_free (RvHubRevision *r)
{
  if (r == NULL)
    return;
  g_free (r->sha);
  if (r->siblings != NULL)
    g_ptr_array_unref (r->siblings);
  g_free (r);
}

static void
sibling_free (gpointer data)
{
  RvHubSibling *s = data;
  g_free (s->rfilename);
  g_free (s->blob_id);
  g_free (s->lfs_sha256);
  g_free (s);
}

static gboolean
json_uint (JsonObject *o, const char *key, guint64 *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64
      || json_node_get_int (n) < 0 || json_node_get_int (n) > ((gint64) 1 << 50))
    return FALSE;
  *out = (guint64) json_node_get_int (n);
  return TRUE;
}

static const char *
json_str (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gboolean G_GNUC_PRINTF (2, 3)
protocol_error (GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_PROTOCOL,
               "The Hub's answer is not what Reverie expects (%s). Check HF_ENDPOINT points at "
               "the Hugging Face Hub or a faithful mirror.", msg);
  return FALSE;
}

RvHubRevision *
rv_hub_parse_revision (const char *json, gsize len, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonNode) root = rv_json_parse (json, len, "revision listing", &local);
  if (root == NULL)
    {
      protocol_error (error, "%s", local->message);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      protocol_error (error, "the revision listing is not a JSON object");
      return NULL;
    }
  JsonObject *o = json_node_get_object (root);
  const char *sha = json_str (o, "sha");
  if (sha == NULL || !is_hex (sha, 40, 64))
    {
      protocol_error (error, "the revision listing has no commit “sha”");
      return NULL;
    }
  JsonNode *sn = json_object_get_member (o, "siblings");
  if (sn == NULL || !JSON_NODE_HOLDS_ARRAY (sn))
    {
      protocol_error (error, "the revision listing has no “siblings” list");
      return NULL;
    }
  g_autoptr (RvHubRevision) r = g_new0 (RvHubRevision, 1);
  r->sha = g_ascii_strdown (sha, -1);
  r->siblings = g_ptr_array_new_with_free_func (sibling_free);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  JsonArray *a = json_node_get_array (sn);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *x = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_OBJECT (x))
        {
          protocol_error (error, "sibling %u is not an object", i);
          return NULL;
        }
      JsonObject *so = json_node_get_object (x);
      const char *name = json_str (so, "rfilename");
      if (name == NULL || !repo_path_is_safe (name))
        {
          protocol_error (error, "sibling %u has no safe “rfilename”", i);
          return NULL;
        }
      if (g_hash_table_contains (seen, name))
        {
          protocol_error (error, "“%s” is listed twice", name);
          return NULL;
        }
      RvHubSibling *s = g_new0 (RvHubSibling, 1);
      s->rfilename = g_strdup (name);
      g_ptr_array_add (r->siblings, s);
      g_hash_table_add (seen, s->rfilename);
      gboolean has_size = json_uint (so, "size", &s->size);
      if (json_object_has_member (so, "size") && !has_size)
        {
          protocol_error (error, "“%s” has a size that is not a whole number", name);
          return NULL;
        }
      const char *blob = json_str (so, "blobId");
      if (blob != NULL)
        {
          if (!is_hex (blob, 40, 64))
            {
              protocol_error (error, "“%s” has a malformed blobId", name);
              return NULL;
            }
          s->blob_id = g_ascii_strdown (blob, -1);
        }
      JsonNode *ln = json_object_get_member (so, "lfs");
      if (ln != NULL && !JSON_NODE_HOLDS_NULL (ln))
        {
          if (!JSON_NODE_HOLDS_OBJECT (ln))
            {
              protocol_error (error, "“%s” has a malformed “lfs” member", name);
              return NULL;
            }
          JsonObject *lo = json_node_get_object (ln);
          const char *h = json_str (lo, "sha256");
          guint64 lsize = 0;
          if (h == NULL || !is_hex (h, 64, 64) || !json_uint (lo, "size", &lsize))
            {
              protocol_error (error, "“%s” has no LFS sha256 and size", name);
              return NULL;
            }
          s->lfs_sha256 = g_ascii_strdown (h, -1);
          s->size = lsize;
          has_size = TRUE;
        }
      if (!has_size)
        {
          protocol_error (error, "“%s” has no size (the listing must be asked with blobs=true)",
                          name);
          return NULL;
        }
    }
  return g_steal_pointer (&r);
}

/* ---- response headers ---- */

void
rv_hub_linked_clear (RvHubLinked *l)
{
  g_clear_pointer (&l->commit, g_free);
  g_clear_pointer (&l->etag, g_free);
}

/* "abc", W/"abc" or abc → abc; NULL when malformed. */
static char *
unquote_etag (const char *v)
{
  if (g_str_has_prefix (v, "W/"))
    v += 2;
  gsize n = strlen (v);
  if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
    {
      v++;
      n -= 2;
    }
  if (n == 0 || n > 200)
    return NULL;
  for (gsize i = 0; i < n; i++)
    if (v[i] <= 0x20 || v[i] == '"' || (guchar) v[i] >= 0x7f)
      return NULL;
  return g_strndup (v, n);
}

static gboolean
parse_decimal (const char *v, guint64 max, guint64 *out)
{
  if (v == NULL || *v == '\0' || strlen (v) > 20)
    return FALSE;
  guint64 x = 0;
  for (const char *p = v; *p; p++)
    {
      if (!g_ascii_isdigit (*p))
        return FALSE;
      if (x > (max - (guint64) (*p - '0')) / 10)
        return FALSE;
      x = x * 10 + (guint64) (*p - '0');
    }
  *out = x;
  return TRUE;
}

gboolean
rv_hub_parse_linked_headers (const char *x_repo_commit, const char *x_linked_etag,
                             const char *x_linked_size, const char *etag, RvHubLinked *out,
                             GError **error)
{
  memset (out, 0, sizeof *out);
  out->size = -1;
  if (x_repo_commit != NULL)
    {
      if (!is_hex (x_repo_commit, 40, 64))
        return protocol_error (error, "X-Repo-Commit “%.80s” is not a commit id", x_repo_commit);
      out->commit = g_ascii_strdown (x_repo_commit, -1);
    }
  const char *tag = x_linked_etag != NULL ? x_linked_etag : etag;
  if (tag != NULL)
    {
      out->etag = unquote_etag (tag);
      if (out->etag == NULL)
        {
          rv_hub_linked_clear (out);
          return protocol_error (error, "the ETag “%.80s” is malformed", tag);
        }
      out->linked = x_linked_etag != NULL;
    }
  if (x_linked_size != NULL)
    {
      guint64 s;
      if (!parse_decimal (x_linked_size, (guint64) 1 << 50, &s))
        {
          rv_hub_linked_clear (out);
          return protocol_error (error, "X-Linked-Size “%.80s” is not a size", x_linked_size);
        }
      out->size = (gint64) s;
    }
  return TRUE;
}

gboolean
rv_hub_parse_content_range (const char *value, guint64 *start, guint64 *end, gint64 *total)
{
  if (value == NULL || !g_str_has_prefix (value, "bytes "))
    return FALSE;
  const char *p = value + 6;
  const char *dash = strchr (p, '-');
  const char *slash = dash ? strchr (dash, '/') : NULL;
  if (dash == NULL || slash == NULL)
    return FALSE;
  g_autofree char *a = g_strndup (p, dash - p);
  g_autofree char *b = g_strndup (dash + 1, slash - dash - 1);
  guint64 s, e, t;
  const guint64 max = (guint64) 1 << 50;
  if (!parse_decimal (a, max, &s) || !parse_decimal (b, max, &e) || e < s)
    return FALSE;
  if (g_str_equal (slash + 1, "*"))
    *total = -1;
  else if (parse_decimal (slash + 1, max, &t) && t > e)
    *total = (gint64) t;
  else
    return FALSE;
  *start = s;
  *end = e;
  return TRUE;
}

char *
rv_hub_resolve_redirect (const char *base, const char *location, GError **error)
{
  if (location == NULL || location[0] == '\0' || strlen (location) > 8192)
    {
      protocol_error (error, "a redirect without a usable Location");
      return NULL;
    }
  g_autoptr (GError) local = NULL;
  /* the base must be an http(s) URL with a host: GLib's resolver asserts
   * on some host-less bases instead of failing */
  g_autoptr (GUri) base_uri = g_uri_parse (base, G_URI_FLAGS_ENCODED, NULL);
  if (base_uri == NULL || g_uri_get_host (base_uri) == NULL || g_uri_get_host (base_uri)[0] == '\0'
      || (g_ascii_strcasecmp (g_uri_get_scheme (base_uri), "https") != 0
          && g_ascii_strcasecmp (g_uri_get_scheme (base_uri), "http") != 0))
    {
      protocol_error (error, "a redirect from “%.100s”, which is not an http(s) address", base);
      return NULL;
    }
  g_autofree char *abs = g_uri_resolve_relative (base, location, G_URI_FLAGS_ENCODED, &local);
  if (abs == NULL)
    {
      protocol_error (error, "a malformed redirect target: %s",
                      local != NULL ? local->message : location);
      return NULL;
    }
  /* URLs are ASCII without controls (RFC 3986); the base is checked too, as
   * it may come from HF_ENDPOINT */
  for (const char *c = abs; *c; c++)
    if ((guchar) *c <= 0x20 || (guchar) *c >= 0x7f)
      {
        protocol_error (error, "a redirect target with control, space or non-ASCII characters");
        return NULL;
      }
  g_autoptr (GUri) uri = g_uri_parse (abs, G_URI_FLAGS_ENCODED, &local);
  if (uri == NULL)
    {
      protocol_error (error, "a malformed redirect target: %s", local->message);
      return NULL;
    }
  const char *scheme = g_uri_get_scheme (uri);
  const char *host = g_uri_get_host (uri);
  if ((g_ascii_strcasecmp (scheme, "https") != 0 && g_ascii_strcasecmp (scheme, "http") != 0)
      || host == NULL || host[0] == '\0')
    {
      protocol_error (error, "a redirect to “%.100s”, which is not an http(s) address", abs);
      return NULL;
    }
  return g_steal_pointer (&abs);
}

/* ---- which files ---- */

gboolean
rv_hub_file_is_pickled (const char *rfilename)
{
  /* the same rule the weight files follow when they refuse a pickle */
  return rv_weights_name_is_pickled (rfilename);
}

/* Weights of other frameworks: not pickles, but nothing the engine reads. */
static gboolean
is_foreign_weights (const char *name)
{
  static const char *const ext[] = { ".msgpack", ".h5", ".onnx", ".onnx_data", ".ot", ".tflite",
                                     ".gguf", ".mlmodel" };
  for (guint i = 0; i < G_N_ELEMENTS (ext); i++)
    if (g_str_has_suffix (name, ext[i]))
      return TRUE;
  return FALSE;
}

static gboolean
is_weights (const char *base)
{
  return g_str_has_suffix (base, ".safetensors") || strstr (base, ".safetensors.index.") != NULL;
}

/* diffusers names variants X.fp16.safetensors, X.fp16-00001-of-00002.safetensors
 * and X.safetensors.index.fp16.json. */
static gboolean
is_fp16_weights (const char *base)
{
  return g_str_has_suffix (base, ".fp16.safetensors") || strstr (base, ".fp16-") != NULL
         || g_str_has_suffix (base, ".index.fp16.json");
}

static gboolean
included (const RvCatalogueSource *src, const char *name)
{
  for (guint i = 0; src->include[i] != NULL; i++)
    {
      const char *inc = src->include[i];
      if (g_str_has_suffix (inc, "/") ? g_str_has_prefix (name, inc) : g_str_equal (name, inc))
        return TRUE;
    }
  return FALSE;
}

GPtrArray *
rv_hub_select_files (const RvHubRevision *rev, const RvCatalogueSource *src, const char *variant)
{
  gboolean want_fp16 = variant == NULL || g_str_equal (variant, "fp16");
  /* per folder: which kinds of weights it has */
  g_autoptr (GHashTable) fp16_dirs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GHashTable) full_dirs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < rev->siblings->len; i++)
    {
      RvHubSibling *s = g_ptr_array_index (rev->siblings, i);
      if (!included (src, s->rfilename) || rv_hub_file_is_pickled (s->rfilename))
        continue;
      g_autofree char *base = g_path_get_basename (s->rfilename);
      if (!is_weights (base))
        continue;
      g_hash_table_add (is_fp16_weights (base) ? fp16_dirs : full_dirs,
                        g_path_get_dirname (s->rfilename));
    }
  GPtrArray *out = g_ptr_array_new ();
  for (guint i = 0; i < rev->siblings->len; i++)
    {
      RvHubSibling *s = g_ptr_array_index (rev->siblings, i);
      if (!included (src, s->rfilename) || rv_hub_file_is_pickled (s->rfilename)
          || is_foreign_weights (s->rfilename))
        continue;
      g_autofree char *base = g_path_get_basename (s->rfilename);
      if (is_weights (base))
        {
          g_autofree char *dir = g_path_get_dirname (s->rfilename);
          gboolean fp16 = is_fp16_weights (base);
          gboolean has_fp16 = g_hash_table_contains (fp16_dirs, dir);
          gboolean has_full = g_hash_table_contains (full_dirs, dir);
          /* the kind asked for where the folder has it, else the other */
          gboolean take_fp16 = want_fp16 ? has_fp16 : !has_full;
          if (fp16 != take_fp16)
            continue;
        }
      g_ptr_array_add (out, s);
    }
  return out;
}

/* ---- the pull ---- */

typedef struct {
  char    *path;         /* relative to the set: "prior/prior/x.safetensors" */
  char    *repo;
  char    *commit;
  char    *rfilename;
  guint64  size;
  char    *sha256;       /* expected (LFS) or, once verified, computed; NULL unknown */
  char    *blob_id;      /* git blob SHA-1, for files kept in git */
  gboolean verified;
} PullFile;

struct _RvHubPull {
  char              *name;
  char              *variant;
  RvCatalogueKind    kind;
  RvCatalogueSource *sources;
  guint              n_sources;
  char              *token;
  char              *endpoint;
  char              *models_dir;
  guint              timeout;
  RvHubProgressFunc  progress;
  gpointer           progress_data;

  /* while pulling */
  SoupSession       *session;
  char              *stage_dir;
  char              *final_dir;
  GPtrArray         *files;      /* PullFile */
  gboolean           was_installed;
  guint64            fetched;    /* over the network, this pull */
  guint64            total;
  guint64            done_before; /* verified files' bytes */
  guint64            disk_written;
  guint64            disk_limit;  /* REVERIE_FAULT_DISK_FULL, 0 = none */
  /* progress */
  gint64             last_report;
  gint64             rate_t0;
  guint64            rate_b0;
  double             rate;
};

static void
pull_file_free (gpointer data)
{
  PullFile *f = data;
  g_free (f->path);
  g_free (f->repo);
  g_free (f->commit);
  g_free (f->rfilename);
  g_free (f->sha256);
  g_free (f->blob_id);
  g_free (f);
}

RvHubPull *
rv_hub_pull_new (const RvCatalogueEntry *entry, const char *variant)
{
  RvHubPull *p = g_new0 (RvHubPull, 1);
  p->name = g_strdup (entry->name);
  p->kind = entry->kind;
  const RvCatalogueVariant *v = rv_catalogue_entry_variant (entry, variant);
  p->variant = g_strdup (v != NULL ? v->name : (variant != NULL ? variant : "fp16"));
  p->n_sources = entry->n_sources;
  p->sources = g_new0 (RvCatalogueSource, entry->n_sources);
  for (guint i = 0; i < entry->n_sources; i++)
    {
      p->sources[i].repo = g_strdup (entry->sources[i].repo);
      p->sources[i].revision = g_strdup (entry->sources[i].revision);
      p->sources[i].local = g_strdup (entry->sources[i].local);
      p->sources[i].include = g_strdupv (entry->sources[i].include);
    }
  p->token = g_strdup (g_getenv ("HF_TOKEN"));
  if (p->token != NULL && p->token[0] == '\0')
    g_clear_pointer (&p->token, g_free);
  const char *ep = g_getenv ("HF_ENDPOINT");
  rv_hub_pull_set_endpoint (p, ep != NULL && ep[0] != '\0' ? ep : "https://huggingface.co");
  p->models_dir = rv_hub_models_dir ();
  p->timeout = DEFAULT_TIMEOUT;
  const char *t = g_getenv ("REVERIE_HUB_TIMEOUT");
  guint64 tv;
  if (t != NULL && parse_decimal (t, 3600, &tv) && tv > 0)
    p->timeout = (guint) tv;
  const char *lim = g_getenv ("REVERIE_FAULT_DISK_FULL");
  if (lim != NULL)
    parse_decimal (lim, G_MAXUINT64 / 2, &p->disk_limit);
  p->files = g_ptr_array_new_with_free_func (pull_file_free);
  return p;
}

void
rv_hub_pull_free (RvHubPull *p)
{
  if (p == NULL)
    return;
  g_free (p->name);
  g_free (p->variant);
  for (guint i = 0; i < p->n_sources; i++)
    {
      g_free (p->sources[i].repo);
      g_free (p->sources[i].revision);
      g_free (p->sources[i].local);
      g_strfreev (p->sources[i].include);
    }
  g_free (p->sources);
  g_free (p->token);
  g_free (p->endpoint);
  g_free (p->models_dir);
  g_clear_object (&p->session);
  g_free (p->stage_dir);
  g_free (p->final_dir);
  g_ptr_array_unref (p->files);
  g_free (p);
}

void
rv_hub_pull_set_token (RvHubPull *p, const char *token)
{
  g_free (p->token);
  p->token = token != NULL && token[0] != '\0' ? g_strdup (token) : NULL;
}

void
rv_hub_pull_set_endpoint (RvHubPull *p, const char *url)
{
  g_free (p->endpoint);
  p->endpoint = g_strdup (url);
  gsize n = strlen (p->endpoint);
  while (n > 0 && p->endpoint[n - 1] == '/')
    p->endpoint[--n] = '\0';
}

void
rv_hub_pull_set_models_dir (RvHubPull *p, const char *dir)
{
  g_free (p->models_dir);
  p->models_dir = g_strdup (dir);
}

void
rv_hub_pull_set_timeout (RvHubPull *p, guint seconds)
{
  p->timeout = seconds > 0 ? seconds : DEFAULT_TIMEOUT;
}

void
rv_hub_pull_set_progress (RvHubPull *p, RvHubProgressFunc func, gpointer data)
{
  p->progress = func;
  p->progress_data = data;
}

const char *rv_hub_pull_installed_dir (RvHubPull *p) { return p->final_dir; }
gboolean    rv_hub_pull_was_installed (RvHubPull *p) { return p->was_installed; }
guint64     rv_hub_pull_fetched_bytes (RvHubPull *p) { return p->fetched; }
guint64     rv_hub_pull_total_bytes (RvHubPull *p) { return p->total; }
const char *rv_hub_pull_variant (RvHubPull *p) { return p->variant; }

static void
report (RvHubPull *p, RvHubStage stage, guint64 done, const PullFile *f, guint index,
        gboolean force)
{
  gint64 now = g_get_monotonic_time ();
  if (p->rate_t0 == 0)
    {
      p->rate_t0 = now;
      p->rate_b0 = p->fetched;
    }
  else if (now - p->rate_t0 >= G_USEC_PER_SEC / 2)
    {
      double r = (double) (p->fetched - p->rate_b0) * G_USEC_PER_SEC / (double) (now - p->rate_t0);
      p->rate = p->rate > 0 ? 0.6 * r + 0.4 * p->rate : r;   /* smoothed over ~2 s */
      p->rate_t0 = now;
      p->rate_b0 = p->fetched;
    }
  if (p->progress == NULL || (!force && now - p->last_report < G_USEC_PER_SEC / 10))
    return;
  p->last_report = now;
  RvHubProgress pr = {
    .stage = stage, .done = done, .total = p->total, .rate = p->rate,
    .eta = p->rate > 0 && p->total >= done ? (double) (p->total - done) / p->rate : -1,
    .file = f ? f->path : NULL, .file_index = index, .n_files = p->files->len,
  };
  p->progress (&pr, p->progress_data);
}

/* ---- HTTP ---- */

static const char *
host_of (const char *url)
{
  static GPrivate key = G_PRIVATE_INIT (g_free);
  g_autoptr (GUri) u = g_uri_parse (url, G_URI_FLAGS_ENCODED, NULL);
  char *h = g_strdup (u != NULL && g_uri_get_host (u) != NULL ? g_uri_get_host (u) : url);
  g_private_replace (&key, h);
  return h;
}

static gboolean
same_origin (const char *a, const char *b)
{
  g_autoptr (GUri) ua = g_uri_parse (a, G_URI_FLAGS_ENCODED, NULL);
  g_autoptr (GUri) ub = g_uri_parse (b, G_URI_FLAGS_ENCODED, NULL);
  return ua != NULL && ub != NULL && g_ascii_strcasecmp (g_uri_get_scheme (ua), g_uri_get_scheme (ub)) == 0
         && g_strcmp0 (g_uri_get_host (ua), g_uri_get_host (ub)) == 0
         && g_uri_get_port (ua) == g_uri_get_port (ub);
}

/* A transport error as a message that says what to do. */
static void
network_error (RvHubPull *p, GError **error, GError *e, const char *url, const char *what)
{
  if (g_error_matches (e, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_propagate_error (error, g_error_copy (e));
      return;
    }
  if (g_error_matches (e, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_STALLED,
                   "The connection to %s stalled: no data for %u s while fetching %s. Check the "
                   "network (or try later) and run the pull again: it resumes where it stopped.",
                   host_of (url), p->timeout, what);
      return;
    }
  const char *why = e->message;
  if (g_error_matches (e, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
    why = "connection refused";
  else if (e->domain == G_RESOLVER_ERROR)
    why = "the name does not resolve";
  g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NETWORK,
               "Cannot reach %s (%s) to fetch %s. Is this machine online? Behind a proxy, set "
               "https_proxy; for a mirror, set HF_ENDPOINT. Without a network, copy a model set "
               "folder here and use --model DIR (HF_HUB_OFFLINE=1 stops these attempts).",
               host_of (url), why, what);
}

/* An HTTP failure status as a message that says what to do. */
static void
status_error (RvHubPull *p, GError **error, guint status, const char *repo, const char *what,
              gboolean listing)
{
  if (status == 401 || status == 403)
    {
      if (p->token == NULL)
        g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_AUTH,
                     "%s is gated or private (HTTP %u). Accept its licence at %s/%s while signed "
                     "in, create an access token (Settings → Access Tokens), then set HF_TOKEN or "
                     "pass --token and pull again.", repo, status, p->endpoint, repo);
      else
        g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_AUTH,
                     "The Hub refused the token for %s (HTTP %u). Check that the licence is "
                     "accepted at %s/%s for the account the token belongs to and that the token "
                     "can read repositories, then pull again.", repo, status, p->endpoint, repo);
    }
  else if (status == 404 && listing)
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NOT_FOUND,
                 "The Hub has no repository %s at revision %s (HTTP 404). Check the name in the "
                 "model catalogue, and HF_ENDPOINT if you use a mirror (now %s).", repo, what,
                 p->endpoint);
  else if (status == 404)
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NOT_FOUND,
                 "%s has no file %s (HTTP 404) at the commit listed before. If the repository "
                 "changed, run “reverie-cli models rm %s” and pull again.", repo, what, p->name);
  else if (status == 429)
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_HTTP,
                 "The Hub asks to slow down (HTTP 429) while fetching %s. Wait a few minutes and "
                 "pull again; it resumes.", what);
  else if (status >= 500)
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_HTTP,
                 "The server failed (HTTP %u) while fetching %s from %s. Try again later; the "
                 "pull resumes.", status, what, repo);
  else
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_HTTP,
                 "Unexpected HTTP %u while fetching %s from %s. Try again later.", status, what,
                 repo);
}

/* Whether the endpoint is this machine (a mirror or a test server): no proxy
 * applies there, so the session skips the proxy lookup (which loads the
 * desktop's proxy settings, tens of milliseconds before the first byte). */
static gboolean
endpoint_is_loopback (const char *endpoint)
{
  g_autoptr (GUri) uri = g_uri_parse (endpoint, G_URI_FLAGS_NONE, NULL);
  const char *host = uri != NULL ? g_uri_get_host (uri) : NULL;
  if (host == NULL)
    return FALSE;
  if (g_ascii_strcasecmp (host, "localhost") == 0)
    return TRUE;
  g_autoptr (GInetAddress) a = g_inet_address_new_from_string (host);
  return a != NULL && g_inet_address_get_is_loopback (a);
}

/* Reads what is left of a short body (a redirect's, an error's) and closes
 * it: a body read to its end lets the connection serve the next request. */
static void
drain_and_close (GInputStream *in)
{
  guint8 sink[4096];
  for (int i = 0; i < 16; i++)
    if (g_input_stream_read (in, sink, sizeof sink, NULL, NULL) <= 0)
      break;
  g_input_stream_close (in, NULL, NULL);
}

static SoupSession *
session_of (RvHubPull *p)
{
  if (p->session == NULL)
    {
      p->session = soup_session_new_with_options ("timeout", p->timeout, "idle-timeout", p->timeout,
                                                  "user-agent", "reverie/" PACKAGE_VERSION, NULL);
      if (endpoint_is_loopback (p->endpoint))
        soup_session_set_proxy_resolver (p->session, NULL);
      /* bytes as stored: Range offsets and hashes are about them */
      soup_session_remove_feature_by_type (p->session, SOUP_TYPE_CONTENT_DECODER);
    }
  return p->session;
}

/* Sends a request and follows redirects itself, so that the first (resolve)
 * response's X-Linked-* headers are seen and the token goes to the Hub's
 * origin only, never to the storage host it redirects to. Returns the body
 * stream of the final response; *msg_out its message; *linked the headers of
 * the first response. A failure status is an error (status_error). */
static GInputStream *
send (RvHubPull *p, const char *url, guint64 range_start, const char *repo, const char *what,
      gboolean listing, SoupMessage **msg_out, RvHubLinked *linked, GCancellable *cancellable,
      GError **error)
{
  g_autofree char *cur = g_strdup (url);
  gboolean first = TRUE;
  for (int hop = 0; hop <= MAX_REDIRECTS; hop++)
    {
      g_autoptr (SoupMessage) msg = soup_message_new (SOUP_METHOD_GET, cur);
      if (msg == NULL)
        {
          g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
                       "“%s” is not a usable address: check HF_ENDPOINT.", cur);
          return NULL;
        }
      soup_message_add_flags (msg, SOUP_MESSAGE_NO_REDIRECT);
      SoupMessageHeaders *rq = soup_message_get_request_headers (msg);
      if (p->token != NULL && same_origin (cur, p->endpoint))
        {
          g_autofree char *auth = g_strdup_printf ("Bearer %s", p->token);
          soup_message_headers_replace (rq, "Authorization", auth);
        }
      if (range_start > 0)
        soup_message_headers_set_range (rq, (goffset) range_start, -1);
      g_autoptr (GError) local = NULL;
      g_autoptr (GInputStream) in = soup_session_send (session_of (p), msg, cancellable, &local);
      if (in == NULL)
        {
          g_autofree char *thing = listing ? g_strdup_printf ("the file list of %s", repo)
                                           : g_strdup (what);
          network_error (p, error, local, cur, thing);
          return NULL;
        }
      guint status = soup_message_get_status (msg);
      SoupMessageHeaders *rh = soup_message_get_response_headers (msg);
      if (first && linked != NULL)
        {
          if (!rv_hub_parse_linked_headers (soup_message_headers_get_one (rh, "X-Repo-Commit"),
                                            soup_message_headers_get_one (rh, "X-Linked-Etag"),
                                            soup_message_headers_get_one (rh, "X-Linked-Size"),
                                            soup_message_headers_get_one (rh, "ETag"), linked,
                                            error))
            return NULL;
        }
      first = FALSE;
      if (SOUP_STATUS_IS_REDIRECTION (status) && status != 304)
        {
          g_autofree char *next = rv_hub_resolve_redirect (cur, soup_message_headers_get_one (rh, "Location"),
                                                           error);
          drain_and_close (in);
          if (next == NULL)
            return NULL;
          g_free (cur);
          cur = g_steal_pointer (&next);
          continue;
        }
      if (!SOUP_STATUS_IS_SUCCESSFUL (status) && status != 416)
        {
          drain_and_close (in);
          status_error (p, error, status, repo, what, listing);
          return NULL;
        }
      *msg_out = g_steal_pointer (&msg);
      return g_steal_pointer (&in);
    }
  protocol_error (error, "more than %d redirects for %s", MAX_REDIRECTS, what);
  return NULL;
}

static char *
escape_path (const char *path)
{
  return g_uri_escape_string (path, "/", FALSE);
}

/* GET the revision listing of one source. */
static RvHubRevision *
list_source (RvHubPull *p, const RvCatalogueSource *src, GCancellable *cancellable, GError **error)
{
  g_autofree char *rev = g_uri_escape_string (src->revision, NULL, FALSE);
  g_autofree char *url = g_strdup_printf ("%s/api/models/%s/revision/%s?blobs=true", p->endpoint,
                                          src->repo, rev);
  g_autoptr (SoupMessage) msg = NULL;
  /* `what` names the revision in a 404 and the list in other errors */
  g_autoptr (GInputStream) in = send (p, url, 0, src->repo, src->revision, TRUE, &msg, NULL,
                                      cancellable, error);
  if (in == NULL)
    return NULL;
  /* a listing is small; a cap keeps a misbehaving server from filling memory */
  const gsize cap = 64 << 20;
  g_autoptr (GByteArray) body = g_byte_array_new ();
  guint8 buf[16384];
  for (;;)
    {
      g_autoptr (GError) local = NULL;
      gssize n = g_input_stream_read (in, buf, sizeof buf, cancellable, &local);
      if (n < 0)
        {
          network_error (p, error, local, url, "the file list");
          return NULL;
        }
      if (n == 0)
        break;
      if (body->len + (gsize) n > cap)
        {
          protocol_error (error, "the listing of %s is larger than %zu MiB", src->repo, cap >> 20);
          return NULL;
        }
      g_byte_array_append (body, buf, (guint) n);
    }
  g_autoptr (GError) local = NULL;
  RvHubRevision *r = rv_hub_parse_revision ((const char *) body->data, body->len, &local);
  if (r == NULL)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_PROTOCOL, "%s: %s", src->repo, local->message);
      return NULL;
    }
  return r;
}

/* ---- the state file ---- */

static char *
state_path (RvHubPull *p)
{
  return g_build_filename (p->stage_dir, STATE_FILE, NULL);
}

static void
add_str_or_null (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  if (v != NULL)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
add_files (JsonBuilder *b, GPtrArray *files, gboolean with_state)
{
  json_builder_set_member_name (b, "files");
  json_builder_begin_array (b);
  for (guint i = 0; i < files->len; i++)
    {
      PullFile *f = g_ptr_array_index (files, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "path");
      json_builder_add_string_value (b, f->path);
      json_builder_set_member_name (b, "repo");
      json_builder_add_string_value (b, f->repo);
      json_builder_set_member_name (b, "commit");
      json_builder_add_string_value (b, f->commit);
      json_builder_set_member_name (b, "rfilename");
      json_builder_add_string_value (b, f->rfilename);
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, (gint64) f->size);
      add_str_or_null (b, "sha256", f->sha256);
      add_str_or_null (b, "blob_id", f->blob_id);
      if (with_state)
        {
          json_builder_set_member_name (b, "verified");
          json_builder_add_boolean_value (b, f->verified);
        }
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
}

static gboolean
write_json (const char *path, JsonBuilder *b, GError **error)
{
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  gsize len = 0;
  g_autofree char *text = json_generator_to_data (gen, &len);
  /* temporary file + rename: a crash leaves the old state or the new one;
   * no fsync per save (see DURABLE_SIZE; the install syncs once) */
  g_autofree char *tmp = g_strconcat (path, ".tmp", NULL);
  int fd = g_open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  gsize off = 0;
  int e = 0;
  if (fd < 0)
    e = errno;
  while (fd >= 0 && e == 0 && off < len)
    {
      gssize w = write (fd, text + off, len - off);
      if (w < 0 && errno != EINTR)
        e = errno;
      else if (w > 0)
        off += (gsize) w;
    }
  if (fd >= 0 && close (fd) != 0 && e == 0)
    e = errno;
  if (e == 0 && g_rename (tmp, path) != 0)
    e = errno;
  if (e != 0)
    {
      g_remove (tmp);
      g_set_error (error, RV_HUB_ERROR, e == ENOSPC ? RV_HUB_ERROR_DISK_FULL : RV_HUB_ERROR_FAILED,
                   "Cannot write %s: %s%s", path, g_strerror (e),
                   e == ENOSPC ? ". Free some space and pull again." : "");
      return FALSE;
    }
  return TRUE;
}

static gboolean
save_state (RvHubPull *p, GError **error)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, p->name);
  json_builder_set_member_name (b, "variant");
  json_builder_add_string_value (b, p->variant);
  add_files (b, p->files, TRUE);
  json_builder_end_object (b);
  g_autofree char *path = state_path (p);
  return write_json (path, b, error);
}

/* Reads a state or manifest file's files into `files`. */
static gboolean
read_files (JsonObject *o, GPtrArray *files, const char *path, GError **error)
{
  JsonNode *fn = json_object_get_member (o, "files");
  if (fn == NULL || !JSON_NODE_HOLDS_ARRAY (fn))
    goto bad;
  JsonArray *a = json_node_get_array (fn);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *x = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_OBJECT (x))
        goto bad;
      JsonObject *fo = json_node_get_object (x);
      const char *fp = json_str (fo, "path"), *repo = json_str (fo, "repo");
      const char *commit = json_str (fo, "commit"), *rf = json_str (fo, "rfilename");
      const char *sha = json_str (fo, "sha256"), *blob = json_str (fo, "blob_id");
      guint64 size;
      if (fp == NULL || !repo_path_is_safe (fp) || repo == NULL || commit == NULL || rf == NULL
          || !repo_path_is_safe (rf) || !json_uint (fo, "size", &size)
          || (sha != NULL && !is_hex (sha, 64, 64)) || (blob != NULL && !is_hex (blob, 40, 64)))
        goto bad;
      PullFile *f = g_new0 (PullFile, 1);
      f->path = g_strdup (fp);
      f->repo = g_strdup (repo);
      f->commit = g_strdup (commit);
      f->rfilename = g_strdup (rf);
      f->size = size;
      f->sha256 = g_strdup (sha);
      f->blob_id = g_strdup (blob);
      JsonNode *vn = json_object_get_member (fo, "verified");
      f->verified = vn != NULL && JSON_NODE_HOLDS_VALUE (vn)
                    && json_node_get_value_type (vn) == G_TYPE_BOOLEAN && json_node_get_boolean (vn);
      g_ptr_array_add (files, f);
    }
  return TRUE;
bad:
  g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
               "%s is damaged. Remove it (reverie-cli models rm NAME) and pull again.", path);
  return FALSE;
}

/* TRUE with files filled when a state from an earlier pull exists. */
static gboolean
load_state (RvHubPull *p, gboolean *found, GError **error)
{
  g_autofree char *path = state_path (p);
  *found = FALSE;
  g_autofree char *text = NULL;
  gsize len;
  if (!g_file_get_contents (path, &text, &len, NULL))
    return TRUE;
  g_autoptr (GError) local = NULL;
  g_autoptr (JsonNode) root = rv_json_parse (text, len, path, &local);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
                   "The download state %s is damaged. Run “reverie-cli models rm %s” and pull "
                   "again.", path, p->name);
      return FALSE;
    }
  JsonObject *o = json_node_get_object (root);
  const char *variant = json_str (o, "variant");
  if (g_strcmp0 (json_str (o, "name"), p->name) != 0 || variant == NULL)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
                   "The download state %s is not %s's. Run “reverie-cli models rm %s” and pull "
                   "again.", path, p->name, p->name);
      return FALSE;
    }
  if (!g_str_equal (variant, p->variant))
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
                   "A pull of %s with %s weights is unfinished. Resume it (pull %s%s), or drop "
                   "it with “reverie-cli models rm %s” first.", p->name, variant, p->name,
                   g_str_equal (variant, "full") ? " --full-precision" : "", p->name);
      return FALSE;
    }
  if (!read_files (o, p->files, path, error))
    return FALSE;
  *found = TRUE;
  return TRUE;
}

/* ---- one file ---- */

typedef struct {
  gnutls_hash_hd_t sha256;
  gnutls_hash_hd_t blob;   /* git blob SHA-1: "blob SIZE\0" + bytes; NULL when not checked */
} Hashes;

/* The digest of h as lower-case hex (g_free); h starts over. */
static char *
digest_hex (gnutls_hash_hd_t h, gnutls_digest_algorithm_t alg)
{
  guint8 d[64];
  guint n = gnutls_hash_get_len (alg);
  gnutls_hash_output (h, d);
  char *hex = g_malloc (2 * n + 1);
  for (guint i = 0; i < n; i++)
    g_snprintf (hex + 2 * i, 3, "%02x", d[i]);
  return hex;
}

static void
hashes_clear (Hashes *h)
{
  if (h->sha256 != NULL)
    gnutls_hash_deinit (h->sha256, NULL);
  if (h->blob != NULL)
    gnutls_hash_deinit (h->blob, NULL);
  h->sha256 = h->blob = NULL;
}

static void
hashes_reset (Hashes *h, const PullFile *f)
{
  hashes_clear (h);
  if (gnutls_hash_init (&h->sha256, GNUTLS_DIG_SHA256) != 0)
    g_error ("SHA-256 is not available from GnuTLS");
  if (f->sha256 == NULL && f->blob_id != NULL && strlen (f->blob_id) == 40)
    {
      if (gnutls_hash_init (&h->blob, GNUTLS_DIG_SHA1) != 0)
        g_error ("SHA-1 is not available from GnuTLS");
      g_autofree char *hdr = g_strdup_printf ("blob %" G_GUINT64_FORMAT, f->size);
      gnutls_hash (h->blob, hdr, strlen (hdr) + 1);
    }
}

static void
hashes_update (Hashes *h, const guint8 *data, gsize n)
{
  gnutls_hash (h->sha256, data, n);
  if (h->blob != NULL)
    gnutls_hash (h->blob, data, n);
}

static gboolean
write_all (RvHubPull *p, int fd, const guint8 *data, gsize n, const char *path, GError **error)
{
  gsize allowed = n;
  gboolean fault = FALSE;
  if (p->disk_limit > 0 && p->disk_written + n > p->disk_limit)
    {
      /* the test hook: the disk fills up after REVERIE_FAULT_DISK_FULL bytes */
      allowed = p->disk_written < p->disk_limit ? (gsize) (p->disk_limit - p->disk_written) : 0;
      fault = TRUE;
    }
  gsize off = 0;
  while (off < allowed)
    {
      gssize w = write (fd, data + off, allowed - off);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        {
          int e = errno;
          if (e == ENOSPC || e == EDQUOT)
            goto full;
          g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot write %s: %s", path,
                       g_strerror (e));
          return FALSE;
        }
      off += (gsize) w;
      p->disk_written += (guint64) w;
    }
  if (!fault)
    return TRUE;
full:
  {
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_DISK_FULL,
                 "The disk is full (writing %s). Free some space on the disk holding %s, or set "
                 "XDG_DATA_HOME to a folder on a larger disk, and pull again: what is downloaded "
                 "is kept. Nothing was installed.", path, p->models_dir);
  }
  return FALSE;
}

static char *
file_stage_path (RvHubPull *p, const PullFile *f, gboolean part)
{
  g_autofree char *dest = g_build_filename (p->stage_dir, f->path, NULL);
  return part ? g_strconcat (dest, ".part", NULL) : g_steal_pointer (&dest);
}

/* Hashes the first `len` bytes of fd (a part kept from before). */
static gboolean
rehash_part (RvHubPull *p, int fd, guint64 len, Hashes *h, const PullFile *f, guint index,
             GCancellable *cancellable, GError **error)
{
  g_autofree guint8 *buf = g_malloc (CHUNK);
  guint64 off = 0;
  if (lseek (fd, 0, SEEK_SET) < 0)
    goto fail;
  while (off < len)
    {
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      gsize want = (gsize) MIN ((guint64) CHUNK, len - off);
      gssize n = read (fd, buf, want);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        goto fail;
      hashes_update (h, buf, (gsize) n);
      off += (guint64) n;
      report (p, RV_HUB_STAGE_CHECKING, p->done_before + off, f, index, FALSE);
    }
  return TRUE;
fail:
  g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot read back the partial file of %s.",
               f->path);
  return FALSE;
}

/* Compares the finished hashes with what the Hub lists; fills f->sha256. */
static gboolean
check_hashes (RvHubPull *p, PullFile *f, Hashes *h, GError **error)
{
  g_autofree char *got = digest_hex (h->sha256, GNUTLS_DIG_SHA256);
  g_autofree char *blob = h->blob != NULL ? digest_hex (h->blob, GNUTLS_DIG_SHA1) : NULL;
  if (f->sha256 != NULL && g_ascii_strcasecmp (got, f->sha256) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_INTEGRITY,
                   "%s arrived damaged: its SHA-256 is %s, the Hub lists %s.", f->path, got,
                   f->sha256);
      return FALSE;
    }
  if (blob != NULL && g_ascii_strcasecmp (blob, f->blob_id) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_INTEGRITY,
                   "%s arrived damaged: its git blob id is %s, the Hub lists %s.", f->path, blob,
                   f->blob_id);
      return FALSE;
    }
  if (f->sha256 == NULL)
    f->sha256 = g_steal_pointer (&got);   /* for models verify: the hash of what was checked */
  return TRUE;
}

/* Checks the first response against the listing, and learns the LFS hash
 * when the listing did not give it. */
static gboolean
check_linked (RvHubPull *p, PullFile *f, const RvHubLinked *l, GError **error)
{
  if (l->commit != NULL && g_ascii_strcasecmp (l->commit, f->commit) != 0)
    return protocol_error (error, "%s came from commit %s, not the listed %s", f->path, l->commit,
                           f->commit);
  if (l->size >= 0 && (guint64) l->size != f->size)
    return protocol_error (error, "%s is %" G_GINT64_FORMAT " bytes, the listing said %"
                           G_GUINT64_FORMAT, f->path, l->size, f->size);
  if (l->linked && l->etag != NULL && is_hex (l->etag, 64, 64))
    {
      if (f->sha256 == NULL)
        f->sha256 = g_ascii_strdown (l->etag, -1);
      else if (g_ascii_strcasecmp (f->sha256, l->etag) != 0)
        return protocol_error (error, "%s's X-Linked-Etag differs from the listed SHA-256",
                               f->path);
    }
  return TRUE;
}

/* One attempt at the rest of the file from `*have`: streams it into fd,
 * hashing as it arrives. Transport errors return FALSE with *retry set. */
static gboolean
fetch_rest (RvHubPull *p, PullFile *f, guint index, int fd, guint64 *have, Hashes *h,
            gboolean *retry, GCancellable *cancellable, GError **error)
{
  *retry = FALSE;
  g_autofree char *commit = g_uri_escape_string (f->commit, NULL, FALSE);
  g_autofree char *file = escape_path (f->rfilename);
  g_autofree char *url = g_strdup_printf ("%s/%s/resolve/%s/%s", p->endpoint, f->repo, commit, file);
  g_autoptr (SoupMessage) msg = NULL;
  RvHubLinked linked = { .size = -1 };
  g_autoptr (GError) local = NULL;
  g_autoptr (GInputStream) in = send (p, url, *have, f->repo, f->rfilename, FALSE, &msg, &linked,
                                      cancellable, &local);
  if (in == NULL)
    {
      *retry = local->domain == RV_HUB_ERROR && (local->code == RV_HUB_ERROR_STALLED
                                                 || local->code == RV_HUB_ERROR_NETWORK);
      g_propagate_error (error, g_steal_pointer (&local));
      rv_hub_linked_clear (&linked);
      return FALSE;
    }
  gboolean ok = check_linked (p, f, &linked, error);
  rv_hub_linked_clear (&linked);
  if (!ok)
    return FALSE;
  guint status = soup_message_get_status (msg);
  SoupMessageHeaders *rh = soup_message_get_response_headers (msg);
  if (status == 206)
    {
      guint64 start, end;
      gint64 total;
      if (!rv_hub_parse_content_range (soup_message_headers_get_one (rh, "Content-Range"), &start,
                                       &end, &total)
          || start != *have || (total >= 0 && (guint64) total != f->size))
        return protocol_error (error, "a partial answer for %s that does not continue it", f->path);
    }
  else if (status == 200 || status == 416)
    {
      /* the server ignored the range (or refused it): start the file over */
      if (*have > 0)
        {
          if (ftruncate (fd, 0) != 0 || lseek (fd, 0, SEEK_SET) < 0)
            return protocol_error (error, "cannot restart %s", f->path);
          hashes_reset (h, f);
          *have = 0;
        }
      if (status == 416)
        {
          *retry = TRUE;
          return protocol_error (error, "the server refused to resume %s", f->path);
        }
    }
  else
    return protocol_error (error, "HTTP %u for %s", status, f->path);

  g_autofree guint8 *buf = g_malloc (CHUNK);
  for (;;)
    {
      gsize filled = 0;
      /* fill a whole chunk before hashing and writing: fewer, larger calls */
      while (filled < CHUNK)
        {
          gssize n = g_input_stream_read (in, buf + filled, CHUNK - filled, cancellable, &local);
          if (n < 0)
            break;
          if (n == 0)
            break;
          filled += (gsize) n;
          if (*have + filled >= f->size)
            break;
        }
      if (*have + filled > f->size)
        return protocol_error (error, "%s is longer than the %" G_GUINT64_FORMAT " bytes listed",
                               f->path, f->size);
      if (filled > 0)
        {
          hashes_update (h, buf, filled);
          g_autofree char *part = file_stage_path (p, f, TRUE);
          if (!write_all (p, fd, buf, filled, part, error))
            return FALSE;
          *have += filled;
          p->fetched += filled;
          report (p, RV_HUB_STAGE_DOWNLOADING, p->done_before + *have, f, index, FALSE);
        }
      if (local != NULL)
        {
          *retry = !g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          network_error (p, error, local, url, f->path);
          return FALSE;
        }
      if (*have == f->size)
        break;
      if (filled < CHUNK)
        {
          /* end of stream before the end of the file */
          *retry = TRUE;
          g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NETWORK,
                       "The connection to %s closed after %" G_GUINT64_FORMAT " of %"
                       G_GUINT64_FORMAT " bytes of %s. Run the pull again: it resumes.",
                       host_of (url), *have, f->size, f->path);
          return FALSE;
        }
    }
  /* read to the end of the body so the connection is kept for the next file */
  guint8 probe[1];
  if (g_input_stream_read (in, probe, 1, cancellable, NULL) > 0)
    return protocol_error (error, "%s is longer than the %" G_GUINT64_FORMAT " bytes listed",
                           f->path, f->size);
  g_input_stream_close (in, NULL, NULL);
  return TRUE;
}

static gboolean
fetch_file (RvHubPull *p, PullFile *f, guint index, GCancellable *cancellable, GError **error)
{
  g_autofree char *part = file_stage_path (p, f, TRUE);
  g_autofree char *dest = file_stage_path (p, f, FALSE);
  g_autofree char *dir = g_path_get_dirname (part);
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot create %s: %s", dir,
                   g_strerror (errno));
      return FALSE;
    }
  int fd = g_open (part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot open %s: %s", part,
                   g_strerror (errno));
      return FALSE;
    }
  Hashes h = { 0 };
  gboolean ok = FALSE;
  for (int round = 0; round < 2 && !ok; round++)
    {
      /* what is kept from before: up to the last 1 MiB boundary, or all of a
       * complete file; hashed once here, then the rest streams in */
      GStatBuf st;
      guint64 have = 0;
      if (fstat (fd, &st) == 0 && st.st_size > 0)
        {
          have = (guint64) st.st_size;
          if (have > f->size)
            have = 0;
          else if (have < f->size)
            have -= have % RESUME_GRAIN;
        }
      if (ftruncate (fd, (off_t) have) != 0)
        goto io_fail;
      hashes_reset (&h, f);
      if (have > 0 && !rehash_part (p, fd, have, &h, f, index, cancellable, error))
        goto out;
      if (lseek (fd, (off_t) have, SEEK_SET) < 0)
        goto io_fail;
      for (int attempt = 0; have < f->size; attempt++)
        {
          gboolean retry = FALSE;
          g_autoptr (GError) local = NULL;
          if (fetch_rest (p, f, index, fd, &have, &h, &retry, cancellable, &local))
            break;
          if (!retry || attempt + 1 >= MAX_ATTEMPTS)
            {
              g_propagate_error (error, g_steal_pointer (&local));
              goto out;
            }
          /* a dropped or stalled connection: wait a little, resume from here */
          g_usleep ((gulong) (attempt + 1) * G_USEC_PER_SEC / 2);
          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            goto out;
        }
      g_autoptr (GError) local = NULL;
      if (check_hashes (p, f, &h, &local))
        {
          ok = TRUE;
          break;
        }
      /* damaged in transit (or on disk before): throw it away and fetch it
       * once more; a second failure is reported, never installed */
      if (ftruncate (fd, 0) != 0)
        goto io_fail;
      if (round == 1)
        {
          g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_INTEGRITY,
                       "%s Fetched twice, damaged both times: nothing was installed. Try again "
                       "later or from another network (a proxy may alter files).", local->message);
          goto out;
        }
      g_message ("%s; fetching it again", local->message);
    }
  if (f->size >= DURABLE_SIZE && fsync (fd) != 0)
    goto io_fail;
  if (g_rename (part, dest) != 0)
    goto io_fail;
  f->verified = TRUE;
  goto out;
io_fail:
  if (errno == ENOSPC)
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_DISK_FULL,
                 "The disk is full (writing %s). Free some space and pull again.", part);
  else
    g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot write %s: %s", part,
                 g_strerror (errno));
out:
  hashes_clear (&h);
  close (fd);
  return f->verified;
}

/* ---- the store ---- */

char *
rv_hub_models_dir (void)
{
  return g_build_filename (g_get_user_data_dir (), "reverie", "models", NULL);
}

static char *
default_dir (const char *models_dir)
{
  return models_dir != NULL ? g_strdup (models_dir) : rv_hub_models_dir ();
}

char *
rv_hub_installed_dir (const char *models_dir, const char *name)
{
  if (!rv_catalogue_name_is_valid (name))
    return NULL;
  g_autofree char *root = default_dir (models_dir);
  g_autofree char *dir = g_build_filename (root, name, NULL);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    return NULL;
  return g_steal_pointer (&dir);
}

static int
name_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

GPtrArray *
rv_hub_list_installed (const char *models_dir)
{
  g_autofree char *root = default_dir (models_dir);
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) d = g_dir_open (root, 0, NULL);
  const char *n;
  while (d != NULL && (n = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (root, n, NULL);
      if (rv_catalogue_name_is_valid (n) && g_file_test (path, G_FILE_TEST_IS_DIR))
        g_ptr_array_add (out, g_strdup (n));
    }
  g_ptr_array_sort (out, name_cmp);
  return out;
}

static JsonNode *
read_json_file (const char *path)
{
  g_autofree char *text = NULL;
  gsize len;
  if (!g_file_get_contents (path, &text, &len, NULL))
    return NULL;
  JsonNode *root = rv_json_parse (text, len, path, NULL);
  if (root != NULL && !JSON_NODE_HOLDS_OBJECT (root))
    g_clear_pointer (&root, json_node_unref);
  return root;
}

gboolean
rv_hub_installed_info (const char *models_dir, const char *name, char **variant, guint64 *bytes)
{
  g_autofree char *dir = rv_hub_installed_dir (models_dir, name);
  if (dir == NULL)
    return FALSE;
  g_autofree char *path = g_build_filename (dir, MANIFEST_FILE, NULL);
  g_autoptr (JsonNode) root = read_json_file (path);
  if (root == NULL)
    return FALSE;
  JsonObject *o = json_node_get_object (root);
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (pull_file_free);
  if (!read_files (o, files, path, NULL))
    return FALSE;
  guint64 sum = 0;
  for (guint i = 0; i < files->len; i++)
    sum += ((PullFile *) g_ptr_array_index (files, i))->size;
  if (variant != NULL)
    *variant = g_strdup (json_str (o, "variant"));
  if (bytes != NULL)
    *bytes = sum;
  return TRUE;
}

gboolean
rv_hub_staged_info (const char *models_dir, const char *name, guint64 *done, guint64 *total)
{
  if (!rv_catalogue_name_is_valid (name))
    return FALSE;
  g_autofree char *root = default_dir (models_dir);
  g_autofree char *dir = g_build_filename (root, STAGING_DIR, name, NULL);
  g_autofree char *path = g_build_filename (dir, STATE_FILE, NULL);
  g_autoptr (JsonNode) node = read_json_file (path);
  if (node == NULL)
    return FALSE;
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (pull_file_free);
  if (!read_files (json_node_get_object (node), files, path, NULL))
    return FALSE;
  *done = *total = 0;
  for (guint i = 0; i < files->len; i++)
    {
      PullFile *f = g_ptr_array_index (files, i);
      *total += f->size;
      if (f->verified)
        *done += f->size;
      else
        {
          g_autofree char *part = g_strconcat (dir, G_DIR_SEPARATOR_S, f->path, ".part", NULL);
          GStatBuf st;
          if (g_stat (part, &st) == 0)
            *done += MIN ((guint64) st.st_size, f->size);
        }
    }
  return TRUE;
}

/* Deletes a folder tree without following links out of it. */
static gboolean
remove_tree (const char *path, GError **error)
{
  GStatBuf st;
  if (g_lstat (path, &st) != 0)
    return TRUE;
  if (S_ISDIR (st.st_mode))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      const char *n;
      while (d != NULL && (n = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, n, NULL);
          if (!remove_tree (child, error))
            return FALSE;
        }
    }
  if (g_remove (path) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot remove %s: %s", path,
                   g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

/* An exclusive lock on the set's staging, so that two pulls (or a pull and
 * a removal) of one set never run at once. -1 with an error when taken. */
static int
lock_set (const char *root, const char *name, GError **error)
{
  g_autofree char *staging = g_build_filename (root, STAGING_DIR, NULL);
  if (g_mkdir_with_parents (staging, 0755) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot create %s: %s", staging,
                   g_strerror (errno));
      return -1;
    }
  g_autofree char *lock_name = g_strconcat (name, ".lock", NULL);
  g_autofree char *path = g_build_filename (staging, lock_name, NULL);
  int fd = g_open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot open %s: %s", path,
                   g_strerror (errno));
      return -1;
    }
  if (flock (fd, LOCK_EX | LOCK_NB) != 0)
    {
      close (fd);
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_BUSY,
                   "Another pull of %s is running. Wait for it to finish, or stop it first.", name);
      return -1;
    }
  return fd;
}

gboolean
rv_hub_remove (const char *models_dir, const char *name, GError **error)
{
  if (!rv_catalogue_name_is_valid (name))
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NOT_INSTALLED,
                   "“%s” is not a model set name.", name);
      return FALSE;
    }
  g_autofree char *root = default_dir (models_dir);
  g_autofree char *dir = g_build_filename (root, name, NULL);
  g_autofree char *staged = g_build_filename (root, STAGING_DIR, name, NULL);
  if (!g_file_test (dir, G_FILE_TEST_EXISTS) && !g_file_test (staged, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NOT_INSTALLED,
                   "No model set named %s is installed or being pulled (in %s).", name, root);
      return FALSE;
    }
  int lock = lock_set (root, name, error);
  if (lock < 0)
    return FALSE;
  /* the installed set first goes aside by one rename: never half a set in place */
  g_autofree char *trash = g_strdup_printf ("%s/%s/%s.removing", root, STAGING_DIR, name);
  gboolean ok = remove_tree (trash, error);
  if (ok && g_file_test (dir, G_FILE_TEST_EXISTS) && g_rename (dir, trash) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot remove %s: %s", dir,
                   g_strerror (errno));
      ok = FALSE;
    }
  ok = ok && remove_tree (trash, error) && remove_tree (staged, error);
  g_autofree char *lock_path = g_strdup_printf ("%s/%s/%s.lock", root, STAGING_DIR, name);
  g_remove (lock_path);
  close (lock);
  return ok;
}

gboolean
rv_hub_verify (const char *models_dir, const char *name, RvHubProgressFunc func, gpointer data,
               GCancellable *cancellable, GError **error)
{
  g_autofree char *dir = rv_hub_installed_dir (models_dir, name);
  if (dir == NULL)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NOT_INSTALLED,
                   "No model set named %s is installed. Get it with “reverie-cli models pull %s”.",
                   name, name);
      return FALSE;
    }
  g_autofree char *path = g_build_filename (dir, MANIFEST_FILE, NULL);
  g_autoptr (JsonNode) root = read_json_file (path);
  if (root == NULL)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
                   "%s has no readable manifest (%s), so there is nothing to check it against; "
                   "it was not installed by “models pull”.", name, MANIFEST_FILE);
      return FALSE;
    }
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (pull_file_free);
  if (!read_files (json_node_get_object (root), files, path, error))
    return FALSE;
  guint64 total = 0, done = 0;
  for (guint i = 0; i < files->len; i++)
    total += ((PullFile *) g_ptr_array_index (files, i))->size;
  g_autoptr (GString) bad = g_string_new (NULL);
  guint n_bad = 0;
  g_autofree guint8 *buf = g_malloc (CHUNK);
  gint64 last = 0;
  for (guint i = 0; i < files->len; i++)
    {
      PullFile *f = g_ptr_array_index (files, i);
      g_autofree char *fp = g_build_filename (dir, f->path, NULL);
      int fd = g_open (fp, O_RDONLY | O_CLOEXEC, 0);
      gnutls_hash_hd_t sum;
      if (gnutls_hash_init (&sum, GNUTLS_DIG_SHA256) != 0)
        g_error ("SHA-256 is not available from GnuTLS");
      guint64 len = 0;
      gboolean readable = fd >= 0;
      for (;;)
        {
          if (fd < 0)
            break;
          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            {
              close (fd);
              gnutls_hash_deinit (sum, NULL);
              return FALSE;
            }
          gssize n = read (fd, buf, CHUNK);
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            readable = FALSE;
          if (n <= 0)
            break;
          gnutls_hash (sum, buf, (gsize) n);
          len += (guint64) n;
          gint64 now = g_get_monotonic_time ();
          if (func != NULL && now - last > G_USEC_PER_SEC / 10)
            {
              last = now;
              RvHubProgress pr = { .stage = RV_HUB_STAGE_CHECKING, .done = done + len,
                                   .total = total, .eta = -1, .file = f->path, .file_index = i,
                                   .n_files = files->len };
              func (&pr, data);
            }
        }
      if (fd >= 0)
        close (fd);
      g_autofree char *hex = digest_hex (sum, GNUTLS_DIG_SHA256);
      gnutls_hash_deinit (sum, NULL);
      done += f->size;
      const char *why = NULL;
      if (!readable)
        why = "missing or unreadable";
      else if (len != f->size)
        why = "wrong size";
      else if (f->sha256 != NULL && g_ascii_strcasecmp (hex, f->sha256) != 0)
        why = "SHA-256 differs from the Hub's";
      if (why != NULL)
        {
          n_bad++;
          if (n_bad <= 5)
            g_string_append_printf (bad, "%s%s (%s)", n_bad > 1 ? ", " : "", f->path, why);
        }
    }
  if (func != NULL)
    {
      RvHubProgress pr = { .stage = RV_HUB_STAGE_CHECKING, .done = total, .total = total,
                           .eta = -1, .file_index = files->len, .n_files = files->len };
      func (&pr, data);
    }
  if (n_bad > 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_INTEGRITY,
                   "%u file(s) of %s are damaged: %s%s. Run “reverie-cli models rm %s” and pull "
                   "it again.", n_bad, name, bad->str, n_bad > 5 ? ", …" : "", name);
      return FALSE;
    }
  return TRUE;
}

/* ---- pull ---- */

static gboolean
offline (void)
{
  const char *v = g_getenv ("HF_HUB_OFFLINE");
  return v != NULL && (g_str_equal (v, "1") || g_ascii_strcasecmp (v, "true") == 0
                       || g_ascii_strcasecmp (v, "yes") == 0 || g_ascii_strcasecmp (v, "on") == 0);
}

/* Lists every source once and fills p->files (commits pinned). */
static gboolean
plan_files (RvHubPull *p, GCancellable *cancellable, GError **error)
{
  for (guint i = 0; i < p->n_sources; i++)
    {
      const RvCatalogueSource *src = &p->sources[i];
      report (p, RV_HUB_STAGE_LISTING, 0, NULL, 0, TRUE);
      g_autoptr (RvHubRevision) rev = list_source (p, src, cancellable, error);
      if (rev == NULL)
        return FALSE;
      g_autoptr (GPtrArray) sel = rv_hub_select_files (rev, src, p->variant);
      if (sel->len == 0)
        {
          g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_NOT_FOUND,
                       "%s holds none of the files the catalogue names for %s (%s…). Check the "
                       "catalogue entry.", src->repo, p->name, src->include[0]);
          return FALSE;
        }
      for (guint k = 0; k < sel->len; k++)
        {
          RvHubSibling *s = g_ptr_array_index (sel, k);
          PullFile *f = g_new0 (PullFile, 1);
          f->path = src->local[0] ? g_strconcat (src->local, "/", s->rfilename, NULL)
                                  : g_strdup (s->rfilename);
          f->repo = g_strdup (src->repo);
          f->commit = g_strdup (rev->sha);
          f->rfilename = g_strdup (s->rfilename);
          f->size = s->size;
          f->sha256 = g_strdup (s->lfs_sha256);
          f->blob_id = g_strdup (s->blob_id);
          if (g_str_equal (f->path, STATE_FILE) || g_str_equal (f->path, MANIFEST_FILE))
            {
              pull_file_free (f);
              continue;
            }
          g_ptr_array_add (p->files, f);
        }
    }
  return TRUE;
}

static gboolean
check_free_space (RvHubPull *p, GError **error)
{
  guint64 need = 0;
  for (guint i = 0; i < p->files->len; i++)
    {
      PullFile *f = g_ptr_array_index (p->files, i);
      if (f->verified)
        continue;
      g_autofree char *part = file_stage_path (p, f, TRUE);
      GStatBuf st;
      guint64 have = g_stat (part, &st) == 0 ? MIN ((guint64) st.st_size, f->size) : 0;
      if (have < f->size)
        have -= have % RESUME_GRAIN;
      need += f->size - have;
    }
  guint64 free_bytes = G_MAXUINT64;
  const char *fake = g_getenv ("REVERIE_FAULT_DISK_FREE");   /* the tests' hook */
  if (fake == NULL || !parse_decimal (fake, G_MAXUINT64 / 2, &free_bytes))
    {
      g_autoptr (GFile) dir = g_file_new_for_path (p->stage_dir);
      g_autoptr (GFileInfo) info = g_file_query_filesystem_info (dir, G_FILE_ATTRIBUTE_FILESYSTEM_FREE,
                                                                NULL, NULL);
      if (info != NULL && g_file_info_has_attribute (info, G_FILE_ATTRIBUTE_FILESYSTEM_FREE))
        free_bytes = g_file_info_get_attribute_uint64 (info, G_FILE_ATTRIBUTE_FILESYSTEM_FREE);
    }
  if (need > free_bytes)
    {
      g_autofree char *n = format_bytes (need), *f = format_bytes (free_bytes);
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_DISK_FULL,
                   "%s needs %s more disk space, but only %s is free on the disk holding %s. "
                   "Free some space, or set XDG_DATA_HOME to a folder on a larger disk, and pull "
                   "again. Nothing was downloaded.", p->name, n, f, p->models_dir);
      return FALSE;
    }
  return TRUE;
}

static gboolean
install (RvHubPull *p, GError **error)
{
  report (p, RV_HUB_STAGE_INSTALLING, p->total, NULL, p->files->len, TRUE);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, p->name);
  json_builder_set_member_name (b, "variant");
  json_builder_add_string_value (b, p->variant);
  json_builder_set_member_name (b, "endpoint");
  json_builder_add_string_value (b, p->endpoint);
  json_builder_set_member_name (b, "installed");
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *iso = g_date_time_format_iso8601 (now);
  json_builder_add_string_value (b, iso);
  add_files (b, p->files, FALSE);
  json_builder_end_object (b);
  g_autofree char *manifest = g_build_filename (p->stage_dir, MANIFEST_FILE, NULL);
  if (!write_json (manifest, b, error))
    return FALSE;
  /* the small files and the manifest reach the disk before the set appears */
  int dfd = g_open (p->stage_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dfd >= 0)
    {
      syncfs (dfd);
      close (dfd);
    }
  g_autofree char *state = state_path (p);
  g_remove (state);
  /* one rename: the set appears whole or not at all */
  if (g_rename (p->stage_dir, p->final_dir) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot move %s to %s: %s",
                   p->stage_dir, p->final_dir, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

gboolean
rv_hub_pull (RvHubPull *p, GCancellable *cancellable, GError **error)
{
  g_clear_pointer (&p->final_dir, g_free);
  g_clear_pointer (&p->stage_dir, g_free);
  g_ptr_array_set_size (p->files, 0);
  p->fetched = p->total = p->done_before = 0;
  p->was_installed = FALSE;
  if (p->kind == RV_CATALOGUE_EMBEDDED)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED,
                   "%s ships with Reverie and is always installed: nothing to download.", p->name);
      return FALSE;
    }
  p->final_dir = g_build_filename (p->models_dir, p->name, NULL);
  p->stage_dir = g_build_filename (p->models_dir, STAGING_DIR, p->name, NULL);
  if (g_file_test (p->final_dir, G_FILE_TEST_IS_DIR))
    {
      p->was_installed = TRUE;
      return TRUE;
    }
  if (offline ())
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_OFFLINE,
                   "HF_HUB_OFFLINE is set, so nothing is downloaded. Unset it to pull %s, or "
                   "copy a model set folder to this machine and use --model DIR.", p->name);
      return FALSE;
    }
  int lock = lock_set (p->models_dir, p->name, error);
  if (lock < 0)
    return FALSE;
  gboolean ok = FALSE, found = FALSE;
  if (g_mkdir_with_parents (p->stage_dir, 0755) != 0)
    {
      g_set_error (error, RV_HUB_ERROR, RV_HUB_ERROR_FAILED, "Cannot create %s: %s", p->stage_dir,
                   g_strerror (errno));
      goto out;
    }
  if (!load_state (p, &found, error))
    goto out;
  if (!found && (!plan_files (p, cancellable, error) || !save_state (p, error)))
    goto out;
  for (guint i = 0; i < p->files->len; i++)
    {
      PullFile *f = g_ptr_array_index (p->files, i);
      p->total += f->size;
      if (f->verified)
        {
          /* a verified file must still be there (a user may have deleted
           * it); a small one is checked again (DURABLE_SIZE) */
          g_autofree char *dest = file_stage_path (p, f, FALSE);
          g_autofree char *part = file_stage_path (p, f, TRUE);
          GStatBuf st;
          if (g_stat (dest, &st) != 0 || (guint64) st.st_size != f->size)
            f->verified = FALSE;
          else if (f->size < DURABLE_SIZE && g_rename (dest, part) == 0)
            f->verified = FALSE;
        }
      if (f->verified)
        p->done_before += f->size;
    }
  if (!check_free_space (p, error))
    goto out;
  for (guint i = 0; i < p->files->len; i++)
    {
      PullFile *f = g_ptr_array_index (p->files, i);
      if (f->verified)
        continue;
      report (p, RV_HUB_STAGE_DOWNLOADING, p->done_before, f, i, TRUE);
      if (!fetch_file (p, f, i, cancellable, error))
        goto out;
      p->done_before += f->size;
      report (p, RV_HUB_STAGE_DOWNLOADING, p->done_before, f, i, TRUE);
      /* only a durable (synced) file's verdict is trusted on resume; smaller
       * files are hashed again then, so their state need not be written */
      if (f->size >= DURABLE_SIZE && !save_state (p, error))
        goto out;
    }
  ok = install (p, error);
out:
  {
    g_autofree char *lock_name = g_strconcat (p->name, ".lock", NULL);
    g_autofree char *lock_path = g_build_filename (p->models_dir, STAGING_DIR, lock_name, NULL);
    if (ok)
      g_remove (lock_path);
    close (lock);
  }
  return ok;
}
