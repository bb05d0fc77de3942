/* rv-vk.c: run-time loading of the Vulkan loader and its entry points. */
#include "rv-vk.h"
#include "rv-device.h"

#include <gmodule.h>

#define RV_VK_DEFINE(name) PFN_##name rv_##name;
RV_VK_GLOBAL_FUNCS (RV_VK_DEFINE)
RV_VK_INSTANCE_FUNCS (RV_VK_DEFINE)
RV_VK_INSTANCE_OPTIONAL_FUNCS (RV_VK_DEFINE)
RV_VK_DEVICE_FUNCS (RV_VK_DEFINE)
RV_VK_DEVICE_OPTIONAL_FUNCS (RV_VK_DEFINE)
#undef RV_VK_DEFINE

static PFN_vkGetInstanceProcAddr get_instance_proc;

gboolean
rv_vk_load_global (GError **error)
{
  static gsize once = 0;
  static GModule *module;
  static char *failure;

  if (g_once_init_enter (&once))
    {
      const char *names[] = { "libvulkan.so.1", "libvulkan.so", "libvulkan.1.dylib", "vulkan-1.dll" };
      for (guint i = 0; i < G_N_ELEMENTS (names) && module == NULL; i++)
        module = g_module_open (names[i], G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
      if (module == NULL)
        failure = g_strdup ("The Vulkan loader (libvulkan.so.1) is not installed. Install it "
                            "and a Vulkan driver, for example with "
                            "“apt-get install libvulkan1 mesa-vulkan-drivers”.");
      else if (!g_module_symbol (module, "vkGetInstanceProcAddr", (gpointer *) &get_instance_proc))
        failure = g_strdup ("The Vulkan loader found on this system has no vkGetInstanceProcAddr; "
                            "reinstall libvulkan1.");
      else
        {
#define RV_VK_LOAD(name) rv_##name = (PFN_##name) get_instance_proc (NULL, #name);
          RV_VK_GLOBAL_FUNCS (RV_VK_LOAD)
#undef RV_VK_LOAD
          if (rv_vkCreateInstance == NULL)
            failure = g_strdup ("The Vulkan loader does not provide vkCreateInstance.");
        }
      g_once_init_leave (&once, 1);
    }

  if (failure != NULL)
    {
      g_set_error_literal (error, RV_ERROR, RV_ERROR_NO_VULKAN, failure);
      return FALSE;
    }
  return TRUE;
}

void
rv_vk_load_instance (VkInstance instance)
{
#define RV_VK_LOAD(name) rv_##name = (PFN_##name) get_instance_proc (instance, #name);
  RV_VK_INSTANCE_FUNCS (RV_VK_LOAD)
  RV_VK_INSTANCE_OPTIONAL_FUNCS (RV_VK_LOAD)
  /* Device entry points through the instance: the loader dispatches them to
   * whichever driver owns the device, so several devices can coexist. */
  RV_VK_DEVICE_FUNCS (RV_VK_LOAD)
  RV_VK_DEVICE_OPTIONAL_FUNCS (RV_VK_LOAD)
#undef RV_VK_LOAD
}

const char *
rv_vk_result_string (VkResult r)
{
  switch (r)
    {
    case VK_SUCCESS: return "success";
    case VK_NOT_READY: return "not ready";
    case VK_TIMEOUT: return "timeout";
    case VK_INCOMPLETE: return "incomplete";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
    case VK_ERROR_INITIALIZATION_FAILED: return "initialization failed";
    case VK_ERROR_DEVICE_LOST: return "device lost";
    case VK_ERROR_MEMORY_MAP_FAILED: return "memory map failed";
    case VK_ERROR_LAYER_NOT_PRESENT: return "layer not present";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "extension not present";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "feature not present";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "incompatible driver";
    case VK_ERROR_TOO_MANY_OBJECTS: return "too many objects";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "format not supported";
    case VK_ERROR_FRAGMENTED_POOL: return "fragmented pool";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "out of pool memory";
    default: return "unknown error";
    }
}
