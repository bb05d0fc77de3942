/* rv-catalogue.h: the catalogue of model sets a user can get (data/models/
 * catalogue.json): what to fetch from which Hub repository, how large it is,
 * the device memory it needs and its licence. Validated strictly on load. */
#pragma once

#include "reverie.h"

G_BEGIN_DECLS

typedef enum {
  RV_CATALOGUE_MODEL_SET,   /* "model-set": prior/, decoder/, decoder-inpaint/ from Hub repos */
  RV_CATALOGUE_EMBEDDED,    /* "embedded": ships with Reverie, never downloaded */
  RV_CATALOGUE_UPSCALER,    /* "upscaler": one repo, a Real-ESRGAN-family folder */
} RvCatalogueKind;

/* One Hub repository and the files taken from it. */
typedef struct {
  char  *repo;        /* "owner/name" */
  char  *revision;    /* branch, tag or commit; "main" by default */
  char  *local;       /* folder inside the set it lands in ("prior"); "" = the set's top */
  char **include;     /* "unet/" = that folder and below; "model_index.json" = one file */
} RvCatalogueSource;

/* A way to get the weights: "fp16" (the *.fp16.safetensors files where the
 * repository has them, else the full ones) or "full" (full precision only). */
typedef struct {
  char    *name;
  guint64  download_bytes;   /* approximate; a pull tells the exact size first */
  char    *description;
} RvCatalogueVariant;

typedef struct {
  int     size;              /* square side in pixels: 512, 768 */
  guint64 bytes;             /* device memory a job at that size needs */
} RvCatalogueMemory;

typedef struct {
  char              *name;          /* [a-z0-9][a-z0-9._-]*: also the installed folder's name */
  RvCatalogueKind    kind;
  char              *title;
  char              *description;
  char              *licence_name;  /* SPDX id, e.g. "Apache-2.0" */
  char              *licence_url;
  char              *licence_text;  /* shown before the download */
  RvCatalogueSource *sources;
  guint              n_sources;
  RvCatalogueVariant *variants;     /* the first is the default */
  guint              n_variants;
  RvCatalogueMemory *memory;        /* ascending size */
  guint              n_memory;
  char              *memory_basis;  /* how the memory figures were obtained */
} RvCatalogueEntry;

typedef struct _RvCatalogue RvCatalogue;

/* Errors are RV_ERROR_MODEL naming the file (`what`) and the entry. */
RvCatalogue *rv_catalogue_load_data (const char *data, gsize len, const char *what, GError **error);
RvCatalogue *rv_catalogue_load (const char *path, GError **error);
/* $REVERIE_CATALOGUE, else the installed share/reverie/models/catalogue.json,
 * else the source tree's (running from a build folder). */
RvCatalogue *rv_catalogue_load_default (GError **error);
/* The file it was read from (NULL for data). */
const char  *rv_catalogue_path (RvCatalogue *c);
void         rv_catalogue_free (RvCatalogue *c);

guint                   rv_catalogue_size (RvCatalogue *c);
const RvCatalogueEntry *rv_catalogue_get (RvCatalogue *c, guint i);
const RvCatalogueEntry *rv_catalogue_lookup (RvCatalogue *c, const char *name);
/* NULL or "" = the default (first) variant; NULL if there is no such variant. */
const RvCatalogueVariant *rv_catalogue_entry_variant (const RvCatalogueEntry *e, const char *name);
/* Device memory for a square side: the figure of the smallest listed size
 * ≥ side (the largest one's beyond it); 0 when the entry lists none. */
guint64      rv_catalogue_entry_memory (const RvCatalogueEntry *e, int side);
const char  *rv_catalogue_kind_name (RvCatalogueKind kind);
/* Whether `name` is a valid set name (also safe as a folder name). */
gboolean     rv_catalogue_name_is_valid (const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvCatalogue, rv_catalogue_free)

G_END_DECLS
