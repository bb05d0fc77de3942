/* fuzz-hub.c: what the Hub downloader reads from the network (the revision
 * JSON, the resolve response's headers, redirect targets) and the model
 * catalogue, through their pure parsers. The first byte picks the parser
 * (tests/fuzz/make-corpus-hub.py describes the input layout). */
#include "fuzz.h"
#include "rv-hub.h"

#include <string.h>

/* A safe path: no "..", not absolute, no empty parts. */
static void
assert_safe_path (const char *p)
{
  g_assert (p[0] != '\0' && p[0] != '/');
  g_assert (strstr (p, "//") == NULL && strchr (p, '\\') == NULL);
  g_auto (GStrv) parts = g_strsplit (p, "/", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    g_assert (parts[i][0] != '\0' && strcmp (parts[i], "..") != 0 && strcmp (parts[i], ".") != 0);
}

static void
revision (const char *s, gsize len)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RvHubRevision) r = rv_hub_parse_revision (s, len, &error);
  if (r == NULL)
    {
      g_assert (error != NULL && error->domain == RV_HUB_ERROR);
      return;
    }
  g_assert (strlen (r->sha) >= 40);
  for (guint i = 0; i < r->siblings->len; i++)
    {
      RvHubSibling *sib = g_ptr_array_index (r->siblings, i);
      assert_safe_path (sib->rfilename);
      g_assert (sib->size <= ((guint64) 1 << 50));
      g_assert (sib->lfs_sha256 == NULL || strlen (sib->lfs_sha256) == 64);
    }
  /* the selection takes only included, unpickled files, each once */
  static char *include[] = { "unet/", "movq/", "model_index.json", NULL };
  RvCatalogueSource src = { .repo = "o/r", .revision = "main", .local = "decoder", .include = include };
  for (int v = 0; v < 2; v++)
    {
      g_autoptr (GPtrArray) sel = rv_hub_select_files (r, &src, v ? "full" : "fp16");
      for (guint i = 0; i < sel->len; i++)
        {
          RvHubSibling *sib = g_ptr_array_index (sel, i);
          g_assert (!rv_hub_file_is_pickled (sib->rfilename));
          g_assert (g_str_has_prefix (sib->rfilename, "unet/") || g_str_has_prefix (sib->rfilename, "movq/")
                    || strcmp (sib->rfilename, "model_index.json") == 0);
          for (guint k = 0; k < i; k++)
            g_assert (g_ptr_array_index (sel, k) != sib);
        }
    }
}

static void
headers (const char *s)
{
  g_auto (GStrv) f = g_strsplit (s, "\n", 5);
  const char *v[5] = { NULL };
  for (guint i = 0; f[i] != NULL && i < 5; i++)
    v[i] = f[i][0] != '\0' ? f[i] : NULL;
  RvHubLinked l;
  g_autoptr (GError) error = NULL;
  if (rv_hub_parse_linked_headers (v[0], v[1], v[2], v[3], &l, &error))
    {
      g_assert (l.commit == NULL || strlen (l.commit) >= 40);
      g_assert (l.etag == NULL || (l.etag[0] != '\0' && strchr (l.etag, '"') == NULL));
      g_assert (l.size >= -1);
      g_assert (!l.linked || v[1] != NULL);
      rv_hub_linked_clear (&l);
    }
  else
    g_assert (error != NULL && error->domain == RV_HUB_ERROR);
  guint64 start = 0, end = 0;
  gint64 total = 0;
  if (rv_hub_parse_content_range (v[4], &start, &end, &total))
    g_assert (start <= end && (total == -1 || (guint64) total > end));
}

static void
redirect (const char *s)
{
  g_auto (GStrv) f = g_strsplit (s, "\n", 2);
  if (f[0] == NULL || f[1] == NULL)
    return;
  g_autoptr (GError) error = NULL;
  g_autofree char *url = rv_hub_resolve_redirect (f[0], f[1], &error);
  if (url == NULL)
    {
      g_assert (error != NULL);
      return;
    }
  g_assert (g_ascii_strncasecmp (url, "http://", 7) == 0 || g_ascii_strncasecmp (url, "https://", 8) == 0);
  for (const char *c = url; *c; c++)
    g_assert ((guchar) *c > 0x20 && (guchar) *c < 0x7f);
}

static void
catalogue (const char *s, gsize len)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RvCatalogue) c = rv_catalogue_load_data (s, len, "fuzz", &error);
  if (c == NULL)
    {
      g_assert (error != NULL);
      return;
    }
  for (guint i = 0; i < rv_catalogue_size (c); i++)
    {
      const RvCatalogueEntry *e = rv_catalogue_get (c, i);
      g_assert (rv_catalogue_name_is_valid (e->name));
      g_assert (rv_catalogue_lookup (c, e->name) == e);
      for (guint k = 0; k < e->n_sources; k++)
        {
          g_assert (e->sources[k].local[0] == '\0' || strchr (e->sources[k].local, '/') == NULL);
          for (guint m = 0; e->sources[k].include[m] != NULL; m++)
            g_assert (e->sources[k].include[m][0] != '/');
        }
      (void) rv_catalogue_entry_memory (e, 512);
      g_assert (e->kind == RV_CATALOGUE_EMBEDDED || rv_catalogue_entry_variant (e, NULL) != NULL);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  /* a NUL-terminated copy: headers and URLs are C strings */
  g_autofree char *s = g_strndup ((const char *) data + 1, size - 1);
  gsize len = size - 1;
  switch (data[0] % 4)
    {
    case 0: revision ((const char *) data + 1, len); break;
    case 1: headers (s); break;
    case 2: redirect (s); break;
    default: catalogue ((const char *) data + 1, len); break;
    }
  return 0;
}
