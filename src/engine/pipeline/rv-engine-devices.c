/* rv-engine-devices.c: what reverie.h tells front ends about the Vulkan
 * devices (rv_engine_list_device_info), read from the vk layer's caps. */
#include "config.h"

#include "reverie.h"
#include "rv-device.h"

#include <string.h>

/* the public fields hold the Vulkan strings whole */
G_STATIC_ASSERT (sizeof ((RvDeviceInfo *) NULL)->name >= sizeof ((RvDeviceCaps *) NULL)->name);
G_STATIC_ASSERT (sizeof ((RvDeviceInfo *) NULL)->driver >= sizeof ((RvDeviceCaps *) NULL)->driver);

static RvDeviceType
device_type (VkPhysicalDeviceType t)
{
  switch (t)
    {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return RV_DEVICE_DISCRETE_GPU;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return RV_DEVICE_INTEGRATED_GPU;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return RV_DEVICE_VIRTUAL_GPU;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return RV_DEVICE_CPU;
    default: return RV_DEVICE_OTHER;
    }
}

static void
info_from_caps (const RvDeviceCaps *c, RvDeviceInfo *info)
{
  memset (info, 0, sizeof *info);
  g_strlcpy (info->name, c->name, sizeof info->name);
  g_strlcpy (info->driver, c->driver, sizeof info->driver);
  info->type = device_type (c->type);
  info->vulkan_major = VK_API_VERSION_MAJOR (c->api_version);
  info->vulkan_minor = VK_API_VERSION_MINOR (c->api_version);
  info->vulkan_patch = VK_API_VERSION_PATCH (c->api_version);
  info->memory_bytes = c->device_local_bytes;
  info->unified_memory = c->unified_memory;
  info->max_allocation_bytes = c->max_allocation;
  info->max_binding_bytes = c->max_storage_range;
  info->fp16 = c->fp16;
  info->storage16 = c->storage16;
  info->subgroup_ops = c->subgroup_arith;
  info->subgroup_size = c->subgroup_size;
  info->coopmat_nv = c->coopmat_nv;
  info->push_descriptor = c->push_descriptor;
  info->timestamps = c->timestamps;
}

GArray *
rv_engine_list_device_info (GError **error)
{
  g_autoptr (GArray) caps = rv_device_enumerate (error);
  if (caps == NULL)
    return NULL;
  GArray *list = g_array_sized_new (FALSE, TRUE, sizeof (RvDeviceInfo), caps->len);
  g_array_set_size (list, caps->len);
  for (guint i = 0; i < caps->len; i++)
    info_from_caps (&g_array_index (caps, RvDeviceCaps, i), &g_array_index (list, RvDeviceInfo, i));

  /* the one rv_engine_new (NULL, …) would open: open it and find its name */
  if (caps->len > 0)
    {
      g_autoptr (GError) ignored = NULL;
      g_autoptr (RvDevice) dev = rv_device_new (NULL, &ignored);
      if (dev != NULL)
        for (guint i = 0; i < list->len; i++)
          if (strcmp (g_array_index (list, RvDeviceInfo, i).name, rv_device_caps (dev)->name) == 0)
            {
              g_array_index (list, RvDeviceInfo, i).selected = TRUE;
              break;
            }
    }
  return list;
}
