/* rv-preferences.h: the preferences window: device, default steps, live
 * previews, gallery folder. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define RV_TYPE_PREFERENCES (rv_preferences_get_type ())
G_DECLARE_FINAL_TYPE (RvPreferences, rv_preferences, RV, PREFERENCES, AdwPreferencesWindow)

GtkWidget *rv_preferences_new (GtkWindow *parent);

G_END_DECLS
