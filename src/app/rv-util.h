/* rv-util.h: small helpers the studio's widgets share: images ↔ textures,
 * loading pictures off the main thread, file dialogs across GTK versions. */
#pragma once

#include <adwaita.h>

#include "rv-image-io.h"
#include "rv-content-policy.h"

G_BEGIN_DECLS

typedef enum {
  RV_CHOOSE_OPEN,
  RV_CHOOSE_SAVE,
  RV_CHOOSE_FOLDER,
  RV_CHOOSE_OPEN_ANY,     /* a file of any kind */
} RvChooseMode;

GdkTexture *_rv_texture_new_for_image  (const RvImage       *img);
RvImage    *_rv_image_new_from_texture (GdkTexture          *texture);

void        _rv_load_image_async       (GFile               *file,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data);
RvImage    *_rv_load_image_finish      (GAsyncResult        *result,
                                        GError             **error);

void        _rv_choose_file_async      (GtkWidget           *parent,
                                        RvChooseMode         mode,
                                        const char          *title,
                                        const char          *suggested_name,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data);
GFile      *_rv_choose_file_finish     (GAsyncResult        *result,
                                        GError             **error);

void        _rv_spin_button_show_auto  (GtkSpinButton       *spin);
char       *_rv_format_eta             (double               seconds);
char       *_rv_recipe_title           (const RvRecipe      *recipe);
void        _rv_show_toast             (GtkWidget           *widget,
                                        AdwToast            *toast);
void        _rv_show_message           (GtkWidget           *widget,
                                        const char          *heading,
                                        const char          *body);

/* Reads a content-policy file in a worker thread; the source object of the
 * result is `source`. */
void             _rv_content_policy_load_async  (gpointer             source,
                                                 const char          *path,
                                                 GCancellable        *cancellable,
                                                 GAsyncReadyCallback  callback,
                                                 gpointer             data);
RvContentPolicy *_rv_content_policy_load_finish (GAsyncResult        *result,
                                                 GError             **error);

G_END_DECLS
