/* rv-prompt-panel.h: what to make: prompt and negative prompt with history,
 * size, count, steps, guidance, scheduler, seed and model. */
#pragma once

#include <gtk/gtk.h>

#include "rv-generator.h"

G_BEGIN_DECLS

typedef enum {
  RV_REUSE_PROMPT = 1 << 0,
  RV_REUSE_SEED   = 1 << 1,
  RV_REUSE_ALL    = RV_REUSE_PROMPT | RV_REUSE_SEED | 1 << 2,
} RvReuse;

#define RV_TYPE_PROMPT_PANEL (rv_prompt_panel_get_type ())
G_DECLARE_FINAL_TYPE (RvPromptPanel, rv_prompt_panel, RV, PROMPT_PANEL, GtkWidget)

void      rv_prompt_panel_set_generator (RvPromptPanel  *self,
                                         RvGenerator    *generator);
gboolean  rv_prompt_panel_fill_spec     (RvPromptPanel  *self,
                                         RvJobSpec      *spec,
                                         GError        **error);
void      rv_prompt_panel_remember      (RvPromptPanel  *self);
void      rv_prompt_panel_apply_recipe  (RvPromptPanel  *self,
                                         const RvRecipe *recipe,
                                         RvReuse         what);
void      rv_prompt_panel_focus_prompt  (RvPromptPanel  *self);

G_END_DECLS
