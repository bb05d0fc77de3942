/* rv-server-store.h: the local store behind `url` results — PNG files under
 * unguessable names, each removed once its expiry has passed. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _RvStore RvStore;

/* dir NULL = $XDG_CACHE_HOME/reverie/api. Created (mode 0700) if missing. */
RvStore    *rv_store_new   (const char *dir, int ttl_seconds, GError **error);
void        rv_store_free  (RvStore *s);
const char *rv_store_dir   (RvStore *s);
int         rv_store_ttl   (RvStore *s);
/* Writes a PNG under a fresh random name ("<32 hex digits>.png") and returns
 * the name. Safe to call from any thread. */
char       *rv_store_put   (RvStore *s, GBytes *png, GError **error);
/* The file of that name unless it is missing, expired or not a store name;
 * expires_in: seconds it has left. */
GBytes     *rv_store_get   (RvStore *s, const char *name, gint64 *expires_in);
/* Removes expired files; returns how many were removed. */
guint       rv_store_sweep (RvStore *s);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvStore, rv_store_free)

G_END_DECLS
