/* generate.c: the smallest front end of the Reverie engine. It turns a prompt
 * into a picture through reverie.h alone, the way the studio, the CLI and the
 * server do: open an engine, fill in a request, run it on a worker thread
 * with a progress callback and a cancellable, write the result.
 *
 *   reverie-example-generate "a small red circle at the left" out.ppm [steps]
 *
 * The picture is written as a binary PPM (P6), which needs no image library;
 * real front ends write PNGs with their recipe through rv-image-io.h. */
#include <reverie.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const char *prompt;
  int         steps;
  GPtrArray  *results;     /* RvResult*, set by the worker */
  GError     *error;
  GMainLoop  *loop;
} Job;

/* Progress arrives on the worker thread; a GUI would post it to its main
 * context (g_main_context_invoke) before touching widgets. */
static void
on_progress (const RvProgress *p, gpointer user_data)
{
  static const char *const stages[] = { "load", "encode", "prior", "decoder", "decode" };
  g_printerr ("\r%-8s step %2d/%-2d  %3.0f%%", stages[p->stage], p->step, p->steps,
              100.0 * p->fraction);
}

/* The worker: one engine, one request. Everything the engine does happens on
 * this thread; jobs on one engine run one at a time. */
static void
run_job (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Job *job = task_data;
  GError *error = NULL;

  /* NULLs: the best Vulkan device (or REVERIE_DEVICE) and the embedded model */
  g_autoptr (RvEngine) engine = rv_engine_new (NULL, NULL, NULL, NULL, NULL, RV_WEIGHTS_AUTO,
                                               &error);
  if (engine == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_printerr ("device %s, model %s\n", rv_engine_device_name (engine),
              rv_engine_model_name (engine));

  RvRequest req;
  rv_request_init (&req, RV_JOB_GENERATE);   /* every field at its default */
  req.prompt = job->prompt;
  req.n = 1;
  req.seed = 42;                              /* same seed, same picture */
  req.decoder_steps = job->steps;             /* 0 keeps the model's default */

  GPtrArray *results = rv_engine_run (engine, &req, on_progress, NULL, cancellable, &error);
  g_printerr ("\n");
  if (results == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, results, (GDestroyNotify) g_ptr_array_unref);
}

static void
on_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  Job *job = user_data;
  job->results = g_task_propagate_pointer (G_TASK (res), &job->error);
  g_main_loop_quit (job->loop);
}

static gboolean
write_ppm (const RvImage *img, const char *path, GError **error)
{
  g_autoptr (GString) data = g_string_new (NULL);
  g_string_printf (data, "P6\n%d %d\n255\n", img->width, img->height);
  for (int i = 0; i < img->width * img->height; i++)
    g_string_append_len (data, (const char *) img->pixels + (gsize) i * img->channels, 3);
  /* atomic: a temporary file, then a rename */
  return g_file_set_contents (path, data->str, (gssize) data->len, error);
}

int
main (int argc, char **argv)
{
  if (argc < 3)
    {
      g_printerr ("usage: %s PROMPT OUTPUT.ppm [DECODER-STEPS]\n", argv[0]);
      return 2;
    }
  Job job = { .prompt = argv[1], .steps = argc > 3 ? atoi (argv[3]) : 0 };
  job.loop = g_main_loop_new (NULL, FALSE);

  /* the job runs on a worker thread while the main loop stays free */
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, on_done, &job);
  g_task_set_task_data (task, &job, NULL);
  g_task_run_in_thread (task, run_job);
  g_main_loop_run (job.loop);
  g_main_loop_unref (job.loop);

  if (job.results == NULL)
    {
      /* the messages say what went wrong and what to do */
      g_printerr ("%s\n", job.error->message);
      g_error_free (job.error);
      return 1;
    }
  const RvResult *r = g_ptr_array_index (job.results, 0);
  g_autoptr (GError) error = NULL;
  int status = 0;
  if (!write_ppm (r->image, argv[2], &error))
    {
      g_printerr ("%s\n", error->message);
      status = 1;
    }
  else
    g_print ("%s: %dx%d, seed %" G_GUINT64_FORMAT "\n", argv[2], r->image->width,
             r->image->height, r->seed);
  g_ptr_array_unref (job.results);
  return status;
}
