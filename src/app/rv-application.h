/* rv-application.h: the studio application: one window, preferences, about,
 * opening pictures given on the command line, and the content policy that
 * prompts are checked against (off unless set in Preferences or with
 * --content-policy FILE). */
#pragma once

#include <adwaita.h>

#include "rv-content-policy.h"
#include "rv-model-store.h"

G_BEGIN_DECLS

#define RV_TYPE_APPLICATION (rv_application_get_type ())
G_DECLARE_FINAL_TYPE (RvApplication, rv_application, RV, APPLICATION, AdwApplication)

RvApplication   *rv_application_new                (void);
RvContentPolicy *rv_application_get_content_policy (RvApplication   *self);
RvModelStore    *rv_application_get_model_store    (RvApplication   *self);
const char      *rv_application_get_content_policy_path (RvApplication *self);
const char      *rv_application_get_content_policy_error (RvApplication *self);
gboolean         rv_application_get_content_policy_fixed (RvApplication *self);
void             rv_application_set_content_policy (RvApplication   *self,
                                                    RvContentPolicy *policy,
                                                    const char      *path);

G_END_DECLS
