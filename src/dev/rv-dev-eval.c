/* rv-dev-eval.c: `reverie-dev eval` — prompt following of a model of the
 * scene grammar, measured by the checker on fresh prompts and seeds: text to
 * image per template and attribute, variations, and inpainting. */
#include "config.h"

#include "rv-dev.h"
#include "rv-cli-common.h"
#include "rv-dev-scenes.h"
#include "rv-clip.h"
#include "rv-random.h"

#include <unistd.h>

#include <string.h>

typedef struct {
  int ok, total;
} Tally;

static double
pct (Tally t)
{
  return t.total ? 100.0 * t.ok / t.total : 0;
}

/* The picture as the checker reads it: 64×64 scene pictures. Sides that are
 * multiples of 64 go as they are (the checker box-averages them itself);
 * others are reduced to 64×64 with an area (box) filter first, so results
 * at any size (generated natively and enlarged by the upscaler) are judged
 * like the 64×64 ones. */
static RvImage *
checker_view (const RvImage *img)
{
  if (img->width % 64 == 0 && img->height % 64 == 0)
    return rv_image_copy (img);
  return rv_pil_resize (img, 64, 64, RV_RESAMPLE_BOX);
}

static RvImage *
generate_one (RvEngine *e, const RvRequest *base, const char *prompt, guint64 seed, GError **error)
{
  RvRequest req = *base;
  req.prompt = prompt;
  req.seed = seed;
  req.n = 1;
  g_autoptr (GPtrArray) r = rv_engine_run (e, &req, NULL, NULL, NULL, error);
  if (r == NULL)
    return NULL;
  RvResult *res = g_ptr_array_index (r, 0);
  return g_steal_pointer (&res->image);
}

typedef struct {
  int      n, n_vary, n_inpaint;
  gint64   seed;
  gboolean json;
  char    *save_dir;
} EvalOptions;

static int eval_run (RvCliOptions *o, EvalOptions *eo);

int
rv_dev_eval (int argc, char **argv)
{
  RvCliOptions o;
  rv_cli_options_init (&o);
  EvalOptions eo = { .n = 200, .seed = 1 };
  GOptionEntry entries[] = {
    { "n", 0, 0, G_OPTION_ARG_INT, &eo.n, "Text-to-image prompts (default 200)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &eo.seed, "First seed (prompts and images)", "S" },
    { "variations", 0, 0, G_OPTION_ARG_INT, &eo.n_vary, "Variation trials (default 0)", "N" },
    { "inpaint", 0, 0, G_OPTION_ARG_INT, &eo.n_inpaint, "Inpainting trials (default 0)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &eo.json, "Print JSON", NULL },
    { "save", 0, 0, G_OPTION_ARG_FILENAME, &eo.save_dir, "Keep every image in DIR", "DIR" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— measure prompt following (scene grammar)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, rv_cli_options_group (&o));
  g_autoptr (GError) error = NULL;
  int status;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    status = rv_cli_error ("%s", error->message);
  else
    status = eval_run (&o, &eo);
  g_free (eo.save_dir);
  rv_cli_options_clear (&o);
  return status;
}

static int
eval_run (RvCliOptions *o, EvalOptions *eo)
{
  int n = eo->n, n_vary = eo->n_vary, n_inpaint = eo->n_inpaint;
  gint64 seed = eo->seed;
  gboolean json = eo->json;
  const char *save_dir = eo->save_dir;
  g_autoptr (GError) error = NULL;
  if (n < 0 || n_vary < 0 || n_inpaint < 0 || n + n_vary + n_inpaint == 0)
    return rv_cli_error ("Nothing to measure: give --n, --variations or --inpaint.");
  if (save_dir != NULL)
    g_mkdir_with_parents (save_dir, 0755);
  g_autoptr (RvEngine) e = rv_cli_engine (o, &error);
  if (e == NULL)
    return rv_cli_error ("%s", error->message);
  RvRequest base;
  rv_request_init (&base, RV_JOB_GENERATE);
  o->seed_given = TRUE;
  if (!rv_cli_options_to_request (o, &base, NULL, &error))
    return rv_cli_error ("%s", error->message);

  int gen_w = 0, gen_h = 0;
  gboolean upscaled = rv_engine_plan_upscale (e, &base, &gen_w, &gen_h);

  Tally templates[3] = { { 0 } }, attrs[3][RV_N_ATTRS] = { { { 0 } } };
  gint64 t0 = g_get_monotonic_time ();
  for (int i = 0; i < n; i++)
    {
      RvSceneSpec spec;
      rv_scene_random ((guint64) seed + i, -1, &spec);
      g_autoptr (RvImage) img = generate_one (e, &base, spec.prompt, (guint64) seed + i, &error);
      if (img == NULL)
        return rv_cli_error ("%s", error->message);
      gboolean checked[RV_N_ATTRS], passed[RV_N_ATTRS];
      g_autoptr (RvImage) seen = checker_view (img);
      gboolean ok = rv_scene_check (seen, &spec, checked, passed);
      templates[spec.template_].ok += ok;
      templates[spec.template_].total++;
      for (int a = 0; a < RV_N_ATTRS; a++)
        if (checked[a])
          {
            attrs[spec.template_][a].ok += passed[a];
            attrs[spec.template_][a].total++;
          }
      if (save_dir != NULL)
        {
          g_autofree char *name = g_strdup_printf ("t2i-%04d-%s.png", i, ok ? "ok" : "miss");
          g_autofree char *path = g_build_filename (save_dir, name, NULL);
          g_autoptr (GHashTable) text = g_hash_table_new (g_str_hash, g_str_equal);
          g_hash_table_insert (text, "Description", spec.prompt);
          rv_image_save_png (img, path, text, NULL);
        }
      if (!json && isatty (2))
        g_printerr ("\r%d/%d", i + 1, n);
    }
  if (!json && isatty (2) && n > 0)
    g_printerr ("\r\033[K");

  /* variations of generated single-shape scenes keep background and main shape */
  Tally vary_bg = { 0 }, vary_shape = { 0 };
  for (int i = 0; i < n_vary; i++)
    {
      RvSceneSpec spec;
      rv_scene_random ((guint64) seed + 100000 + i, RV_TEMPLATE_SINGLE, &spec);
      g_autoptr (RvImage) src = generate_one (e, &base, spec.prompt, (guint64) seed + 100000 + i, &error);
      if (src == NULL)
        return rv_cli_error ("%s", error->message);
      RvRequest vr = base;
      vr.kind = RV_JOB_VARIATION;
      vr.image = src;
      vr.seed = (guint64) seed + 200000 + i;
      g_autoptr (GPtrArray) r = rv_engine_run (e, &vr, NULL, NULL, NULL, &error);
      if (r == NULL)
        return rv_cli_error ("%s", error->message);
      RvAnalysis a, b;
      g_autoptr (RvImage) seen_a = checker_view (src);
      g_autoptr (RvImage) seen_b = checker_view (((RvResult *) g_ptr_array_index (r, 0))->image);
      rv_scene_analyse (seen_a, &a);
      rv_scene_analyse (seen_b, &b);
      vary_bg.ok += a.bg == b.bg;
      vary_bg.total++;
      vary_shape.ok += a.n_shapes > 0 && b.n_shapes > 0 && a.shapes[0].color == b.shapes[0].color &&
                       a.shapes[0].kind == b.shapes[0].kind;
      vary_shape.total++;
    }

  /* inpainting a new shape into the right half of a scene with one shape
   * on the left */
  Tally inp_shape = { 0 }, inp_kept = { 0 };
  for (int i = 0; i < n_inpaint && rv_engine_can_inpaint (e); i++)
    {
      RvSceneSpec spec;
      rv_scene_random ((guint64) seed + 300000 + i, RV_TEMPLATE_SINGLE, &spec);
      RvRandom r;
      rv_random_init (&r, (guint64) seed + 400000 + i);
      int bg = (int) (rv_random_next (&r) % RV_N_COLORS);
      if (bg == spec.shapes[0].color)
        bg = (bg + 1) % RV_N_COLORS;
      int c2 = (int) (rv_random_next (&r) % RV_N_COLORS);
      while (c2 == bg || c2 == spec.shapes[0].color)
        c2 = (c2 + 1) % RV_N_COLORS;
      int k2 = (int) (rv_random_next (&r) % RV_N_KINDS);
      g_autofree char *p1 = g_strdup_printf ("a small %s %s at the left on a %s background",
                                             rv_scene_colors[spec.shapes[0].color],
                                             rv_scene_kinds[spec.shapes[0].kind], rv_scene_colors[bg]);
      g_autofree char *p2 = g_strdup_printf ("a small %s %s at the right on a %s background",
                                             rv_scene_colors[c2], rv_scene_kinds[k2], rv_scene_colors[bg]);
      g_autoptr (RvImage) src = generate_one (e, &base, p1, (guint64) seed + 300000 + i, &error);
      if (src == NULL)
        return rv_cli_error ("%s", error->message);
      g_autoptr (RvImage) mask = rv_image_new (src->width, src->height, 3);
      for (int y = 0; y < src->height; y++)
        for (int x = src->width / 2 + src->width / 16; x < src->width; x++)
          memset (mask->pixels + ((gsize) y * src->width + x) * 3, 255, 3);
      RvRequest ir = base;
      ir.kind = RV_JOB_INPAINT;
      ir.prompt = p2;
      ir.image = src;
      ir.mask = mask;
      ir.mask_mode = RV_MASK_GREY;
      ir.seed = (guint64) seed + 500000 + i;
      g_autoptr (GPtrArray) res = rv_engine_run (e, &ir, NULL, NULL, NULL, &error);
      if (res == NULL)
        return rv_cli_error ("%s", error->message);
      const RvImage *out_img = ((RvResult *) g_ptr_array_index (res, 0))->image;
      RvAnalysis an;
      g_autoptr (RvImage) seen = checker_view (out_img);
      rv_scene_analyse (seen, &an);
      gboolean found = FALSE;
      for (int s = 0; s < MIN (an.n_shapes, 8); s++)
        found |= an.shapes[s].cx > 0.5 && an.shapes[s].color == c2 && an.shapes[s].kind == k2;
      inp_shape.ok += found;
      inp_shape.total++;
      gboolean same = TRUE;
      for (int y = 0; y < src->height && same; y++)
        for (int x = 0; x < src->width; x++)
          if (mask->pixels[((gsize) y * src->width + x) * 3] == 0 &&
              memcmp (src->pixels + ((gsize) y * src->width + x) * src->channels,
                      out_img->pixels + ((gsize) y * src->width + x) * out_img->channels, 3) != 0)
            {
              same = FALSE;
              break;
            }
      inp_kept.ok += same;
      inp_kept.total++;
    }
  double seconds = (g_get_monotonic_time () - t0) / 1e6;

  static const char *const tnames[3] = { "single", "left-of", "above" };
  Tally single = templates[0], rel = { templates[1].ok + templates[2].ok, templates[1].total + templates[2].total };
  if (json)
    {
      g_print ("{\"model\": \"%s\", \"prompts\": %d, \"seconds\": %.1f, ", rv_engine_model_name (e), n, seconds);
      if (o->size != NULL)
        g_print ("\"size\": \"%dx%d\", \"generated_at\": \"%dx%d\", \"upscaler\": %s%s%s, ",
                 base.width, base.height, gen_w, gen_h, upscaled ? "\"" : "",
                 upscaled ? rv_engine_upscaler_name (e) : "null", upscaled ? "\"" : "");
      g_print ("\"single\": %.2f, \"relation\": %.2f, \"templates\": {", pct (single), pct (rel));
      for (int t = 0; t < 3; t++)
        {
          g_print ("%s\"%s\": {\"satisfied\": %.2f, \"n\": %d", t ? ", " : "", tnames[t],
                   pct (templates[t]), templates[t].total);
          for (int a = 0; a < RV_N_ATTRS; a++)
            if (attrs[t][a].total)
              g_print (", \"%s\": %.2f", rv_scene_attribute_names[a], pct (attrs[t][a]));
          g_print ("}");
        }
      g_print ("}, \"variation_background\": %.2f, \"variation_shape\": %.2f, \"variations\": %d, "
               "\"inpaint_shape\": %.2f, \"inpaint_unchanged_outside\": %.2f, \"inpaints\": %d}\n",
               pct (vary_bg), pct (vary_shape), vary_bg.total, pct (inp_shape), pct (inp_kept),
               inp_shape.total);
      return 0;
    }
  g_print ("model %s, %d prompts, %.1f s\n", rv_engine_model_name (e), n, seconds);
  if (upscaled)
    g_print ("%dx%d: generated at %dx%d, enlarged by the upscaler %s, judged at 64x64\n",
             base.width, base.height, gen_w, gen_h, rv_engine_upscaler_name (e));
  else if (o->size != NULL)
    g_print ("%dx%d: generated at that size, judged at 64x64\n", base.width, base.height);
  if (n > 0)
    {
      g_print ("\n%-9s %9s %5s", "template", "satisfied", "n");
      for (int a = 0; a < RV_N_ATTRS; a++)
        g_print (" %10s", rv_scene_attribute_names[a]);
      g_print ("\n");
      for (int t = 0; t < 3; t++)
        {
          g_print ("%-9s %8.1f%% %5d", tnames[t], pct (templates[t]), templates[t].total);
          for (int a = 0; a < RV_N_ATTRS; a++)
            {
              if (attrs[t][a].total)
                g_print (" %9.1f%%", pct (attrs[t][a]));
              else
                g_print (" %10s", "-");
            }
          g_print ("\n");
        }
      g_print ("\nsingle-shape prompts satisfied: %.1f%%; two-shape relation prompts: %.1f%%\n",
               pct (single), pct (rel));
    }
  if (n_vary > 0)
    g_print ("variations: background kept %.1f%%, main shape colour and kind kept %.1f%% (%d)\n",
             pct (vary_bg), pct (vary_shape), vary_bg.total);
  if (n_inpaint > 0)
    {
      if (inp_shape.total == 0)
        g_print ("inpainting: the model set has no inpainting decoder\n");
      else
        g_print ("inpainting: new shape in the region %.1f%%, pixels outside the mask unchanged "
                 "%.1f%% (%d)\n", pct (inp_shape), pct (inp_kept), inp_shape.total);
    }
  return 0;
}
