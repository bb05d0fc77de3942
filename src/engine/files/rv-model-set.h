/* rv-model-set.h: diffusers pipeline folders (model_index.json) and the
 * model set of prior, decoder and inpainting decoder folders. */
#pragma once

#include "reverie.h"

G_BEGIN_DECLS

/* ---- model folders (model_index.json) ---- */

typedef struct _RvModelFolder RvModelFolder;

/* Opens a diffusers pipeline folder. With `expected_classes` (NULL-terminated
 * pipeline class names) the folder's "_class_name" must be one of them. */
RvModelFolder *rv_model_folder_open (const char *dir, const char *const *expected_classes,
                                     GError **error);
void           rv_model_folder_free (RvModelFolder *f);
const char    *rv_model_folder_path (RvModelFolder *f);
const char    *rv_model_folder_class (RvModelFolder *f);
/* The class of a component ("UNet2DConditionModel"), NULL if there is none. */
const char    *rv_model_folder_component_class (RvModelFolder *f, const char *component);
/* The component's subfolder (g_free); an error if model_index.json does not
 * list it or the folder is missing. */
char          *rv_model_folder_component (RvModelFolder *f, const char *component,
                                          GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvModelFolder, rv_model_folder_free)

/* ---- model sets ---- */

/* The three Kandinsky 2.2 pipeline folders. Any may be NULL when not given. */
typedef struct {
  char *prior;              /* KandinskyV22PriorPipeline */
  char *decoder;            /* KandinskyV22Pipeline */
  char *inpaint_decoder;    /* KandinskyV22InpaintPipeline */
} RvModelSet;

/* From `model_dir` holding prior/, decoder/ and decoder-inpaint/ (the last
 * one optional), and/or separate folders that take precedence. Every folder
 * given must exist and be a diffusers folder of the expected pipeline class.
 * All NULL: the embedded default model (rv_model_set_default_dir). */
RvModelSet  *rv_model_set_new (const char *model_dir, const char *prior, const char *decoder,
                               const char *inpaint_decoder, GError **error);
void         rv_model_set_free (RvModelSet *s);
/* The embedded reverie-tiny folder: installed data dir, else the source tree. */
const char  *rv_model_set_default_dir (void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvModelSet, rv_model_set_free)

G_END_DECLS
