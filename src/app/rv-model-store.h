/* rv-model-store.h: the model sets a user can have: the catalogue's, which
 * are installed, which were half downloaded, and the one download running
 * (in a worker; it belongs to the application, so that it goes on when the
 * preferences or the window close). Without the Hub downloader (no libsoup 3
 * at build time) it lists nothing. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* One model set of the catalogue, as things stand. */
typedef struct {
  char    *name;
  char    *title;
  char    *description;
  gboolean embedded;           /* ships with Reverie: nothing to download */
  char    *licence_name;
  char    *licence_text;
  guint64  download_bytes;     /* approximate, the default variant's */
  guint64  memory_bytes;       /* device memory a job needs at the smallest size; 0 = not said */
  char    *installed_dir;      /* NULL when not installed */
  guint64  installed_bytes;
  gboolean staged;             /* a download was left unfinished */
  guint64  staged_done, staged_total;
  /* the download running, if it is this set's */
  gboolean pulling;
  int      stage;              /* RvHubStage */
  guint64  done, total;
  double   eta;
  char    *error;              /* why its last download failed, or NULL */
} RvModelSet;

#define RV_TYPE_MODEL_STORE (rv_model_store_get_type ())
G_DECLARE_FINAL_TYPE (RvModelStore, rv_model_store, RV, MODEL_STORE, GObject)

RvModelStore     *rv_model_store_new            (void);
gboolean          rv_model_store_available      (RvModelStore *self);
/* Reads the catalogue and the store again, in a worker; "changed" follows. */
void              rv_model_store_refresh        (RvModelStore *self);
/* The sets (RvModelSet*, borrowed, catalogue order); NULL before the first
 * refresh finished. */
GPtrArray        *rv_model_store_get_sets       (RvModelStore *self);
const RvModelSet *rv_model_store_lookup         (RvModelStore *self,
                                                 const char   *name);
/* Why the catalogue could not be read, or NULL. */
const char       *rv_model_store_get_error      (RvModelStore *self);
/* The device memory of the device in use, 0 until known. */
guint64           rv_model_store_get_device_memory (RvModelStore *self);
const char       *rv_model_store_get_device_name   (RvModelStore *self);
/* Whether the set fits the device: 1 yes, 0 no, -1 not known. */
int               rv_model_store_fits           (RvModelStore     *self,
                                                 const RvModelSet *set);
/* One download at a time: FALSE while another runs. */
gboolean          rv_model_store_pull           (RvModelStore *self,
                                                 const char   *name);
void              rv_model_store_cancel         (RvModelStore *self);
const char       *rv_model_store_get_pulling    (RvModelStore *self);

G_END_DECLS
