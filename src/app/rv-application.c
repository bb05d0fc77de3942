/* rv-application.c: the studio application: one window, preferences, about,
 * opening pictures given on the command line. */
#include "config.h"

#include <glib/gi18n.h>

#include "rv-application.h"
#include "rv-preferences.h"
#include "rv-window.h"

struct _RvApplication
{
  AdwApplication parent_instance;
};

G_DEFINE_FINAL_TYPE (RvApplication, rv_application, ADW_TYPE_APPLICATION)

static RvWindow *
get_window (RvApplication *self)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (self));
  if (window == NULL)
    window = GTK_WINDOW (rv_window_new (GTK_APPLICATION (self)));
  return RV_WINDOW (window);
}

static void
rv_application_activate (GApplication *app)
{
  gtk_window_present (GTK_WINDOW (get_window (RV_APPLICATION (app))));
}

static void
rv_application_open (GApplication *app, GFile **files, int n_files, const char *hint)
{
  RvWindow *window = get_window (RV_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (window));
  if (n_files > 0)
    rv_window_open_file (window, files[0]);
}

static void
preferences_action (GSimpleAction *action, GVariant *param, gpointer data)
{
  RvApplication *self = data;
  GtkWindow *parent = gtk_application_get_active_window (GTK_APPLICATION (self));
  gtk_window_present (GTK_WINDOW (rv_preferences_new (parent)));
}

static void
about_action (GSimpleAction *action, GVariant *param, gpointer data)
{
  RvApplication *self = data;
  const char *developers[] = { "The Reverie developers", NULL };
  GtkWidget *about = g_object_new (ADW_TYPE_ABOUT_WINDOW,
                                   "transient-for", gtk_application_get_active_window (GTK_APPLICATION (self)),
                                   "application-name", "Reverie",
                                   "application-icon", APP_ID,
                                   "version", PACKAGE_VERSION,
                                   "comments", _("Make pictures from words, repaint parts of them, "
                                                 "and vary them — on your own computer."),
                                   "website", "https://github.com/reverie/reverie",
                                   "issue-url", "https://github.com/reverie/reverie/issues",
                                   "developers", developers,
                                   "license-type", GTK_LICENSE_GPL_3_0,
                                   /* Translators: your names, one per line */
                                   "translator-credits", _("translator-credits"),
                                   NULL);
  gtk_window_present (GTK_WINDOW (about));
}

static void
quit_action (GSimpleAction *action, GVariant *param, gpointer data)
{
  /* closing the windows lets a running job stop cleanly first */
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (data));
  g_autoptr (GList) copy = g_list_copy (windows);
  for (GList *l = copy; l != NULL; l = l->next)
    gtk_window_close (l->data);
}

static void
rv_application_startup (GApplication *app)
{
  G_APPLICATION_CLASS (rv_application_parent_class)->startup (app);
  static const GActionEntry entries[] = {
    { "preferences", preferences_action },
    { "about", about_action },
    { "quit", quit_action },
  };
  g_action_map_add_action_entries (G_ACTION_MAP (app), entries, G_N_ELEMENTS (entries), app);
  const char *quit[] = { "<Control>q", NULL };
  const char *prefs[] = { "<Control>comma", NULL };
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.quit", quit);
  gtk_application_set_accels_for_action (GTK_APPLICATION (app), "app.preferences", prefs);
}

static void
rv_application_class_init (RvApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);
  app_class->activate = rv_application_activate;
  app_class->open = rv_application_open;
  app_class->startup = rv_application_startup;
}

static void
rv_application_init (RvApplication *self)
{
}

RvApplication *
rv_application_new (void)
{
  return g_object_new (RV_TYPE_APPLICATION,
                       "application-id", APP_ID,
                       "flags", G_APPLICATION_HANDLES_OPEN,
                       "resource-base-path", "/io/github/reverie/Reverie",
                       NULL);
}
