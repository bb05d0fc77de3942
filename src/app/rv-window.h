/* rv-window.h: the studio window: prompt panel, canvas and gallery, the jobs
 * they ask for, drag and drop of pictures. */
#pragma once

#include <adwaita.h>

#include "rv-generator.h"

G_BEGIN_DECLS

#define RV_TYPE_WINDOW (rv_window_get_type ())
G_DECLARE_FINAL_TYPE (RvWindow, rv_window, RV, WINDOW, AdwApplicationWindow)

RvWindow *rv_window_new       (GtkApplication *application);
void      rv_window_open_file (RvWindow       *self,
                               GFile          *file);
RvGenerator *rv_window_get_generator (RvWindow *self);

G_END_DECLS
