/* rv-preview.c: progress previews: the latent → RGB linear projection, fitted
 * once per model and cached by its hash, or else a full MoVQ decode. */
#include "config.h"

#include "rv-jobs-private.h"

#include <math.h>
#include <string.h>

/* x₀ (C, h, w) → preview pixels at the output size */
void
_rv_preview_make (Job *j, const float *x0)
{
  RvEngine *e = j->e;
  int H = j->lh * j->f, W = j->lw * j->f;
  if (j->preview == NULL || j->preview->width != W || j->preview->height != H)
    {
      g_clear_pointer (&j->preview, rv_image_free);
      j->preview = rv_image_new (W, H, 3);
    }
  gsize plane = (gsize) j->lh * j->lw;
  if (e->have_projection)
    {
      for (int y = 0; y < j->lh; y++)
        for (int x = 0; x < j->lw; x++)
          {
            guint8 rgb[3];
            for (int c = 0; c < 3; c++)
              {
                float v = e->projection[j->C][c];
                for (int k = 0; k < j->C; k++)
                  v += e->projection[k][c] * x0[k * plane + (gsize) y * j->lw + x];
                v = v * 0.5f + 0.5f;
                rgb[c] = (guint8) lrintf (CLAMP (v, 0.0f, 1.0f) * 255.0f);
              }
            for (int dy = 0; dy < j->f; dy++)
              for (int dx = 0; dx < j->f; dx++)
                memcpy (j->preview->pixels + (((gsize) y * j->f + dy) * W + (gsize) x * j->f + dx) * 3,
                        rgb, 3);
          }
      return;
    }
  g_autoptr (GError) error = NULL;
  g_autofree float *px = rv_pipe_movq_decode (j->cmd, j->movq, x0, j->C, j->lh, j->lw, &error);
  if (px != NULL)
    {
      g_autoptr (RvImage) img = rv_pipe_to_image (px, H, W);
      memcpy (j->preview->pixels, img->pixels, (gsize) W * H * 3);
    }
}

/* ---- preview projection ---- */

static char *
projection_cache_path (RvEngine *e)
{
  g_autofree char *name = g_strdup_printf ("preview-%s.json", rv_engine_model_hash (e));
  return g_build_filename (g_get_user_cache_dir (), "reverie", name, NULL);
}

static gboolean
load_projection (RvEngine *e, int C)
{
  g_autofree char *path = projection_cache_path (e);
  g_autoptr (JsonNode) root = rv_json_load_object (path, NULL);
  if (root == NULL)
    return FALSE;
  JsonArray *rows = json_object_get_array_member (json_node_get_object (root), "projection");
  if (rows == NULL || (int) json_array_get_length (rows) != C + 1)
    return FALSE;
  for (int k = 0; k <= C; k++)
    {
      JsonArray *r = json_array_get_array_element (rows, k);
      if (r == NULL || json_array_get_length (r) != 3)
        return FALSE;
      for (int c = 0; c < 3; c++)
        e->projection[k][c] = (float) json_array_get_double_element (r, c);
    }
  return TRUE;
}

static void
save_projection (RvEngine *e, int C)
{
  GString *s = g_string_new ("{\"projection\": [");
  for (int k = 0; k <= C; k++)
    {
      char a[G_ASCII_DTOSTR_BUF_SIZE], b[G_ASCII_DTOSTR_BUF_SIZE], c[G_ASCII_DTOSTR_BUF_SIZE];
      g_string_append_printf (s, "%s[%s, %s, %s]", k ? ", " : "",
                              g_ascii_dtostr (a, sizeof a, e->projection[k][0]),
                              g_ascii_dtostr (b, sizeof b, e->projection[k][1]),
                              g_ascii_dtostr (c, sizeof c, e->projection[k][2]));
    }
  g_string_append (s, "]}\n");
  g_autofree char *path = projection_cache_path (e);
  g_autofree char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);
  g_file_set_contents (path, s->str, s->len, NULL);
  g_string_free (s, TRUE);
}

/* Solves (XᵀX + λI) P = XᵀY for the C+1 by 3 projection by Gaussian
 * elimination; X rows are [latent channels…, 1]. */
static void
solve_projection (RvEngine *e, int C, const double *xtx, const double *xty)
{
  int n = C + 1;
  double a[9][12];
  double trace = 0;
  for (int i = 0; i < n; i++)
    trace += xtx[i * n + i];
  for (int i = 0; i < n; i++)
    {
      for (int k = 0; k < n; k++)
        a[i][k] = xtx[i * n + k] + (i == k ? 1e-4 * trace / n : 0);
      for (int c = 0; c < 3; c++)
        a[i][n + c] = xty[i * 3 + c];
    }
  for (int col = 0; col < n; col++)
    {
      int piv = col;
      for (int r = col + 1; r < n; r++)
        if (fabs (a[r][col]) > fabs (a[piv][col]))
          piv = r;
      for (int k = 0; k < n + 3; k++)
        {
          double t = a[col][k];
          a[col][k] = a[piv][k];
          a[piv][k] = t;
        }
      if (fabs (a[col][col]) < 1e-12)
        continue;
      for (int r = 0; r < n; r++)
        if (r != col)
          {
            double fct = a[r][col] / a[col][col];
            for (int k = col; k < n + 3; k++)
              a[r][k] -= fct * a[col][k];
          }
    }
  for (int i = 0; i < n; i++)
    for (int c = 0; c < 3; c++)
      e->projection[i][c] = fabs (a[i][i]) > 1e-12 ? (float) (a[i][n + c] / a[i][i]) : 0.0f;
}

/* Fits the latent → RGB projection once per model: a calibration picture of
 * colour patches and gradients goes through the MoVQ encoder and decoder,
 * and each latent pixel is matched with the mean colour of the pixels it
 * decodes to. Cached by the model's hash. */
void
_rv_preview_ensure_projection (Job *j)
{
  RvEngine *e = j->e;
  int C = j->C, f = j->f;
  if (e->have_projection || C > 8)
    return;
  if (load_projection (e, C))
    {
      e->have_projection = TRUE;
      return;
    }
  int side = 16 * f;
  gsize plane = (gsize) side * side;
  g_autofree float *img = g_new (float, 3 * plane);
  RvRandom r;
  rv_random_init (&r, 12345);
  int cell = MAX (side / 8, f);
  for (int by = 0; by < side; by += cell)
    for (int bx = 0; bx < side; bx += cell)
      {
        float col[3], grad[3];
        for (int c = 0; c < 3; c++)
          {
            col[c] = (float) rv_random_uniform (&r) * 2 - 1;
            grad[c] = rv_random_uniform (&r) < 0.3 ? (float) rv_random_uniform (&r) - 0.5f : 0;
          }
        for (int y = by; y < MIN (by + cell, side); y++)
          for (int x = bx; x < MIN (bx + cell, side); x++)
            for (int c = 0; c < 3; c++)
              img[c * plane + (gsize) y * side + x] =
                CLAMP (col[c] + grad[c] * (x - bx) / (float) cell, -1.0f, 1.0f);
      }
  g_autoptr (GError) error = NULL;
  int lc = 0;
  g_autofree float *lat = rv_pipe_movq_encode (j->cmd, j->movq, img, side, side, &lc, &error);
  g_autofree float *dec = lat && lc == C ? rv_pipe_movq_decode (j->cmd, j->movq, lat, C, 16, 16, &error) : NULL;
  if (dec == NULL)
    return;
  int n = C + 1;
  double xtx[81] = { 0 }, xty[27] = { 0 };
  for (int y = 0; y < 16; y++)
    for (int x = 0; x < 16; x++)
      {
        double row[9], rgb[3] = { 0 };
        for (int k = 0; k < C; k++)
          row[k] = lat[k * 256 + y * 16 + x];
        row[C] = 1;
        for (int c = 0; c < 3; c++)
          {
            for (int dy = 0; dy < f; dy++)
              for (int dx = 0; dx < f; dx++)
                rgb[c] += dec[c * plane + (gsize) (y * f + dy) * side + x * f + dx];
            rgb[c] /= f * f;
          }
        for (int a = 0; a < n; a++)
          {
            for (int b = 0; b < n; b++)
              xtx[a * n + b] += row[a] * row[b];
            for (int c = 0; c < 3; c++)
              xty[a * 3 + c] += row[a] * rgb[c];
          }
      }
  solve_projection (e, C, xtx, xty);
  e->have_projection = TRUE;
  save_projection (e, C);
}

const char *
rv_engine_preview_method (RvEngine *e)
{
  return e->have_projection ? "linear projection" : "full decode";
}
