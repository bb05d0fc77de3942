/* rv-engine.c: the engine object behind reverie.h: one device, one model set
 * (its reverie.json settings and its hash) loaded component by component when
 * a job first needs it, recovery of a lost device, requests and results.
 * Jobs run in rv-jobs.c. */
#include "config.h"

#include "rv-engine-private.h"

#include <glib/gstdio.h>

#include <math.h>
#include <string.h>

static const char *const prior_classes[] = { "KandinskyV22PriorPipeline", "KandinskyV22PriorEmb2EmbPipeline", NULL };

void
rv_request_init (RvRequest *req, RvJobKind kind)
{
  memset (req, 0, sizeof *req);
  req->kind = kind;
  req->n = 1;
  req->prior_guidance = -1;
  req->decoder_guidance = -1;
  req->strength = 0.3f;
  req->mask_mode = RV_MASK_AUTO;
  req->extend_context = -1;
}

void
rv_result_free (RvResult *r)
{
  if (r == NULL)
    return;
  rv_image_free (r->image);
  g_free (r);
}

/* ---- defaults ---- */

static void
defaults_for_kandinsky (RvDefaults *d)
{
  d->width = d->height = 512;
  d->prior_steps = 25;
  d->prior_guidance = 4.0f;
  d->decoder_steps = 100;
  d->decoder_guidance = 4.0f;
  g_strlcpy (d->scheduler, "ddpm", sizeof d->scheduler);
  d->extend_context = 0;
  d->extend_guidance = d->decoder_guidance;
}

/* reverie.json beside the model folders: recommended settings and,
 * optionally, a fitted latent → RGB projection for previews. */
static void
read_model_settings (RvEngine *e, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) root = rv_json_load_object (path, &error);
  if (root == NULL)
    {
      if (!g_error_matches (error, RV_ERROR, RV_ERROR_MODEL) ||
          g_file_test (path, G_FILE_TEST_EXISTS))
        g_warning ("%s", error->message);
      return;
    }
  JsonObject *o = json_node_get_object (root);
  RvDefaults *d = &e->defaults;
  if (json_object_has_member (o, "width"))
    d->width = (int) json_object_get_int_member (o, "width");
  if (json_object_has_member (o, "height"))
    d->height = (int) json_object_get_int_member (o, "height");
  if (json_object_has_member (o, "prior_steps"))
    d->prior_steps = (int) json_object_get_int_member (o, "prior_steps");
  if (json_object_has_member (o, "prior_guidance"))
    d->prior_guidance = (float) json_object_get_double_member (o, "prior_guidance");
  if (json_object_has_member (o, "decoder_steps"))
    d->decoder_steps = (int) json_object_get_int_member (o, "decoder_steps");
  if (json_object_has_member (o, "decoder_guidance"))
    d->decoder_guidance = (float) json_object_get_double_member (o, "decoder_guidance");
  const char *skey = json_object_has_member (o, "decoder_scheduler") ? "decoder_scheduler" : "scheduler";
  if (json_object_has_member (o, skey))
    {
      RvSchedulerKind k;
      const char *s = json_object_get_string_member (o, skey);
      if (s != NULL && rv_scheduler_kind_from_name (s, &k) && k != RV_SCHEDULER_UNCLIP)
        g_strlcpy (d->scheduler, rv_scheduler_short_name (k), sizeof d->scheduler);
    }
  if (json_object_has_member (o, "name"))
    {
      g_free (e->model_name);
      e->model_name = g_strdup (json_object_get_string_member (o, "name"));
    }
  const char *up = json_object_get_string_member_with_default (o, "upscaler", NULL);
  if (up != NULL)
    {
      g_autofree char *folder = g_path_get_dirname (path);
      e->set_upscaler_dir = g_path_is_absolute (up) ? g_strdup (up) : g_build_filename (folder, up, NULL);
    }
  /* a set with settings generates its default size directly, larger ones
   * through an upscaler when it has one (or one is chosen) */
  e->native_size = (int) json_object_get_int_member_with_default (o, "native_size",
                                                                  MAX (d->width, d->height));
  /* the inpainting decoder may fill a larger canvas in one pass than it
   * generates from nothing: the source it continues holds the picture together */
  e->extend_frame = (int) json_object_get_int_member_with_default (o, "extend_frame", 0);
  d->extend_context = (float) json_object_get_double_member_with_default (o, "extend_context", 0);
  d->extend_context = CLAMP (d->extend_context, 0.0f, 1.0f);
  d->extend_guidance = (float) json_object_get_double_member_with_default (o, "extend_guidance",
                                                                          d->decoder_guidance);
  d->extend_guidance = CLAMP (d->extend_guidance, 0.0f, 100.0f);
  d->width = CLAMP (d->width, 16, 4096);
  d->height = CLAMP (d->height, 16, 4096);
  d->prior_steps = CLAMP (d->prior_steps, 2, 1000);
  d->decoder_steps = CLAMP (d->decoder_steps, 1, 1000);
}

/* g_ptr_array_sort passes pointers to the elements */
static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* SHA-256 over every weight file of the set; large files contribute their
 * header and a sample of their data so that the hash stays quick. With
 * `stat_only`, each file's name, size, inode and modification time instead:
 * the key under which the hash is cached. */
static void
hash_weights (GChecksum *sum, const char *dir, int depth, gboolean stat_only)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  while ((n = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (names, g_strdup (n));
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (g_file_test (path, G_FILE_TEST_IS_DIR) && depth < 2)
        hash_weights (sum, path, depth + 1, stat_only);
      else if (g_str_has_suffix (name, ".safetensors") || g_str_has_suffix (name, ".json") ||
               g_str_has_suffix (name, ".txt"))
        {
          if (stat_only)
            {
              GStatBuf st;
              if (g_stat (path, &st) != 0)
                continue;
              g_autofree char *line = g_strdup_printf (
                "%s\n%" G_GINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GINT64_FORMAT ".%09ld\n",
                path, (gint64) st.st_size, (guint64) st.st_dev, (guint64) st.st_ino,
                (gint64) st.st_mtim.tv_sec, (long) st.st_mtim.tv_nsec);
              g_checksum_update (sum, (const guchar *) line, strlen (line));
              continue;
            }
          g_autoptr (GMappedFile) mf = g_mapped_file_new (path, FALSE, NULL);
          if (mf == NULL)
            continue;
          const guint8 *data = (const guint8 *) g_mapped_file_get_contents (mf);
          gsize len = g_mapped_file_get_length (mf);
          g_checksum_update (sum, (const guchar *) name, strlen (name));
          const gsize whole = (gsize) 256 << 20, chunk = 1 << 20;
          if (len <= whole)
            g_checksum_update (sum, data, len);
          else
            for (gsize off = 0; off < len; off += len / 64)
              g_checksum_update (sum, data + off, MIN (chunk, len - off));
        }
    }
}

/* The hash of the folders' weights (NULL-terminated list). Hashing a model set
 * reads every byte of it (0.1 s for the embedded model, more for larger ones),
 * so the result is kept in $XDG_CACHE_HOME/reverie/hashes/, keyed by the files'
 * paths, sizes, inodes and modification times: a file changed in any way is
 * hashed again. */
static char *
weights_hash (const char *const *dirs)
{
  g_autoptr (GChecksum) key = g_checksum_new (G_CHECKSUM_SHA256);
  for (guint i = 0; dirs[i] != NULL; i++)
    hash_weights (key, dirs[i], 0, TRUE);
  g_autofree char *path = g_build_filename (g_get_user_cache_dir (), "reverie", "hashes",
                                            g_checksum_get_string (key), NULL);
  g_autofree char *cached = NULL;
  gsize len = 0;
  if (g_file_get_contents (path, &cached, &len, NULL) && len == 16)
    {
      gboolean hex = TRUE;
      for (guint i = 0; i < 16; i++)
        hex = hex && g_ascii_isxdigit (cached[i]) && !g_ascii_isupper (cached[i]);
      if (hex)
        return g_steal_pointer (&cached);
    }

  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  for (guint i = 0; dirs[i] != NULL; i++)
    hash_weights (sum, dirs[i], 0, FALSE);
  char *hash = g_strndup (g_checksum_get_string (sum), 16);
  g_autofree char *parent = g_path_get_dirname (path);
  if (g_mkdir_with_parents (parent, 0700) == 0)
    g_file_set_contents (path, hash, 16, NULL);   /* atomic; a failure only costs time */
  return hash;
}

static char *
folder_hash (const char *dir)
{
  const char *dirs[] = { dir, NULL };
  return weights_hash (dirs);
}

static char *
model_hash (RvEngine *e)
{
  const char *dirs[] = { e->prior_dir, e->decoder_dir, e->inpaint_dir, NULL };
  return weights_hash (dirs);
}

/* ---- lifetime ---- */

RvEngine *
rv_engine_new (const char *device, const char *model_dir, const char *prior_dir,
               const char *decoder_dir, const char *inpaint_dir, RvWeightPolicy weights,
               GError **error)
{
  g_autoptr (RvModelSet) set = rv_model_set_new (model_dir, prior_dir, decoder_dir, inpaint_dir, error);
  if (set == NULL)
    return NULL;
  if (set->prior == NULL || set->decoder == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "A model set needs a prior and a decoder folder (got %s%s).",
                   set->prior ? "a prior" : "no prior", set->decoder ? " and a decoder" : " and no decoder");
      return NULL;
    }

  g_autoptr (RvEngine) e = g_new0 (RvEngine, 1);
  e->ref_count = 1;
  g_mutex_init (&e->lock);
  e->policy = weights;
  e->prior_dir = g_strdup (set->prior);
  e->decoder_dir = g_strdup (set->decoder);
  e->inpaint_dir = g_strdup (set->inpaint_decoder);

  /* configs now, so that a bad folder is reported before any work */
  g_autoptr (RvModelFolder) pf = rv_model_folder_open (e->prior_dir, prior_classes, error);
  if (pf == NULL)
    return NULL;
  g_autofree char *sched_dir = rv_model_folder_component (pf, "scheduler", error);
  if (sched_dir == NULL || !rv_scheduler_config_load (sched_dir, RV_SCHEDULER_UNCLIP, &e->prior_sched, error))
    return NULL;
  g_autofree char *proc_dir = rv_model_folder_component (pf, "image_processor", NULL);
  e->have_improc = proc_dir != NULL && rv_image_processor_config_load (proc_dir, &e->improc, NULL);
  g_autoptr (RvModelFolder) df = rv_model_folder_open (e->decoder_dir, NULL, error);
  if (df == NULL)
    return NULL;
  g_autofree char *dsched = rv_model_folder_component (df, "scheduler", error);
  if (dsched == NULL || !rv_scheduler_config_load (dsched, -1, &e->decoder_sched, error))
    return NULL;
  g_autofree char *movq_dir = rv_model_folder_component (df, "movq", error);
  if (movq_dir == NULL || !rv_vq_config_load (movq_dir, &e->vq, error))
    return NULL;
  if (e->inpaint_dir != NULL)
    {
      g_autoptr (RvModelFolder) inf = rv_model_folder_open (e->inpaint_dir, NULL, error);
      if (inf == NULL)
        return NULL;
      g_autofree char *isched = rv_model_folder_component (inf, "scheduler", error);
      if (isched == NULL || !rv_scheduler_config_load (isched, -1, &e->inpaint_sched, error))
        return NULL;
    }

  /* names and defaults */
  g_autofree char *root = g_path_get_dirname (e->decoder_dir);
  g_autofree char *dbase = g_path_get_basename (e->decoder_dir);
  g_autofree char *rbase = g_path_get_basename (root);
  e->model_name = g_strcmp0 (dbase, "decoder") == 0 ? g_strdup (rbase) : g_strdup (dbase);
  defaults_for_kandinsky (&e->defaults);
  e->native_size = 1024;
  g_autofree char *settings = g_build_filename (root, "reverie.json", NULL);
  if (g_file_test (settings, G_FILE_TEST_EXISTS))
    read_model_settings (e, settings);
  e->native_size = CLAMP (e->native_size, 16, 4096);
  e->extend_frame = e->extend_frame > 0 ? CLAMP (e->extend_frame, 16, 4096) : e->native_size;
  if (e->set_upscaler_dir != NULL && !rv_engine_set_upscaler (e, NULL, error))
    return NULL;

  e->model_hash = model_hash (e);
  e->dev = rv_device_new (device, error);
  if (e->dev == NULL)
    return NULL;
  e->device_selector = g_strdup (device);
  e->device_name = g_strdup (rv_device_caps (e->dev)->name);
  return g_steal_pointer (&e);
}

RvEngine *
rv_engine_ref (RvEngine *e)
{
  g_atomic_int_inc (&e->ref_count);
  return e;
}

static void
release_components (RvEngine *e)
{
  g_clear_pointer (&e->tokenizer, rv_tokenizer_free);
  g_clear_pointer (&e->text, rv_clip_text_free);
  g_clear_pointer (&e->prior, rv_prior_free);
  g_clear_pointer (&e->vision, rv_clip_vision_free);
  g_clear_pointer (&e->unet, rv_unet_free);
  g_clear_pointer (&e->unet_inpaint, rv_unet_free);
  g_clear_pointer (&e->movq, rv_movq_free);
  g_clear_pointer (&e->movq_inpaint, rv_movq_free);
  g_clear_pointer (&e->upscaler, rv_upscaler_free);
  if (e->dev != NULL)
    rv_device_trim (e->dev);
}

void
rv_engine_unref (RvEngine *e)
{
  if (e == NULL || !g_atomic_int_dec_and_test (&e->ref_count))
    return;
  release_components (e);
  g_free (e->zero_embed);
  g_free (e->prior_dir);
  g_free (e->decoder_dir);
  g_free (e->inpaint_dir);
  g_free (e->model_name);
  g_free (e->model_hash);
  g_free (e->set_upscaler_dir);
  g_free (e->upscaler_dir);
  g_free (e->upscaler_name);
  g_free (e->upscaler_hash);
  g_free (e->device_selector);
  g_free (e->device_name);
  g_clear_pointer (&e->dev, rv_device_unref);
  g_mutex_clear (&e->lock);
  g_free (e);
}

void
rv_engine_release (RvEngine *e)
{
  g_mutex_lock (&e->lock);
  release_components (e);
  g_mutex_unlock (&e->lock);
}

const char *
rv_engine_device_name (RvEngine *e)
{
  /* a copy: the device itself may be replaced while a job runs */
  return e->device_name;
}

gboolean
_rv_engine_recover_device (RvEngine *e, GError **error)
{
  /* every tensor of the loaded components lived on the lost device; they
   * must be gone before it is */
  release_components (e);
  g_autoptr (GError) local = NULL;
  RvDevice *dev = rv_device_new (e->device_selector, &local);
  if (dev == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_DEVICE_LOST,
                   "The graphics device was lost and could not be opened again (%s). Restart "
                   "Reverie; if it keeps happening, update the graphics driver or choose "
                   "another device.", local->message);
      return FALSE;
    }
  rv_device_unref (e->dev);
  e->dev = dev;
  return TRUE;
}

const char *
rv_engine_model_name (RvEngine *e)
{
  return e->model_name;
}

const RvDefaults *
rv_engine_defaults (RvEngine *e)
{
  return &e->defaults;
}

gboolean
rv_engine_can_inpaint (RvEngine *e)
{
  return e->inpaint_dir != NULL;
}

guint64
rv_engine_peak_memory (RvEngine *e)
{
  return e->peak;
}

const char *
rv_engine_model_hash (RvEngine *e)
{
  return e->model_hash;
}

/* ---- super-resolution ---- */

gboolean
rv_engine_set_upscaler (RvEngine *e, const char *dir, GError **error)
{
  const char *use = dir != NULL ? dir : e->set_upscaler_dir;
  RvUpscalerConfig cfg = { 0 };
  if (use != NULL)
    {
      g_autoptr (GError) local = NULL;
      g_autofree char *weights = g_build_filename (use, "model.safetensors", NULL);
      if (!rv_upscaler_config_load (use, &cfg, &local))
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s is not an upscaler folder: %s", use,
                       local->message);
          return FALSE;
        }
      g_autoptr (RvWeights) w = rv_weights_open (use, &local);
      if (w == NULL)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_MODEL, "%s", local->message);
          return FALSE;
        }
    }
  g_mutex_lock (&e->lock);
  g_clear_pointer (&e->upscaler, rv_upscaler_free);
  g_clear_pointer (&e->upscaler_dir, g_free);
  g_clear_pointer (&e->upscaler_name, g_free);
  g_clear_pointer (&e->upscaler_hash, g_free);
  if (use != NULL)
    {
      e->upscaler_dir = g_strdup (use);
      g_autofree char *base = g_path_get_basename (use);
      g_autofree char *parent_dir = g_path_get_dirname (use);
      g_autofree char *parent = g_path_get_basename (parent_dir);
      /* "reverie-tiny/upscaler" reads better than "upscaler" */
      e->upscaler_name = g_strcmp0 (base, "upscaler") == 0 ? g_strdup_printf ("%s/%s", parent, base)
                                                          : g_strdup (base);
      e->upscaler_hash = folder_hash (use);
      e->upscaler_cfg = cfg;
    }
  g_mutex_unlock (&e->lock);
  return TRUE;
}

const char *
rv_engine_upscaler_name (RvEngine *e)
{
  return e->upscaler_name;
}

const char *
rv_engine_upscaler_hash (RvEngine *e)
{
  return e->upscaler_hash;
}

int
rv_engine_upscaler_scale (RvEngine *e)
{
  return e->upscaler_dir != NULL ? rv_upscaler_config_scale (&e->upscaler_cfg) : 0;
}

int
rv_engine_native_size (RvEngine *e)
{
  return e->native_size;
}

gboolean
rv_engine_plan_upscale (RvEngine *e, const RvRequest *req, int *width, int *height)
{
  int w = req->width > 0 ? req->width : e->defaults.width;
  int h = req->height > 0 ? req->height : e->defaults.height;
  *width = w;
  *height = h;
  gboolean text_mode = req->kind == RV_JOB_GENERATE || req->kind == RV_JOB_VARIATION ||
                       req->kind == RV_JOB_MIX;
  if (!text_mode || e->upscaler_dir == NULL || rv_upscaler_config_scale (&e->upscaler_cfg) < 2 ||
      MAX (w, h) <= e->native_size)
    return FALSE;
  /* the same aspect ratio within the native size */
  double f = (double) e->native_size / MAX (w, h);
  *width = MAX (16, (int) lround (w * f));
  *height = MAX (16, (int) lround (h * f));
  return TRUE;
}

gboolean
_rv_engine_need_upscaler (RvEngine *e, RvCmd *cmd, GError **error)
{
  if (e->upscaler != NULL)
    return TRUE;
  if (e->upscaler_dir == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "The model set %s has no upscaler: choose a Real-ESRGAN model folder "
                   "(tools/convert-esrgan.py makes one from a .pth file).", e->model_name);
      return FALSE;
    }
  e->upscaler = rv_upscaler_load (cmd, e->upscaler_dir, e->policy, error);
  return e->upscaler != NULL;
}

/* ---- components ---- */

static char *
component (const char *folder, const char *name, GError **error)
{
  g_autoptr (RvModelFolder) f = rv_model_folder_open (folder, NULL, error);
  return f ? rv_model_folder_component (f, name, error) : NULL;
}

gboolean
_rv_engine_need_prior (RvEngine *e, RvCmd *cmd, GError **error)
{
  if (e->prior != NULL)
    return TRUE;
  g_autofree char *tok = component (e->prior_dir, "tokenizer", error);
  g_autofree char *text = tok ? component (e->prior_dir, "text_encoder", error) : NULL;
  g_autofree char *prior = text ? component (e->prior_dir, "prior", error) : NULL;
  if (prior == NULL)
    return FALSE;
  if (e->tokenizer == NULL && (e->tokenizer = rv_tokenizer_new (tok, error)) == NULL)
    return FALSE;
  if (e->text == NULL && (e->text = rv_clip_text_load (cmd, text, e->policy, error)) == NULL)
    return FALSE;
  e->prior = rv_prior_load (cmd, prior, e->policy, error);
  return e->prior != NULL;
}

gboolean
_rv_engine_need_vision (RvEngine *e, RvCmd *cmd, GError **error)
{
  if (e->vision != NULL)
    return TRUE;
  g_autofree char *dir = component (e->prior_dir, "image_encoder", error);
  if (dir == NULL)
    return FALSE;
  if (!e->have_improc)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "%s has no image_processor/preprocessor_config.json, which image inputs need.",
                   e->prior_dir);
      return FALSE;
    }
  e->vision = rv_clip_vision_load (cmd, dir, e->policy, error);
  return e->vision != NULL;
}

gboolean
_rv_engine_need_decoder (RvEngine *e, RvCmd *cmd, gboolean inpaint, GError **error)
{
  const char *folder = inpaint ? e->inpaint_dir : e->decoder_dir;
  RvUNet **unet = inpaint ? &e->unet_inpaint : &e->unet;
  RvMovq **movq = inpaint ? &e->movq_inpaint : &e->movq;
  if (folder == NULL)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
                   "Inpainting needs an inpainting decoder (a decoder-inpaint folder); this model "
                   "set has none.");
      return FALSE;
    }
  if (*unet == NULL)
    {
      g_autofree char *dir = component (folder, "unet", error);
      if (dir == NULL || (*unet = rv_unet_load (cmd, dir, e->policy, error)) == NULL)
        return FALSE;
    }
  if (*movq == NULL)
    {
      g_autofree char *dir = component (folder, "movq", error);
      /* the encoder is needed by inpainting and img2img only; load it with the
       * decoder anyway, it is a third of the codec */
      if (dir == NULL || (*movq = rv_movq_load (cmd, dir, e->policy, TRUE, error)) == NULL)
        return FALSE;
    }
  return TRUE;
}

/* The CLIP image embedding of an all-zero input: the negative image
 * embedding when no negative prompt is given (docs/model-spec.md §0.6). */
gboolean
_rv_engine_need_zero_embed (RvEngine *e, RvCmd *cmd, GError **error)
{
  if (e->zero_embed != NULL)
    return TRUE;
  if (!_rv_engine_need_vision (e, cmd, error))
    return FALSE;
  const RvClipVisionConfig *vc = rv_clip_vision_config (e->vision);
  gint64 shape[4] = { 1, vc->image_size, vc->image_size, vc->num_channels };
  g_autoptr (RvTensor) px = rv_tensor_new (e->dev, RV_DTYPE_F32, 4, shape, error);
  if (px == NULL)
    return FALSE;
  rv_cmd_fill_u32 (cmd, px, 0);
  g_autoptr (RvTensor) emb = NULL;
  if (!rv_clip_vision_forward (e->vision, cmd, px, &emb, NULL))
    {
      rv_cmd_submit (cmd, error);   /* reports the recorded failure */
      return FALSE;
    }
  int dim = (int) emb->shape[1];
  float *z = g_new (float, dim);
  rv_cmd_download (cmd, emb, z, dim * sizeof (float));
  if (!rv_cmd_submit (cmd, error))
    {
      g_free (z);
      return FALSE;
    }
  e->zero_embed = z;
  e->embed_dim = dim;
  return TRUE;
}

int
rv_engine_prompt_overflow (RvEngine *e, const char *prompt, GError **error)
{
  g_mutex_lock (&e->lock);
  if (e->tokenizer == NULL)
    {
      g_autofree char *tok = component (e->prior_dir, "tokenizer", error);
      if (tok != NULL)
        e->tokenizer = rv_tokenizer_new (tok, error);
    }
  int dropped = -1;
  if (e->tokenizer != NULL)
    {
      int len = rv_tokenizer_max_length (e->tokenizer);
      g_autofree gint32 *ids = g_new (gint32, len);
      g_autofree gint32 *mask = g_new (gint32, len);
      if (!rv_tokenizer_encode (e->tokenizer, prompt, len, ids, mask, &dropped, error))
        dropped = -1;
    }
  g_mutex_unlock (&e->lock);
  return dropped;
}

/* ---- devices ---- */

GPtrArray *
rv_engine_list_devices (GError **error)
{
  g_autoptr (GArray) caps = rv_device_enumerate (error);
  if (caps == NULL)
    return NULL;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < caps->len; i++)
    g_ptr_array_add (names, g_strdup (g_array_index (caps, RvDeviceCaps, i).name));
  return names;
}
