/* rv-scheduler.c: UnCLIP, DDPM, DDIM and DPM-Solver++ 2M on the host.
 *
 * Every scalar is a float32 as in the reference (0-d float32 tensors), and the
 * file is compiled without floating-point contraction, so the arithmetic is
 * the reference's operation by operation. */
#include "rv-scheduler.h"
#include "rv-device.h"

#include <math.h>
#include <string.h>

struct _RvScheduler {
  RvSchedulerConfig cfg;
  float            *betas, *alphas, *acp;     /* num_train_timesteps */
  gint64           *timesteps;
  int               n;
  float            *sigmas;                   /* DPM: n + 1 */
  /* DPM-Solver++ multistep state */
  float            *prev_x0;
  gsize             prev_len;
  int               lower_order_nums;
  int               last_index;
};

const char *
rv_scheduler_kind_name (RvSchedulerKind kind)
{
  switch (kind)
    {
    case RV_SCHEDULER_DDPM: return "ddpm";
    case RV_SCHEDULER_DDIM: return "ddim";
    case RV_SCHEDULER_DPMPP_2M: return "dpmpp";
    case RV_SCHEDULER_UNCLIP: return "unclip";
    default: return "?";
    }
}

gboolean
rv_scheduler_kind_from_name (const char *name, RvSchedulerKind *kind)
{
  static const struct { const char *name; RvSchedulerKind kind; } names[] = {
    { "ddpm", RV_SCHEDULER_DDPM }, { "DDPMScheduler", RV_SCHEDULER_DDPM },
    { "ddim", RV_SCHEDULER_DDIM }, { "DDIMScheduler", RV_SCHEDULER_DDIM },
    { "dpmpp", RV_SCHEDULER_DPMPP_2M }, { "dpm++", RV_SCHEDULER_DPMPP_2M },
    { "dpmsolver++", RV_SCHEDULER_DPMPP_2M }, { "dpmpp-2m", RV_SCHEDULER_DPMPP_2M },
    { "DPMSolverMultistepScheduler", RV_SCHEDULER_DPMPP_2M },
    { "unclip", RV_SCHEDULER_UNCLIP }, { "UnCLIPScheduler", RV_SCHEDULER_UNCLIP },
  };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (g_ascii_strcasecmp (name, names[i].name) == 0)
      {
        *kind = names[i].kind;
        return TRUE;
      }
  return FALSE;
}

void
rv_scheduler_config_init (RvSchedulerConfig *cfg, RvSchedulerKind kind)
{
  memset (cfg, 0, sizeof *cfg);
  cfg->kind = kind;
  cfg->num_train_timesteps = 1000;
  cfg->beta_schedule = RV_BETAS_LINEAR;
  cfg->beta_start = 0.0001f;
  cfg->beta_end = 0.02f;
  cfg->prediction = RV_PREDICT_EPSILON;
  cfg->variance = RV_VARIANCE_FIXED_SMALL;
  cfg->clip_sample = TRUE;
  cfg->clip_sample_range = 1.0f;
  cfg->steps_offset = 0;
  cfg->spacing = RV_SPACING_LEADING;
  cfg->set_alpha_to_one = TRUE;
  cfg->solver_order = 2;
  cfg->lower_order_final = TRUE;
  cfg->final_sigma_zero = TRUE;
  switch (kind)
    {
    case RV_SCHEDULER_UNCLIP:
      cfg->beta_schedule = RV_BETAS_COSINE;
      cfg->variance = RV_VARIANCE_FIXED_SMALL_LOG;
      cfg->clip_sample_range = 1.0f;
      break;
    case RV_SCHEDULER_DPMPP_2M:
      cfg->clip_sample = FALSE;
      cfg->spacing = RV_SPACING_LINSPACE;
      break;
    case RV_SCHEDULER_DDIM:
    case RV_SCHEDULER_DDPM:
    default:
      break;
    }
}

static gboolean
bad_value (GError **error, const char *key, const char *value)
{
  g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_MODEL,
               "scheduler config: %s “%s” is not supported", key, value);
  return FALSE;
}

static gboolean
get_number (JsonObject *obj, const char *key, double *out, GError **error)
{
  JsonNode *n = json_object_get_member (obj, key);
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return FALSE;
  if (JSON_NODE_HOLDS_VALUE (n))
    {
      GType t = json_node_get_value_type (n);
      if (t == G_TYPE_INT64 || t == G_TYPE_DOUBLE)
        {
          *out = json_node_get_double (n);
          return TRUE;
        }
      if (t == G_TYPE_STRING)
        {
          const char *s = json_node_get_string (n);
          if (g_ascii_strcasecmp (s, "inf") == 0 || g_ascii_strcasecmp (s, "infinity") == 0)
            *out = INFINITY;
          else if (g_ascii_strcasecmp (s, "-inf") == 0 || g_ascii_strcasecmp (s, "-infinity") == 0)
            *out = -INFINITY;
          else
            goto wrong;
          return TRUE;
        }
    }
wrong:
  g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_MODEL,
               "scheduler config: “%s” must be a number", key);
  return FALSE;
}

static const char *
get_string (JsonObject *obj, const char *key)
{
  JsonNode *n = json_object_get_member (obj, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gboolean
get_bool (JsonObject *obj, const char *key, gboolean *out)
{
  JsonNode *n = json_object_get_member (obj, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return FALSE;
  *out = json_node_get_boolean (n);
  return TRUE;
}

gboolean
rv_scheduler_config_parse (RvSchedulerConfig *cfg, RvSchedulerKind kind, JsonObject *obj,
                           GError **error)
{
  rv_scheduler_config_init (cfg, kind);
  GError *e = NULL;
  double v;

  if (get_number (obj, "num_train_timesteps", &v, &e))
    {
      if (v < 2 || v > 100000)
        return bad_value (error, "num_train_timesteps", "out of range");
      cfg->num_train_timesteps = (int) v;
    }
  if (get_number (obj, "beta_start", &v, &e))
    cfg->beta_start = (float) v;
  if (get_number (obj, "beta_end", &v, &e))
    cfg->beta_end = (float) v;
  if (get_number (obj, "clip_sample_range", &v, &e))
    cfg->clip_sample_range = (float) v;
  if (get_number (obj, "steps_offset", &v, &e))
    cfg->steps_offset = (int) v;
  if (get_number (obj, "solver_order", &v, &e))
    cfg->solver_order = (int) v;
  if (e != NULL)
    {
      g_propagate_error (error, e);
      return FALSE;
    }
  get_bool (obj, "clip_sample", &cfg->clip_sample);
  get_bool (obj, "set_alpha_to_one", &cfg->set_alpha_to_one);
  get_bool (obj, "lower_order_final", &cfg->lower_order_final);
  get_bool (obj, "euler_at_final", &cfg->euler_at_final);

  const char *s;
  if ((s = get_string (obj, "beta_schedule")) != NULL)
    {
      if (strcmp (s, "linear") == 0)
        cfg->beta_schedule = RV_BETAS_LINEAR;
      else if (strcmp (s, "scaled_linear") == 0)
        cfg->beta_schedule = RV_BETAS_SCALED_LINEAR;
      else if (strcmp (s, "squaredcos_cap_v2") == 0)
        cfg->beta_schedule = RV_BETAS_COSINE;
      else
        return bad_value (error, "beta_schedule", s);
    }
  if ((s = get_string (obj, "prediction_type")) != NULL)
    {
      if (strcmp (s, "epsilon") == 0)
        cfg->prediction = RV_PREDICT_EPSILON;
      else if (strcmp (s, "sample") == 0)
        cfg->prediction = RV_PREDICT_SAMPLE;
      else if (strcmp (s, "v_prediction") == 0)
        cfg->prediction = RV_PREDICT_V;
      else
        return bad_value (error, "prediction_type", s);
    }
  if ((s = get_string (obj, "variance_type")) != NULL)
    {
      if (strcmp (s, "fixed_small") == 0)
        cfg->variance = RV_VARIANCE_FIXED_SMALL;
      else if (strcmp (s, "fixed_small_log") == 0)
        cfg->variance = RV_VARIANCE_FIXED_SMALL_LOG;
      else if (strcmp (s, "fixed_large") == 0)
        cfg->variance = RV_VARIANCE_FIXED_LARGE;
      else if (strcmp (s, "learned_range") == 0)
        cfg->variance = RV_VARIANCE_LEARNED_RANGE;
      else
        return bad_value (error, "variance_type", s);
    }
  if ((s = get_string (obj, "timestep_spacing")) != NULL)
    {
      if (strcmp (s, "leading") == 0)
        cfg->spacing = RV_SPACING_LEADING;
      else if (strcmp (s, "linspace") == 0)
        cfg->spacing = RV_SPACING_LINSPACE;
      else if (strcmp (s, "trailing") == 0)
        cfg->spacing = RV_SPACING_TRAILING;
      else
        return bad_value (error, "timestep_spacing", s);
    }
  if ((s = get_string (obj, "final_sigmas_type")) != NULL)
    {
      if (strcmp (s, "zero") == 0)
        cfg->final_sigma_zero = TRUE;
      else if (strcmp (s, "sigma_min") == 0)
        cfg->final_sigma_zero = FALSE;
      else
        return bad_value (error, "final_sigmas_type", s);
    }

  /* options the engine does not implement: refuse rather than compute
   * something else */
  gboolean b = FALSE;
  const char *unsupported_true[] = { "thresholding", "use_karras_sigmas", "use_exponential_sigmas",
                                     "use_beta_sigmas", "use_lu_lambdas", "rescale_betas_zero_snr" };
  for (guint i = 0; i < G_N_ELEMENTS (unsupported_true); i++)
    if (get_bool (obj, unsupported_true[i], &b) && b)
      return bad_value (error, unsupported_true[i], "true");
  JsonNode *tb = json_object_get_member (obj, "trained_betas");
  if (tb != NULL && !JSON_NODE_HOLDS_NULL (tb))
    return bad_value (error, "trained_betas", "(a list)");
  if (kind == RV_SCHEDULER_DPMPP_2M)
    {
      if ((s = get_string (obj, "algorithm_type")) != NULL && strcmp (s, "dpmsolver++") != 0)
        return bad_value (error, "algorithm_type", s);
      if ((s = get_string (obj, "solver_type")) != NULL && strcmp (s, "midpoint") != 0)
        return bad_value (error, "solver_type", s);
      if (cfg->solver_order < 1 || cfg->solver_order > 2)
        return bad_value (error, "solver_order", "other than 1 or 2");
      if (get_number (obj, "lambda_min_clipped", &v, NULL) && isfinite (v))
        return bad_value (error, "lambda_min_clipped", "finite");
    }
  if (cfg->prediction == RV_PREDICT_V && kind == RV_SCHEDULER_UNCLIP)
    return bad_value (error, "prediction_type", "v_prediction");
  if (cfg->variance == RV_VARIANCE_LEARNED_RANGE || cfg->variance == RV_VARIANCE_FIXED_LARGE)
    {
      if (kind == RV_SCHEDULER_DDPM || kind == RV_SCHEDULER_UNCLIP)
        return bad_value (error, "variance_type",
                          cfg->variance == RV_VARIANCE_LEARNED_RANGE ? "learned_range" : "fixed_large");
    }
  return TRUE;
}

gboolean
rv_scheduler_config_load (RvSchedulerConfig *cfg, RvSchedulerKind kind, const char *path,
                          GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *e = NULL;
  if (!json_parser_load_from_file (parser, path, &e))
    {
      g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_MODEL, "%s: %s", path, e->message);
      g_error_free (e);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_MODEL, "%s: not a JSON object", path);
      return FALSE;
    }
  if (!rv_scheduler_config_parse (cfg, kind, json_node_get_object (root), &e))
    {
      g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_MODEL, "%s: %s", path, e->message);
      g_error_free (e);
      return FALSE;
    }
  return TRUE;
}

/* torch.linspace in float32 (the scalar path of the CPU kernel) */
static void
linspace_f32 (float *out, float start, float end, int n)
{
  float step = (end - start) / (float) (n - 1);
  int half = n / 2;
  for (int i = 0; i < n; i++)
    out[i] = i < half ? start + step * (float) i : end - step * (float) (n - i - 1);
}

RvScheduler *
rv_scheduler_new (const RvSchedulerConfig *cfg, GError **error)
{
  RvScheduler *s = g_new0 (RvScheduler, 1);
  s->cfg = *cfg;
  int T = cfg->num_train_timesteps;
  s->betas = g_new (float, T);
  s->alphas = g_new (float, T);
  s->acp = g_new (float, T);
  switch (cfg->beta_schedule)
    {
    case RV_BETAS_LINEAR:
      linspace_f32 (s->betas, cfg->beta_start, cfg->beta_end, T);
      break;
    case RV_BETAS_SCALED_LINEAR:
      linspace_f32 (s->betas, sqrtf (cfg->beta_start), sqrtf (cfg->beta_end), T);
      for (int i = 0; i < T; i++)
        s->betas[i] = s->betas[i] * s->betas[i];
      break;
    case RV_BETAS_COSINE:
      for (int i = 0; i < T; i++)
        {
          double t1 = (double) i / T, t2 = (double) (i + 1) / T;
          double a1 = cos ((t1 + 0.008) / 1.008 * G_PI / 2), a2 = cos ((t2 + 0.008) / 1.008 * G_PI / 2);
          s->betas[i] = (float) MIN (1.0 - (a2 * a2) / (a1 * a1), 0.999);
        }
      break;
    }
  double prod = 1.0;   /* torch.cumprod accumulates float32 in double on the CPU */
  for (int i = 0; i < T; i++)
    {
      s->alphas[i] = 1.0f - s->betas[i];
      prod = prod * s->alphas[i];
      s->acp[i] = (float) prod;
    }
  s->last_index = -1;
  return s;
}

void
rv_scheduler_free (RvScheduler *s)
{
  if (s == NULL)
    return;
  g_free (s->betas);
  g_free (s->alphas);
  g_free (s->acp);
  g_free (s->timesteps);
  g_free (s->sigmas);
  g_free (s->prev_x0);
  g_free (s);
}

const RvSchedulerConfig *
rv_scheduler_config (RvScheduler *s)
{
  return &s->cfg;
}

const float *
rv_scheduler_alphas_cumprod (RvScheduler *s)
{
  return s->acp;
}

const float *
rv_scheduler_betas (RvScheduler *s)
{
  return s->betas;
}

const gint64 *
rv_scheduler_timesteps (RvScheduler *s, int *n)
{
  if (n)
    *n = s->n;
  return s->timesteps;
}

const float *
rv_scheduler_sigmas (RvScheduler *s, int *n)
{
  if (n)
    *n = s->sigmas ? s->n + 1 : 0;
  return s->sigmas;
}

gboolean
rv_scheduler_set_timesteps (RvScheduler *s, int n, GError **error)
{
  int T = s->cfg.num_train_timesteps;
  if (n < 1 || n > T || (s->cfg.kind == RV_SCHEDULER_UNCLIP && n < 2) ||
      (s->cfg.kind == RV_SCHEDULER_DPMPP_2M && n >= T))
    {
      g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_INVALID,
                   "%d steps is not possible for this scheduler (it allows %d to %d)", n,
                   s->cfg.kind == RV_SCHEDULER_UNCLIP ? 2 : 1,
                   s->cfg.kind == RV_SCHEDULER_DPMPP_2M ? T - 1 : T);
      return FALSE;
    }
  g_free (s->timesteps);
  g_clear_pointer (&s->sigmas, g_free);
  g_clear_pointer (&s->prev_x0, g_free);
  s->lower_order_nums = 0;
  s->last_index = -1;
  s->n = n;
  s->timesteps = g_new (gint64, n);
  gint64 *ts = s->timesteps;

  switch (s->cfg.kind)
    {
    case RV_SCHEDULER_UNCLIP:
      {
        double ratio = (double) (T - 1) / (double) (n - 1);
        for (int i = 0; i < n; i++)
          ts[n - 1 - i] = (gint64) nearbyint ((double) i * ratio);   /* half to even */
      }
      break;
    case RV_SCHEDULER_DDPM:
    case RV_SCHEDULER_DDIM:
      switch (s->cfg.spacing)
        {
        case RV_SPACING_LEADING:
          for (int i = 0; i < n; i++)
            ts[n - 1 - i] = (gint64) i * (T / n) + s->cfg.steps_offset;
          break;
        case RV_SPACING_LINSPACE:
          for (int i = 0; i < n; i++)
            {
              double v = n == 1 ? 0 : (double) i * (T - 1) / (double) (n - 1);
              ts[n - 1 - i] = (gint64) nearbyint (v);
            }
          break;
        case RV_SPACING_TRAILING:
          for (int i = 0; i < n; i++)
            ts[i] = (gint64) nearbyint ((double) T - (double) i * ((double) T / n)) - 1;
          break;
        }
      break;
    case RV_SCHEDULER_DPMPP_2M:
      {
        int last = T;   /* lambda_min_clipped = -inf clips nothing */
        switch (s->cfg.spacing)
          {
          case RV_SPACING_LEADING:
            for (int i = 0; i < n; i++)
              ts[i] = (gint64) (n - i) * (last / (n + 1)) + s->cfg.steps_offset;
            break;
          case RV_SPACING_LINSPACE:
            for (int i = 0; i < n; i++)
              ts[i] = (gint64) nearbyint ((double) (n - i) * (last - 1) / (double) n);
            break;
          case RV_SPACING_TRAILING:
            for (int i = 0; i < n; i++)
              ts[i] = (gint64) nearbyint ((double) last - (double) i * ((double) last / n)) - 1;
            break;
          }
        s->sigmas = g_new (float, n + 1);
        for (int i = 0; i < n; i++)
          {
            gint64 t = CLAMP (ts[i], 0, T - 1);
            s->sigmas[i] = sqrtf ((1.0f - s->acp[t]) / s->acp[t]);
          }
        s->sigmas[n] = s->cfg.final_sigma_zero ? 0.0f : sqrtf ((1.0f - s->acp[0]) / s->acp[0]);
      }
      break;
    }
  for (int i = 0; i < n; i++)
    if (ts[i] < 0 || ts[i] >= T)
      {
        g_set_error (error, RV_ENGINE_ERROR, RV_ENGINE_ERROR_INVALID,
                     "%d steps with steps_offset %d reach timestep %" G_GINT64_FORMAT
                     ", outside 0…%d", n, s->cfg.steps_offset, ts[i], T - 1);
        return FALSE;
      }
  return TRUE;
}

gboolean
rv_scheduler_step_needs_noise (RvScheduler *s, int index)
{
  switch (s->cfg.kind)
    {
    case RV_SCHEDULER_DDPM:
    case RV_SCHEDULER_UNCLIP:
      return s->timesteps[index] > 0;
    default:
      return FALSE;
    }
}

static float
clampf (float x, float r)
{
  return x < -r ? -r : x > r ? r : x;
}

/* x0 from the model output for a sample at timestep t */
static void
x0_from_output (const RvSchedulerConfig *cfg, float acp_t, const float *out, const float *sample,
                float *x0, gsize len)
{
  float beta_prod = 1.0f - acp_t;
  float sb = sqrtf (beta_prod), sa = sqrtf (acp_t);
  for (gsize i = 0; i < len; i++)
    {
      float v;
      switch (cfg->prediction)
        {
        case RV_PREDICT_SAMPLE: v = out[i]; break;
        case RV_PREDICT_V: v = sa * sample[i] - sb * out[i]; break;
        case RV_PREDICT_EPSILON:
        default: v = (sample[i] - sb * out[i]) / sa; break;
        }
      x0[i] = cfg->clip_sample ? clampf (v, cfg->clip_sample_range) : v;
    }
}

static gint64
prev_timestep (RvScheduler *s, int index)
{
  gint64 t = s->timesteps[index];
  if (s->cfg.kind == RV_SCHEDULER_UNCLIP)
    return index + 1 < s->n ? s->timesteps[index + 1] : t - 1;
  return t - s->cfg.num_train_timesteps / s->n;
}

void
rv_scheduler_unclip_step (RvScheduler *s, gint64 t, gint64 prev_t, const float *model_output,
                          float *sample, gsize len, const float *noise)
{
  if (prev_t < 0)
    prev_t = t - 1;
  float acp_t = s->acp[t];
  float acp_prev = prev_t >= 0 ? s->acp[prev_t] : 1.0f;
  float beta_prod = 1.0f - acp_t, beta_prod_prev = 1.0f - acp_prev;
  float beta, alpha;
  if (prev_t == t - 1)
    {
      beta = s->betas[t];
      alpha = s->alphas[t];
    }
  else
    {
      beta = 1.0f - acp_t / acp_prev;
      alpha = 1.0f - beta;
    }
  float c0 = (sqrtf (acp_prev) * beta) / beta_prod;
  float c1 = sqrtf (alpha) * beta_prod_prev / beta_prod;
  float sd = 0.0f;
  if (t > 0)
    {
      float var = beta_prod_prev / beta_prod * beta;
      if (s->cfg.variance == RV_VARIANCE_FIXED_SMALL_LOG)
        sd = expf (0.5f * logf (MAX (var, 1e-20f)));
      else
        sd = sqrtf (MAX (var, 1e-20f));
    }
  g_autofree float *x0 = g_new (float, len);
  x0_from_output (&s->cfg, acp_t, model_output, sample, x0, len);
  for (gsize i = 0; i < len; i++)
    {
      float mean = c0 * x0[i] + c1 * sample[i];
      sample[i] = t > 0 ? mean + sd * noise[i] : mean;
    }
}

static void
ddpm_step (RvScheduler *s, int index, const float *out, float *sample, gsize len, const float *noise)
{
  gint64 t = s->timesteps[index], prev = prev_timestep (s, index);
  float acp_t = s->acp[t];
  float acp_prev = prev >= 0 ? s->acp[prev] : 1.0f;
  float beta_prod = 1.0f - acp_t, beta_prod_prev = 1.0f - acp_prev;
  float cur_alpha = acp_t / acp_prev;
  float cur_beta = 1.0f - cur_alpha;
  float c0 = (sqrtf (acp_prev) * cur_beta) / beta_prod;
  float c1 = sqrtf (cur_alpha) * beta_prod_prev / beta_prod;
  float sd = 0.0f;
  if (t > 0)
    {
      float var = (1.0f - acp_prev) / (1.0f - acp_t) * cur_beta;
      var = MAX (var, 1e-20f);
      if (s->cfg.variance == RV_VARIANCE_FIXED_SMALL_LOG)
        sd = expf (0.5f * logf (var));
      else
        sd = sqrtf (var);
    }
  g_autofree float *x0 = g_new (float, len);
  x0_from_output (&s->cfg, acp_t, out, sample, x0, len);
  for (gsize i = 0; i < len; i++)
    {
      float mean = c0 * x0[i] + c1 * sample[i];
      sample[i] = t > 0 ? mean + sd * noise[i] : mean;
    }
}

static void
ddim_step (RvScheduler *s, int index, const float *out, float *sample, gsize len)
{
  gint64 t = s->timesteps[index], prev = prev_timestep (s, index);
  float acp_t = s->acp[t];
  float acp_prev = prev >= 0 ? s->acp[prev] : (s->cfg.set_alpha_to_one ? 1.0f : s->acp[0]);
  float beta_prod = 1.0f - acp_t;
  float sa = sqrtf (acp_t), sb = sqrtf (beta_prod);
  float dir = sqrtf (1.0f - acp_prev);
  float sap = sqrtf (acp_prev);
  for (gsize i = 0; i < len; i++)
    {
      float x0, eps;
      switch (s->cfg.prediction)
        {
        case RV_PREDICT_SAMPLE:
          x0 = out[i];
          eps = (sample[i] - sa * x0) / sb;
          break;
        case RV_PREDICT_V:
          x0 = sa * sample[i] - sb * out[i];
          eps = sa * out[i] + sb * sample[i];
          break;
        case RV_PREDICT_EPSILON:
        default:
          x0 = (sample[i] - sb * out[i]) / sa;
          eps = out[i];
          break;
        }
      if (s->cfg.clip_sample)
        x0 = clampf (x0, s->cfg.clip_sample_range);
      sample[i] = sap * x0 + dir * eps;
    }
}

static void
sigma_to_alpha_sigma (float sigma, float *alpha, float *sig)
{
  *alpha = 1.0f / sqrtf (sigma * sigma + 1.0f);
  *sig = sigma * *alpha;
}

static void
dpm_step (RvScheduler *s, int index, const float *out, float *sample, gsize len)
{
  int n = s->n;
  if (index != s->last_index + 1 || s->prev_len != len)
    {
      /* a fresh run (or one that starts in the middle, as img2img does) */
      s->lower_order_nums = 0;
      g_clear_pointer (&s->prev_x0, g_free);
    }
  float alpha_s0, sigma_s0, alpha_t, sigma_t;
  sigma_to_alpha_sigma (s->sigmas[index], &alpha_s0, &sigma_s0);
  sigma_to_alpha_sigma (s->sigmas[index + 1], &alpha_t, &sigma_t);

  g_autofree float *x0 = g_new (float, len);
  for (gsize i = 0; i < len; i++)
    {
      float v;
      switch (s->cfg.prediction)
        {
        case RV_PREDICT_SAMPLE: v = out[i]; break;
        case RV_PREDICT_V: v = alpha_s0 * sample[i] - sigma_s0 * out[i]; break;
        case RV_PREDICT_EPSILON:
        default: v = (sample[i] - sigma_s0 * out[i]) / alpha_s0; break;
        }
      x0[i] = v;
    }

  gboolean lower_final = index == n - 1 &&
                         (s->cfg.euler_at_final || (s->cfg.lower_order_final && n < 15) ||
                          s->cfg.final_sigma_zero);
  gboolean first = s->cfg.solver_order == 1 || s->lower_order_nums < 1 || lower_final ||
                   s->prev_x0 == NULL;

  float lambda_t = logf (alpha_t) - logf (sigma_t);
  float lambda_s0 = logf (alpha_s0) - logf (sigma_s0);
  float h = lambda_t - lambda_s0;
  float ratio = sigma_t / sigma_s0;
  float coef = alpha_t * (expf (-h) - 1.0f);
  if (first)
    {
      for (gsize i = 0; i < len; i++)
        sample[i] = ratio * sample[i] - coef * x0[i];
    }
  else
    {
      float alpha_s1, sigma_s1;
      sigma_to_alpha_sigma (s->sigmas[index - 1], &alpha_s1, &sigma_s1);
      float lambda_s1 = logf (alpha_s1) - logf (sigma_s1);
      float h0 = lambda_s0 - lambda_s1;
      float r0 = h0 / h;
      float inv_r0 = 1.0f / r0;
      for (gsize i = 0; i < len; i++)
        {
          float d1 = inv_r0 * (x0[i] - s->prev_x0[i]);
          sample[i] = ratio * sample[i] - coef * x0[i] - 0.5f * coef * d1;
        }
    }
  g_free (s->prev_x0);
  s->prev_x0 = g_steal_pointer (&x0);
  s->prev_len = len;
  if (s->lower_order_nums < s->cfg.solver_order)
    s->lower_order_nums++;
}

void
rv_scheduler_step (RvScheduler *s, int index, const float *model_output, float *sample, gsize len,
                   const float *noise)
{
  g_return_if_fail (index >= 0 && index < s->n);
  switch (s->cfg.kind)
    {
    case RV_SCHEDULER_UNCLIP:
      rv_scheduler_unclip_step (s, s->timesteps[index], prev_timestep (s, index), model_output,
                                sample, len, noise);
      break;
    case RV_SCHEDULER_DDPM:
      ddpm_step (s, index, model_output, sample, len, noise);
      break;
    case RV_SCHEDULER_DDIM:
      ddim_step (s, index, model_output, sample, len);
      break;
    case RV_SCHEDULER_DPMPP_2M:
      dpm_step (s, index, model_output, sample, len);
      break;
    }
  s->last_index = index;
}

void
rv_scheduler_predict_x0 (RvScheduler *s, int index, const float *model_output,
                         const float *sample, float *x0, gsize len)
{
  g_return_if_fail (index >= 0 && index < s->n);
  gint64 t = s->timesteps[index];
  if (s->cfg.kind == RV_SCHEDULER_DPMPP_2M)
    {
      float a, sg;
      sigma_to_alpha_sigma (s->sigmas[index], &a, &sg);
      for (gsize i = 0; i < len; i++)
        x0[i] = s->cfg.prediction == RV_PREDICT_SAMPLE ? model_output[i]
              : s->cfg.prediction == RV_PREDICT_V ? a * sample[i] - sg * model_output[i]
              : (sample[i] - sg * model_output[i]) / a;
      return;
    }
  x0_from_output (&s->cfg, s->acp[t], model_output, sample, x0, len);
}

void
rv_scheduler_add_noise (RvScheduler *s, gint64 t, const float *x0, const float *noise, float *out,
                        gsize len)
{
  t = CLAMP (t, 0, s->cfg.num_train_timesteps - 1);
  float a = sqrtf (s->acp[t]), b = sqrtf (1.0f - s->acp[t]);
  for (gsize i = 0; i < len; i++)
    out[i] = a * x0[i] + b * noise[i];
}
