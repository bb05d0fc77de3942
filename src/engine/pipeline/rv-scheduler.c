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
rv_scheduler_short_name (RvSchedulerKind kind)
{
  switch (kind)
    {
    case RV_SCHEDULER_DDPM: return "ddpm";
    case RV_SCHEDULER_DDIM: return "ddim";
    case RV_SCHEDULER_DPM_MULTISTEP: return "dpmpp";
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
    { "dpmpp", RV_SCHEDULER_DPM_MULTISTEP }, { "dpm++", RV_SCHEDULER_DPM_MULTISTEP },
    { "dpmsolver++", RV_SCHEDULER_DPM_MULTISTEP }, { "dpmpp-2m", RV_SCHEDULER_DPM_MULTISTEP },
    { "DPMSolverMultistepScheduler", RV_SCHEDULER_DPM_MULTISTEP },
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

static gboolean
unsupported (GError **error, const char *what)
{
  g_set_error (error, RV_ERROR, RV_ERROR_MODEL,
               "scheduler config: %s is not supported by Reverie's schedulers", what);
  return FALSE;
}

static gboolean
check_supported (const RvSchedulerConfig *c, RvSchedulerKind kind, GError **error)
{
  if (c->thresholding)
    return unsupported (error, "thresholding");
  if (c->rescale_betas_zero_snr)
    return unsupported (error, "rescale_betas_zero_snr");
  if (c->num_train_timesteps < 2 || c->num_train_timesteps > 100000)
    return unsupported (error, "this num_train_timesteps");
  if (kind == RV_SCHEDULER_DPM_MULTISTEP)
    {
      if (c->algorithm_type != RV_DPM_DPMSOLVER_PP)
        return unsupported (error, "a DPM-Solver algorithm other than dpmsolver++");
      if (c->solver_type != RV_DPM_SOLVER_MIDPOINT)
        return unsupported (error, "a DPM-Solver solver type other than midpoint");
      if (c->solver_order < 1 || c->solver_order > 2)
        return unsupported (error, "a DPM-Solver order other than 1 or 2");
      if (c->use_karras_sigmas || c->use_exponential_sigmas || c->use_beta_sigmas || c->use_lu_lambdas)
        return unsupported (error, "a non-default sigma schedule");
      if (isfinite (c->lambda_min_clipped))
        return unsupported (error, "a finite lambda_min_clipped");
    }
  if (kind == RV_SCHEDULER_DDPM || kind == RV_SCHEDULER_UNCLIP)
    if (c->variance_type != RV_VARIANCE_FIXED_SMALL && c->variance_type != RV_VARIANCE_FIXED_SMALL_LOG &&
        c->variance_type != RV_VARIANCE_NONE)
      return unsupported (error, "this variance_type");
  if (kind == RV_SCHEDULER_UNCLIP && c->prediction_type == RV_PREDICT_V)
    return unsupported (error, "v_prediction with the UnCLIP scheduler");
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
rv_scheduler_new (const RvSchedulerConfig *cfg, RvSchedulerKind kind, GError **error)
{
  if (!check_supported (cfg, kind, error))
    return NULL;
  RvScheduler *s = g_new0 (RvScheduler, 1);
  s->cfg = *cfg;
  s->cfg.kind = kind;
  int T = cfg->num_train_timesteps;
  s->betas = g_new (float, T);
  s->alphas = g_new (float, T);
  s->acp = g_new (float, T);
  switch (cfg->beta_schedule)
    {
    case RV_BETAS_LINEAR:
      linspace_f32 (s->betas, (float) cfg->beta_start, (float) cfg->beta_end, T);
      break;
    case RV_BETAS_SCALED_LINEAR:
      linspace_f32 (s->betas, sqrtf ((float) cfg->beta_start), sqrtf ((float) cfg->beta_end), T);
      for (int i = 0; i < T; i++)
        s->betas[i] = s->betas[i] * s->betas[i];
      break;
    case RV_BETAS_SQUAREDCOS_CAP_V2:
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
      (s->cfg.kind == RV_SCHEDULER_DPM_MULTISTEP && n >= T))
    {
      g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                   "%d steps is not possible for this scheduler (it allows %d to %d)", n,
                   s->cfg.kind == RV_SCHEDULER_UNCLIP ? 2 : 1,
                   s->cfg.kind == RV_SCHEDULER_DPM_MULTISTEP ? T - 1 : T);
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
      switch (s->cfg.timestep_spacing)
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
    case RV_SCHEDULER_DPM_MULTISTEP:
      {
        int last = T;   /* lambda_min_clipped = -inf clips nothing */
        switch (s->cfg.timestep_spacing)
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
        s->sigmas[n] = s->cfg.final_sigmas_type == RV_FINAL_SIGMA_ZERO ? 0.0f : sqrtf ((1.0f - s->acp[0]) / s->acp[0]);
      }
      break;
    }
  for (int i = 0; i < n; i++)
    if (ts[i] < 0 || ts[i] >= T)
      {
        g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
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
      switch (cfg->prediction_type)
        {
        case RV_PREDICT_SAMPLE: v = out[i]; break;
        case RV_PREDICT_V: v = sa * sample[i] - sb * out[i]; break;
        case RV_PREDICT_EPSILON:
        default: v = (sample[i] - sb * out[i]) / sa; break;
        }
      x0[i] = cfg->clip_sample ? clampf (v, (float) cfg->clip_sample_range) : v;
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
      if (s->cfg.variance_type == RV_VARIANCE_FIXED_SMALL_LOG)
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
      if (s->cfg.variance_type == RV_VARIANCE_FIXED_SMALL_LOG)
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
      switch (s->cfg.prediction_type)
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
        x0 = clampf (x0, (float) s->cfg.clip_sample_range);
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
      switch (s->cfg.prediction_type)
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
                          s->cfg.final_sigmas_type == RV_FINAL_SIGMA_ZERO);
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
    case RV_SCHEDULER_DPM_MULTISTEP:
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
  if (s->cfg.kind == RV_SCHEDULER_DPM_MULTISTEP)
    {
      float a, sg;
      sigma_to_alpha_sigma (s->sigmas[index], &a, &sg);
      for (gsize i = 0; i < len; i++)
        x0[i] = s->cfg.prediction_type == RV_PREDICT_SAMPLE ? model_output[i]
              : s->cfg.prediction_type == RV_PREDICT_V ? a * sample[i] - sg * model_output[i]
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
