/* rv-device.h: the Vulkan device, its memory, tensors and the command stream.
 * Engine-private: front ends use reverie.h and never see Vulkan. */
#pragma once

#include <glib.h>
#include <vulkan/vulkan.h>

#include "reverie.h"
#include "rv-fault.h"   /* the test hooks; rv_device_fault_stage() for the jobs */

G_BEGIN_DECLS

/* Errors are in the RV_ERROR domain of reverie.h. */

typedef enum {
  RV_DTYPE_F32,
  RV_DTYPE_F16,
  RV_DTYPE_I32,
} RvDType;

gsize        rv_dtype_size (RvDType dtype);
const char  *rv_dtype_name (RvDType dtype);

/* What the engine uses of a device, read once at creation. */
typedef struct {
  char              name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
  char              driver[VK_MAX_DRIVER_NAME_SIZE + VK_MAX_DRIVER_INFO_SIZE + 4];
  VkPhysicalDeviceType type;
  guint32           vendor_id;
  guint32           api_version;
  VkDeviceSize      device_local_bytes;   /* largest device-local heap */
  VkDeviceSize      max_allocation;       /* maxMemoryAllocationSize */
  VkDeviceSize      max_storage_range;    /* maxStorageBufferRange */
  VkDeviceSize      storage_offset_align; /* minStorageBufferOffsetAlignment */
  guint32           max_texel_elements;   /* maxTexelBufferElements */
  guint32           max_workgroup_count[3];
  guint32           max_workgroup_invocations;
  guint32           max_shared_memory;
  guint32           subgroup_size;
  gboolean          fp16;                 /* shaderFloat16 */
  gboolean          storage16;            /* storageBuffer16BitAccess */
  gboolean          subgroup_arith;       /* arithmetic + ballot + shuffle in compute */
  gboolean          subgroup_size_control;
  gboolean          coopmat_nv;           /* VK_NV_cooperative_matrix, fp16 16x16x16 -> fp32 */
  gboolean          push_descriptor;      /* VK_KHR_push_descriptor */
  gboolean          timestamps;
  gboolean          unified_memory;       /* device-local memory is host visible */
  float             timestamp_period;
} RvDeviceCaps;

typedef struct _RvDevice RvDevice;
typedef struct _RvTensor RvTensor;
typedef struct _RvCmd RvCmd;
typedef struct _RvKernel RvKernel;
typedef struct _RvBlock RvBlock;

/* ---- device ---- */

/* Physical devices in preference order (discrete > integrated > virtual > cpu).
 * Returns an array of RvDeviceCaps. */
GArray      *rv_device_enumerate (GError **error);

/* selector: NULL/"" = best; a decimal index into rv_device_enumerate(); or a
 * case-insensitive substring of the device name. REVERIE_DEVICE overrides NULL. */
RvDevice    *rv_device_new (const char *selector, GError **error);
RvDevice    *rv_device_ref (RvDevice *dev);
void         rv_device_unref (RvDevice *dev);
const RvDeviceCaps *rv_device_caps (RvDevice *dev);
/* Release device memory blocks that no tensor uses any more. Call only when no
 * command stream has unsubmitted work. */
void         rv_device_trim (RvDevice *dev);
/* Warnings and errors reported by the validation layer (REVERIE_VALIDATION=1)
 * since the process started. */
guint        rv_validation_message_count (void);
/* Device memory currently allocated and the peak since creation (bytes). */
void         rv_device_memory_stats (RvDevice *dev, guint64 *in_use, guint64 *peak,
                                     guint64 *blocks);
void         rv_device_reset_peak (RvDevice *dev);
/* Whether the device was lost: every later submit fails, and what lived on
 * it is gone; the owner opens a new device. */
gboolean     rv_device_is_lost (RvDevice *dev);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvDevice, rv_device_unref)

/* ---- tensors ----
 * A tensor is a range of a device buffer with a dtype and a row-major shape.
 * Offsets are aligned to 256 bytes; the allocation is rounded up to 256 bytes
 * so kernels may read whole vec4s past the end of a tensor. */

#define RV_MAX_DIMS 4

struct _RvTensor {
  RvDevice     *dev;
  RvBlock      *block;
  VkDeviceSize  offset;        /* bytes into the block's buffer */
  VkDeviceSize  size;          /* bytes, rounded up to 256 */
  RvDType       dtype;
  int           ndim;
  gint64        shape[RV_MAX_DIMS];
};

RvTensor    *rv_tensor_new (RvDevice *dev, RvDType dtype, int ndim, const gint64 *shape,
                            GError **error);
RvTensor    *rv_tensor_new_4d (RvDevice *dev, RvDType dtype, gint64 d0, gint64 d1, gint64 d2,
                               gint64 d3, GError **error);
void         rv_tensor_free (RvTensor *t);
gint64       rv_tensor_numel (const RvTensor *t);
gsize        rv_tensor_nbytes (const RvTensor *t);     /* numel * dtype size, unpadded */
gboolean     rv_tensor_same_shape (const RvTensor *a, const RvTensor *b);
/* Reinterpret with another shape of the same element count (no copy). */
void         rv_tensor_reshape (RvTensor *t, int ndim, const gint64 *shape);
/* Part i of t seen as consecutive tensors of shape `shape` (ndim dims): a
 * view into t's memory, returned by value and never freed. */
RvTensor     rv_tensor_part (const RvTensor *t, gint64 i, int ndim, const gint64 *shape);
char        *rv_tensor_describe (const RvTensor *t);   /* "f32 (2, 77, 32)" */
/* Offset of the tensor in units of one RGBA texel of its dtype in the block's
 * texel view (16 bytes for f32, 8 for f16). */
guint32      rv_tensor_texel_offset (const RvTensor *t);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvTensor, rv_tensor_free)

/* ---- kernels ----
 * A kernel is a compute pipeline from an embedded SPIR-V module plus integer
 * specialization constants (ids 0..n-1). `bindings` is one letter per binding:
 * 'S' storage buffer, 'T' uniform texel buffer. Push constants: up to 128 bytes. */

#define RV_PUSH_MAX 128
#define RV_SPEC_MAX 12

RvKernel    *rv_device_kernel (RvDevice *dev, const char *module, const char *bindings,
                               const guint32 *spec, guint n_spec, GError **error);
/* The same without waiting for the pipeline: a kernel not built yet is built
 * on a background thread, and the command stream records dispatches of it
 * for later (rv_cmd_dispatch). NULL only for a module that does not exist. */
RvKernel    *rv_device_kernel_request (RvDevice *dev, const char *module, const char *bindings,
                                       const guint32 *spec, guint n_spec, GError **error);
gboolean     rv_kernel_ready (RvKernel *k);
/* Waits until k is built; FALSE with the build's error if it failed. */
gboolean     rv_kernel_wait (RvDevice *dev, RvKernel *k, GError **error);
const char  *rv_kernel_name (RvKernel *k);

/* Kernel lists. Building a pipeline is slow on a CPU driver (lavapipe compiles
 * each one with LLVM: 2–80 ms), and a short-lived process would otherwise build
 * every kernel in turn as its first dispatches are recorded. The engine writes
 * the kernels a run used under a tag (the model set) and, when the next process
 * opens the same model set, builds them on a background thread in the order
 * they were first used, while the main thread loads weights and records; a
 * kernel that the main thread needs first is built there, one the background
 * thread is building is waited for. Files: $XDG_CACHE_HOME/reverie/
 * kernels-VVVV-DDDD-UUID-TAG.txt, one kernel key per line. Neither does
 * anything with REVERIE_PIPELINE_CACHE=0. */
void         rv_device_prewarm_kernels (RvDevice *dev, const char *tag);
void         rv_device_save_kernel_list (RvDevice *dev, const char *tag);
/* Kernels built so far (by any thread). */
guint        rv_device_kernel_count (RvDevice *dev);

/* ---- command stream ----
 * Dispatches are recorded into one command buffer and submitted together.
 * Every binding says whether it is read or written; a barrier is recorded only
 * when a dispatch touches memory that an earlier dispatch since the last
 * barrier wrote (or writes memory one read). Errors are sticky: after the
 * first failure further recording is skipped and submit reports it. */

typedef enum {
  RV_READ = 1,
  RV_WRITE = 2,
  RV_READ_WRITE = 3,
} RvAccess;

typedef struct {
  const RvTensor *tensor;
  RvAccess        access;
} RvBinding;

RvCmd       *rv_cmd_new (RvDevice *dev, GError **error);
/* Commands kept for the submit because a kernel they use was still being
 * built when they were recorded (0 when everything went straight through). */
guint        rv_cmd_pending (RvCmd *cmd);
void         rv_cmd_free (RvCmd *cmd);
RvDevice    *rv_cmd_device (RvCmd *cmd);
void         rv_cmd_dispatch (RvCmd *cmd, RvKernel *kernel, const RvBinding *bindings,
                              guint n_bindings, const void *push, gsize push_size,
                              guint32 gx, guint32 gy, guint32 gz);
/* Host -> tensor (recorded; the data is copied now). `bytes` ≤ tensor size. */
void         rv_cmd_upload (RvCmd *cmd, RvTensor *t, const void *data, gsize bytes);
/* Tensor -> host: `dst` is filled when rv_cmd_submit returns successfully. */
void         rv_cmd_download (RvCmd *cmd, const RvTensor *t, void *dst, gsize bytes);
/* Tensor -> tensor copy of `bytes` bytes (byte offsets into both). */
void         rv_cmd_copy (RvCmd *cmd, RvTensor *dst, gsize dst_offset, const RvTensor *src,
                          gsize src_offset, gsize bytes);
/* Set every 32-bit word of the tensor's padded range. */
void         rv_cmd_fill_u32 (RvCmd *cmd, RvTensor *t, guint32 value);
/* Record an error (the first one wins). Takes ownership of `error`. */
void         rv_cmd_fail (RvCmd *cmd, GError *error);
void         rv_cmd_failf (RvCmd *cmd, gint code, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
gboolean     rv_cmd_failed (RvCmd *cmd);
/* Submit what was recorded and wait; downloads are delivered. The stream is
 * ready for more recording afterwards (also after an error, which is cleared). */
gboolean     rv_cmd_submit (RvCmd *cmd, GError **error);
/* Dispatches recorded since the stream was created (for tests and benches). */
guint64      rv_cmd_dispatch_count (RvCmd *cmd);
/* When timestamps are on (REVERIE_PROFILE=1), the GPU time of the last submit
 * per kernel name in nanoseconds; NULL otherwise. Owned by the stream. */
GHashTable  *rv_cmd_last_profile (RvCmd *cmd);
/* Force per-dispatch timestamps on or off for this stream (benchmarks). */
void         rv_cmd_set_profiling (RvCmd *cmd, gboolean on);
/* Total GPU time of the last submit from timestamps, in ns (0 if off). */
guint64      rv_cmd_last_gpu_ns (RvCmd *cmd);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvCmd, rv_cmd_free)

/* Helpers for writing ops. */
static inline guint32
rv_div_up (guint64 a, guint64 b)
{
  return (guint32) ((a + b - 1) / b);
}

G_END_DECLS
