/* rv-model-set.c: diffusers pipeline folders (model_index.json) and model
 * sets: prior/, decoder/ and decoder-inpaint/, the embedded default. */
#include "config.h"

#include "rv-model-set.h"
#include "rv-safetensors.h"

#include <string.h>

/* ---- model folders ---- */

struct _RvModelFolder {
  char       *path;
  char       *class_name;
  GHashTable *components;    /* name -> class name or NULL */
};

void
rv_model_folder_free (RvModelFolder *f)
{
  if (f == NULL)
    return;
  g_free (f->path);
  g_free (f->class_name);
  g_hash_table_unref (f->components);
  g_free (f);
}

RvModelFolder *
rv_model_folder_open (const char *dir, const char *const *expected_classes, GError **error)
{
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   g_file_test (dir, G_FILE_TEST_EXISTS) ? "%s is not a folder"
                                                         : "The model folder %s does not exist",
                   dir);
      return NULL;
    }
  g_autofree char *index = g_build_filename (dir, "model_index.json", NULL);
  if (!g_file_test (index, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s is not a diffusers model folder: it has no model_index.json", dir);
      return NULL;
    }
  g_autoptr (JsonNode) root = rv_json_load_object (index, error);
  if (root == NULL)
    return NULL;
  JsonObject *o = json_node_get_object (root);
  JsonNode *cn = json_object_get_member (o, "_class_name");
  if (cn == NULL || json_node_get_value_type (cn) != G_TYPE_STRING)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: \"_class_name\" (the pipeline class) is missing", index);
      return NULL;
    }
  const char *class_name = json_node_get_string (cn);
  if (expected_classes != NULL && !g_strv_contains (expected_classes, class_name))
    {
      g_autofree char *expected = g_strjoinv (" or ", (char **) expected_classes);
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s holds a %s, but a %s folder is needed here", dir, class_name, expected);
      return NULL;
    }

  RvModelFolder *f = g_new0 (RvModelFolder, 1);
  f->path = g_strdup (dir);
  f->class_name = g_strdup (class_name);
  f->components = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GList) members = json_object_get_members (o);
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *v = json_object_get_member (o, name);
      if (name[0] == '_' || !JSON_NODE_HOLDS_ARRAY (v))
        continue;
      /* ["library", "Class"], or [null, null] for an absent component */
      JsonArray *a = json_node_get_array (v);
      JsonNode *cls = json_array_get_length (a) == 2 ? json_array_get_element (a, 1) : NULL;
      gboolean ok = cls != NULL && json_node_get_value_type (cls) == G_TYPE_STRING;
      if (!ok && (cls == NULL || !JSON_NODE_HOLDS_NULL (cls)))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: component \"%s\" must be [\"library\", \"Class\"]", index, name);
          rv_model_folder_free (f);
          return NULL;
        }
      g_hash_table_insert (f->components, g_strdup (name),
                           ok ? g_strdup (json_node_get_string (cls)) : NULL);
    }
  return f;
}

const char *
rv_model_folder_path (RvModelFolder *f)
{
  return f->path;
}

const char *
rv_model_folder_class (RvModelFolder *f)
{
  return f->class_name;
}

const char *
rv_model_folder_component_class (RvModelFolder *f, const char *component)
{
  return g_hash_table_lookup (f->components, component);
}

char *
rv_model_folder_component (RvModelFolder *f, const char *component, GError **error)
{
  if (rv_model_folder_component_class (f, component) == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "The %s in %s has no “%s” component (see its model_index.json)", f->class_name,
                   f->path, component);
      return NULL;
    }
  char *dir = g_build_filename (f->path, component, NULL);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s is missing: model_index.json lists a “%s” component", dir, component);
      g_free (dir);
      return NULL;
    }
  return dir;
}

/* ---- model sets ---- */

void
rv_model_set_free (RvModelSet *s)
{
  if (s == NULL)
    return;
  g_free (s->prior);
  g_free (s->decoder);
  g_free (s->inpaint_decoder);
  g_free (s);
}

const char *
rv_model_set_default_dir (void)
{
  static const char *const candidates[] = {
    PKGDATADIR G_DIR_SEPARATOR_S "models" G_DIR_SEPARATOR_S "reverie-tiny",
    SOURCE_MODELDIR G_DIR_SEPARATOR_S "reverie-tiny",
  };
  for (guint i = 0; i < G_N_ELEMENTS (candidates); i++)
    if (g_file_test (candidates[i], G_FILE_TEST_IS_DIR))
      return candidates[i];
  return NULL;
}

/* Checks one folder of the set; NULL stays NULL. */
static gboolean
check_member (const char *path, const char *role, const char *const *classes, GError **error)
{
  if (path == NULL)
    return TRUE;
  g_autoptr (GError) local = NULL;
  g_autoptr (RvModelFolder) f = rv_model_folder_open (path, classes, &local);
  if (f == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "The %s model: %s", role,
                   local->message);
      return FALSE;
    }
  return TRUE;
}

RvModelSet *
rv_model_set_new (const char *model_dir, const char *prior, const char *decoder,
                  const char *inpaint_decoder, GError **error)
{
  static const char *const prior_classes[] = {
    "KandinskyV22PriorPipeline", "KandinskyV22PriorEmb2EmbPipeline", NULL,
  };
  static const char *const decoder_classes[] = {
    "KandinskyV22Pipeline", "KandinskyV22Img2ImgPipeline", NULL,
  };
  static const char *const inpaint_classes[] = { "KandinskyV22InpaintPipeline", NULL };

  if (model_dir == NULL && prior == NULL && decoder == NULL && inpaint_decoder == NULL)
    {
      model_dir = rv_model_set_default_dir ();
      if (model_dir == NULL)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "The embedded model is not installed (looked in %s/models/reverie-tiny "
                       "and %s/reverie-tiny). Give a model folder.", PKGDATADIR, SOURCE_MODELDIR);
          return NULL;
        }
    }
  g_autoptr (RvModelSet) s = g_new0 (RvModelSet, 1);
  if (model_dir != NULL)
    {
      if (!g_file_test (model_dir, G_FILE_TEST_IS_DIR))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "The model folder %s does not exist", model_dir);
          return NULL;
        }
      s->prior = g_build_filename (model_dir, "prior", NULL);
      s->decoder = g_build_filename (model_dir, "decoder", NULL);
      s->inpaint_decoder = g_build_filename (model_dir, "decoder-inpaint", NULL);
      const char *need[] = { prior == NULL ? s->prior : NULL,
                             decoder == NULL ? s->decoder : NULL };
      for (guint i = 0; i < G_N_ELEMENTS (need); i++)
        if (need[i] != NULL && !g_file_test (need[i], G_FILE_TEST_IS_DIR))
          {
            g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                         "%s is not a model set: it needs the folders prior/ and decoder/ "
                         "(and decoder-inpaint/ for inpainting); %s is missing", model_dir,
                         need[i]);
            return NULL;
          }
      /* inpainting is optional */
      if (!g_file_test (s->inpaint_decoder, G_FILE_TEST_IS_DIR))
        g_clear_pointer (&s->inpaint_decoder, g_free);
    }
  /* separate folders take precedence */
  const char *given[] = { prior, decoder, inpaint_decoder };
  char **slot[] = { &s->prior, &s->decoder, &s->inpaint_decoder };
  for (guint i = 0; i < G_N_ELEMENTS (given); i++)
    if (given[i] != NULL)
      {
        g_free (*slot[i]);
        *slot[i] = g_strdup (given[i]);
      }

  if (!check_member (s->prior, "prior", prior_classes, error)
      || !check_member (s->decoder, "decoder", decoder_classes, error)
      || !check_member (s->inpaint_decoder, "inpainting decoder", inpaint_classes, error))
    return NULL;
  return g_steal_pointer (&s);
}
