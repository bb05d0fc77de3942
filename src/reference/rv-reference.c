/* rv-reference.c: the reference-case runner and its handler table (see
 * rv-reference.h for how to add a handler). */
#include "rv-reference.h"

#include "rv-tokenizer.h"

#include <gio/gio.h>
#include <math.h>
#include <string.h>

/* ---- handlers ---- */

static gboolean handle_tokenizer (RvRefContext *ctx, GError **error);

typedef struct {
  const char      *kind;         /* case kind, or NULL for any */
  const char      *case_name;    /* case name, or NULL for any */
  const char      *prefix;       /* the tensors it produces */
  const char      *name;
  RvRefHandlerFunc run;
} Handler;

#define HANDLER(kind, case_name, prefix, func) { kind, case_name, prefix, #func, func }

static const Handler handlers[] = {
  /*       kind         case          tensors   function */
  HANDLER ("component", "tokenizer", "out.",   handle_tokenizer),
  HANDLER ("component", "components", "unet", rv_ref_handle_unet_components),
  HANDLER ("pipeline",  NULL,         "calls.unet.", rv_ref_handle_unet_calls),
  HANDLER ("component", "components", "movq.", rv_ref_handle_movq_components),
  HANDLER ("pipeline",  NULL,         "calls.movq_", rv_ref_handle_movq_calls),
  HANDLER ("component", "components", "text_encoder.", rv_ref_handle_text_encoder),
  HANDLER ("pipeline",  NULL,         "calls.text_encoder.", rv_ref_handle_text_encoder),
  HANDLER ("component", "components", "image_encoder.", rv_ref_handle_image_encoder),
  HANDLER ("pipeline",  NULL,         "calls.image_encoder.", rv_ref_handle_image_encoder),
  HANDLER ("component", "components", "image_processor.", rv_ref_handle_image_processor),
  HANDLER ("component", "components", "prior.", rv_ref_handle_prior),
  HANDLER ("pipeline",  NULL,         "calls.prior.", rv_ref_handle_prior),
  HANDLER ("pipeline",  NULL,         "pre.pixel_values", rv_ref_handle_image_processor),
  HANDLER ("pipeline",  NULL,         "pre.image_embeds", rv_ref_handle_image_encoder),
  HANDLER ("pipeline",  NULL,         "pre.zero_image_embeds", rv_ref_handle_image_encoder),
  HANDLER ("scheduler", NULL,         "",      rv_ref_handle_schedulers),
  HANDLER ("upscale",   NULL,         "output", rv_ref_handle_upscaler),
  /* last: whatever a pipeline case checks that no handler above covers */
  HANDLER ("pipeline",  NULL,         "",      rv_ref_handle_pipeline),
};

/* ---- the folder ---- */

struct _RvRefSet {
  char       *dir;
  JsonNode   *root;
  GPtrArray  *cases;     /* RvRefCase */
  gboolean    upscaler;  /* cases of the upscaler format */
};

static void
case_free (gpointer p)
{
  RvRefCase *c = p;
  g_free (c->name);
  g_free (c->kind);
  g_free (c->description);
  g_clear_pointer (&c->params, json_object_unref);
  g_free (c->file);
  g_free (c->sha256);
  for (guint i = 0; c->tensors != NULL && i < c->tensors->len; i++)
    {
      RvRefTensorInfo *t = &g_array_index (c->tensors, RvRefTensorInfo, i);
      g_free (t->name);
      g_free (t->role);
      g_free (t->dtype);
    }
  g_clear_pointer (&c->tensors, g_array_unref);
  g_free (c);
}

void
rv_ref_set_free (RvRefSet *set)
{
  if (set == NULL)
    return;
  g_free (set->dir);
  g_clear_pointer (&set->root, json_node_unref);
  g_clear_pointer (&set->cases, g_ptr_array_unref);
  g_free (set);
}

static const char *
string_member (JsonObject *o, const char *key)
{
  JsonNode *n = o != NULL ? json_object_get_member (o, key) : NULL;
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
         ? json_node_get_string (n) : NULL;
}

static gboolean
parse_tensor_info (JsonNode *n, RvRefTensorInfo *t)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
  const char *name = string_member (o, "name");
  JsonNode *shape = o != NULL ? json_object_get_member (o, "shape") : NULL;
  if (name == NULL || shape == NULL || !JSON_NODE_HOLDS_ARRAY (shape)
      || json_array_get_length (json_node_get_array (shape)) > RV_ST_MAX_DIMS)
    return FALSE;
  JsonArray *a = json_node_get_array (shape);
  t->ndim = json_array_get_length (a);
  for (int i = 0; i < t->ndim; i++)
    {
      JsonNode *d = json_array_get_element (a, i);
      if (json_node_get_value_type (d) != G_TYPE_INT64 || json_node_get_int (d) < 0)
        return FALSE;
      t->shape[i] = json_node_get_int (d);
    }
  t->name = g_strdup (name);
  t->role = g_strdup (string_member (o, "role") != NULL ? string_member (o, "role") : "");
  t->dtype = g_strdup (string_member (o, "dtype") != NULL ? string_member (o, "dtype") : "");
  return TRUE;
}

/* A case of the upscaler format (a "model" of cases.json "models", its
 * "input" and "output" described by objects, a "tolerance_rel_l2"): made a
 * case of kind "upscale" whose params name the model folder and the
 * tolerance, checking "output". */
static RvRefCase *
upscale_case (JsonObject *root, JsonObject *co, const char *dir)
{
  const char *name = string_member (co, "name"), *file = string_member (co, "file");
  const char *model = string_member (co, "model");
  JsonNode *models = json_object_get_member (root, "models");
  JsonObject *mo = models != NULL && JSON_NODE_HOLDS_OBJECT (models)
                   ? json_node_get_object (models) : NULL;
  JsonNode *entry = mo != NULL && model != NULL ? json_object_get_member (mo, model) : NULL;
  JsonObject *eo = entry != NULL && JSON_NODE_HOLDS_OBJECT (entry) ? json_node_get_object (entry)
                                                                    : NULL;
  JsonNode *in = json_object_get_member (co, "input"), *out = json_object_get_member (co, "output");
  if (name == NULL || file == NULL || eo == NULL || in == NULL || out == NULL)
    return NULL;
  RvRefCase *c = g_new0 (RvRefCase, 1);
  c->name = g_strdup (name);
  c->kind = g_strdup ("upscale");
  c->params = json_object_new ();
  const char *config = string_member (eo, "config_file");
  g_autofree char *folder = config != NULL ? g_path_get_dirname (config)
                                           : g_build_filename ("models", model, NULL);
  json_object_set_string_member (c->params, "model", folder);
  JsonNode *tol = json_object_get_member (co, "tolerance_rel_l2");
  if (tol != NULL && JSON_NODE_HOLDS_VALUE (tol))
    json_object_set_double_member (c->params, "tolerance", json_node_get_double (tol));
  c->file = g_build_filename (dir, file, NULL);
  c->sha256 = g_strdup (string_member (co, "sha256"));
  c->tensors = g_array_new (FALSE, TRUE, sizeof (RvRefTensorInfo));
  RvRefTensorInfo t = { 0 };
  if (parse_tensor_info (in, &t))
    {
      g_free (t.name);
      t.name = g_strdup ("input");
      g_free (t.role);
      t.role = g_strdup ("input");
      g_array_append_val (c->tensors, t);
    }
  RvRefTensorInfo u = { 0 };
  if (!parse_tensor_info (out, &u))
    {
      case_free (c);
      return NULL;
    }
  g_free (u.name);
  u.name = g_strdup ("output");
  g_free (u.role);
  u.role = g_strdup ("output");
  g_array_append_val (c->tensors, u);
  return c;
}

RvRefSet *
rv_ref_set_open (const char *dir, GError **error)
{
  g_autofree char *index = g_build_filename (dir, "cases.json", NULL);
  if (!g_file_test (index, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s is not a reference folder: it has no cases.json", dir);
      return NULL;
    }
  g_autoptr (JsonNode) root = rv_json_load_object (index, error);
  if (root == NULL)
    return NULL;
  JsonObject *o = json_node_get_object (root);
  JsonNode *cases = json_object_get_member (o, "cases");
  if (cases == NULL || !JSON_NODE_HOLDS_ARRAY (cases))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s: \"cases\" is missing",
                   index);
      return NULL;
    }
  g_autoptr (RvRefSet) set = g_new0 (RvRefSet, 1);
  set->dir = g_strdup (dir);
  set->root = json_node_ref (root);
  set->cases = g_ptr_array_new_with_free_func (case_free);
  JsonArray *a = json_node_get_array (cases);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *cn = json_array_get_element (a, i);
      JsonObject *co = JSON_NODE_HOLDS_OBJECT (cn) ? json_node_get_object (cn) : NULL;
      const char *name = string_member (co, "name"), *file = string_member (co, "file");
      JsonNode *tensors = co != NULL ? json_object_get_member (co, "tensors") : NULL;
      if (co != NULL && tensors == NULL && json_object_has_member (co, "model"))
        {
          RvRefCase *uc = upscale_case (o, co, dir);
          if (uc == NULL)
            {
              g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                           "%s: case %u needs \"name\", \"file\", a \"model\" of \"models\", "
                           "\"input\" and \"output\"", index, i);
              return NULL;
            }
          g_ptr_array_add (set->cases, uc);
          set->upscaler = TRUE;
          continue;
        }
      if (name == NULL || file == NULL || tensors == NULL || !JSON_NODE_HOLDS_ARRAY (tensors))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: case %u needs \"name\", \"file\" and a \"tensors\" list", index, i);
          return NULL;
        }
      RvRefCase *c = g_new0 (RvRefCase, 1);
      g_ptr_array_add (set->cases, c);
      c->name = g_strdup (name);
      c->kind = g_strdup (string_member (co, "kind") != NULL ? string_member (co, "kind") : "");
      c->description = g_strdup (string_member (co, "description"));
      JsonNode *params = json_object_get_member (co, "params");
      c->params = params != NULL && JSON_NODE_HOLDS_OBJECT (params)
                  ? json_object_ref (json_node_get_object (params)) : json_object_new ();
      c->file = g_build_filename (dir, file, NULL);
      c->sha256 = g_strdup (string_member (co, "sha256"));
      c->tensors = g_array_new (FALSE, TRUE, sizeof (RvRefTensorInfo));
      JsonArray *ta = json_node_get_array (tensors);
      for (guint k = 0; k < json_array_get_length (ta); k++)
        {
          RvRefTensorInfo t = { 0 };
          if (!parse_tensor_info (json_array_get_element (ta, k), &t))
            {
              g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                           "%s: tensor %u of case “%s” needs a \"name\" and a \"shape\"", index,
                           k, name);
              return NULL;
            }
          g_array_append_val (c->tensors, t);
        }
    }
  return g_steal_pointer (&set);
}

const char *
rv_ref_set_dir (RvRefSet *set)
{
  return set->dir;
}

JsonObject *
rv_ref_set_index (RvRefSet *set)
{
  return json_node_get_object (set->root);
}

gint64
rv_ref_set_known_version (RvRefSet *set)
{
  return set->upscaler ? 1 : 2;
}

guint
rv_ref_set_n_cases (RvRefSet *set)
{
  return set->cases->len;
}

const RvRefCase *
rv_ref_set_case (RvRefSet *set, guint i)
{
  g_return_val_if_fail (i < set->cases->len, NULL);
  return g_ptr_array_index (set->cases, i);
}

const RvRefCase *
rv_ref_set_find (RvRefSet *set, const char *name)
{
  for (guint i = 0; i < set->cases->len; i++)
    if (strcmp (((RvRefCase *) g_ptr_array_index (set->cases, i))->name, name) == 0)
      return g_ptr_array_index (set->cases, i);
  return NULL;
}

char *
rv_ref_set_resolve (RvRefSet *set, const char *relative)
{
  if (g_path_is_absolute (relative))
    return g_file_test (relative, G_FILE_TEST_IS_DIR) ? g_strdup (relative) : NULL;
  char *path = g_build_filename (set->dir, relative, NULL);
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return path;
  g_free (path);
  path = g_build_filename (set->dir, "models", relative, NULL);
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return path;
  g_free (path);

  /* "<model>/<component>" where <model> ends an entry of "models" */
  g_auto (GStrv) parts = g_strsplit (relative, "/", 2);
  JsonNode *models = json_object_get_member (rv_ref_set_index (set), "models");
  if (models == NULL || !JSON_NODE_HOLDS_OBJECT (models))
    return NULL;
  JsonObject *mo = json_node_get_object (models);
  g_autoptr (GList) keys = json_object_get_members (mo);
  for (GList *l = keys; l != NULL; l = l->next)
    {
      const char *entry = string_member (mo, l->data);
      g_autofree char *base = entry != NULL ? g_path_get_basename (entry) : NULL;
      if (base == NULL || strcmp (base, parts[0]) != 0)
        continue;
      path = g_build_filename (set->dir, entry, parts[1], NULL);
      if (g_file_test (path, G_FILE_TEST_IS_DIR))
        return path;
      g_free (path);
    }
  return NULL;
}

/* ---- a run ---- */

typedef struct {
  gpointer       data;
  GDestroyNotify destroy;
} CacheEntry;

static void
cache_entry_free (gpointer p)
{
  CacheEntry *e = p;
  if (e->destroy != NULL)
    e->destroy (e->data);
  g_free (e);
}

struct _RvRefRun {
  RvRefSet   *set;
  char       *selector;
  RvDevice   *device;
  GError     *device_error;
  GHashTable *cache;         /* key -> CacheEntry */
};

RvRefRun *
rv_ref_run_new (RvRefSet *set, const char *device_selector)
{
  RvRefRun *run = g_new0 (RvRefRun, 1);
  run->set = set;
  run->selector = g_strdup (device_selector);
  run->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, cache_entry_free);
  return run;
}

void
rv_ref_run_free (RvRefRun *run)
{
  if (run == NULL)
    return;
  /* networks in the cache hold device memory: drop them first */
  g_hash_table_unref (run->cache);
  g_clear_pointer (&run->device, rv_device_unref);
  g_clear_error (&run->device_error);
  g_free (run->selector);
  g_free (run);
}

const char *
rv_ref_status_name (RvRefStatus status)
{
  return status == RV_REF_PASS ? "PASS" : status == RV_REF_FAIL ? "FAIL" : "NOT RUN";
}

typedef struct {
  int      ndim;
  gint64   shape[RV_ST_MAX_DIMS];
  gint64   numel;
  float   *f;                /* one of these */
  gint64  *i;
  double   tolerance;
  char    *handler;
} Put;

static void
put_free (gpointer p)
{
  Put *x = p;
  g_free (x->f);
  g_free (x->i);
  g_free (x->handler);
  g_free (x);
}

struct _RvRefContext {
  RvRefRun        *run;
  const RvRefCase *rcase;
  RvSafetensors   *data;
  const char      *handler;  /* the one running */
  GHashTable      *puts;     /* name -> Put */
};

const RvRefCase *
rv_ref_case (RvRefContext *ctx)
{
  return ctx->rcase;
}

RvRefSet *
rv_ref_set (RvRefContext *ctx)
{
  return ctx->run->set;
}

JsonObject *
rv_ref_params (RvRefContext *ctx)
{
  return ctx->rcase->params;
}

const RvStTensor *
rv_ref_lookup (RvRefContext *ctx, const char *name)
{
  return rv_safetensors_lookup (ctx->data, name);
}

static const RvStTensor *
lookup_or_fail (RvRefContext *ctx, const char *name, GError **error)
{
  const RvStTensor *t = rv_safetensors_lookup (ctx->data, name);
  if (t == NULL)
    g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                 "Case “%s” has no tensor “%s”", ctx->rcase->name, name);
  return t;
}

float *
rv_ref_get_f32 (RvRefContext *ctx, const char *name, GError **error)
{
  const RvStTensor *t = lookup_or_fail (ctx, name, error);
  if (t == NULL)
    return NULL;
  if (!rv_st_dtype_is_integer (t->dtype))
    return rv_st_tensor_to_f32 (t, error);
  g_autofree gint64 *iv = rv_st_tensor_to_i64 (t, error);   /* images, masks, timesteps */
  if (iv == NULL)
    return NULL;
  float *v = g_new (float, MAX (t->numel, 1));
  for (gint64 k = 0; k < t->numel; k++)
    v[k] = (float) iv[k];
  return v;
}

gint64 *
rv_ref_get_i64 (RvRefContext *ctx, const char *name, GError **error)
{
  const RvStTensor *t = lookup_or_fail (ctx, name, error);
  return t != NULL ? rv_st_tensor_to_i64 (t, error) : NULL;
}

char *
rv_ref_model_folder (RvRefContext *ctx, const char *relative, GError **error)
{
  char *path = rv_ref_set_resolve (ctx->run->set, relative);
  if (path == NULL)
    g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                 "Case “%s”: model folder “%s” not found in %s", ctx->rcase->name, relative,
                 ctx->run->set->dir);
  return path;
}

RvDevice *
rv_ref_device (RvRefContext *ctx, GError **error)
{
  RvRefRun *run = ctx->run;
  if (run->device == NULL && run->device_error == NULL)
    run->device = rv_device_new (run->selector, &run->device_error);
  if (run->device == NULL)
    {
      g_propagate_error (error, g_error_copy (run->device_error));
      return NULL;
    }
  return run->device;
}

gpointer
rv_ref_cache_get (RvRefContext *ctx, const char *key)
{
  CacheEntry *e = g_hash_table_lookup (ctx->run->cache, key);
  return e != NULL ? e->data : NULL;
}

void
rv_ref_cache_set (RvRefContext *ctx, const char *key, gpointer data, GDestroyNotify destroy)
{
  CacheEntry *e = g_new (CacheEntry, 1);
  e->data = data;
  e->destroy = destroy;
  g_hash_table_replace (ctx->run->cache, g_strdup (key), e);
}

static double
comparison_value (RvRefSet *set, const char *key, double def)
{
  JsonNode *c = json_object_get_member (rv_ref_set_index (set), "comparison");
  JsonNode *v = c != NULL && JSON_NODE_HOLDS_OBJECT (c)
                ? json_object_get_member (json_node_get_object (c), key) : NULL;
  if (v == NULL || !JSON_NODE_HOLDS_VALUE (v))
    return def;
  GType t = json_node_get_value_type (v);
  return t == G_TYPE_DOUBLE ? json_node_get_double (v)
         : t == G_TYPE_INT64 ? (double) json_node_get_int (v) : def;
}

double
rv_ref_tolerance (RvRefContext *ctx, const char *name)
{
  const RvStTensor *t = rv_safetensors_lookup (ctx->data, name);
  if (t != NULL && rv_st_dtype_is_integer (t->dtype))
    return 0.0;
  gboolean loop = g_str_has_prefix (name, "step_latents.")
                  || (g_str_has_prefix (name, "calls.movq_decode.") && strstr (name, ".out.") != NULL)
                  || (strcmp (ctx->rcase->kind, "pipeline") == 0 && g_str_has_prefix (name, "out."));
  return loop ? comparison_value (ctx->run->set, "full_loop_latents", 1e-3)
              : comparison_value (ctx->run->set, "single_forward_fp32", 1e-4);
}

static Put *
new_put (RvRefContext *ctx, const char *name, int ndim, const gint64 *shape)
{
  g_return_val_if_fail (ndim >= 0 && ndim <= RV_ST_MAX_DIMS, NULL);
  Put *p = g_new0 (Put, 1);
  p->ndim = ndim;
  p->numel = 1;
  for (int i = 0; i < ndim; i++)
    {
      p->shape[i] = shape[i];
      p->numel *= shape[i];
    }
  p->tolerance = RV_REF_TOL_AUTO;
  p->handler = g_strdup (ctx->handler);
  g_hash_table_replace (ctx->puts, g_strdup (name), p);
  return p;
}

void
rv_ref_put_f32 (RvRefContext *ctx, const char *name, const float *data, int ndim,
                const gint64 *shape, double tolerance)
{
  Put *p = new_put (ctx, name, ndim, shape);
  if (p == NULL)
    return;
  p->f = g_memdup2 (data, MAX (p->numel, 1) * sizeof (float));
  p->tolerance = tolerance;
}

void
rv_ref_put_i64 (RvRefContext *ctx, const char *name, const gint64 *data, int ndim,
                const gint64 *shape)
{
  Put *p = new_put (ctx, name, ndim, shape);
  if (p != NULL)
    p->i = g_memdup2 (data, MAX (p->numel, 1) * sizeof (gint64));
}

/* ---- comparing ---- */

static gboolean
is_checked (const RvRefTensorInfo *t)
{
  if (strcmp (t->role, "output") == 0)
    return TRUE;
  if (strcmp (t->role, "intermediate") != 0)
    return FALSE;
  if (g_str_has_prefix (t->name, "calls."))
    return strstr (t->name, ".out.") != NULL && !g_str_has_suffix (t->name, ".out.commit_loss");
  return g_str_has_prefix (t->name, "step_latents.") || g_str_has_prefix (t->name, "pre.")
         || strcmp (t->name, "timesteps") == 0;
}

static char *
shape_string (int ndim, const gint64 *shape)
{
  GString *s = g_string_new ("(");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i > 0 ? ", " : "", shape[i]);
  g_string_append (s, ndim == 1 ? ",)" : ")");
  return g_string_free (s, FALSE);
}

static void
compare (RvRefContext *ctx, const char *name, const Put *p, RvRefResult *r)
{
  const RvStTensor *rec = rv_safetensors_lookup (ctx->data, name);
  r->handler = g_strdup (p->handler);
  r->numel = rec->numel;
  gboolean same = p->ndim == rec->ndim;
  for (int i = 0; same && i < p->ndim; i++)
    same = p->shape[i] == rec->shape[i];
  if (!same)
    {
      g_autofree char *got = shape_string (p->ndim, p->shape);
      g_autofree char *want = shape_string (rec->ndim, rec->shape);
      r->status = RV_REF_FAIL;
      r->note = g_strdup_printf ("computed shape %s, recorded %s", got, want);
      return;
    }
  GError *error = NULL;
  if (rv_st_dtype_is_integer (rec->dtype))
    {
      r->exact = TRUE;
      g_autofree gint64 *ref = rv_st_tensor_to_i64 (rec, &error);
      if (ref == NULL || p->i == NULL)
        {
          r->status = RV_REF_FAIL;
          r->note = ref == NULL ? g_strdup (error->message)
                                : g_strdup ("computed floating-point values for an integer tensor");
          g_clear_error (&error);
          return;
        }
      gint64 first = -1;
      for (gint64 k = 0; k < rec->numel; k++)
        if (p->i[k] != ref[k])
          {
            if (first < 0)
              first = k;
            r->error += 1;
            r->max_abs = MAX (r->max_abs, fabs ((double) p->i[k] - (double) ref[k]));
          }
      r->status = r->error == 0 ? RV_REF_PASS : RV_REF_FAIL;
      if (first >= 0)
        r->note = g_strdup_printf ("first difference at flat index %" G_GINT64_FORMAT ": %"
                                   G_GINT64_FORMAT " instead of %" G_GINT64_FORMAT, first,
                                   p->i[first], ref[first]);
      return;
    }
  g_autofree float *ref = rv_st_tensor_to_f32 (rec, &error);
  if (ref == NULL)
    {
      r->status = RV_REF_FAIL;
      r->note = g_strdup (error->message);
      g_error_free (error);
      return;
    }
  double diff = 0, norm = 0;
  for (gint64 k = 0; k < rec->numel; k++)
    {
      double got = p->f != NULL ? (double) p->f[k] : (double) p->i[k];
      double d = got - (double) ref[k];
      diff += d * d;
      norm += (double) ref[k] * ref[k];
      r->max_abs = MAX (r->max_abs, isnan (d) ? INFINITY : fabs (d));
    }
  r->error = isfinite (diff) ? (norm > 0 ? sqrt (diff / norm) : sqrt (diff)) : INFINITY;
  r->status = r->error <= r->tolerance ? RV_REF_PASS : RV_REF_FAIL;
}

static gboolean
handler_matches (const Handler *h, const RvRefCase *c)
{
  return (h->kind == NULL || strcmp (h->kind, c->kind) == 0)
         && (h->case_name == NULL || strcmp (h->case_name, c->name) == 0);
}

/* Reads the case file (checking its hash) and that it holds what cases.json lists. */
static RvSafetensors *
open_case (const RvRefCase *c, GError **error)
{
  GError *local = NULL;
  g_autoptr (GMappedFile) map = g_mapped_file_new (c->file, FALSE, &local);
  if (map == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "Cannot read %s: %s", c->file,
                   local->message);
      g_error_free (local);
      return NULL;
    }
  g_autoptr (GBytes) bytes = g_mapped_file_get_bytes (map);
  if (c->sha256 != NULL)
    {
      g_autofree char *sum = g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, bytes);
      if (g_ascii_strcasecmp (sum, c->sha256) != 0)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s is damaged or from another version: its SHA-256 is %s, cases.json "
                       "says %s", c->file, sum, c->sha256);
          return NULL;
        }
    }
  g_autoptr (RvSafetensors) st = rv_safetensors_new_from_bytes (bytes, c->file, error);
  if (st == NULL)
    return NULL;
  for (guint i = 0; i < c->tensors->len; i++)
    {
      const RvRefTensorInfo *info = &g_array_index (c->tensors, RvRefTensorInfo, i);
      const RvStTensor *t = rv_safetensors_lookup (st, info->name);
      gboolean same = t != NULL && t->ndim == info->ndim;
      for (int k = 0; same && k < t->ndim; k++)
        same = t->shape[k] == info->shape[k];
      if (!same)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: tensor “%s” listed in cases.json is %s", c->file, info->name,
                       t == NULL ? "missing" : "of another shape");
          return NULL;
        }
    }
  return g_steal_pointer (&st);
}

void
rv_ref_case_result_free (RvRefCaseResult *r)
{
  if (r == NULL)
    return;
  for (guint i = 0; r->results != NULL && i < r->results->len; i++)
    {
      RvRefResult *x = &g_array_index (r->results, RvRefResult, i);
      g_free (x->name);
      g_free (x->handler);
      g_free (x->note);
    }
  g_clear_pointer (&r->results, g_array_unref);
  g_free (r->error);
  g_free (r);
}

RvRefCaseResult *
rv_ref_run_case (RvRefRun *run, const RvRefCase *c)
{
  RvRefCaseResult *res = g_new0 (RvRefCaseResult, 1);
  res->rcase = c;
  res->results = g_array_new (FALSE, TRUE, sizeof (RvRefResult));
  gint64 t0 = g_get_monotonic_time ();
  GError *error = NULL;
  g_autoptr (RvSafetensors) data = open_case (c, &error);
  if (data == NULL)
    {
      res->status = RV_REF_FAIL;
      res->error = g_strdup (error->message);
      g_error_free (error);
      return res;
    }

  g_autoptr (GHashTable) puts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, put_free);
  g_autoptr (GHashTable) failures = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_autoptr (GHashTable) covered = g_hash_table_new (g_str_hash, g_str_equal);  /* -> handler */
  RvRefContext ctx = { run, c, data, NULL, puts };

  for (guint h = 0; h < G_N_ELEMENTS (handlers); h++)
    {
      const Handler *hd = &handlers[h];
      if (!handler_matches (hd, c))
        continue;
      gboolean covers = FALSE;
      for (guint i = 0; i < c->tensors->len; i++)
        {
          const RvRefTensorInfo *t = &g_array_index (c->tensors, RvRefTensorInfo, i);
          if (is_checked (t) && g_str_has_prefix (t->name, hd->prefix)
              && !g_hash_table_contains (covered, t->name))
            {
              g_hash_table_insert (covered, t->name, (gpointer) hd->name);
              covers = TRUE;
            }
        }
      if (!covers)
        continue;
      ctx.handler = hd->name;
      if (hd->run (&ctx, &error))
        continue;
      for (guint i = 0; i < c->tensors->len; i++)
        {
          const RvRefTensorInfo *t = &g_array_index (c->tensors, RvRefTensorInfo, i);
          if (g_hash_table_lookup (covered, t->name) == hd->name
              && !g_hash_table_contains (puts, t->name))
            g_hash_table_replace (failures, t->name, g_strdup (error->message));
        }
      g_clear_error (&error);
    }

  guint n_fail = 0, n_not_run = 0;
  for (guint i = 0; i < c->tensors->len; i++)
    {
      const RvRefTensorInfo *t = &g_array_index (c->tensors, RvRefTensorInfo, i);
      if (!is_checked (t))
        continue;
      RvRefResult r = { 0 };
      r.name = g_strdup (t->name);
      r.tolerance = rv_ref_tolerance (&ctx, t->name);
      const Put *p = g_hash_table_lookup (puts, t->name);
      const char *handler = g_hash_table_lookup (covered, t->name);
      if (p != NULL)
        {
          if (p->tolerance >= 0)
            r.tolerance = p->tolerance;
          compare (&ctx, t->name, p, &r);
        }
      else if (handler != NULL)
        {
          const char *why = g_hash_table_lookup (failures, t->name);
          r.status = RV_REF_FAIL;
          r.handler = g_strdup (handler);
          r.note = why != NULL ? g_strdup (why) : g_strdup ("the handler did not compute it");
        }
      else
        {
          r.status = RV_REF_NOT_RUN;
          r.note = g_strdup ("no handler for it yet");
        }
      n_fail += r.status == RV_REF_FAIL;
      n_not_run += r.status == RV_REF_NOT_RUN;
      g_array_append_val (res->results, r);
    }
  res->status = n_fail > 0 ? RV_REF_FAIL : n_not_run > 0 ? RV_REF_NOT_RUN : RV_REF_PASS;
  res->seconds = (g_get_monotonic_time () - t0) / 1e6;
  return res;
}

/* ---- handler: tokenizer ---- */

/* params.texts through the tokenizer of params.model_folder (or the prior
 * model's tokenizer/), padded to params.model_max_length: out.input_ids and
 * out.attention_mask, (texts, max_length) int64. */
static gboolean
handle_tokenizer (RvRefContext *ctx, GError **error)
{
  JsonObject *p = rv_ref_params (ctx);
  JsonNode *texts = json_object_get_member (p, "texts");
  if (texts == NULL || !JSON_NODE_HOLDS_ARRAY (texts))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "Case “%s”: params.texts (the list of texts) is missing", rv_ref_case (ctx)->name);
      return FALSE;
    }
  const char *folder = string_member (p, "model_folder");
  g_autofree char *fallback = NULL;
  if (folder == NULL)
    {
      JsonNode *models = json_object_get_member (rv_ref_set_index (rv_ref_set (ctx)), "models");
      const char *prior = models != NULL && JSON_NODE_HOLDS_OBJECT (models)
                          ? string_member (json_node_get_object (models), "prior") : NULL;
      folder = fallback = prior != NULL ? g_build_filename (prior, "tokenizer", NULL) : NULL;
    }
  g_autofree char *dir = rv_ref_model_folder (ctx, folder != NULL ? folder : "tokenizer", error);
  if (dir == NULL)
    return FALSE;
  g_autofree char *key = g_strconcat ("tokenizer:", dir, NULL);
  RvTokenizer *tok = rv_ref_cache_get (ctx, key);
  if (tok == NULL)
    {
      tok = rv_tokenizer_new (dir, error);
      if (tok == NULL)
        return FALSE;
      rv_ref_cache_set (ctx, key, tok, (GDestroyNotify) rv_tokenizer_free);
    }

  JsonNode *ml = json_object_get_member (p, "model_max_length");
  int length = ml != NULL && json_node_get_value_type (ml) == G_TYPE_INT64
               ? (int) CLAMP (json_node_get_int (ml), 2, 65536) : rv_tokenizer_max_length (tok);
  JsonArray *a = json_node_get_array (texts);
  guint n = json_array_get_length (a);
  g_autofree gint64 *ids = g_new (gint64, MAX (n, 1) * length);
  g_autofree gint64 *mask = g_new (gint64, MAX (n, 1) * length);
  g_autofree gint32 *row_ids = g_new (gint32, length);
  g_autofree gint32 *row_mask = g_new (gint32, length);
  for (guint i = 0; i < n; i++)
    {
      JsonNode *t = json_array_get_element (a, i);
      if (json_node_get_value_type (t) != G_TYPE_STRING)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "Case “%s”: params.texts[%u] is not a string", rv_ref_case (ctx)->name, i);
          return FALSE;
        }
      if (!rv_tokenizer_encode (tok, json_node_get_string (t), length, row_ids, row_mask, NULL,
                                error))
        return FALSE;
      for (int k = 0; k < length; k++)
        {
          ids[(gsize) i * length + k] = row_ids[k];
          mask[(gsize) i * length + k] = row_mask[k];
        }
    }
  gint64 shape[2] = { n, length };
  rv_ref_put_i64 (ctx, "out.input_ids", ids, 2, shape);
  rv_ref_put_i64 (ctx, "out.attention_mask", mask, 2, shape);
  return TRUE;
}

/* ---- layouts ---- */

/* (B, C, H, W) ↔ (B, H, W, C) on the host; `to_nhwc` picks the direction. */
float *
rv_ref_transpose_channels (const float *x, gint64 b, gint64 c, gint64 hw, gboolean to_nhwc)
{
  float *y = g_new (float, b * c * hw);
  for (gint64 n = 0; n < b; n++)
    for (gint64 k = 0; k < c; k++)
      for (gint64 i = 0; i < hw; i++)
        {
          gint64 nchw = (n * c + k) * hw + i, nhwc = (n * hw + i) * c + k;
          if (to_nhwc)
            y[nhwc] = x[nchw];
          else
            y[nchw] = x[nhwc];
        }
  return y;
}

/* The recorded NCHW float tensor `name` as NHWC, with its NHWC shape. */
float *
rv_ref_get_nhwc (RvRefContext *ctx, const char *name, gint64 shape[4], GError **error)
{
  const RvStTensor *info = rv_ref_lookup (ctx, name);
  if (info == NULL || info->ndim != 4)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "Case “%s”: %s is %s, not an NCHW tensor", rv_ref_case (ctx)->name, name,
                   info == NULL ? "missing" : "of another rank");
      return NULL;
    }
  g_autofree float *x = rv_ref_get_f32 (ctx, name, error);
  if (x == NULL)
    return NULL;
  shape[0] = info->shape[0];
  shape[1] = info->shape[2];
  shape[2] = info->shape[3];
  shape[3] = info->shape[1];
  return rv_ref_transpose_channels (x, shape[0], shape[3], shape[1] * shape[2], TRUE);
}
