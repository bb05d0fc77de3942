/* rv-server-store.c: result files for `url` responses. A name is 128 random
 * bits from the kernel, so knowing the server's address is not enough to
 * fetch someone else's images; files expire after the configured time. */
#include "config.h"

#include "rv-server-store.h"
#include "rv-image-io.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/random.h>

#define NAME_HEX 32

struct _RvStore {
  char *dir;
  int   ttl;
};

RvStore *
rv_store_new (const char *dir, int ttl_seconds, GError **error)
{
  g_autofree char *path = dir ? g_strdup (dir)
                              : g_build_filename (g_get_user_cache_dir (), "reverie", "api", NULL);
  if (g_mkdir_with_parents (path, 0700) != 0)
    {
      int err = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err),
                   "Cannot create the result store %s: %s.", path, g_strerror (err));
      return NULL;
    }
  RvStore *s = g_new0 (RvStore, 1);
  s->dir = g_steal_pointer (&path);
  s->ttl = MAX (ttl_seconds, 1);
  return s;
}

void
rv_store_free (RvStore *s)
{
  if (s == NULL)
    return;
  g_free (s->dir);
  g_free (s);
}

const char *
rv_store_dir (RvStore *s)
{
  return s->dir;
}

int
rv_store_ttl (RvStore *s)
{
  return s->ttl;
}

/* "<32 lowercase hex digits>.png" and nothing else: names from a URL never
 * reach the file system otherwise. */
static gboolean
is_store_name (const char *name, gsize len)
{
  if (len != NAME_HEX + 4 || memcmp (name + NAME_HEX, ".png", 4) != 0)
    return FALSE;
  for (int i = 0; i < NAME_HEX; i++)
    if (!g_ascii_isdigit (name[i]) && !(name[i] >= 'a' && name[i] <= 'f'))
      return FALSE;
  return TRUE;
}

char *
rv_store_put (RvStore *s, GBytes *png, GError **error)
{
  guint8 random[NAME_HEX / 2];
  if (getrandom (random, sizeof random, 0) != (ssize_t) sizeof random)
    {
      int err = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err),
                   "No random bytes for a result name: %s.", g_strerror (err));
      return NULL;
    }
  char name[NAME_HEX + 5];
  for (guint i = 0; i < sizeof random; i++)
    g_snprintf (name + 2 * i, 3, "%02x", random[i]);
  memcpy (name + NAME_HEX, ".png", 5);
  g_autofree char *path = g_build_filename (s->dir, name, NULL);
  gsize len = 0;
  const void *data = g_bytes_get_data (png, &len);
  if (!rv_file_write_atomic (path, data, len, error))
    return NULL;
  return g_strdup (name);
}

static gint64
age_seconds (const char *path, gboolean *exists)
{
  GStatBuf st;
  *exists = g_stat (path, &st) == 0;
  return *exists ? g_get_real_time () / G_USEC_PER_SEC - (gint64) st.st_mtime : 0;
}

GBytes *
rv_store_get (RvStore *s, const char *name, gint64 *expires_in)
{
  if (!is_store_name (name, strlen (name)))
    return NULL;
  g_autofree char *path = g_build_filename (s->dir, name, NULL);
  gboolean exists;
  gint64 age = age_seconds (path, &exists);
  if (!exists)
    return NULL;
  if (age >= s->ttl)
    {
      g_unlink (path);
      return NULL;
    }
  g_autoptr (GMappedFile) mf = g_mapped_file_new (path, FALSE, NULL);
  if (mf == NULL)
    return NULL;
  if (expires_in != NULL)
    *expires_in = s->ttl - age;
  return g_mapped_file_get_bytes (mf);
}

guint
rv_store_sweep (RvStore *s)
{
  g_autoptr (GDir) d = g_dir_open (s->dir, 0, NULL);
  if (d == NULL)
    return 0;
  guint removed = 0;
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      /* store names, and the temporary files of writes that never finished */
      gsize len = strlen (name);
      if (len < NAME_HEX + 4 || !is_store_name (name, NAME_HEX + 4) ||
          (len > NAME_HEX + 4 && name[NAME_HEX + 4] != '.'))
        continue;
      g_autofree char *path = g_build_filename (s->dir, name, NULL);
      gboolean exists;
      if (age_seconds (path, &exists) >= s->ttl && exists && g_unlink (path) == 0)
        removed++;
    }
  return removed;
}
