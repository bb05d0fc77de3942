/* rv-server-models.c: the model sets the Images API offers — the default set
 * (the engine the server was started with), the embedded reverie-tiny and the
 * sets installed in the models folder — how a request's `model` resolves to
 * one, and the engines of the other sets: opened on the same device when
 * first asked for, at most one kept besides the default, weights released on
 * a switch when the two sets may not fit in device memory together (the rule
 * is described in rv-server.h). */
#include "config.h"

#include "rv-server-private.h"

#include <string.h>

#ifdef RV_SERVER_HAVE_HUB
#include "rv-catalogue.h"
#include "rv-hub.h"
#endif

#define EMBEDDED_ID "reverie-tiny"
#define DALLE_ID    "dall-e-2"
/* what `reverie-cli models pull` writes into an installed set (rv-hub.c) */
#define MANIFEST_FILE ".reverie-manifest.json"

void
_rv_server_model_clear (RvServerModel *m)
{
  g_clear_pointer (&m->id, g_free);
  g_clear_pointer (&m->dir, g_free);
}

static void
model_free (gpointer data)
{
  RvServerModel *m = data;
  _rv_server_model_clear (m);
  g_free (m);
}

/* ---- the models folder ---- */

#ifdef RV_SERVER_HAVE_HUB
static gboolean
name_is_valid (const char *name)
{
  return rv_catalogue_name_is_valid (name);
}
#else
static char *
models_root (RvServer *s)
{
  return s->models_dir ? g_strdup (s->models_dir)
                       : g_build_filename (g_get_user_data_dir (), "reverie", "models", NULL);
}

/* as rv_catalogue_name_is_valid: [a-z0-9][a-z0-9._-]*, also a safe folder name */
static gboolean
name_is_valid (const char *name)
{
  if (name == NULL || !(g_ascii_islower (name[0]) || g_ascii_isdigit (name[0])))
    return FALSE;
  gsize n = 0;
  for (const char *c = name; *c; c++, n++)
    if (!(g_ascii_islower (*c) || g_ascii_isdigit (*c) || *c == '.' || *c == '_' || *c == '-'))
      return FALSE;
  return n <= 100;
}
#endif

/* An installed folder that holds a model set (an upscaler installed beside
 * them has no prior): its path, or NULL. */
static char *
installed_set_dir (RvServer *s, const char *name)
{
  if (!name_is_valid (name))
    return NULL;
#ifdef RV_SERVER_HAVE_HUB
  g_autofree char *dir = rv_hub_installed_dir (s->models_dir, name);
#else
  g_autofree char *root = models_root (s);
  g_autofree char *dir = g_build_filename (root, name, NULL);
#endif
  if (dir == NULL)
    return NULL;
  g_autofree char *prior = g_build_filename (dir, "prior", NULL);
  g_autofree char *settings = g_build_filename (dir, "reverie.json", NULL);
  if (!g_file_test (prior, G_FILE_TEST_IS_DIR) && !g_file_test (settings, G_FILE_TEST_IS_REGULAR))
    return NULL;
  return g_steal_pointer (&dir);
}

#ifndef RV_SERVER_HAVE_HUB
static int
name_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}
#endif

static GPtrArray *
installed_names (RvServer *s)
{
#ifdef RV_SERVER_HAVE_HUB
  return rv_hub_list_installed (s->models_dir);
#else
  g_autofree char *root = models_root (s);
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDir) d = g_dir_open (root, 0, NULL);
  const char *n;
  while (d != NULL && (n = g_dir_read_name (d)) != NULL)
    if (name_is_valid (n))
      g_ptr_array_add (out, g_strdup (n));
  g_ptr_array_sort (out, name_cmp);
  return out;
#endif
}

/* The unix time the set was installed (its manifest's "installed"), else 0. */
static gint64
installed_time (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, MANIFEST_FILE, NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_mapped_file (parser, path, NULL))
    return 0;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return 0;
  JsonNode *v = json_object_get_member (json_node_get_object (root), "installed");
  if (v == NULL || json_node_get_value_type (v) != G_TYPE_STRING)
    return 0;
  g_autoptr (GDateTime) t = g_date_time_new_from_iso8601 (json_node_get_string (v), NULL);
  return t ? g_date_time_to_unix (t) : 0;
}

/* ---- resolving ids ---- */

void
_rv_server_models_init (RvServer *s, const RvServerConfig *config)
{
  s->models_dir = g_strdup (config->models_dir);
  s->device = g_strdup (config->device);
  s->model_id = g_strdup (config->model_id && config->model_id[0] ? config->model_id
                                                                  : rv_engine_model_name (s->engine));
  /* started with --model NAME: the set's install time */
  g_autofree char *dir = config->model_id ? installed_set_dir (s, config->model_id) : NULL;
  s->model_created = dir ? installed_time (dir) : 0;
}

static void
set_default (RvServer *s, RvServerModel *out, const char *id)
{
  out->id = g_strdup (id);
  out->dir = NULL;
  out->is_default = TRUE;
  out->created = s->model_created;
}

gboolean
_rv_server_model_find (RvServer *s, const char *id, RvServerModel *out)
{
  memset (out, 0, sizeof *out);
  if (id == NULL || g_str_equal (id, DALLE_ID) || g_str_equal (id, s->model_id))
    {
      set_default (s, out, id ? id : s->model_id);
      return TRUE;
    }
  /* as `reverie-cli generate --model NAME`: an installed set, else the
   * embedded one */
  g_autofree char *dir = installed_set_dir (s, id);
  if (dir != NULL)
    {
      out->id = g_strdup (id);
      out->created = installed_time (dir);
      out->dir = g_steal_pointer (&dir);
      return TRUE;
    }
  if (g_str_equal (id, EMBEDDED_ID))
    {
      out->id = g_strdup (id);
      return TRUE;
    }
  return FALSE;
}

GPtrArray *
_rv_server_model_list (RvServer *s)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (model_free);
  RvServerModel *m = g_new0 (RvServerModel, 1);
  set_default (s, m, DALLE_ID);
  g_ptr_array_add (out, m);
  m = g_new0 (RvServerModel, 1);
  set_default (s, m, s->model_id);
  g_ptr_array_add (out, m);
  g_autoptr (GPtrArray) names = installed_names (s);
  gboolean embedded_listed = g_str_equal (s->model_id, EMBEDDED_ID);
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      if (g_str_equal (name, s->model_id) || g_str_equal (name, DALLE_ID))
        continue;
      m = g_new0 (RvServerModel, 1);
      if (!_rv_server_model_find (s, name, m))
        {
          model_free (m);
          continue;
        }
      embedded_listed |= g_str_equal (name, EMBEDDED_ID);
      g_ptr_array_add (out, m);
    }
  if (!embedded_listed)
    {
      m = g_new0 (RvServerModel, 1);
      m->id = g_strdup (EMBEDDED_ID);
      g_ptr_array_insert (out, 2, m);
    }
  return out;
}

/* ---- the engines of the other sets (worker thread) ---- */

/* The device's memory, asked once; 0 when unknown. */
static guint64
device_memory (RvServer *s)
{
  if (s->device_memory_asked)
    return s->device_memory;
  s->device_memory_asked = TRUE;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) infos = rv_engine_list_device_info (&error);
  if (infos == NULL)
    return 0;
  const char *name = rv_engine_device_name (s->engine);
  const RvDeviceInfo *selected = NULL;
  for (guint i = 0; i < infos->len; i++)
    {
      const RvDeviceInfo *d = &g_array_index (infos, RvDeviceInfo, i);
      if (g_strcmp0 (d->name, name) == 0)
        {
          selected = d;
          break;
        }
      if (d->selected && selected == NULL)
        selected = d;
    }
  s->device_memory = selected ? selected->memory_bytes : 0;
  return s->device_memory;
}

/* Device memory a set needs for a job of this side: the catalogue's figure,
 * else the peak of its last job; 0 when unknown. */
static guint64
set_needs (RvServer *s, const char *id, RvEngine *e, int side)
{
  guint64 need = 0;
#ifdef RV_SERVER_HAVE_HUB
  if (!s->catalogue_tried)
    {
      s->catalogue_tried = TRUE;
      s->catalogue = rv_catalogue_load_default (NULL);
    }
  const RvCatalogueEntry *entry = s->catalogue ? rv_catalogue_lookup (s->catalogue, id) : NULL;
  if (entry != NULL)
    need = rv_catalogue_entry_memory (entry, side);
#endif
  return need > 0 ? need : rv_engine_peak_memory (e);
}

RvEngine *
_rv_server_model_engine (RvServer *s, const RvServerModel *m, int side, GError **error)
{
  RvEngine *e;
  const char *id = m->is_default ? s->model_id : m->id;
  if (m->is_default)
    e = s->engine;
  else if (s->other != NULL && g_str_equal (s->other_id, m->id))
    e = s->other;
  else
    {
      /* at most one set besides the default: the previous one goes */
      if (s->other != NULL)
        {
          g_printerr ("reverie-cli serve: closing model set %s\n", s->other_id);
          if (s->last == s->other)
            {
              g_clear_pointer (&s->last_id, g_free);
              s->last = NULL;
            }
          g_clear_pointer (&s->other, rv_engine_unref);
          g_clear_pointer (&s->other_id, g_free);
        }
      e = rv_engine_new (s->device, m->dir, NULL, NULL, NULL, s->config.weights, error);
      if (e == NULL)
        return NULL;
      g_printerr ("reverie-cli serve: model set %s opened on %s\n", m->id, rv_engine_device_name (e));
      s->other = e;
      s->other_id = g_strdup (m->id);
    }
  if (s->last != NULL && s->last != e)
    {
      guint64 total = device_memory (s);
      guint64 a = set_needs (s, s->last_id, s->last, side), b = set_needs (s, id, e, side);
      if (total == 0 || a == 0 || b == 0 || a + b > total)
        {
          rv_engine_release (s->last);
          g_printerr ("reverie-cli serve: released the weights of model set %s for %s\n",
                      s->last_id, id);
        }
    }
  if (s->last != e)
    {
      g_free (s->last_id);
      s->last_id = g_strdup (id);
      s->last = e;
    }
  return rv_engine_ref (e);
}

void
_rv_server_models_free (RvServer *s)
{
  g_clear_pointer (&s->other, rv_engine_unref);
  g_clear_pointer (&s->other_id, g_free);
  g_clear_pointer (&s->last_id, g_free);
  s->last = NULL;
#ifdef RV_SERVER_HAVE_HUB
  g_clear_pointer (&s->catalogue, rv_catalogue_free);
#endif
  g_clear_pointer (&s->models_dir, g_free);
  g_clear_pointer (&s->device, g_free);
  g_clear_pointer (&s->model_id, g_free);
}
