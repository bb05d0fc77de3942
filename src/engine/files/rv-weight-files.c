/* rv-weight-files.c: RvWeights over a component's safetensors files (single,
 * sharded or the fp16 variant; pickles refused), manifests checked against
 * them, and made-up random weights for benchmarks. */
#include "config.h"

#include "rv-weight-files.h"
#include "rv-ops.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---- manifests ---- */

typedef struct {
  char   *name;
  int     ndim;
  gint64  shape[RV_ST_MAX_DIMS];
} Expected;

struct _RvManifest {
  GArray *items;   /* Expected */
};

static void
clear_expected (gpointer p)
{
  g_free (((Expected *) p)->name);
}

RvManifest *
rv_manifest_new (void)
{
  RvManifest *m = g_new0 (RvManifest, 1);
  m->items = g_array_new (FALSE, TRUE, sizeof (Expected));
  g_array_set_clear_func (m->items, clear_expected);
  return m;
}

void
rv_manifest_free (RvManifest *m)
{
  if (m == NULL)
    return;
  g_array_unref (m->items);
  g_free (m);
}

void
rv_manifest_add (RvManifest *m, int ndim, const gint64 *shape, const char *fmt, ...)
{
  g_return_if_fail (ndim >= 0 && ndim <= RV_ST_MAX_DIMS);
  Expected e = { 0 };
  va_list ap;
  va_start (ap, fmt);
  e.name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  e.ndim = ndim;
  memcpy (e.shape, shape, ndim * sizeof (gint64));
  g_array_append_val (m->items, e);
}

guint
rv_manifest_size (const RvManifest *m)
{
  return m->items->len;
}

/* ---- weights ---- */

struct _RvWeights {
  char       *describe;
  GPtrArray  *files;        /* RvSafetensors */
  GHashTable *by_name;      /* name -> const RvStTensor * */
  /* random weights: tensors made up at check time, owned here */
  gboolean    random;
  guint64     seed;
  GPtrArray  *made;         /* RvStTensor* with its data after it */
};

/* Random weights instead of the files, for measuring full-size models from
 * their configs alone (benchmarks). Process-wide; 0 = off. */
static guint64 random_seed;

void
rv_weights_use_random (guint64 seed)
{
  random_seed = seed;
}

void
rv_weights_free (RvWeights *w)
{
  if (w == NULL)
    return;
  g_clear_pointer (&w->made, g_ptr_array_unref);
  g_hash_table_unref (w->by_name);
  g_ptr_array_unref (w->files);
  g_free (w->describe);
  g_free (w);
}

const char *
rv_weights_describe (RvWeights *w)
{
  return w->describe;
}

static gboolean
add_file (RvWeights *w, const char *path, GError **error)
{
  RvSafetensors *st = rv_safetensors_open (path, error);
  if (st == NULL)
    return FALSE;
  g_ptr_array_add (w->files, st);
  for (guint i = 0; i < rv_safetensors_n_tensors (st); i++)
    {
      const RvStTensor *t = rv_safetensors_nth (st, i);
      const RvStTensor *other = g_hash_table_lookup (w->by_name, t->name);
      if (other != NULL)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "Tensor “%s” is in both %s and %s", t->name, other->file, t->file);
          return FALSE;
        }
      g_hash_table_insert (w->by_name, (gpointer) t->name, (gpointer) t);
    }
  return TRUE;
}

/* A sharded checkpoint: {"weight_map": {tensor: file}} */
static gboolean
add_sharded (RvWeights *w, const char *dir, const char *index, GError **error)
{
  g_autoptr (JsonNode) root = rv_json_load_object (index, error);
  if (root == NULL)
    return FALSE;
  JsonNode *map = json_object_get_member (json_node_get_object (root), "weight_map");
  if (map == NULL || !JSON_NODE_HOLDS_OBJECT (map))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s: \"weight_map\" (tensor name -> file) is missing", index);
      return FALSE;
    }
  JsonObject *mo = json_node_get_object (map);
  g_autoptr (GList) names = json_object_get_members (mo);
  g_autoptr (GHashTable) opened = g_hash_table_new (g_str_hash, g_str_equal);
  for (GList *l = names; l != NULL; l = l->next)
    {
      JsonNode *v = json_object_get_member (mo, l->data);
      const char *file = json_node_get_value_type (v) == G_TYPE_STRING
                         ? json_node_get_string (v) : NULL;
      if (file == NULL || file[0] == '\0' || strchr (file, '/') != NULL
          || strchr (file, '\\') != NULL || strcmp (file, "..") == 0 || strcmp (file, ".") == 0)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s: tensor “%s” must map to a file name in the same folder", index,
                       (const char *) l->data);
          return FALSE;
        }
      if (!g_hash_table_contains (opened, file))
        {
          g_autofree char *path = g_build_filename (dir, file, NULL);
          if (!add_file (w, path, error))
            return FALSE;
          g_hash_table_add (opened, (gpointer) file);
        }
      const RvStTensor *t = g_hash_table_lookup (w->by_name, l->data);
      g_autofree char *base = t != NULL ? g_path_get_basename (t->file) : NULL;
      if (t == NULL || strcmp (base, file) != 0)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                       "%s says tensor “%s” is in %s, but it is not there", index,
                       (const char *) l->data, file);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
rv_weights_name_is_pickled (const char *name)
{
  static const char *const ext[] = { ".bin", ".ckpt", ".pth", ".pt", ".pkl", ".pickle" };
  g_autofree char *lower = g_ascii_strdown (name, -1);
  for (guint i = 0; i < G_N_ELEMENTS (ext); i++)
    if (g_str_has_suffix (lower, ext[i]))
      return TRUE;
  return FALSE;
}

/* The pickle in `dir`, if there is one (g_free). */
static char *
find_pickle (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    if (rv_weights_name_is_pickled (name))
      return g_strdup (name);
  return NULL;
}

static void
refuse_pickle (const char *dir, const char *pickle, GError **error)
{
  /* pytorch_model.bin -> model.safetensors, diffusion_pytorch_model.bin -> diffusion_…, x.ckpt -> x… */
  g_autofree char *stem = g_strndup (pickle, strrchr (pickle, '.') - pickle);
  const char *target = strcmp (stem, "pytorch_model") == 0 ? "model" : stem;
  g_autofree char *src = g_build_filename (dir, pickle, NULL);
  g_autofree char *dst_name = g_strconcat (target, ".safetensors", NULL);
  g_autofree char *dst = g_build_filename (dir, dst_name, NULL);
  g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
               "%s holds PyTorch pickle weights (%s), which Reverie does not load: reading a "
               "pickle can run arbitrary code. Convert them to safetensors once, with Python, "
               "torch and safetensors installed:\n\n"
               "  python3 -c 'import torch; from safetensors.torch import save_file; "
               "sd = torch.load(\"%s\", map_location=\"cpu\"); sd = sd.get(\"state_dict\", sd); "
               "save_file({k: v.clone().contiguous() for k, v in sd.items()}, \"%s\")'\n",
               dir, pickle, src, dst);
}

RvWeights *
rv_weights_open (const char *dir, GError **error)
{
  static const char *const bases[] = { "model", "diffusion_pytorch_model" };
  /* in order of preference: full precision, then the fp16 variant */
  static const char *const forms[] = {
    ".safetensors", ".safetensors.index.json", ".fp16.safetensors", ".safetensors.index.fp16.json",
  };
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "The model component folder %s does not exist", dir);
      return NULL;
    }
  if (random_seed != 0)
    {
      RvWeights *w = g_new0 (RvWeights, 1);
      w->describe = g_strdup_printf ("%s (random weights)", dir);
      w->files = g_ptr_array_new ();
      w->by_name = g_hash_table_new (g_str_hash, g_str_equal);
      w->made = g_ptr_array_new_with_free_func (g_free);
      w->random = TRUE;
      w->seed = random_seed ^ g_str_hash (dir);
      return w;
    }
  for (guint f = 0; f < G_N_ELEMENTS (forms); f++)
    for (guint b = 0; b < G_N_ELEMENTS (bases); b++)
      {
        g_autofree char *name = g_strconcat (bases[b], forms[f], NULL);
        g_autofree char *path = g_build_filename (dir, name, NULL);
        if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
          continue;
        RvWeights *w = g_new0 (RvWeights, 1);
        w->describe = g_strdup (path);
        w->files = g_ptr_array_new_with_free_func ((GDestroyNotify) rv_safetensors_free);
        w->by_name = g_hash_table_new (g_str_hash, g_str_equal);
        gboolean ok = g_str_has_suffix (name, ".json") ? add_sharded (w, dir, path, error)
                                                      : add_file (w, path, error);
        if (!ok)
          {
            rv_weights_free (w);
            return NULL;
          }
        return w;
      }
  g_autofree char *pickle = find_pickle (dir);
  if (pickle != NULL)
    refuse_pickle (dir, pickle, error);
  else
    g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                 "%s has no weights: expected model.safetensors or "
                 "diffusion_pytorch_model.safetensors (or their .fp16 variants)", dir);
  return NULL;
}

/* The other spelling of an attention projection's name, or NULL. */
static char *
alias_of (const char *name)
{
  static const char *const pairs[][2] = {
    { "query", "to_q" }, { "key", "to_k" }, { "value", "to_v" }, { "proj_attn", "to_out.0" },
  };
  const char *leaf = strrchr (name, '.');
  if (leaf == NULL)
    return NULL;
  gsize prefix_len = leaf - name;
  for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
    for (guint d = 0; d < 2; d++)
      {
        const char *from = pairs[i][d], *to = pairs[i][1 - d];
        gsize n = strlen (from);
        if (prefix_len < n || strncmp (name + prefix_len - n, from, n) != 0)
          continue;
        if (prefix_len > n && name[prefix_len - n - 1] != '.')
          continue;
        return g_strdup_printf ("%.*s%s%s", (int) (prefix_len - n), name, to, leaf);
      }
  return NULL;
}

const RvStTensor *
rv_weights_lookup (RvWeights *w, const char *name)
{
  const RvStTensor *t = g_hash_table_lookup (w->by_name, name);
  if (t == NULL)
    {
      g_autofree char *alias = alias_of (name);
      if (alias != NULL)
        t = g_hash_table_lookup (w->by_name, alias);
    }
  return t;
}

float *
rv_weights_get_f32 (RvWeights *w, const char *name, GError **error)
{
  const RvStTensor *t = rv_weights_lookup (w, name);
  if (t == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s has no tensor “%s”",
                   w->describe, name);
      return NULL;
    }
  return rv_st_tensor_to_f32 (t, error);
}

static gboolean
shape_matches (const Expected *e, const RvStTensor *t)
{
  int ndim = t->ndim;
  /* a 1×1 convolution stores a linear layer's weight as (O, I, 1, 1) */
  if (ndim == 4 && e->ndim == 2 && t->shape[2] == 1 && t->shape[3] == 1)
    ndim = 2;
  if (ndim != e->ndim)
    return FALSE;
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] != e->shape[i])
      return FALSE;
  return TRUE;
}

static char *
describe_shape (int ndim, const gint64 *shape)
{
  GString *s = g_string_new ("(");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i > 0 ? ", " : "", shape[i]);
  g_string_append (s, ndim == 1 ? ",)" : ")");
  return g_string_free (s, FALSE);
}

/* One made-up f16 tensor: norms' scales 1, biases and means 0, matrices and
 * embeddings normal with a fan-in scale so activations stay in range. */
static void
make_random (RvWeights *w, const Expected *e)
{
  gint64 numel = 1;
  for (int i = 0; i < e->ndim; i++)
    numel *= e->shape[i];
  gsize nbytes = (gsize) numel * 2;
  /* the values first, where the struct's alignment keeps them aligned, then the name */
  RvStTensor *t = g_malloc0 (sizeof (RvStTensor) + nbytes + strlen (e->name) + 1);
  guint16 *data = (guint16 *) (t + 1);
  char *name = (char *) (data + numel);
  strcpy (name, e->name);
  t->name = name;
  t->file = w->describe;
  t->dtype = RV_ST_F16;
  t->ndim = e->ndim;
  memcpy (t->shape, e->shape, e->ndim * sizeof (gint64));
  t->numel = numel;
  t->data = (const guint8 *) data;
  t->nbytes = nbytes;

  const char *leaf = strrchr (e->name, '.');
  leaf = leaf ? leaf + 1 : e->name;
  gboolean is_norm = strstr (e->name, "norm") != NULL || strstr (e->name, "ln_") != NULL ||
                     strstr (e->name, "layrnorm") != NULL;
  float constant = NAN;
  if (g_str_equal (leaf, "bias") || g_str_has_suffix (e->name, "clip_mean"))
    constant = 0.0f;
  else if ((is_norm && g_str_equal (leaf, "weight")) || g_str_has_suffix (e->name, "clip_std"))
    constant = 1.0f;
  gint64 fan_in = 1;
  for (int i = 1; i < e->ndim; i++)
    fan_in *= e->shape[i];
  float scale = e->ndim >= 2 ? 1.0f / sqrtf ((float) fan_in) : 0.02f;
  guint64 s = w->seed ^ g_str_hash (e->name) ^ ((guint64) g_str_hash (e->name) << 32);
  for (gint64 i = 0; i < numel; i++)
    {
      float v = constant;
      if (isnan (v))
        {
          /* sum of four uniforms: close enough to a normal for a benchmark */
          float acc = 0;
          for (int k = 0; k < 4; k++)
            {
              s = s * 6364136223846793005ull + 1442695040888963407ull;
              acc += (float) (s >> 40) / (float) (1ull << 24) - 0.5f;
            }
          v = acc * 1.732f * scale;
        }
      data[i] = rv_f32_to_f16 (v);
    }
  g_ptr_array_add (w->made, t);
  g_hash_table_insert (w->by_name, (gpointer) t->name, t);
}

gboolean
rv_weights_check (RvWeights *w, const RvManifest *m, GError **error)
{
  enum { SHOWN = 5 };
  if (w->random)
    for (guint i = 0; i < m->items->len; i++)
      {
        const Expected *e = &g_array_index (m->items, Expected, i);
        if (g_hash_table_lookup (w->by_name, e->name) == NULL)
          make_random (w, e);
      }
  g_autoptr (GString) missing = g_string_new (NULL);
  g_autoptr (GString) wrong = g_string_new (NULL);
  guint n_missing = 0, n_wrong = 0;
  for (guint i = 0; i < m->items->len; i++)
    {
      const Expected *e = &g_array_index (m->items, Expected, i);
      const RvStTensor *t = rv_weights_lookup (w, e->name);
      if (t == NULL)
        {
          if (n_missing++ < SHOWN)
            g_string_append_printf (missing, "\n    %s", e->name);
          continue;
        }
      if (shape_matches (e, t) && rv_st_dtype_is_float (t->dtype))
        continue;
      if (n_wrong++ < SHOWN)
        {
          g_autofree char *want = describe_shape (e->ndim, e->shape);
          g_autofree char *got = rv_st_tensor_describe (t);
          g_string_append_printf (wrong, "\n    %s: expected F32/F16/BF16 %s, found %s", e->name,
                                  want, got);
        }
    }
  if (n_missing == 0 && n_wrong == 0)
    return TRUE;
  g_autoptr (GString) msg = g_string_new (NULL);
  g_string_append_printf (msg, "%s does not match the network its config.json describes:",
                          w->describe);
  if (n_missing > 0)
    g_string_append_printf (msg, "\n  %u of %u tensors missing%s%s", n_missing, m->items->len,
                            n_missing > SHOWN ? ", the first:" : ":", missing->str);
  if (n_wrong > 0)
    g_string_append_printf (msg, "\n  %u with the wrong shape or dtype%s%s", n_wrong,
                            n_wrong > SHOWN ? ", the first:" : ":", wrong->str);
  g_string_append (msg, "\nAre the config and the weights from the same model?");
  g_set_error_literal (error, RV_ERROR, RV_ERROR_MODEL, msg->str);
  return FALSE;
}

RvStDType
rv_weights_main_dtype (RvWeights *w)
{
  guint64 bytes[RV_ST_F64 + 1] = { 0 };
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, w->by_name);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      const RvStTensor *t = value;
      if (rv_st_dtype_is_float (t->dtype))
        bytes[t->dtype] += t->nbytes;
    }
  RvStDType best = RV_ST_F32;
  for (int d = 0; d <= RV_ST_F64; d++)
    if (bytes[d] > bytes[best])
      best = d;
  return best;
}
