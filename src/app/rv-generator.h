/* rv-generator.h: runs the engine's jobs for the studio, one at a time, in a
 * worker thread: the engine is created there (it validates the model set and
 * opens the device), progress and previews come back on the main context,
 * and every result is saved to the gallery with its recipe. */
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
  RvImage   *image;              /* inpaint, variation */
  RvImage   *mask;               /* inpaint: grey, white = repaint */
  double     feather;
  gboolean   previews;
} RvJobSpec;

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
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvJobSpec, rv_job_spec_free)

#define RV_TYPE_GENERATOR (rv_generator_get_type ())
G_DECLARE_FINAL_TYPE (RvGenerator, rv_generator, RV, GENERATOR, GObject)

RvGenerator *rv_generator_new                (void);
void         rv_generator_configure          (RvGenerator          *self,
                                              const char           *device,
                                              const char           *model_dir,
                                              const char           *gallery_dir);
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

G_END_DECLS
