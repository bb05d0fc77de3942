/* rv-device-private.h: structures shared by the device, memory and command
 * stream implementations. */
#pragma once

#include "rv-device.h"
#include "rv-vk.h"

G_BEGIN_DECLS

struct _RvBlock {
  VkDeviceMemory memory;
  VkBuffer       buffer;
  VkDeviceSize   size;
  VkBufferView   view_f32;     /* RGBA32F over the whole block, lazily */
  VkBufferView   view_f16;     /* RGBA16F */
  GArray        *free_ranges;  /* RvRange sorted by offset, coalesced */
  VkDeviceSize   used;
};

typedef struct {
  VkDeviceSize offset, size;
} RvRange;

struct _RvKernel {
  char                 *name;
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout      layout;
  VkPipeline            pipeline;
  char                  bindings[16];
  guint                 n_bindings;
  gint                  ready;      /* (atomic) FALSE while a thread is still building it */
  gboolean              failed;     /* the build failed: `error` says why */
  GError               *error;
  guint                 first_use;  /* 0 = not yet used by a dispatch; else the order of first use */
  GBytes               *code;       /* SPIR-V and specialization, until built */
  guint32               spec[RV_SPEC_MAX];
  guint                 n_spec;
};

struct _RvDevice {
  gint               ref_count;
  VkPhysicalDevice   physical;
  VkDevice           device;
  VkQueue            queue;
  guint32            queue_family;
  RvDeviceCaps       caps;
  guint32            device_memory_type;
  guint32            host_memory_type;      /* host visible + coherent, for staging */
  guint8             pipeline_uuid[VK_UUID_SIZE];

  GMutex             queue_lock;            /* vkQueueSubmit */
  GRecMutex          job_lock;              /* one command stream at a time */

  GMutex             mem_lock;
  GPtrArray         *blocks;                /* RvBlock*, device memory */
  guint64            mem_in_use, mem_peak, mem_allocated;
  VkDeviceSize       block_size;

  GMutex             kernel_lock;
  GCond              kernel_built;          /* a kernel became ready or failed */
  GHashTable        *kernels;               /* key -> RvKernel* */
  guint              kernel_uses;           /* kernels used so far */
  guint              kernel_uses_saved;     /* ... when the kernel list was last written */
  VkPipelineCache    pipeline_cache;
  char              *pipeline_cache_path;
  char              *cache_stem;            /* "VVVV-DDDD-UUID" */
  gboolean           pipeline_cache_dirty;
  GPtrArray         *failed_kernels;        /* kept until the end: streams may point at them */
  guint              builds_pending;        /* tasks of this device on the builder threads */
  gint               stopping;              /* released: its builder tasks end at once */
  gboolean           prewarmed;             /* its kernel list was read */

  gint               lost;                  /* VK_ERROR_DEVICE_LOST seen: it stays lost */
};

/* Memory for the command stream's staging buffers (host visible). */
typedef struct {
  VkDeviceMemory memory;
  VkBuffer       buffer;
  VkDeviceSize   size;
  guint8        *mapped;
} RvHostBuffer;

gboolean  _rv_host_buffer_init (RvDevice *dev, RvHostBuffer *hb, VkDeviceSize size, GError **error);
void      _rv_host_buffer_clear (RvDevice *dev, RvHostBuffer *hb);
VkBufferView _rv_block_view (RvDevice *dev, RvBlock *block, RvDType dtype, GError **error);
void      _rv_device_free_blocks (RvDevice *dev);
gboolean  _rv_vk_check (VkResult r, const char *what, GError **error);

G_END_DECLS
