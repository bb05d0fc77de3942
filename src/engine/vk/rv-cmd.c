/* rv-cmd.c: the command stream. Records many dispatches into one command
 * buffer, puts a barrier only where a dispatch depends on an earlier one
 * (read after write, write after read or write), stages uploads and downloads
 * through host-visible memory, and optionally timestamps every dispatch.
 * From the first dispatch of a kernel that is still being built, commands are
 * kept in a list and recorded at the submit, once every kernel is ready. */
#include "rv-device-private.h"
#include "rv-fault.h"

#include <stdarg.h>
#include <string.h>

#define STAGING_CHUNK ((VkDeviceSize) 16 << 20)
#define QUERY_CAPACITY 8192
#define POOL_SETS 512

typedef struct {
  const RvBlock *block;
  VkDeviceSize   offset, end;
} RvSpan;

typedef struct {
  void        *dst;
  guint        chunk;
  VkDeviceSize offset;
  gsize        bytes;
} RvDownload;

struct _RvCmd {
  RvDevice         *dev;
  VkCommandPool     pool;
  VkCommandBuffer   cb;
  VkFence           fence;
  gboolean          recording;
  GError           *error;

  GArray           *reads;        /* RvSpan since the last barrier */
  GArray           *writes;

  GArray           *staging;      /* RvHostBuffer */
  guint             staging_chunk;
  VkDeviceSize      staging_used;
  GArray           *downloads;    /* RvDownload */

  GArray           *desc_pools;   /* VkDescriptorPool, without push descriptors */
  guint             desc_pool_index;
  guint             desc_pool_sets;

  gboolean          profiling;
  VkQueryPool       queries;
  guint             n_queries;
  GPtrArray        *query_names;  /* const char * (kernel names), per dispatch */
  GHashTable       *profile_last; /* name -> guint64 ns (boxed) */
  GHashTable       *profile_total;
  GHashTable       *profile_count;
  guint64           last_gpu_ns;
  guint64           dispatches;

  /* From the first dispatch of a kernel that is still being built until the
   * submit, commands are kept here and recorded when every kernel is ready,
   * so that recording goes on while the kernels build. */
  gboolean          deferring;
  GArray           *deferred;     /* RvRecord */
};

typedef enum { REC_BARRIER, REC_TIMESTAMP, REC_DISPATCH, REC_COPY, REC_FILL } RvRecordKind;

typedef struct {
  gboolean       texel;
  VkBufferView   view;
  VkBuffer       buffer;
  VkDeviceSize   offset, range;
} RvRecBinding;

/* One command, as recorded later. */
typedef struct {
  RvRecordKind   kind;
  guint          query;                 /* REC_TIMESTAMP */
  RvKernel      *kernel;                /* REC_DISPATCH */
  guint          n_bindings;
  RvRecBinding   bindings[16];
  guint8         push[RV_PUSH_MAX];
  gboolean       has_push;
  guint32        gx, gy, gz;
  VkBuffer       src, dst;              /* REC_COPY; REC_FILL: dst */
  VkBufferCopy   region;
  VkDeviceSize   fill_offset, fill_size;
  guint32        fill_value;
} RvRecord;

static gboolean
env_profiling (void)
{
  return g_strcmp0 (g_getenv ("REVERIE_PROFILE"), "1") == 0;
}

RvCmd *
rv_cmd_new (RvDevice *dev, GError **error)
{
  g_rec_mutex_lock (&dev->job_lock);
  RvCmd *cmd = g_new0 (RvCmd, 1);
  cmd->dev = rv_device_ref (dev);
  cmd->reads = g_array_new (FALSE, FALSE, sizeof (RvSpan));
  cmd->writes = g_array_new (FALSE, FALSE, sizeof (RvSpan));
  cmd->staging = g_array_new (FALSE, TRUE, sizeof (RvHostBuffer));
  cmd->downloads = g_array_new (FALSE, FALSE, sizeof (RvDownload));
  cmd->desc_pools = g_array_new (FALSE, FALSE, sizeof (VkDescriptorPool));
  cmd->query_names = g_ptr_array_new ();
  cmd->deferred = g_array_new (FALSE, TRUE, sizeof (RvRecord));
  cmd->profile_last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  cmd->profile_total = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  cmd->profile_count = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  VkCommandPoolCreateInfo pci = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
    .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
    .queueFamilyIndex = dev->queue_family,
  };
  VkResult r = rv_vkCreateCommandPool (dev->device, &pci, NULL, &cmd->pool);
  if (r == VK_SUCCESS)
    {
      VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = cmd->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
      };
      r = rv_vkAllocateCommandBuffers (dev->device, &ai, &cmd->cb);
    }
  if (r == VK_SUCCESS)
    {
      VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
      r = rv_vkCreateFence (dev->device, &fci, NULL, &cmd->fence);
    }
  if (!_rv_vk_check (r, "creating a command buffer", error))
    {
      rv_cmd_free (cmd);
      return NULL;
    }
  rv_cmd_set_profiling (cmd, env_profiling ());
  return cmd;
}

void
rv_cmd_set_profiling (RvCmd *cmd, gboolean on)
{
  RvDevice *dev = cmd->dev;
  cmd->profiling = on && dev->caps.timestamps;
  if (cmd->profiling && cmd->queries == VK_NULL_HANDLE)
    {
      VkQueryPoolCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = QUERY_CAPACITY,
      };
      if (rv_vkCreateQueryPool (dev->device, &qi, NULL, &cmd->queries) != VK_SUCCESS)
        {
          cmd->queries = VK_NULL_HANDLE;
          cmd->profiling = FALSE;
        }
    }
}

static void
print_profile (RvCmd *cmd)
{
  if (g_hash_table_size (cmd->profile_total) == 0)
    return;
  g_autoptr (GList) keys = g_hash_table_get_keys (cmd->profile_total);
  guint64 total = 0;
  for (GList *l = keys; l; l = l->next)
    total += *(guint64 *) g_hash_table_lookup (cmd->profile_total, l->data);
  g_printerr ("GPU time by kernel (%.3f ms in all):\n", total / 1e6);
  /* sort by time, descending */
  GPtrArray *sorted = g_ptr_array_new ();
  for (GList *l = keys; l; l = l->next)
    g_ptr_array_add (sorted, l->data);
  for (guint i = 0; i < sorted->len; i++)
    for (guint j = i + 1; j < sorted->len; j++)
      {
        guint64 a = *(guint64 *) g_hash_table_lookup (cmd->profile_total, sorted->pdata[i]);
        guint64 b = *(guint64 *) g_hash_table_lookup (cmd->profile_total, sorted->pdata[j]);
        if (b > a)
          {
            gpointer t = sorted->pdata[i];
            sorted->pdata[i] = sorted->pdata[j];
            sorted->pdata[j] = t;
          }
      }
  for (guint i = 0; i < sorted->len; i++)
    {
      guint64 ns = *(guint64 *) g_hash_table_lookup (cmd->profile_total, sorted->pdata[i]);
      guint64 n = *(guint64 *) g_hash_table_lookup (cmd->profile_count, sorted->pdata[i]);
      g_printerr ("  %10.3f ms %6.1f%% %7" G_GUINT64_FORMAT "×  %s\n", ns / 1e6,
                  total ? 100.0 * ns / total : 0.0, n, (const char *) sorted->pdata[i]);
    }
  g_ptr_array_unref (sorted);
}

void
rv_cmd_free (RvCmd *cmd)
{
  if (cmd == NULL)
    return;
  RvDevice *dev = cmd->dev;
  if (cmd->recording)
    {
      /* Unsubmitted work is dropped. */
      rv_vkEndCommandBuffer (cmd->cb);
      cmd->recording = FALSE;
    }
  if (env_profiling ())
    print_profile (cmd);
  for (guint i = 0; i < cmd->staging->len; i++)
    _rv_host_buffer_clear (dev, &g_array_index (cmd->staging, RvHostBuffer, i));
  for (guint i = 0; i < cmd->desc_pools->len; i++)
    rv_vkDestroyDescriptorPool (dev->device, g_array_index (cmd->desc_pools, VkDescriptorPool, i), NULL);
  if (cmd->queries != VK_NULL_HANDLE)
    rv_vkDestroyQueryPool (dev->device, cmd->queries, NULL);
  if (cmd->fence != VK_NULL_HANDLE)
    rv_vkDestroyFence (dev->device, cmd->fence, NULL);
  if (cmd->pool != VK_NULL_HANDLE)
    rv_vkDestroyCommandPool (dev->device, cmd->pool, NULL);
  g_array_unref (cmd->reads);
  g_array_unref (cmd->writes);
  g_array_unref (cmd->staging);
  g_array_unref (cmd->downloads);
  g_array_unref (cmd->desc_pools);
  g_ptr_array_unref (cmd->query_names);
  g_array_unref (cmd->deferred);
  g_hash_table_unref (cmd->profile_last);
  g_hash_table_unref (cmd->profile_total);
  g_hash_table_unref (cmd->profile_count);
  g_clear_error (&cmd->error);
  g_rec_mutex_unlock (&dev->job_lock);
  rv_device_unref (dev);
  g_free (cmd);
}

RvDevice *
rv_cmd_device (RvCmd *cmd)
{
  return cmd->dev;
}

void
rv_cmd_fail (RvCmd *cmd, GError *error)
{
  if (cmd->error == NULL)
    cmd->error = error;
  else
    g_error_free (error);
}

void
rv_cmd_failf (RvCmd *cmd, gint code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  rv_cmd_fail (cmd, g_error_new_literal (RV_ERROR, code, msg));
}

gboolean
rv_cmd_failed (RvCmd *cmd)
{
  return cmd->error != NULL;
}

guint
rv_cmd_pending (RvCmd *cmd)
{
  return cmd->deferred->len;
}

guint64
rv_cmd_dispatch_count (RvCmd *cmd)
{
  return cmd->dispatches;
}

static gboolean
begin (RvCmd *cmd)
{
  if (cmd->error != NULL)
    return FALSE;
  if (cmd->recording)
    return TRUE;
  VkCommandBufferBeginInfo bi = {
    .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
    .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
  };
  GError *error = NULL;
  if (!_rv_vk_check (rv_vkBeginCommandBuffer (cmd->cb, &bi), "recording commands", &error))
    {
      rv_cmd_fail (cmd, error);
      return FALSE;
    }
  cmd->recording = TRUE;
  if (cmd->profiling)
    {
      rv_vkCmdResetQueryPool (cmd->cb, cmd->queries, 0, QUERY_CAPACITY);
      rv_vkCmdWriteTimestamp (cmd->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, cmd->queries, 0);
      cmd->n_queries = 1;
      g_ptr_array_set_size (cmd->query_names, 0);
    }
  return TRUE;
}

static void emit (RvCmd *cmd, const RvRecord *r);

/* Records r now, or keeps it for the submit once a kernel was not ready. */
static void
record (RvCmd *cmd, const RvRecord *r)
{
  if (cmd->deferring)
    g_array_append_vals (cmd->deferred, r, 1);
  else
    emit (cmd, r);
}

static void
barrier (RvCmd *cmd)
{
  RvRecord r = { .kind = REC_BARRIER };
  record (cmd, &r);
  g_array_set_size (cmd->reads, 0);
  g_array_set_size (cmd->writes, 0);
}

static gboolean
overlaps (GArray *spans, const RvSpan *s)
{
  for (guint i = 0; i < spans->len; i++)
    {
      const RvSpan *o = &g_array_index (spans, RvSpan, i);
      if (o->block == s->block && o->offset < s->end && s->offset < o->end)
        return TRUE;
    }
  return FALSE;
}

/* Records a barrier if any of the accesses conflicts with what is pending,
 * then adds the accesses to the pending sets. */
static void
track (RvCmd *cmd, const RvSpan *spans, const RvAccess *access, guint n)
{
  gboolean need = FALSE;
  for (guint i = 0; i < n && !need; i++)
    {
      if (overlaps (cmd->writes, &spans[i]))
        need = TRUE;
      else if ((access[i] & RV_WRITE) && overlaps (cmd->reads, &spans[i]))
        need = TRUE;
    }
  if (need)
    barrier (cmd);
  for (guint i = 0; i < n; i++)
    {
      if (access[i] & RV_READ)
        g_array_append_val (cmd->reads, spans[i]);
      if (access[i] & RV_WRITE)
        g_array_append_val (cmd->writes, spans[i]);
    }
}

static RvSpan
span_of (const RvTensor *t, VkDeviceSize offset, VkDeviceSize bytes)
{
  RvSpan s = { t->block, t->offset + offset, t->offset + offset + bytes };
  return s;
}

static void
timestamp (RvCmd *cmd, const char *name)
{
  if (!cmd->profiling || cmd->n_queries >= QUERY_CAPACITY)
    return;
  RvRecord r = { .kind = REC_TIMESTAMP, .query = cmd->n_queries++ };
  record (cmd, &r);
  g_ptr_array_add (cmd->query_names, (gpointer) name);
}

static VkDescriptorSet
alloc_set (RvCmd *cmd, RvKernel *k)
{
  RvDevice *dev = cmd->dev;
  for (;;)
    {
      if (cmd->desc_pool_index >= cmd->desc_pools->len)
        {
          VkDescriptorPoolSize sizes[2] = {
            { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, POOL_SETS * 8 },
            { VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, POOL_SETS * 4 },
          };
          VkDescriptorPoolCreateInfo pi = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
            .maxSets = POOL_SETS,
            .poolSizeCount = 2,
            .pPoolSizes = sizes,
          };
          VkDescriptorPool pool;
          GError *error = NULL;
          if (!_rv_vk_check (rv_vkCreateDescriptorPool (dev->device, &pi, NULL, &pool),
                             "creating a descriptor pool", &error))
            {
              rv_cmd_fail (cmd, error);
              return VK_NULL_HANDLE;
            }
          g_array_append_val (cmd->desc_pools, pool);
        }
      VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = g_array_index (cmd->desc_pools, VkDescriptorPool, cmd->desc_pool_index),
        .descriptorSetCount = 1,
        .pSetLayouts = &k->set_layout,
      };
      VkDescriptorSet set;
      VkResult r = rv_vkAllocateDescriptorSets (dev->device, &ai, &set);
      if (r == VK_SUCCESS)
        return set;
      if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
        {
          GError *error = NULL;
          _rv_vk_check (r, "allocating a descriptor set", &error);
          rv_cmd_fail (cmd, error);
          return VK_NULL_HANDLE;
        }
      cmd->desc_pool_index++;
    }
}

void
rv_cmd_dispatch (RvCmd *cmd, RvKernel *kernel, const RvBinding *bindings, guint n_bindings,
                 const void *push, gsize push_size, guint32 gx, guint32 gy, guint32 gz)
{
  RvDevice *dev = cmd->dev;
  if (kernel == NULL)
    {
      if (cmd->error == NULL)
        rv_cmd_failf (cmd, RV_ERROR_INVALID, "A compute kernel could not be built.");
      return;
    }
  if (!begin (cmd))
    return;
  g_return_if_fail (n_bindings == kernel->n_bindings);
  g_return_if_fail (push_size <= RV_PUSH_MAX);
  if (gx == 0 || gy == 0 || gz == 0)
    return;
  if (gx > dev->caps.max_workgroup_count[0] || gy > dev->caps.max_workgroup_count[1] ||
      gz > dev->caps.max_workgroup_count[2])
    {
      rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                    "The work for %s (%u×%u×%u groups) exceeds the device's dispatch limits; "
                    "try a smaller image size.", kernel->name, gx, gy, gz);
      return;
    }

  RvRecord r = { .kind = REC_DISPATCH, .kernel = kernel, .n_bindings = n_bindings,
                 .gx = gx, .gy = gy, .gz = gz, .has_push = push_size > 0 };
  RvSpan spans[16];
  RvAccess access[16];
  for (guint i = 0; i < n_bindings; i++)
    {
      const RvTensor *t = bindings[i].tensor;
      g_return_if_fail (t != NULL && t->dev == dev);
      spans[i] = span_of (t, 0, t->size);
      access[i] = bindings[i].access;
      if (kernel->bindings[i] == 'T')
        {
          GError *error = NULL;
          r.bindings[i].texel = TRUE;
          r.bindings[i].view = _rv_block_view (dev, t->block, t->dtype, &error);
          if (r.bindings[i].view == VK_NULL_HANDLE)
            {
              rv_cmd_fail (cmd, error);
              return;
            }
        }
      else
        {
          if (t->size > dev->caps.max_storage_range)
            {
              rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                            "A tensor of %.0f MiB is larger than this device can bind at once "
                            "(%.0f MiB); try a smaller image size or fewer images.",
                            t->size / 1048576.0, dev->caps.max_storage_range / 1048576.0);
              return;
            }
          /* a view into a tensor must start where the device can bind it */
          if (t->offset % dev->caps.storage_offset_align != 0)
            {
              rv_cmd_failf (cmd, RV_ERROR_UNSUPPORTED,
                            "Kernel %s: binding %u starts at byte %" G_GUINT64_FORMAT
                            ", which this device cannot bind (it needs a multiple of %"
                            G_GUINT64_FORMAT ").", kernel->name, i, (guint64) t->offset,
                            (guint64) dev->caps.storage_offset_align);
              return;
            }
          r.bindings[i].buffer = t->block->buffer;
          r.bindings[i].offset = t->offset;
          r.bindings[i].range = t->size;
        }
    }
  /* Always push the whole range so no push constant is left undefined. */
  if (push_size > 0)
    memcpy (r.push, push, push_size);

  track (cmd, spans, access, n_bindings);
  /* a kernel still being built: from here to the submit, commands wait in a list */
  if (!cmd->deferring && !rv_kernel_ready (kernel))
    cmd->deferring = TRUE;
  record (cmd, &r);
  cmd->dispatches++;
  timestamp (cmd, kernel->name);
}

static void
emit_dispatch (RvCmd *cmd, const RvRecord *r)
{
  RvDevice *dev = cmd->dev;
  RvKernel *kernel = r->kernel;
  VkWriteDescriptorSet writes[16];
  VkDescriptorBufferInfo infos[16];
  for (guint i = 0; i < r->n_bindings; i++)
    {
      writes[i] = (VkWriteDescriptorSet) {
        .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
        .dstBinding = i,
        .descriptorCount = 1,
      };
      if (r->bindings[i].texel)
        {
          writes[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
          writes[i].pTexelBufferView = &r->bindings[i].view;
        }
      else
        {
          infos[i] = (VkDescriptorBufferInfo) { r->bindings[i].buffer, r->bindings[i].offset,
                                                r->bindings[i].range };
          writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
          writes[i].pBufferInfo = &infos[i];
        }
    }
  rv_vkCmdBindPipeline (cmd->cb, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->pipeline);
  if (dev->caps.push_descriptor)
    rv_vkCmdPushDescriptorSetKHR (cmd->cb, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->layout, 0,
                                  r->n_bindings, writes);
  else
    {
      VkDescriptorSet set = alloc_set (cmd, kernel);
      if (set == VK_NULL_HANDLE)
        return;
      for (guint i = 0; i < r->n_bindings; i++)
        writes[i].dstSet = set;
      rv_vkUpdateDescriptorSets (dev->device, r->n_bindings, writes, 0, NULL);
      rv_vkCmdBindDescriptorSets (cmd->cb, VK_PIPELINE_BIND_POINT_COMPUTE, kernel->layout, 0, 1,
                                  &set, 0, NULL);
    }
  if (r->has_push)
    rv_vkCmdPushConstants (cmd->cb, kernel->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, RV_PUSH_MAX,
                           r->push);
  rv_vkCmdDispatch (cmd->cb, r->gx, r->gy, r->gz);
}

static void
emit (RvCmd *cmd, const RvRecord *r)
{
  switch (r->kind)
    {
    case REC_BARRIER:
      {
        VkMemoryBarrier mb = {
          .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                           VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT,
          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                           VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        };
        VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
        rv_vkCmdPipelineBarrier (cmd->cb, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
        break;
      }
    case REC_TIMESTAMP:
      rv_vkCmdWriteTimestamp (cmd->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, cmd->queries, r->query);
      break;
    case REC_DISPATCH:
      emit_dispatch (cmd, r);
      break;
    case REC_COPY:
      rv_vkCmdCopyBuffer (cmd->cb, r->src, r->dst, 1, &r->region);
      break;
    case REC_FILL:
      rv_vkCmdFillBuffer (cmd->cb, r->dst, r->fill_offset, r->fill_size, r->fill_value);
      break;
    }
}

/* The kept commands, once every kernel they dispatch is built. */
static void
flush_deferred (RvCmd *cmd)
{
  for (guint i = 0; i < cmd->deferred->len && cmd->error == NULL; i++)
    {
      const RvRecord *r = &g_array_index (cmd->deferred, RvRecord, i);
      GError *error = NULL;
      if (r->kind == REC_DISPATCH && !rv_kernel_wait (cmd->dev, r->kernel, &error))
        rv_cmd_fail (cmd, error);
    }
  for (guint i = 0; i < cmd->deferred->len && cmd->error == NULL; i++)
    emit (cmd, &g_array_index (cmd->deferred, RvRecord, i));
  g_array_set_size (cmd->deferred, 0);
  cmd->deferring = FALSE;
}

/* Room for `bytes` in host-visible staging memory. */
static gboolean
staging_alloc (RvCmd *cmd, VkDeviceSize bytes, guint *chunk, VkDeviceSize *offset)
{
  bytes = (bytes + 255) / 256 * 256;
  while (cmd->staging_chunk < cmd->staging->len)
    {
      RvHostBuffer *hb = &g_array_index (cmd->staging, RvHostBuffer, cmd->staging_chunk);
      if (cmd->staging_used + bytes <= hb->size)
        {
          *chunk = cmd->staging_chunk;
          *offset = cmd->staging_used;
          cmd->staging_used += bytes;
          return TRUE;
        }
      cmd->staging_chunk++;
      cmd->staging_used = 0;
    }
  RvHostBuffer hb;
  GError *error = NULL;
  if (!_rv_host_buffer_init (cmd->dev, &hb, MAX (STAGING_CHUNK, bytes), &error))
    {
      rv_cmd_fail (cmd, error);
      return FALSE;
    }
  g_array_append_val (cmd->staging, hb);
  cmd->staging_chunk = cmd->staging->len - 1;
  cmd->staging_used = bytes;
  *chunk = cmd->staging_chunk;
  *offset = 0;
  return TRUE;
}

void
rv_cmd_upload (RvCmd *cmd, RvTensor *t, const void *data, gsize bytes)
{
  if (!begin (cmd) || bytes == 0)
    return;
  g_return_if_fail (bytes <= t->size);
  guint chunk;
  VkDeviceSize off;
  if (!staging_alloc (cmd, bytes, &chunk, &off))
    return;
  RvHostBuffer *hb = &g_array_index (cmd->staging, RvHostBuffer, chunk);
  memcpy (hb->mapped + off, data, bytes);
  RvSpan s = span_of (t, 0, bytes);
  RvAccess a = RV_WRITE;
  track (cmd, &s, &a, 1);
  RvRecord r = { .kind = REC_COPY, .src = hb->buffer, .dst = t->block->buffer,
                 .region = { off, t->offset, bytes } };
  record (cmd, &r);
}

void
rv_cmd_download (RvCmd *cmd, const RvTensor *t, void *dst, gsize bytes)
{
  if (!begin (cmd) || bytes == 0)
    return;
  g_return_if_fail (bytes <= t->size);
  RvDownload d = { dst, 0, 0, bytes };
  if (!staging_alloc (cmd, bytes, &d.chunk, &d.offset))
    return;
  RvHostBuffer *hb = &g_array_index (cmd->staging, RvHostBuffer, d.chunk);
  RvSpan s = span_of (t, 0, bytes);
  RvAccess a = RV_READ;
  track (cmd, &s, &a, 1);
  RvRecord r = { .kind = REC_COPY, .src = t->block->buffer, .dst = hb->buffer,
                 .region = { t->offset, d.offset, bytes } };
  record (cmd, &r);
  g_array_append_val (cmd->downloads, d);
}

void
rv_cmd_copy (RvCmd *cmd, RvTensor *dst, gsize dst_offset, const RvTensor *src, gsize src_offset,
             gsize bytes)
{
  if (!begin (cmd) || bytes == 0)
    return;
  g_return_if_fail (dst_offset + bytes <= dst->size && src_offset + bytes <= src->size);
  RvSpan s[2] = { span_of (src, src_offset, bytes), span_of (dst, dst_offset, bytes) };
  RvAccess a[2] = { RV_READ, RV_WRITE };
  track (cmd, s, a, 2);
  RvRecord r = { .kind = REC_COPY, .src = src->block->buffer, .dst = dst->block->buffer,
                 .region = { src->offset + src_offset, dst->offset + dst_offset, bytes } };
  record (cmd, &r);
}

void
rv_cmd_fill_u32 (RvCmd *cmd, RvTensor *t, guint32 value)
{
  if (!begin (cmd))
    return;
  RvSpan s = span_of (t, 0, t->size);
  RvAccess a = RV_WRITE;
  track (cmd, &s, &a, 1);
  RvRecord r = { .kind = REC_FILL, .dst = t->block->buffer, .fill_offset = t->offset,
                 .fill_size = t->size, .fill_value = value };
  record (cmd, &r);
}

static void
collect_profile (RvCmd *cmd)
{
  g_hash_table_remove_all (cmd->profile_last);
  cmd->last_gpu_ns = 0;
  if (!cmd->profiling || cmd->n_queries < 2)
    return;
  g_autofree guint64 *ts = g_new0 (guint64, cmd->n_queries);
  if (rv_vkGetQueryPoolResults (cmd->dev->device, cmd->queries, 0, cmd->n_queries,
                                cmd->n_queries * sizeof (guint64), ts, sizeof (guint64),
                                VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
    return;
  double period = cmd->dev->caps.timestamp_period;
  for (guint i = 1; i < cmd->n_queries; i++)
    {
      const char *name = g_ptr_array_index (cmd->query_names, i - 1);
      guint64 ns = (guint64) ((ts[i] - ts[i - 1]) * period);
      cmd->last_gpu_ns += ns;
      GHashTable *tables[2] = { cmd->profile_last, cmd->profile_total };
      for (guint j = 0; j < 2; j++)
        {
          guint64 *v = g_hash_table_lookup (tables[j], name);
          if (v == NULL)
            {
              v = g_new0 (guint64, 1);
              g_hash_table_insert (tables[j], g_strdup (name), v);
            }
          *v += ns;
        }
      guint64 *c = g_hash_table_lookup (cmd->profile_count, name);
      if (c == NULL)
        {
          c = g_new0 (guint64, 1);
          g_hash_table_insert (cmd->profile_count, g_strdup (name), c);
        }
      (*c)++;
    }
}

static void
reset_recording_state (RvCmd *cmd)
{
  RvDevice *dev = cmd->dev;
  cmd->recording = FALSE;
  g_array_set_size (cmd->deferred, 0);
  cmd->deferring = FALSE;
  rv_vkResetCommandPool (dev->device, cmd->pool, 0);
  g_array_set_size (cmd->reads, 0);
  g_array_set_size (cmd->writes, 0);
  g_array_set_size (cmd->downloads, 0);
  /* keep one staging chunk for the next round */
  for (guint i = 1; i < cmd->staging->len; i++)
    _rv_host_buffer_clear (dev, &g_array_index (cmd->staging, RvHostBuffer, i));
  if (cmd->staging->len > 1)
    g_array_set_size (cmd->staging, 1);
  cmd->staging_chunk = 0;
  cmd->staging_used = 0;
  for (guint i = 0; i < cmd->desc_pools->len; i++)
    rv_vkResetDescriptorPool (dev->device, g_array_index (cmd->desc_pools, VkDescriptorPool, i), 0);
  cmd->desc_pool_index = 0;
}

gboolean
rv_cmd_submit (RvCmd *cmd, GError **error)
{
  RvDevice *dev = cmd->dev;
  if (cmd->error == NULL && cmd->deferring)
    flush_deferred (cmd);
  if (cmd->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&cmd->error));
      if (cmd->recording)
        {
          rv_vkEndCommandBuffer (cmd->cb);
          reset_recording_state (cmd);
        }
      return FALSE;
    }
  if (!cmd->recording)
    return TRUE;

  /* make transfer writes visible to the host reads that follow the fence */
  VkMemoryBarrier mb = {
    .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
    .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
  };
  rv_vkCmdPipelineBarrier (cmd->cb, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                           VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);

  VkResult r = rv_vkEndCommandBuffer (cmd->cb);
  /* a lost device stays lost (REVERIE_FAULT_DEVICE_LOST pretends one is):
   * the work is dropped */
  if (r == VK_SUCCESS && (g_atomic_int_get (&dev->lost) || _rv_fault_injected (RV_FAULT_DEVICE_LOST)))
    r = VK_ERROR_DEVICE_LOST;
  else if (r == VK_SUCCESS)
    {
      VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd->cb,
      };
      g_mutex_lock (&dev->queue_lock);
      r = rv_vkQueueSubmit (dev->queue, 1, &si, cmd->fence);
      g_mutex_unlock (&dev->queue_lock);
    }
  if (r == VK_SUCCESS)
    {
      r = rv_vkWaitForFences (dev->device, 1, &cmd->fence, VK_TRUE, UINT64_MAX);
      rv_vkResetFences (dev->device, 1, &cmd->fence);
    }
  if (r == VK_ERROR_DEVICE_LOST)
    g_atomic_int_set (&dev->lost, TRUE);
  gboolean ok = _rv_vk_check (r, "running commands on the device", error);
  if (ok)
    {
      for (guint i = 0; i < cmd->downloads->len; i++)
        {
          RvDownload *d = &g_array_index (cmd->downloads, RvDownload, i);
          RvHostBuffer *hb = &g_array_index (cmd->staging, RvHostBuffer, d->chunk);
          memcpy (d->dst, hb->mapped + d->offset, d->bytes);
        }
      collect_profile (cmd);
    }
  reset_recording_state (cmd);
  return ok;
}

GHashTable *
rv_cmd_last_profile (RvCmd *cmd)
{
  return cmd->profiling ? cmd->profile_last : NULL;
}

guint64
rv_cmd_last_gpu_ns (RvCmd *cmd)
{
  return cmd->last_gpu_ns;
}
