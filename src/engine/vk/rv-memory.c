/* rv-memory.c: device memory suballocation and tensors.
 *
 * Device memory comes in blocks (one VkDeviceMemory bound to one VkBuffer,
 * at most maxMemoryAllocationSize); tensors are first-fit ranges inside a
 * block, aligned to 256 bytes. Freed ranges are coalesced and reused at once:
 * the command stream orders a reuse after the earlier readers with a barrier.
 * Empty blocks stay until rv_device_trim(), since a recorded but unsubmitted
 * command buffer may still name their buffer. */
#include "rv-device-private.h"
#include "rv-fault.h"

#include <string.h>

#define RV_ALIGN 256

gsize
rv_dtype_size (RvDType dtype)
{
  switch (dtype)
    {
    case RV_DTYPE_F16: return 2;
    case RV_DTYPE_F32:
    case RV_DTYPE_I32:
    default: return 4;
    }
}

const char *
rv_dtype_name (RvDType dtype)
{
  switch (dtype)
    {
    case RV_DTYPE_F16: return "f16";
    case RV_DTYPE_I32: return "i32";
    case RV_DTYPE_F32:
    default: return "f32";
    }
}

static VkDeviceSize
align_up (VkDeviceSize v, VkDeviceSize a)
{
  return (v + a - 1) / a * a;
}

static RvBlock *
block_new (RvDevice *dev, VkDeviceSize size, GError **error)
{
  RvBlock *b = g_new0 (RvBlock, 1);
  b->size = size;
  VkBufferCreateInfo bi = {
    .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
    .size = size,
    .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
             VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
    .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkResult r = rv_vkCreateBuffer (dev->device, &bi, NULL, &b->buffer);
  if (r == VK_SUCCESS)
    {
      VkMemoryRequirements req;
      rv_vkGetBufferMemoryRequirements (dev->device, b->buffer, &req);
      VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = dev->device_memory_type,
      };
      if (!(req.memoryTypeBits & (1u << dev->device_memory_type)))
        r = VK_ERROR_FEATURE_NOT_PRESENT;
      else
        r = rv_vkAllocateMemory (dev->device, &ai, NULL, &b->memory);
      if (r == VK_SUCCESS)
        r = rv_vkBindBufferMemory (dev->device, b->buffer, b->memory, 0);
    }
  if (r != VK_SUCCESS)
    {
      if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                     "The graphics device ran out of memory: %.0f MiB more were needed with "
                     "%.0f MiB already in use (the device has %.0f MiB). Try a smaller image "
                     "size or fewer images at once, or close other programs that use the GPU.",
                     size / 1048576.0, dev->mem_allocated / 1048576.0,
                     dev->caps.device_local_bytes / 1048576.0);
      else
        _rv_vk_check (r, "allocating device memory", error);
      if (b->memory != VK_NULL_HANDLE)
        rv_vkFreeMemory (dev->device, b->memory, NULL);
      if (b->buffer != VK_NULL_HANDLE)
        rv_vkDestroyBuffer (dev->device, b->buffer, NULL);
      g_free (b);
      return NULL;
    }
  b->free_ranges = g_array_new (FALSE, FALSE, sizeof (RvRange));
  RvRange all = { 0, size };
  g_array_append_val (b->free_ranges, all);
  dev->mem_allocated += size;
  return b;
}

static void
block_free (RvDevice *dev, RvBlock *b)
{
  if (b->view_f32 != VK_NULL_HANDLE)
    rv_vkDestroyBufferView (dev->device, b->view_f32, NULL);
  if (b->view_f16 != VK_NULL_HANDLE)
    rv_vkDestroyBufferView (dev->device, b->view_f16, NULL);
  rv_vkDestroyBuffer (dev->device, b->buffer, NULL);
  rv_vkFreeMemory (dev->device, b->memory, NULL);
  dev->mem_allocated -= b->size;
  g_array_unref (b->free_ranges);
  g_free (b);
}

void
_rv_device_free_blocks (RvDevice *dev)
{
  for (guint i = 0; i < dev->blocks->len; i++)
    block_free (dev, g_ptr_array_index (dev->blocks, i));
  g_ptr_array_set_size (dev->blocks, 0);
}

void
rv_device_trim (RvDevice *dev)
{
  g_mutex_lock (&dev->mem_lock);
  for (guint i = dev->blocks->len; i-- > 0;)
    {
      RvBlock *b = g_ptr_array_index (dev->blocks, i);
      if (b->used == 0)
        {
          block_free (dev, b);
          g_ptr_array_remove_index (dev->blocks, i);
        }
    }
  g_mutex_unlock (&dev->mem_lock);
}

static gboolean
block_take (RvBlock *b, VkDeviceSize size, VkDeviceSize *offset)
{
  for (guint i = 0; i < b->free_ranges->len; i++)
    {
      RvRange *r = &g_array_index (b->free_ranges, RvRange, i);
      if (r->size < size)
        continue;
      *offset = r->offset;
      r->offset += size;
      r->size -= size;
      if (r->size == 0)
        g_array_remove_index (b->free_ranges, i);
      b->used += size;
      return TRUE;
    }
  return FALSE;
}

static void
block_give (RvBlock *b, VkDeviceSize offset, VkDeviceSize size)
{
  GArray *fr = b->free_ranges;
  guint i = 0;
  while (i < fr->len && g_array_index (fr, RvRange, i).offset < offset)
    i++;
  RvRange nr = { offset, size };
  g_array_insert_val (fr, i, nr);
  /* merge with the next, then with the previous */
  if (i + 1 < fr->len)
    {
      RvRange *a = &g_array_index (fr, RvRange, i), *n = &g_array_index (fr, RvRange, i + 1);
      if (a->offset + a->size == n->offset)
        {
          a->size += n->size;
          g_array_remove_index (fr, i + 1);
        }
    }
  if (i > 0)
    {
      RvRange *p = &g_array_index (fr, RvRange, i - 1), *a = &g_array_index (fr, RvRange, i);
      if (p->offset + p->size == a->offset)
        {
          p->size += a->size;
          g_array_remove_index (fr, i);
        }
    }
  b->used -= size;
}

RvTensor *
rv_tensor_new (RvDevice *dev, RvDType dtype, int ndim, const gint64 *shape, GError **error)
{
  g_return_val_if_fail (ndim >= 1 && ndim <= RV_MAX_DIMS, NULL);
  gint64 numel = 1;
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] <= 0 || numel > G_MAXINT64 / 16 / shape[i])
        {
          g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                       "Invalid tensor shape (dimension %d is %" G_GINT64_FORMAT ")", i, shape[i]);
          return NULL;
        }
      numel *= shape[i];
    }
  VkDeviceSize size = align_up ((VkDeviceSize) numel * rv_dtype_size (dtype), RV_ALIGN);

  if (_rv_fault_injected (RV_FAULT_ALLOC))
    {
      g_autofree char *more = g_format_size (size);
      g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                   "The graphics device ran out of memory: %s more were needed (injected "
                   "fault). Try a smaller image size or fewer images at once.", more);
      return NULL;
    }
  if (size > dev->caps.max_allocation)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                   "A tensor of %.0f MiB is larger than the largest allocation this device "
                   "allows (%.0f MiB). Try a smaller image size or fewer images at once.",
                   size / 1048576.0, dev->caps.max_allocation / 1048576.0);
      return NULL;
    }

  g_mutex_lock (&dev->mem_lock);
  RvBlock *block = NULL;
  VkDeviceSize offset = 0;
  for (guint i = 0; i < dev->blocks->len && block == NULL; i++)
    if (block_take (g_ptr_array_index (dev->blocks, i), size, &offset))
      block = g_ptr_array_index (dev->blocks, i);
  if (block == NULL)
    {
      VkDeviceSize bs = MAX (dev->block_size, size);
      RvBlock *nb = block_new (dev, bs, NULL);
      if (nb == NULL)
        nb = block_new (dev, size, error);   /* a block just big enough, or the error */
      if (nb == NULL)
        {
          g_mutex_unlock (&dev->mem_lock);
          return NULL;
        }
      g_ptr_array_add (dev->blocks, nb);
      block_take (nb, size, &offset);
      block = nb;
    }
  dev->mem_in_use += size;
  dev->mem_peak = MAX (dev->mem_peak, dev->mem_in_use);
  g_mutex_unlock (&dev->mem_lock);

  RvTensor *t = g_new0 (RvTensor, 1);
  t->dev = dev;
  t->block = block;
  t->offset = offset;
  t->size = size;
  t->dtype = dtype;
  t->ndim = ndim;
  memcpy (t->shape, shape, ndim * sizeof (gint64));
  return t;
}

RvTensor *
rv_tensor_new_4d (RvDevice *dev, RvDType dtype, gint64 d0, gint64 d1, gint64 d2, gint64 d3,
                  GError **error)
{
  gint64 shape[4] = { d0, d1, d2, d3 };
  int ndim = 4;
  /* trailing zeros mean "fewer dimensions" */
  while (ndim > 1 && shape[ndim - 1] == 0)
    ndim--;
  return rv_tensor_new (dev, dtype, ndim, shape, error);
}

void
rv_tensor_free (RvTensor *t)
{
  if (t == NULL)
    return;
  RvDevice *dev = t->dev;
  g_mutex_lock (&dev->mem_lock);
  block_give (t->block, t->offset, t->size);
  dev->mem_in_use -= t->size;
  g_mutex_unlock (&dev->mem_lock);
  g_free (t);
}

gint64
rv_tensor_numel (const RvTensor *t)
{
  gint64 n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

gsize
rv_tensor_nbytes (const RvTensor *t)
{
  return (gsize) rv_tensor_numel (t) * rv_dtype_size (t->dtype);
}

gboolean
rv_tensor_same_shape (const RvTensor *a, const RvTensor *b)
{
  if (a->ndim != b->ndim)
    return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return FALSE;
  return TRUE;
}

void
rv_tensor_reshape (RvTensor *t, int ndim, const gint64 *shape)
{
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  g_return_if_fail (ndim >= 1 && ndim <= RV_MAX_DIMS && n == rv_tensor_numel (t));
  t->ndim = ndim;
  memcpy (t->shape, shape, ndim * sizeof (gint64));
}

RvTensor
rv_tensor_part (const RvTensor *t, gint64 i, int ndim, const gint64 *shape)
{
  RvTensor v = *t;
  g_return_val_if_fail (ndim >= 1 && ndim <= RV_MAX_DIMS, v);
  v.ndim = ndim;
  memcpy (v.shape, shape, ndim * sizeof (gint64));
  v.size = rv_tensor_nbytes (&v);
  g_return_val_if_fail ((gint64) ((i + 1) * v.size) <= (gint64) t->size, v);
  v.offset += i * v.size;
  return v;
}

char *
rv_tensor_describe (const RvTensor *t)
{
  GString *s = g_string_new (rv_dtype_name (t->dtype));
  g_string_append (s, " (");
  for (int i = 0; i < t->ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", t->shape[i]);
  g_string_append (s, ")");
  return g_string_free (s, FALSE);
}

guint32
rv_tensor_texel_offset (const RvTensor *t)
{
  return (guint32) (t->offset / (4 * rv_dtype_size (t->dtype)));
}

VkBufferView
_rv_block_view (RvDevice *dev, RvBlock *block, RvDType dtype, GError **error)
{
  VkBufferView *slot = dtype == RV_DTYPE_F16 ? &block->view_f16 : &block->view_f32;
  g_mutex_lock (&dev->mem_lock);
  if (*slot == VK_NULL_HANDLE)
    {
      VkDeviceSize texel = 4 * rv_dtype_size (dtype);
      VkDeviceSize range = MIN (block->size, (VkDeviceSize) dev->caps.max_texel_elements * texel);
      VkBufferViewCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
        .buffer = block->buffer,
        .format = dtype == RV_DTYPE_F16 ? VK_FORMAT_R16G16B16A16_SFLOAT
                                        : dtype == RV_DTYPE_I32 ? VK_FORMAT_R32G32B32A32_SINT
                                                                : VK_FORMAT_R32G32B32A32_SFLOAT,
        .offset = 0,
        .range = range / texel * texel,
      };
      VkResult r = rv_vkCreateBufferView (dev->device, &ci, NULL, slot);
      if (!_rv_vk_check (r, "creating a texel buffer view", error))
        *slot = VK_NULL_HANDLE;
    }
  VkBufferView v = *slot;
  g_mutex_unlock (&dev->mem_lock);
  return v;
}

void
rv_device_memory_stats (RvDevice *dev, guint64 *in_use, guint64 *peak, guint64 *blocks)
{
  g_mutex_lock (&dev->mem_lock);
  if (in_use)
    *in_use = dev->mem_in_use;
  if (peak)
    *peak = dev->mem_peak;
  if (blocks)
    *blocks = dev->mem_allocated;
  g_mutex_unlock (&dev->mem_lock);
}

gboolean
rv_device_is_lost (RvDevice *dev)
{
  return g_atomic_int_get (&dev->lost);
}

void
rv_device_reset_peak (RvDevice *dev)
{
  g_mutex_lock (&dev->mem_lock);
  dev->mem_peak = dev->mem_in_use;
  g_mutex_unlock (&dev->mem_lock);
}

gboolean
_rv_host_buffer_init (RvDevice *dev, RvHostBuffer *hb, VkDeviceSize size, GError **error)
{
  memset (hb, 0, sizeof *hb);
  hb->size = size;
  VkBufferCreateInfo bi = {
    .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
    .size = size,
    .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
    .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkResult r = rv_vkCreateBuffer (dev->device, &bi, NULL, &hb->buffer);
  if (r == VK_SUCCESS)
    {
      VkMemoryRequirements req;
      rv_vkGetBufferMemoryRequirements (dev->device, hb->buffer, &req);
      VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = dev->host_memory_type,
      };
      r = rv_vkAllocateMemory (dev->device, &ai, NULL, &hb->memory);
      if (r == VK_SUCCESS)
        r = rv_vkBindBufferMemory (dev->device, hb->buffer, hb->memory, 0);
      if (r == VK_SUCCESS)
        r = rv_vkMapMemory (dev->device, hb->memory, 0, VK_WHOLE_SIZE, 0, (void **) &hb->mapped);
    }
  if (r != VK_SUCCESS)
    {
      _rv_vk_check (r, "allocating a staging buffer", error);
      _rv_host_buffer_clear (dev, hb);
      return FALSE;
    }
  return TRUE;
}

void
_rv_host_buffer_clear (RvDevice *dev, RvHostBuffer *hb)
{
  if (hb->memory != VK_NULL_HANDLE)
    rv_vkFreeMemory (dev->device, hb->memory, NULL);
  if (hb->buffer != VK_NULL_HANDLE)
    rv_vkDestroyBuffer (dev->device, hb->buffer, NULL);
  memset (hb, 0, sizeof *hb);
}
