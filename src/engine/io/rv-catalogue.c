/* rv-catalogue.c: reads data/models/catalogue.json. Strict: unknown members,
 * wrong types, unsafe names or paths and duplicates are refused, because the
 * catalogue decides what is written where on the user's disk. */
#include "config.h"

#include "rv-catalogue.h"
#include "rv-safetensors.h"   /* rv_json_parse: the engine's strict JSON reader */

#include <string.h>

struct _RvCatalogue {
  char             *path;
  RvCatalogueEntry *entries;
  guint             n_entries;
};

typedef struct {
  const char *what;     /* file, for messages */
  const char *entry;    /* entry name, when known */
  GError    **error;
} Ctx;

static gboolean G_GNUC_PRINTF (2, 3)
fail (Ctx *c, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (c->entry != NULL)
    g_set_error (c->error, RV_ERROR, RV_ERROR_MODEL, "The model catalogue %s, entry “%s”: %s",
                 c->what, c->entry, msg);
  else
    g_set_error (c->error, RV_ERROR, RV_ERROR_MODEL, "The model catalogue %s: %s", c->what, msg);
  return FALSE;
}

/* Every member of `o` must be in `allowed`: a misspelt key must not be
 * silently ignored. */
static gboolean
only_members (Ctx *c, JsonObject *o, const char *where, const char *const *allowed)
{
  g_autoptr (GList) names = json_object_get_members (o);
  for (GList *l = names; l != NULL; l = l->next)
    if (!g_strv_contains (allowed, l->data))
      return fail (c, "%s has an unknown member “%s”.", where, (const char *) l->data);
  return TRUE;
}

static gboolean
get_string (Ctx *c, JsonObject *o, const char *where, const char *key, gboolean required,
            char **out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL)
    {
      if (required)
        return fail (c, "%s needs “%s”.", where, key);
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return fail (c, "%s: “%s” must be a string.", where, key);
  *out = g_strdup (json_node_get_string (n));
  return TRUE;
}

static gboolean
get_uint (Ctx *c, JsonObject *o, const char *where, const char *key, guint64 max, guint64 *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL)
    return fail (c, "%s needs “%s”.", where, key);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64
      || json_node_get_int (n) < 0 || (guint64) json_node_get_int (n) > max)
    return fail (c, "%s: “%s” must be a whole number from 0 to %" G_GUINT64_FORMAT ".", where,
                 key, max);
  *out = (guint64) json_node_get_int (n);
  return TRUE;
}

/* *out stays NULL when an optional list is absent. */
static gboolean
get_array (Ctx *c, JsonObject *o, const char *where, const char *key, gboolean required,
           JsonArray **out)
{
  *out = NULL;
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL)
    return required ? fail (c, "%s needs “%s”.", where, key) : TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return fail (c, "%s: “%s” must be a list.", where, key);
  *out = json_node_get_array (n);
  return TRUE;
}

gboolean
rv_catalogue_name_is_valid (const char *name)
{
  if (name == NULL || name[0] == '\0' || strlen (name) > 64)
    return FALSE;
  if (!g_ascii_islower (name[0]) && !g_ascii_isdigit (name[0]))
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '.' && *p != '-' && *p != '_')
      return FALSE;
  return TRUE;
}

/* "owner/name" as the Hub spells repositories. */
static gboolean
repo_is_valid (const char *repo)
{
  const char *slash = strchr (repo, '/');
  if (slash == NULL || slash == repo || slash[1] == '\0' || strchr (slash + 1, '/') != NULL
      || strlen (repo) > 200)
    return FALSE;
  for (const char *p = repo; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && *p != '.' && *p != '/')
      return FALSE;
  return strstr (repo, "..") == NULL && repo[0] != '.' && slash[1] != '.';
}

/* A relative path of plain components: no "..", ".", empty parts or
 * backslashes. A trailing '/' (a folder) is allowed when `folder_ok`. */
static gboolean
rel_path_is_safe (const char *p, gboolean folder_ok)
{
  gsize len = strlen (p);
  if (len == 0 || len > 400 || p[0] == '/' || strchr (p, '\\') != NULL)
    return FALSE;
  if (p[len - 1] == '/' && !folder_ok)
    return FALSE;
  g_auto (GStrv) parts = g_strsplit (p, "/", -1);
  guint n = g_strv_length (parts);
  for (guint i = 0; i < n; i++)
    {
      if (i == n - 1 && parts[i][0] == '\0' && folder_ok && n > 1)
        break;   /* the trailing '/' */
      if (parts[i][0] == '\0' || g_str_equal (parts[i], ".") || g_str_equal (parts[i], "..")
          || !g_utf8_validate (parts[i], -1, NULL))
        return FALSE;
      for (const char *c = parts[i]; *c; c++)
        if ((guchar) *c < 0x20)
          return FALSE;
    }
  return TRUE;
}

static void
entry_clear (RvCatalogueEntry *e)
{
  g_free (e->name);
  g_free (e->title);
  g_free (e->description);
  g_free (e->licence_name);
  g_free (e->licence_url);
  g_free (e->licence_text);
  for (guint i = 0; i < e->n_sources; i++)
    {
      g_free (e->sources[i].repo);
      g_free (e->sources[i].revision);
      g_free (e->sources[i].local);
      g_strfreev (e->sources[i].include);
    }
  g_free (e->sources);
  for (guint i = 0; i < e->n_variants; i++)
    {
      g_free (e->variants[i].name);
      g_free (e->variants[i].description);
    }
  g_free (e->variants);
  g_free (e->memory);
  g_free (e->memory_basis);
}

static gboolean
parse_licence (Ctx *c, JsonNode *n, RvCatalogueEntry *e)
{
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (c, "“licence” must be an object with name, url and text.");
  JsonObject *o = json_node_get_object (n);
  static const char *const keys[] = { "name", "url", "text", NULL };
  if (!only_members (c, o, "“licence”", keys)
      || !get_string (c, o, "“licence”", "name", TRUE, &e->licence_name)
      || !get_string (c, o, "“licence”", "url", TRUE, &e->licence_url)
      || !get_string (c, o, "“licence”", "text", TRUE, &e->licence_text))
    return FALSE;
  if (!g_str_has_prefix (e->licence_url, "https://") && !g_str_has_prefix (e->licence_url, "http://"))
    return fail (c, "the licence URL must start with https:// (got “%s”).", e->licence_url);
  if (e->licence_name[0] == '\0' || e->licence_text[0] == '\0')
    return fail (c, "the licence needs a name and a text to show before the download.");
  return TRUE;
}

static gboolean
parse_source (Ctx *c, JsonNode *n, guint index, RvCatalogueSource *s)
{
  g_autofree char *where = g_strdup_printf ("source %u", index + 1);
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (c, "%s must be an object.", where);
  JsonObject *o = json_node_get_object (n);
  static const char *const keys[] = { "repo", "revision", "local", "include", NULL };
  if (!only_members (c, o, where, keys)
      || !get_string (c, o, where, "repo", TRUE, &s->repo)
      || !get_string (c, o, where, "revision", FALSE, &s->revision)
      || !get_string (c, o, where, "local", TRUE, &s->local))
    return FALSE;
  if (!repo_is_valid (s->repo))
    return fail (c, "%s: “%s” is not a Hub repository name (owner/name).", where, s->repo);
  if (s->revision == NULL)
    s->revision = g_strdup ("main");
  if (s->revision[0] == '\0' || !rel_path_is_safe (s->revision, FALSE) || strchr (s->revision, '?')
      || strchr (s->revision, '#') || strchr (s->revision, ' '))
    return fail (c, "%s: “%s” is not a revision (a branch, tag or commit).", where, s->revision);
  if (s->local[0] != '\0' && (!rel_path_is_safe (s->local, FALSE) || strchr (s->local, '/')
                              || s->local[0] == '.'))
    return fail (c, "%s: “local” must be one folder name such as “prior” (got “%s”).", where,
                 s->local);
  JsonArray *inc = NULL;
  if (!get_array (c, o, where, "include", TRUE, &inc))
    return FALSE;
  guint len = json_array_get_length (inc);
  if (len == 0)
    return fail (c, "%s: “include” lists no files or folders.", where);
  s->include = g_new0 (char *, len + 1);
  for (guint i = 0; i < len; i++)
    {
      JsonNode *x = json_array_get_element (inc, i);
      if (!JSON_NODE_HOLDS_VALUE (x) || json_node_get_value_type (x) != G_TYPE_STRING)
        return fail (c, "%s: “include” must list strings.", where);
      const char *p = json_node_get_string (x);
      if (!rel_path_is_safe (p, TRUE))
        return fail (c, "%s: “%s” is not a relative path inside the repository.", where, p);
      s->include[i] = g_strdup (p);
    }
  return TRUE;
}

static gboolean
parse_variant (Ctx *c, JsonNode *n, guint index, RvCatalogueVariant *v)
{
  g_autofree char *where = g_strdup_printf ("variant %u", index + 1);
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (c, "%s must be an object.", where);
  JsonObject *o = json_node_get_object (n);
  static const char *const keys[] = { "name", "download_bytes", "description", NULL };
  if (!only_members (c, o, where, keys)
      || !get_string (c, o, where, "name", TRUE, &v->name)
      || !get_uint (c, o, where, "download_bytes", (guint64) 1 << 50, &v->download_bytes)
      || !get_string (c, o, where, "description", FALSE, &v->description))
    return FALSE;
  if (!g_str_equal (v->name, "fp16") && !g_str_equal (v->name, "full"))
    return fail (c, "%s: “name” must be “fp16” or “full” (got “%s”).", where, v->name);
  return TRUE;
}

static gboolean
parse_memory (Ctx *c, JsonNode *n, RvCatalogueEntry *e)
{
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (c, "“device_memory” must be an object with basis and sizes.");
  JsonObject *o = json_node_get_object (n);
  static const char *const keys[] = { "basis", "sizes", NULL };
  if (!only_members (c, o, "“device_memory”", keys)
      || !get_string (c, o, "“device_memory”", "basis", TRUE, &e->memory_basis))
    return FALSE;
  JsonArray *a = NULL;
  if (!get_array (c, o, "“device_memory”", "sizes", TRUE, &a))
    return FALSE;
  e->n_memory = json_array_get_length (a);
  e->memory = g_new0 (RvCatalogueMemory, e->n_memory);
  for (guint i = 0; i < e->n_memory; i++)
    {
      JsonNode *x = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_OBJECT (x))
        return fail (c, "“device_memory” sizes must be objects {size, bytes}.");
      JsonObject *xo = json_node_get_object (x);
      static const char *const mkeys[] = { "size", "bytes", NULL };
      guint64 size = 0;
      if (!only_members (c, xo, "a device_memory size", mkeys)
          || !get_uint (c, xo, "a device_memory size", "size", 16384, &size)
          || !get_uint (c, xo, "a device_memory size", "bytes", (guint64) 1 << 50, &e->memory[i].bytes))
        return FALSE;
      if (size < 1 || (i > 0 && (int) size <= e->memory[i - 1].size))
        return fail (c, "“device_memory” sizes must be listed smallest first, each once.");
      e->memory[i].size = (int) size;
    }
  return TRUE;
}

static gboolean
parse_entry (Ctx *c, JsonNode *n, guint index, RvCatalogueEntry *e)
{
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return fail (c, "entry %u must be an object.", index + 1);
  JsonObject *o = json_node_get_object (n);
  static const char *const keys[] = {
    "name", "kind", "title", "description", "licence", "variants", "device_memory", "sources", NULL
  };
  g_autofree char *where = g_strdup_printf ("entry %u", index + 1);
  if (!get_string (c, o, where, "name", TRUE, &e->name))
    return FALSE;
  if (!rv_catalogue_name_is_valid (e->name))
    return fail (c, "%s: “%s” is not a valid name (lower-case letters, digits, '.', '-', '_').",
                 where, e->name);
  c->entry = e->name;
  g_autofree char *kind = NULL;
  if (!only_members (c, o, "the entry", keys)
      || !get_string (c, o, "the entry", "kind", TRUE, &kind)
      || !get_string (c, o, "the entry", "title", TRUE, &e->title)
      || !get_string (c, o, "the entry", "description", FALSE, &e->description))
    return FALSE;
  if (g_str_equal (kind, "model-set"))
    e->kind = RV_CATALOGUE_MODEL_SET;
  else if (g_str_equal (kind, "embedded"))
    e->kind = RV_CATALOGUE_EMBEDDED;
  else if (g_str_equal (kind, "upscaler"))
    e->kind = RV_CATALOGUE_UPSCALER;
  else
    return fail (c, "“kind” must be “model-set”, “embedded” or “upscaler” (got “%s”).", kind);

  JsonNode *lic = json_object_get_member (o, "licence");
  if (lic != NULL && !parse_licence (c, lic, e))
    return FALSE;
  JsonNode *mem = json_object_get_member (o, "device_memory");
  if (mem != NULL && !parse_memory (c, mem, e))
    return FALSE;

  JsonArray *vs = NULL, *ss = NULL;
  if (!get_array (c, o, "the entry", "variants", FALSE, &vs)
      || !get_array (c, o, "the entry", "sources", FALSE, &ss))
    return FALSE;
  if (vs != NULL)
    {
      e->n_variants = json_array_get_length (vs);
      e->variants = g_new0 (RvCatalogueVariant, e->n_variants);
      for (guint i = 0; i < e->n_variants; i++)
        {
          if (!parse_variant (c, json_array_get_element (vs, i), i, &e->variants[i]))
            return FALSE;
          for (guint k = 0; k < i; k++)
            if (g_str_equal (e->variants[k].name, e->variants[i].name))
              return fail (c, "the variant “%s” is listed twice.", e->variants[i].name);
        }
    }
  if (ss != NULL)
    {
      e->n_sources = json_array_get_length (ss);
      e->sources = g_new0 (RvCatalogueSource, e->n_sources);
      for (guint i = 0; i < e->n_sources; i++)
        {
          if (!parse_source (c, json_array_get_element (ss, i), i, &e->sources[i]))
            return FALSE;
          for (guint k = 0; k < i; k++)
            if (g_str_equal (e->sources[k].local, e->sources[i].local))
              return fail (c, "two sources land in the same folder “%s”.", e->sources[i].local);
        }
    }

  if (e->kind == RV_CATALOGUE_EMBEDDED)
    {
      if (e->n_sources > 0)
        return fail (c, "an embedded model is not downloaded: it has no “sources”.");
      return TRUE;
    }
  if (e->n_sources == 0)
    return fail (c, "a downloadable entry needs “sources” (Hub repositories and files).");
  if (e->kind == RV_CATALOGUE_UPSCALER && e->n_sources != 1)
    return fail (c, "an upscaler comes from one repository (one source).");
  if (e->n_variants == 0)
    return fail (c, "a downloadable entry needs “variants” with their download sizes.");
  if (e->licence_name == NULL)
    return fail (c, "a downloadable entry needs a “licence” to show before the download.");
  if (e->n_sources > 1)
    for (guint i = 0; i < e->n_sources; i++)
      if (e->sources[i].local[0] == '\0')
        return fail (c, "with several sources each needs its own “local” folder.");
  return TRUE;
}

RvCatalogue *
rv_catalogue_load_data (const char *data, gsize len, const char *what, GError **error)
{
  Ctx c = { .what = what ? what : "(data)", .error = error };
  g_autoptr (JsonNode) root = rv_json_parse (data, len, c.what, error);
  if (root == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      fail (&c, "the top level must be an object with “format” and “entries”.");
      return NULL;
    }
  JsonObject *o = json_node_get_object (root);
  static const char *const keys[] = { "format", "comment", "entries", NULL };
  guint64 format = 0;
  if (!only_members (&c, o, "the top level", keys)
      || !get_uint (&c, o, "the top level", "format", 1000, &format))
    return NULL;
  if (format != 1)
    {
      fail (&c, "format %" G_GUINT64_FORMAT " is not one this Reverie reads (1); update Reverie.",
            format);
      return NULL;
    }
  JsonArray *a = NULL;
  if (!get_array (&c, o, "the top level", "entries", TRUE, &a))
    return NULL;
  RvCatalogue *cat = g_new0 (RvCatalogue, 1);
  cat->n_entries = json_array_get_length (a);
  cat->entries = g_new0 (RvCatalogueEntry, cat->n_entries);
  for (guint i = 0; i < cat->n_entries; i++)
    {
      c.entry = NULL;
      if (!parse_entry (&c, json_array_get_element (a, i), i, &cat->entries[i]))
        {
          rv_catalogue_free (cat);
          return NULL;
        }
      for (guint k = 0; k < i; k++)
        if (g_str_equal (cat->entries[k].name, cat->entries[i].name))
          {
            fail (&c, "the name is used by two entries.");
            rv_catalogue_free (cat);
            return NULL;
          }
    }
  return cat;
}

RvCatalogue *
rv_catalogue_load (const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;
  if (!g_file_get_contents (path, &data, &len, &local))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Cannot read the model catalogue: %s",
                   local->message);
      return NULL;
    }
  RvCatalogue *c = rv_catalogue_load_data (data, len, path, error);
  if (c != NULL)
    c->path = g_strdup (path);
  return c;
}

RvCatalogue *
rv_catalogue_load_default (GError **error)
{
  const char *env = g_getenv ("REVERIE_CATALOGUE");
  if (env != NULL && env[0] != '\0')
    return rv_catalogue_load (env, error);
  static const char *const candidates[] = {
    PKGDATADIR G_DIR_SEPARATOR_S "models" G_DIR_SEPARATOR_S "catalogue.json",
    SOURCE_MODELDIR G_DIR_SEPARATOR_S "catalogue.json",
  };
  for (guint i = 0; i < G_N_ELEMENTS (candidates); i++)
    if (g_file_test (candidates[i], G_FILE_TEST_IS_REGULAR))
      return rv_catalogue_load (candidates[i], error);
  g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
               "The model catalogue is not installed (looked for %s and %s). Reinstall Reverie, "
               "or point REVERIE_CATALOGUE at a catalogue.json.", candidates[0], candidates[1]);
  return NULL;
}

const char *
rv_catalogue_path (RvCatalogue *c)
{
  return c->path;
}

void
rv_catalogue_free (RvCatalogue *c)
{
  if (c == NULL)
    return;
  for (guint i = 0; i < c->n_entries; i++)
    entry_clear (&c->entries[i]);
  g_free (c->entries);
  g_free (c->path);
  g_free (c);
}

guint
rv_catalogue_size (RvCatalogue *c)
{
  return c->n_entries;
}

const RvCatalogueEntry *
rv_catalogue_get (RvCatalogue *c, guint i)
{
  g_return_val_if_fail (i < c->n_entries, NULL);
  return &c->entries[i];
}

const RvCatalogueEntry *
rv_catalogue_lookup (RvCatalogue *c, const char *name)
{
  for (guint i = 0; i < c->n_entries; i++)
    if (g_strcmp0 (c->entries[i].name, name) == 0)
      return &c->entries[i];
  return NULL;
}

const RvCatalogueVariant *
rv_catalogue_entry_variant (const RvCatalogueEntry *e, const char *name)
{
  if (e->n_variants == 0)
    return NULL;
  if (name == NULL || name[0] == '\0')
    return &e->variants[0];
  for (guint i = 0; i < e->n_variants; i++)
    if (g_str_equal (e->variants[i].name, name))
      return &e->variants[i];
  return NULL;
}

guint64
rv_catalogue_entry_memory (const RvCatalogueEntry *e, int side)
{
  if (e->n_memory == 0)
    return 0;
  for (guint i = 0; i < e->n_memory; i++)
    if (e->memory[i].size >= side)
      return e->memory[i].bytes;
  return e->memory[e->n_memory - 1].bytes;
}

const char *
rv_catalogue_kind_name (RvCatalogueKind kind)
{
  switch (kind)
    {
    case RV_CATALOGUE_MODEL_SET: return "model-set";
    case RV_CATALOGUE_EMBEDDED: return "embedded";
    case RV_CATALOGUE_UPSCALER: return "upscaler";
    default: return "?";
    }
}
