/* reverie.h: the engine's public API. Opaque handles, GError, a progress
 * callback with preview images, and a GCancellable. No Vulkan, no GTK.
 *
 * An RvEngine owns one Vulkan device and one model set (loaded lazily,
 * component by component). Jobs run one at a time per engine, on the calling
 * thread: front ends call rv_engine_run from a worker thread (GTask).
 *
 * Writing a front end (examples/generate.c is a complete one):
 *
 *   1. Open an engine once and keep it: rv_engine_new (device, model folders,
 *      weight policy). It checks the folders and configs and opens the
 *      device, but loads no weights; the first job loads what it needs and
 *      later jobs reuse it. All NULLs: the best device and the embedded model.
 *   2. For each job, fill an RvRequest: rv_request_init (&req, kind) sets
 *      every field to "the model's default", then set what the user chose.
 *      Pointers in the request (prompt, images) are borrowed for the call.
 *   3. Run it off the main thread: rv_engine_run (engine, &req, progress,
 *      data, cancellable, &error). The progress callback is called on that
 *      thread, often (every step, every tile); copy what you need (the preview
 *      is the engine's) and hand it to your main loop. g_cancellable_cancel
 *      from any thread stops the job within one step.
 *   4. Results are RvResult (an 8-bit picture and the seed that made it), one
 *      per image in batch order. Image k of a batch used seed + k, so it can be
 *      made again alone. To save it with its recipe, see io/rv-image-io.h
 *      (rv_recipe_for_request, rv_image_save_png): every file then says how
 *      to make it again.
 *   5. Errors are GErrors in RV_ERROR (below) or G_IO_ERROR_CANCELLED; the
 *      messages are written for users and say what to do. Nothing a job
 *      failed or was cancelled in leaves a result behind. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define RV_ERROR (rv_engine_error_quark ())
GQuark rv_engine_error_quark (void);

/* Error codes (RV_ERROR domain); the messages say what to do. */
typedef enum {
  RV_ERROR_NO_VULKAN,
  RV_ERROR_NO_DEVICE,
  RV_ERROR_OUT_OF_MEMORY,
  RV_ERROR_DEVICE_LOST,
  RV_ERROR_VULKAN,
  RV_ERROR_INVALID,
  RV_ERROR_MODEL,
  RV_ERROR_IMAGE,
  RV_ERROR_CANCELLED,
  RV_ERROR_UNSUPPORTED,
} RvError;

/* ---- images: 8-bit RGB or RGBA, rows packed ---- */

typedef struct {
  int     width, height;
  int     channels;      /* 3 or 4 */
  guint8 *pixels;        /* height · width · channels bytes */
} RvImage;

RvImage *rv_image_new (int width, int height, int channels);
RvImage *rv_image_copy (const RvImage *img);
void     rv_image_free (RvImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvImage, rv_image_free)

/* ---- models ---- */

/* Recommended settings of a model set (its reverie.json, else Kandinsky 2.2's). */
typedef struct {
  int   width, height;
  int   prior_steps;
  float prior_guidance;
  int   decoder_steps;
  float decoder_guidance;
  char  scheduler[16];    /* "ddpm", "ddim", "dpmpp" */
  /* extend (outpainting) frames: the weight of the picture around a frame
   * in its conditioning (RvRequest.extend_context) and the decoder guidance */
  float extend_context;
  float extend_guidance;
} RvDefaults;

/* ---- the engine ---- */

typedef struct _RvEngine RvEngine;

typedef enum {
  RV_WEIGHTS_AUTO,        /* f16 on the device where supported */
  RV_WEIGHTS_F32,         /* keep full precision (reference checks) */
  RV_WEIGHTS_AS_STORED,   /* F32 stays F32, F16 stays F16, BF16 → F32 */
} RvWeightPolicy;

/* device: NULL = best (or REVERIE_DEVICE), an index or a name substring.
 * Models: model_dir holding prior/, decoder/ and decoder-inpaint/, and/or
 * the three folders separately (they take precedence); all NULL = the
 * embedded default. Validates the folders and configs now; weights load when
 * first needed. */
RvEngine   *rv_engine_new (const char *device, const char *model_dir, const char *prior_dir,
                           const char *decoder_dir, const char *inpaint_dir,
                           RvWeightPolicy weights, GError **error);
RvEngine   *rv_engine_ref (RvEngine *e);
void        rv_engine_unref (RvEngine *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvEngine, rv_engine_unref)

/* The names of the Vulkan devices, best first; an index into this list is a
 * valid device selector for rv_engine_new(). */
GPtrArray  *rv_engine_list_devices (GError **error);

typedef enum {
  RV_DEVICE_OTHER,
  RV_DEVICE_DISCRETE_GPU,
  RV_DEVICE_INTEGRATED_GPU,
  RV_DEVICE_VIRTUAL_GPU,
  RV_DEVICE_CPU,             /* e.g. Mesa's lavapipe */
} RvDeviceType;

/* What a Vulkan device offers of what the engine uses. */
typedef struct {
  char         name[256];
  char         driver[520];             /* driver name and version */
  RvDeviceType type;
  guint        vulkan_major, vulkan_minor, vulkan_patch;
  guint64      memory_bytes;            /* largest device-local heap */
  gboolean     unified_memory;          /* that memory is shared with the host */
  guint64      max_allocation_bytes;    /* largest single allocation */
  guint64      max_binding_bytes;       /* largest buffer a kernel binds */
  gboolean     fp16;                    /* 16-bit float arithmetic */
  gboolean     storage16;               /* 16-bit values in buffers */
  gboolean     subgroup_ops;            /* subgroup arithmetic, ballot, shuffle */
  guint        subgroup_size;
  gboolean     coopmat_nv;              /* NVIDIA cooperative matrices */
  gboolean     push_descriptor;
  gboolean     timestamps;              /* GPU timers (REVERIE_PROFILE) */
  gboolean     selected;                /* what rv_engine_new (NULL, …) would open */
} RvDeviceInfo;

/* The Vulkan devices as an array of RvDeviceInfo, in the order (and with
 * the indices) of rv_engine_list_devices(). Finding the selected one opens
 * that device briefly. */
GArray     *rv_engine_list_device_info (GError **error);

const char *rv_engine_device_name (RvEngine *e);
/* A short name for the model set ("reverie-tiny", or the folder names) and a
 * hash of its weights (hex), for recipes. */
const char *rv_engine_model_name (RvEngine *e);
const char *rv_engine_model_hash (RvEngine *e);
const RvDefaults *rv_engine_defaults (RvEngine *e);
gboolean    rv_engine_can_inpaint (RvEngine *e);
/* Drop loaded weights and cached device memory (they reload when needed). */
void        rv_engine_release (RvEngine *e);
/* Peak device memory of the last job, bytes. */
guint64     rv_engine_peak_memory (RvEngine *e);

/* ---- super-resolution ----
 * A model set may name an upscaler (its reverie.json "upscaler": a folder of
 * the Real-ESRGAN family, config.json + model.safetensors) and the largest
 * side it generates well ("native_size"; without it the default size, or
 * 1024 for sets without reverie.json). With an upscaler, text-to-image,
 * variations and mixes asked for a larger size are generated at the native
 * size with the same aspect ratio, upscaled (RV_STAGE_UPSCALE) and resized to
 * the exact size; without one they are generated at the size asked.
 * RV_JOB_UPSCALE enlarges any picture. */

/* Use the upscaler in `dir` instead of the model set's (NULL: the set's own
 * again). Its config is checked now; an error leaves the upscaler as it was. */
gboolean    rv_engine_set_upscaler (RvEngine *e, const char *dir, GError **error);
/* The upscaler's name (its folder's) and a hash of its weights, or NULL when
 * there is none; its scale (pixels out per pixel in), 0 when none. */
const char *rv_engine_upscaler_name (RvEngine *e);
const char *rv_engine_upscaler_hash (RvEngine *e);
int         rv_engine_upscaler_scale (RvEngine *e);
int         rv_engine_native_size (RvEngine *e);

/* ---- jobs ---- */

typedef enum {
  RV_JOB_GENERATE,       /* text → image */
  RV_JOB_INPAINT,        /* image + mask + prompt */
  RV_JOB_VARIATION,      /* image → variations */
  RV_JOB_IMG2IMG,        /* image + prompt, strength */
  RV_JOB_MIX,            /* weighted images and prompts */
  RV_JOB_UPSCALE,        /* image → the same picture, larger (super-resolution) */
  RV_JOB_EXTEND,         /* image + prompt → the picture on a larger canvas (outpainting) */
} RvJobKind;

typedef enum {
  RV_MASK_AUTO,          /* alpha if the mask image has transparency, else grey */
  RV_MASK_GREY,          /* white = repaint */
  RV_MASK_ALPHA,         /* transparent = repaint (the Images API convention) */
} RvMaskMode;

/* RV_MASK_ALPHA if the image has transparent pixels, else RV_MASK_GREY. */
RvMaskMode rv_mask_mode_detect (const RvImage *mask);

typedef struct {
  const char    *prompt;       /* may be NULL for a pure image mix */
  const RvImage *image;
  float          weight;
} RvMixItem;

typedef struct {
  RvJobKind      kind;
  const char    *prompt;
  const char    *negative_prompt;   /* NULL or "" = none */
  int            width, height;     /* 0 = the model's default; rounded up per model */
  int            n;                 /* images, ≥ 1 */
  guint64        seed;              /* image k uses seed + k */
  int            prior_steps;       /* 0 = default */
  float          prior_guidance;    /* < 0 = default */
  int            decoder_steps;     /* 0 = default */
  float          decoder_guidance;  /* < 0 = default */
  const char    *scheduler;         /* NULL = default; "ddpm", "ddim", "dpmpp" */
  /* inpaint, variation, img2img */
  const RvImage *image;
  const RvImage *mask;
  RvMaskMode     mask_mode;
  float          feather;           /* px, inpaint compositing */
  float          strength;          /* img2img, 0…1 */
  int            upscale;           /* RV_JOB_UPSCALE: the factor, a power of the
                                       upscaler's own scale; 0 = its own scale */
  /* RV_JOB_EXTEND: pixels added on each side (≥ 0). The source's transparent
   * pixels (alpha < 128) are filled too, or, when a mask (the image's size)
   * is given, the pixels it marks for repainting in mask_mode instead; width
   * and height are ignored (the canvas is the image's size plus the
   * borders). See rv_engine_plan_extend(). */
  int            extend_left, extend_right, extend_top, extend_bottom;
  /* RV_JOB_EXTEND: how much each frame is conditioned on the picture around
   * it (the image embedding of the frame's crop) rather than on the prompt:
   * 0 = the prompt only … 1 = the picture only; < 0 = the model set's
   * default (rv_engine_extend_context) */
  float          extend_context;
  /* mix */
  const RvMixItem *mix;
  int            n_mix;
  gboolean       previews;          /* deliver preview images in progress */
} RvRequest;

void rv_request_init (RvRequest *req, RvJobKind kind);

/* Whether `req` goes through the upscaler, and the size it is generated at
 * before (the request's own when not). */
gboolean rv_engine_plan_upscale (RvEngine *e, const RvRequest *req, int *width, int *height);

/* ---- outpainting (RV_JOB_EXTEND) ----
 * The source is placed on a canvas `extend_*` pixels larger on each side;
 * the empty area (the borders and the source's transparent pixels) is filled
 * by inpainting frames of the model set's frame size (its reverie.json
 * "extend_frame", by default the native size; smaller where the canvas is),
 * one after another: a canvas within one frame is filled in a single pass. Frames sit on a grid of
 * half a frame's stride over the canvas; the next frame is always the one
 * with the largest share of pixels already there (the source's or earlier
 * frames'), ties going to the frame nearest the source, so frames grow
 * outward from the source and usually overlap what is already filled by a
 * half (a quarter at worst near corners). A frame repaints only the pixels
 * not yet filled and sees everything filled so far; its output is blended
 * into pixels earlier frames made over a feather of `feather` pixels (0: an
 * eighth of a frame), so that seams between frames fade, and never touches
 * the source's own pixels, which come out bit for bit. All frames of one
 * image share its prior embedding; frame k's decoder noise comes from the
 * image's seed and k. Frames that neither see nor touch what another fills
 * (the four corner frames around a source, say) run together in one decoder
 * batch, a wave; the next wave starts once they are in. After the last frame
 * the seams between frames, and between frames and the source, are redrawn
 * as ramps of a few pixels (the source untouched). Each frame is
 * conditioned on the prompt's embedding mixed with the image embedding of
 * what surrounds it (RvRequest.extend_context). RvProgress.frame, n_frames
 * and frames_at_once say which frames run, and previews (when asked for)
 * show the whole canvas. */

#define RV_EXTEND_MAX_SIDE   4096   /* of the canvas */
#define RV_EXTEND_MAX_FRAMES 1024

typedef struct {
  int x, y, width, height;
} RvRect;

/* The canvas size and the frames of an extend request, in the order they
 * run (a new GArray of RvRect); NULL with RV_ERROR_INVALID when the request
 * cannot run: negative borders, nothing to fill, a canvas over
 * RV_EXTEND_MAX_SIDE, a source with no opaque pixel, too many frames. */
GArray  *rv_engine_plan_extend (RvEngine *e, const RvRequest *req, int *width, int *height,
                                GError **error);

typedef enum {
  RV_STAGE_LOAD,
  RV_STAGE_ENCODE,      /* text / image encoders */
  RV_STAGE_PRIOR,
  RV_STAGE_DECODER,
  RV_STAGE_DECODE,      /* MoVQ to pixels */
  RV_STAGE_UPSCALE,     /* super-resolution, tile by tile (step = tiles done) */
} RvStage;

typedef struct {
  RvStage        stage;
  int            image;        /* index in the batch */
  int            n_images;
  int            step, steps;  /* within the stage; step 1…steps */
  double         fraction;     /* of the whole job, 0…1 */
  double         elapsed;      /* seconds since the job started */
  double         eta;          /* seconds left, < 0 if unknown */
  /* Decoder steps only, when previews are on: the current x₀ estimate as
   * pixels (owned by the engine, valid during the callback). How it is made is
   * rv_engine_preview_method(). RV_JOB_EXTEND: the whole canvas, with the
   * running frame's estimate in its empty pixels (also after each frame,
   * with stage RV_STAGE_DECODE). */
  const RvImage *preview;
  /* RV_JOB_EXTEND: the frame of image `image` being filled (0-based, in the
   * order they run) and how many it has; frames that do not depend on one
   * another run together, frames_at_once of them from `frame` on. 0, 0 and
   * 1 for other jobs. */
  int            frame, n_frames;
  int            frames_at_once;
} RvProgress;

typedef void (*RvProgressFunc) (const RvProgress *progress, gpointer user_data);

/* "linear projection" (a per-model fitted latent → RGB map) or "full decode". */
const char *rv_engine_preview_method (RvEngine *e);

typedef struct {
  RvImage *image;
  guint64  seed;
} RvResult;

void rv_result_free (RvResult *r);

/* Runs a job; returns RvResult* in batch order (free with g_ptr_array_unref).
 * Cancellation takes effect within one step (G_IO_ERROR_CANCELLED). */
GPtrArray *rv_engine_run (RvEngine *e, const RvRequest *req, RvProgressFunc progress,
                          gpointer user_data, GCancellable *cancellable, GError **error);

/* A fresh random seed (below 2⁵³, so JSON numbers carry it exactly). */
guint64 rv_random_seed (void);

/* Where the time of the last job went, in seconds (benchmarks). */
typedef struct {
  double  load;            /* loading weights and building kernels */
  double  text;            /* tokenizer and text encoder */
  int     prior_steps;
  double  prior;           /* all prior steps */
  int     decoder_steps;
  double  decoder;         /* all decoder steps */
  double  decode;          /* MoVQ decodes */
  double  upscale;         /* super-resolution */
  double  total;
  guint64 peak_bytes;      /* device memory */
  guint64 dispatches;
} RvJobStats;

void rv_engine_last_stats (RvEngine *e, RvJobStats *stats);

/* Whether the prompt was cut to the model's token limit: the count of tokens
 * dropped (0 = none). */
int rv_engine_prompt_overflow (RvEngine *e, const char *prompt, GError **error);

G_END_DECLS
