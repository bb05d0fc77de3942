/* rv-application.c: the studio application: one window, preferences, about,
 * opening pictures given on the command line, and the content policy (the
 * "content-policy" setting, or --content-policy FILE for this run). */
#include "config.h"

#include <glib/gi18n.h>

#include "rv-application.h"
#include "rv-preferences.h"
#include "rv-util.h"
#include "rv-window.h"

struct _RvApplication
{
  AdwApplication parent_instance;

  GSettings       *settings;
  RvContentPolicy *policy;         /* NULL: none, or it could not be read */
  char            *policy_path;    /* "" when off */
  char            *policy_error;   /* why the policy set could not be read */
  gboolean         policy_fixed;   /* given on the command line: the setting does not apply */
  GCancellable    *policy_cancellable;
  RvModelStore    *models;         /* the catalogue's sets and the download running */
};

G_DEFINE_FINAL_TYPE (RvApplication, rv_application, ADW_TYPE_APPLICATION)

/* The model sets and the download running: the application's, so that a
 * download goes on when the preferences and the window close. */
RvModelStore *
rv_application_get_model_store (RvApplication *self)
{
  g_return_val_if_fail (RV_IS_APPLICATION (self), NULL);
  if (self->models == NULL)
    {
      /* it reads the catalogue and the device when first shown */
      self->models = rv_model_store_new ();
    }
  return self->models;
}

/* ---- the content policy ---- */

static void
policy_take (RvApplication *self, RvContentPolicy *policy, const char *path, const char *error)
{
  g_clear_pointer (&self->policy, rv_content_policy_free);
  self->policy = policy;
  g_free (self->policy_path);
  self->policy_path = g_strdup (path ? path : "");
  g_free (self->policy_error);
  self->policy_error = g_strdup (error);
  if (error != NULL)
    g_warning ("The content policy %s cannot be used: %s", path, error);
}

static void
on_policy_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  RvContentPolicy *policy = _rv_content_policy_load_finish (result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  RvApplication *self = RV_APPLICATION (source);
  policy_take (self, policy, g_task_get_task_data (G_TASK (result)), error ? error->message : NULL);
}

/* The setting changed (Preferences hand over what they checked first; this
 * is for changes made elsewhere, such as gsettings or dconf). */
static void
on_policy_setting_changed (GSettings *settings, const char *key, RvApplication *self)
{
  if (self->policy_fixed)
    return;
  g_autofree char *path = g_settings_get_string (settings, "content-policy");
  if (g_strcmp0 (path, self->policy_path) == 0 && self->policy_error == NULL)
    return;
  g_cancellable_cancel (self->policy_cancellable);
  g_clear_object (&self->policy_cancellable);
  if (path[0] == '\0')
    {
      policy_take (self, NULL, "", NULL);
      return;
    }
  /* until it is read, nothing may pass that it might refuse */
  policy_take (self, NULL, path, _("It is being read."));
  self->policy_cancellable = g_cancellable_new ();
  _rv_content_policy_load_async (self, path, self->policy_cancellable, on_policy_loaded, NULL);
}

/* The policy prompts are checked against, or NULL when there is none in
 * force (see rv_application_get_content_policy_error: a policy that is set
 * but cannot be read refuses everything). */
RvContentPolicy *
rv_application_get_content_policy (RvApplication *self)
{
  g_return_val_if_fail (RV_IS_APPLICATION (self), NULL);
  return self->policy;
}

const char *
rv_application_get_content_policy_path (RvApplication *self)
{
  g_return_val_if_fail (RV_IS_APPLICATION (self), NULL);
  return self->policy_path ? self->policy_path : "";
}

const char *
rv_application_get_content_policy_error (RvApplication *self)
{
  g_return_val_if_fail (RV_IS_APPLICATION (self), NULL);
  return self->policy_error;
}

/* Whether the command line set the policy for this run. */
gboolean
rv_application_get_content_policy_fixed (RvApplication *self)
{
  g_return_val_if_fail (RV_IS_APPLICATION (self), FALSE);
  return self->policy_fixed;
}

/* A policy checked already (takes it; NULL and "" turn it off), stored in
 * the setting. */
void
rv_application_set_content_policy (RvApplication *self, RvContentPolicy *policy, const char *path)
{
  g_return_if_fail (RV_IS_APPLICATION (self));
  if (self->policy_fixed)
    {
      g_clear_pointer (&policy, rv_content_policy_free);
      return;
    }
  g_cancellable_cancel (self->policy_cancellable);
  g_clear_object (&self->policy_cancellable);
  policy_take (self, policy, policy ? path : "", NULL);
  g_settings_set_string (self->settings, "content-policy", self->policy_path);
}

static int
rv_application_handle_local_options (GApplication *app, GVariantDict *options)
{
  RvApplication *self = RV_APPLICATION (app);
  const char *path = NULL;
  if (g_variant_dict_lookup (options, "content-policy", "^&ay", &path) && path[0] != '\0')
    {
      g_autoptr (GError) error = NULL;
      RvContentPolicy *policy = rv_content_policy_load (path, &error);
      if (policy == NULL)
        {
          g_printerr (_("reverie: the content policy cannot be used: %s\n"), error->message);
          return 1;
        }
      policy_take (self, policy, path, NULL);
      self->policy_fixed = TRUE;
    }
  return -1;
}

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

  RvApplication *self = RV_APPLICATION (app);
  self->settings = g_settings_new (APP_ID);
  g_signal_connect (self->settings, "changed::content-policy", G_CALLBACK (on_policy_setting_changed), self);
  if (!self->policy_fixed)
    {
      /* read before the first window, so that the first prompt is checked;
       * a policy that cannot be read refuses every job until it is fixed */
      g_autofree char *path = g_settings_get_string (self->settings, "content-policy");
      if (path[0] != '\0')
        {
          g_autoptr (GError) error = NULL;
          RvContentPolicy *policy = rv_content_policy_load (path, &error);
          policy_take (self, policy, path, error ? error->message : NULL);
        }
    }
}

static void
rv_application_dispose (GObject *object)
{
  RvApplication *self = RV_APPLICATION (object);
  g_cancellable_cancel (self->policy_cancellable);
  g_clear_object (&self->policy_cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  /* a download stops at once, keeping what it verified for a resume */
  if (self->models != NULL)
    rv_model_store_cancel (self->models);
  g_clear_object (&self->models);
  g_clear_pointer (&self->policy, rv_content_policy_free);
  g_clear_pointer (&self->policy_path, g_free);
  g_clear_pointer (&self->policy_error, g_free);
  G_OBJECT_CLASS (rv_application_parent_class)->dispose (object);
}

static void
rv_application_class_init (RvApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = rv_application_dispose;
  app_class->handle_local_options = rv_application_handle_local_options;
  app_class->activate = rv_application_activate;
  app_class->open = rv_application_open;
  app_class->startup = rv_application_startup;
}

static void
rv_application_init (RvApplication *self)
{
  static const GOptionEntry options[] = {
    { "content-policy", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      N_("Refuse prompts in the categories of this content policy file (for this run)"), N_("FILE") },
    { NULL }
  };
  g_application_add_main_option_entries (G_APPLICATION (self), options);
  self->policy_path = g_strdup ("");
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
