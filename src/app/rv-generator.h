/* rv-generator.h: runs the engine's jobs for the studio, one at a time, in a
 * worker thread: the engine is created there (it validates the model set and
 * opens the device), progress and previews come back on the main context,
 * and every result is saved to the gallery with its recipe. It applies the
 * upscaler chosen in Preferences, reports what the engine offers (native
 * size, upscaler) and estimates the time of a job from measured costs. */
#pragma once

#include <gtk/gtk.h>

#include "rv-image-io.h"

G_BEGIN_DECLS

/* What to make. The images are owned by the spec. */
typedef struct {
  RvJobKind  kind;
  char      *prompt;
  char      *negative_prompt;
  int        width, height;      /* 0 = the model's */
  int        n;
  guint64    seed;
  int        steps;              /* decoder steps, 0 = the model's */
  double     guidance;           /* decoder guidance, 0 = the model's */
  char      *scheduler;          /* NULL = the model's */
  RvImage   *image;              /* inpaint, variation, upscale */
  RvImage   *mask;               /* inpaint: grey, white = repaint */
  double     feather;
  int        upscale;            /* upscale: the factor, 0 = the upscaler's own */
  RvRecipe  *source_recipe;      /* upscale: the picture's own recipe, if it has one */
  int        extend_left, extend_right, extend_top, extend_bottom;   /* extend: borders, px */
  gboolean   previews;
} RvJobSpec;

/* What the engine in use offers, as last seen by a worker. */
typedef struct {
  char  *model_name;
  int    native_size;            /* the largest side generated directly */
  int    default_width, default_height;
  int    decoder_steps;          /* the model's default */
  char  *upscaler_name;          /* NULL: none */
  char  *upscaler_hash;
  int    upscaler_scale;         /* 0: none */
  gboolean upscaler_own;         /* the model set's own, not a chosen folder */
  char  *upscaler_error;         /* why the chosen folder is not in use, or NULL */
} RvEngineInfo;

/* The measured costs the estimates scale from (0 = not measured). */
typedef struct {
  double gen_seconds;            /* one text-to-image picture, weights loaded */
  double gen_units;              /* its generated pixels × decoder steps */
  double tile_seconds;           /* one upscaler tile */
  double tile_pixels;            /* the input pixels of a tile */
} RvCosts;

#define RV_GENERATOR_ERROR (rv_generator_error_quark ())
GQuark rv_generator_error_quark (void);

typedef enum {
  RV_GENERATOR_ERROR_UPSCALER,   /* the upscaler chosen in Preferences cannot be used */
} RvGeneratorError;

/* What a job of a given size is expected to take. */
typedef struct {
  double   seconds;
  gboolean measured;             /* from pictures made before, not a first guess */
  gboolean upscaled;             /* generated smaller, then enlarged */
  int      gen_width, gen_height;
  int      factor;               /* the enlargement, when upscaled */
} RvEstimate;

/* One result: its pixels, its recipe and where it was saved (NULL with
 * save_error set when the gallery could not take it). */
typedef struct {
  RvImage  *image;
  RvRecipe *recipe;
  char     *path;
  char     *save_error;
} RvOutput;

RvJobSpec *rv_job_spec_new  (RvJobKind  kind);
void       rv_job_spec_free (RvJobSpec *spec);
void       rv_output_free   (RvOutput  *output);
void       rv_engine_info_free (RvEngineInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvEngineInfo, rv_engine_info_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvJobSpec, rv_job_spec_free)

#define RV_TYPE_GENERATOR (rv_generator_get_type ())
G_DECLARE_FINAL_TYPE (RvGenerator, rv_generator, RV, GENERATOR, GObject)

RvGenerator *rv_generator_new                (void);
void         rv_generator_configure          (RvGenerator          *self,
                                              const char           *device,
                                              const char           *model_dir,
                                              const char           *gallery_dir,
                                              const char           *upscaler_dir);
const char  *rv_generator_get_gallery_dir    (RvGenerator          *self);
gboolean     rv_generator_get_busy           (RvGenerator          *self);
void         rv_generator_run_async          (RvGenerator          *self,
                                              RvJobSpec            *spec,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
GPtrArray   *rv_generator_run_finish         (RvGenerator          *self,
                                              GAsyncResult         *result,
                                              GError              **error);
void         rv_generator_check_model_async  (RvGenerator          *self,
                                              const char           *model_dir,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
char        *rv_generator_check_model_finish (RvGenerator          *self,
                                              GAsyncResult         *result,
                                              GError              **error);
char        *rv_generator_default_gallery_dir (void);
const RvEngineInfo *rv_generator_get_info    (RvGenerator          *self);
void         rv_generator_refresh_info       (RvGenerator          *self);
gboolean     rv_generator_estimate           (RvGenerator          *self,
                                              RvJobKind             kind,
                                              int                   width,
                                              int                   height,
                                              int                   n,
                                              int                   steps,
                                              RvEstimate           *estimate);
void         rv_generator_check_upscaler_async  (RvGenerator          *self,
                                                 const char           *upscaler_dir,
                                                 GCancellable         *cancellable,
                                                 GAsyncReadyCallback   callback,
                                                 gpointer              user_data);
GArray      *rv_generator_plan_extend        (RvGenerator          *self,
                                              const RvImage        *image,
                                              int                   left,
                                              int                   right,
                                              int                   top,
                                              int                   bottom,
                                              int                  *width,
                                              int                  *height);
RvEngineInfo *rv_generator_check_upscaler_finish (RvGenerator          *self,
                                                  GAsyncResult         *result,
                                                  GError              **error);

G_END_DECLS
