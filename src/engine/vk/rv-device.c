/* rv-device.c: Vulkan instance, device choice and feature detection, kernels
 * (compute pipelines from the embedded SPIR-V, built once per key by whichever
 * thread needs them first), the on-disk pipeline cache and the kernel lists
 * that let the next process build its kernels in the background. */
#include "config.h"

#include "rv-device-private.h"
#include "rv-shaders.h"

#include <gio/gio.h>
#include <string.h>

G_DEFINE_QUARK (rv-engine-error-quark, rv_engine_error)

/* ---- the process-wide instance ---- */

static GMutex instance_lock;
static VkInstance instance;
static guint instance_users;
static VkDebugUtilsMessengerEXT messenger;
static gint validation_messages;

guint
rv_validation_message_count (void)
{
  return (guint) g_atomic_int_get (&validation_messages);
}

static VkBool32 VKAPI_PTR
debug_callback (VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                VkDebugUtilsMessageTypeFlagsEXT types,
                const VkDebugUtilsMessengerCallbackDataEXT *data,
                void *user_data)
{
  if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
    {
      g_atomic_int_inc (&validation_messages);
      g_printerr ("Vulkan validation: %s\n", data->pMessage);
    }
  return VK_FALSE;
}

gboolean
_rv_vk_check (VkResult r, const char *what, GError **error)
{
  if (r == VK_SUCCESS)
    return TRUE;
  switch (r)
    {
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
      g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                   "The graphics device ran out of memory (%s). Try a smaller image size or "
                   "fewer images at once, or close other programs that use the GPU.", what);
      break;
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      g_set_error (error, RV_ERROR, RV_ERROR_OUT_OF_MEMORY,
                   "The system ran out of memory (%s). Try a smaller image size or fewer images.",
                   what);
      break;
    case VK_ERROR_DEVICE_LOST:
      g_set_error (error, RV_ERROR, RV_ERROR_DEVICE_LOST,
                   "The graphics device was lost (%s): the driver reset it or it crashed. "
                   "Try again; if it keeps happening, update the graphics driver or choose "
                   "another device.", what);
      break;
    default:
      g_set_error (error, RV_ERROR, RV_ERROR_VULKAN,
                   "Vulkan failed: %s (%s, code %d)", what, rv_vk_result_string (r), (int) r);
    }
  return FALSE;
}

static gboolean
has_layer (const char *name)
{
  guint32 n = 0;
  rv_vkEnumerateInstanceLayerProperties (&n, NULL);
  g_autofree VkLayerProperties *props = g_new0 (VkLayerProperties, MAX (n, 1));
  rv_vkEnumerateInstanceLayerProperties (&n, props);
  for (guint i = 0; i < n; i++)
    if (strcmp (props[i].layerName, name) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
has_instance_extension (const char *name)
{
  guint32 n = 0;
  rv_vkEnumerateInstanceExtensionProperties (NULL, &n, NULL);
  g_autofree VkExtensionProperties *props = g_new0 (VkExtensionProperties, MAX (n, 1));
  rv_vkEnumerateInstanceExtensionProperties (NULL, &n, props);
  for (guint i = 0; i < n; i++)
    if (strcmp (props[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

static VkInstance
instance_acquire (GError **error)
{
  g_mutex_lock (&instance_lock);
  if (instance != VK_NULL_HANDLE)
    {
      instance_users++;
      g_mutex_unlock (&instance_lock);
      return instance;
    }

  if (!rv_vk_load_global (error))
    {
      g_mutex_unlock (&instance_lock);
      return VK_NULL_HANDLE;
    }

  guint32 version = VK_API_VERSION_1_0;
  if (rv_vkEnumerateInstanceVersion != NULL)
    rv_vkEnumerateInstanceVersion (&version);
  if (version < VK_API_VERSION_1_2)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_NO_VULKAN,
                   "The Vulkan loader supports version %u.%u; Reverie needs Vulkan 1.2. "
                   "Update libvulkan1.", VK_API_VERSION_MAJOR (version),
                   VK_API_VERSION_MINOR (version));
      g_mutex_unlock (&instance_lock);
      return VK_NULL_HANDLE;
    }

  const char *layers[1];
  guint n_layers = 0;
  const char *exts[2];
  guint n_exts = 0;
  gboolean validate = g_strcmp0 (g_getenv ("REVERIE_VALIDATION"), "1") == 0;
  if (validate)
    {
      if (has_layer ("VK_LAYER_KHRONOS_validation"))
        layers[n_layers++] = "VK_LAYER_KHRONOS_validation";
      else
        g_printerr ("REVERIE_VALIDATION=1 but VK_LAYER_KHRONOS_validation is not installed "
                    "(apt-get install vulkan-validationlayers)\n");
      if (has_instance_extension (VK_EXT_DEBUG_UTILS_EXTENSION_NAME))
        exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    }
  if (has_instance_extension (VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME))
    exts[n_exts++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;

  VkApplicationInfo app = {
    .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
    .pApplicationName = "Reverie",
    .applicationVersion = VK_MAKE_API_VERSION (0, 0, 1, 0),
    .pEngineName = "reverie-engine",
    .apiVersion = VK_API_VERSION_1_2,
  };
  VkInstanceCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
    .pApplicationInfo = &app,
    .enabledLayerCount = n_layers,
    .ppEnabledLayerNames = layers,
    .enabledExtensionCount = n_exts,
    .ppEnabledExtensionNames = exts,
  };
  for (guint i = 0; i < n_exts; i++)
    if (strcmp (exts[i], VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME) == 0)
      ci.flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;

  VkResult r = rv_vkCreateInstance (&ci, NULL, &instance);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_NO_VULKAN,
                   "No Vulkan driver is installed. Install one for your GPU, or Mesa's "
                   "CPU driver: “apt-get install mesa-vulkan-drivers”.");
      g_mutex_unlock (&instance_lock);
      return VK_NULL_HANDLE;
    }
  if (!_rv_vk_check (r, "creating the Vulkan instance", error))
    {
      instance = VK_NULL_HANDLE;
      g_mutex_unlock (&instance_lock);
      return VK_NULL_HANDLE;
    }
  rv_vk_load_instance (instance);

  if (validate && rv_vkCreateDebugUtilsMessengerEXT != NULL && n_exts > 0)
    {
      VkDebugUtilsMessengerCreateInfoEXT mi = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_callback,
      };
      rv_vkCreateDebugUtilsMessengerEXT (instance, &mi, NULL, &messenger);
    }

  instance_users = 1;
  g_mutex_unlock (&instance_lock);
  return instance;
}

static void
instance_release (void)
{
  g_mutex_lock (&instance_lock);
  if (--instance_users == 0)
    {
      if (messenger != VK_NULL_HANDLE)
        rv_vkDestroyDebugUtilsMessengerEXT (instance, messenger, NULL);
      messenger = VK_NULL_HANDLE;
      rv_vkDestroyInstance (instance, NULL);
      instance = VK_NULL_HANDLE;
    }
  g_mutex_unlock (&instance_lock);
}

/* ---- physical devices ---- */

static int
type_rank (VkPhysicalDeviceType t)
{
  switch (t)
    {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

static gboolean
has_device_extension (VkPhysicalDevice pd, const char *name)
{
  guint32 n = 0;
  rv_vkEnumerateDeviceExtensionProperties (pd, NULL, &n, NULL);
  g_autofree VkExtensionProperties *props = g_new0 (VkExtensionProperties, MAX (n, 1));
  rv_vkEnumerateDeviceExtensionProperties (pd, NULL, &n, props);
  for (guint i = 0; i < n; i++)
    if (strcmp (props[i].extensionName, name) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
coopmat_nv_usable (VkPhysicalDevice pd)
{
  if (rv_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV == NULL ||
      !has_device_extension (pd, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME))
    return FALSE;
  guint32 n = 0;
  rv_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV (pd, &n, NULL);
  if (n == 0)
    return FALSE;
  g_autofree VkCooperativeMatrixPropertiesNV *props = g_new0 (VkCooperativeMatrixPropertiesNV, n);
  for (guint i = 0; i < n; i++)
    props[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
  rv_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV (pd, &n, props);
  for (guint i = 0; i < n; i++)
    if (props[i].MSize == 16 && props[i].NSize == 16 && props[i].KSize == 16 &&
        props[i].AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
        props[i].BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
        props[i].CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
        props[i].DType == VK_COMPONENT_TYPE_FLOAT32_NV &&
        props[i].scope == VK_SCOPE_SUBGROUP_NV)
      return TRUE;
  return FALSE;
}

static void
read_caps (VkPhysicalDevice pd, RvDeviceCaps *caps)
{
  VkPhysicalDeviceSubgroupProperties sub = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES };
  VkPhysicalDeviceMaintenance3Properties m3 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &sub };
  VkPhysicalDeviceDriverProperties drv = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, .pNext = &m3 };
  VkPhysicalDeviceProperties2 props = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &drv };
  rv_vkGetPhysicalDeviceProperties2 (pd, &props);

  VkPhysicalDeviceVulkan11Features f11 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES };
  VkPhysicalDeviceVulkan12Features f12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &f11 };
  VkPhysicalDeviceSubgroupSizeControlFeaturesEXT ssc = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT, .pNext = &f12 };
  VkPhysicalDeviceFeatures2 feats = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &ssc };
  gboolean has_ssc = has_device_extension (pd, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME) ||
                     props.properties.apiVersion >= VK_API_VERSION_1_3;
  if (!has_ssc)
    feats.pNext = &f12;
  rv_vkGetPhysicalDeviceFeatures2 (pd, &feats);

  memset (caps, 0, sizeof *caps);
  g_strlcpy (caps->name, props.properties.deviceName, sizeof caps->name);
  if (drv.driverName[0])
    g_snprintf (caps->driver, sizeof caps->driver, "%s %s", drv.driverName, drv.driverInfo);
  else
    g_snprintf (caps->driver, sizeof caps->driver, "driver version 0x%x",
                props.properties.driverVersion);
  caps->type = props.properties.deviceType;
  caps->vendor_id = props.properties.vendorID;
  caps->api_version = props.properties.apiVersion;
  caps->max_allocation = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1u << 30);
  caps->max_storage_range = props.properties.limits.maxStorageBufferRange;
  caps->storage_offset_align = MAX (1, props.properties.limits.minStorageBufferOffsetAlignment);
  caps->max_texel_elements = props.properties.limits.maxTexelBufferElements;
  memcpy (caps->max_workgroup_count, props.properties.limits.maxComputeWorkGroupCount,
          sizeof caps->max_workgroup_count);
  caps->max_workgroup_invocations = props.properties.limits.maxComputeWorkGroupInvocations;
  caps->max_shared_memory = props.properties.limits.maxComputeSharedMemorySize;
  caps->subgroup_size = sub.subgroupSize;
  caps->fp16 = f12.shaderFloat16;
  caps->storage16 = f11.storageBuffer16BitAccess;
  VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT |
                                VK_SUBGROUP_FEATURE_BALLOT_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
  caps->subgroup_arith = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                         (sub.supportedOperations & need) == need;
  caps->subgroup_size_control = has_ssc && ssc.subgroupSizeControl;
  caps->coopmat_nv = caps->fp16 && caps->storage16 && coopmat_nv_usable (pd);
  caps->push_descriptor = has_device_extension (pd, VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME);
  caps->timestamps = props.properties.limits.timestampComputeAndGraphics;
  caps->timestamp_period = props.properties.limits.timestampPeriod;

  VkPhysicalDeviceMemoryProperties mp;
  rv_vkGetPhysicalDeviceMemoryProperties (pd, &mp);
  guint32 best_heap = 0;
  for (guint32 i = 0; i < mp.memoryHeapCount; i++)
    if ((mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
        mp.memoryHeaps[i].size > caps->device_local_bytes)
      {
        caps->device_local_bytes = mp.memoryHeaps[i].size;
        best_heap = i;
      }
  for (guint32 i = 0; i < mp.memoryTypeCount; i++)
    {
      VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                   VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                   VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
      if ((mp.memoryTypes[i].propertyFlags & want) == want && mp.memoryTypes[i].heapIndex == best_heap)
        caps->unified_memory = TRUE;
    }
}

static GArray *
rv_device_enumerate_physical (GPtrArray **physical_out, GError **error)
{
  VkInstance inst = instance_acquire (error);
  if (inst == VK_NULL_HANDLE)
    return NULL;

  guint32 n = 0;
  VkResult r = rv_vkEnumeratePhysicalDevices (inst, &n, NULL);
  g_autofree VkPhysicalDevice *pds = g_new0 (VkPhysicalDevice, MAX (n, 1));
  if (r == VK_SUCCESS || r == VK_INCOMPLETE)
    r = rv_vkEnumeratePhysicalDevices (inst, &n, pds);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE)
    {
      _rv_vk_check (r, "listing Vulkan devices", error);
      instance_release ();
      return NULL;
    }

  GArray *list = g_array_new (FALSE, TRUE, sizeof (RvDeviceCaps));
  GPtrArray *phys = g_ptr_array_new ();
  for (guint i = 0; i < n; i++)
    {
      RvDeviceCaps caps;
      read_caps (pds[i], &caps);
      if (caps.api_version < VK_API_VERSION_1_2)
        continue;
      /* stable insertion by type rank */
      guint pos = list->len;
      for (guint j = 0; j < list->len; j++)
        if (type_rank (caps.type) < type_rank (g_array_index (list, RvDeviceCaps, j).type))
          {
            pos = j;
            break;
          }
      g_array_insert_val (list, pos, caps);
      g_ptr_array_insert (phys, pos, pds[i]);
    }

  if (physical_out != NULL)
    *physical_out = phys;
  else
    g_ptr_array_unref (phys);
  /* The caller of this private variant keeps the instance reference. */
  if (physical_out == NULL)
    instance_release ();
  return list;
}

GArray *
rv_device_enumerate (GError **error)
{
  return rv_device_enumerate_physical (NULL, error);
}

static guint32
find_memory_type (VkPhysicalDevice pd, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid,
                  gboolean largest_heap)
{
  VkPhysicalDeviceMemoryProperties mp;
  rv_vkGetPhysicalDeviceMemoryProperties (pd, &mp);
  guint32 best = G_MAXUINT32;
  VkDeviceSize best_size = 0;
  for (guint32 i = 0; i < mp.memoryTypeCount; i++)
    {
      VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
      if ((f & want) != want || (f & avoid) != 0)
        continue;
      VkDeviceSize hs = mp.memoryHeaps[mp.memoryTypes[i].heapIndex].size;
      if (best == G_MAXUINT32 || (largest_heap && hs > best_size))
        {
          best = i;
          best_size = hs;
        }
    }
  return best;
}

/* ---- logical device ---- */

static void
pipeline_cache_path (RvDevice *dev)
{
  VkPhysicalDeviceProperties p;
  rv_vkGetPhysicalDeviceProperties (dev->physical, &p);
  memcpy (dev->pipeline_uuid, p.pipelineCacheUUID, VK_UUID_SIZE);
  g_autofree char *hex = g_malloc0 (VK_UUID_SIZE * 2 + 1);
  for (guint i = 0; i < VK_UUID_SIZE; i++)
    g_snprintf (hex + 2 * i, 3, "%02x", p.pipelineCacheUUID[i]);
  dev->cache_stem = g_strdup_printf ("%04x-%04x-%s", p.vendorID, p.deviceID, hex);
  g_autofree char *name = g_strdup_printf ("pipelines-%s.bin", dev->cache_stem);
  dev->pipeline_cache_path = g_build_filename (g_get_user_cache_dir (), "reverie", name, NULL);
}

static void
pipeline_cache_load (RvDevice *dev)
{
  pipeline_cache_path (dev);
  g_autofree char *data = NULL;
  gsize len = 0;
  if (g_strcmp0 (g_getenv ("REVERIE_PIPELINE_CACHE"), "0") == 0 ||
      !g_file_get_contents (dev->pipeline_cache_path, &data, &len, NULL))
    len = 0;
  /* The driver checks the header (vendor, device, UUID) and ignores a stale cache. */
  VkPipelineCacheCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
    .initialDataSize = len,
    .pInitialData = len ? data : NULL,
  };
  if (rv_vkCreatePipelineCache (dev->device, &ci, NULL, &dev->pipeline_cache) != VK_SUCCESS)
    {
      ci.initialDataSize = 0;
      ci.pInitialData = NULL;
      if (rv_vkCreatePipelineCache (dev->device, &ci, NULL, &dev->pipeline_cache) != VK_SUCCESS)
        dev->pipeline_cache = VK_NULL_HANDLE;
    }
}

static void
pipeline_cache_save (RvDevice *dev)
{
  if (dev->pipeline_cache == VK_NULL_HANDLE || !dev->pipeline_cache_dirty ||
      g_strcmp0 (g_getenv ("REVERIE_PIPELINE_CACHE"), "0") == 0)
    return;
  gsize len = 0;
  if (rv_vkGetPipelineCacheData (dev->device, dev->pipeline_cache, &len, NULL) != VK_SUCCESS || len == 0)
    return;
  g_autofree char *data = g_malloc (len);
  if (rv_vkGetPipelineCacheData (dev->device, dev->pipeline_cache, &len, data) != VK_SUCCESS)
    return;
  g_autofree char *dir = g_path_get_dirname (dev->pipeline_cache_path);
  g_mkdir_with_parents (dir, 0700);
  /* g_file_set_contents writes a temporary file and renames it: atomic. */
  g_file_set_contents (dev->pipeline_cache_path, data, len, NULL);
}

static gboolean
select_index (GArray *list, const char *selector, guint *index, GError **error)
{
  if (list->len == 0)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_NO_DEVICE,
                   "No Vulkan 1.2 device was found. Install a Vulkan driver for your GPU, "
                   "or Mesa's CPU driver: “apt-get install mesa-vulkan-drivers”.");
      return FALSE;
    }
  if (selector == NULL || *selector == '\0')
    {
      *index = 0;
      return TRUE;
    }
  char *end = NULL;
  guint64 v = g_ascii_strtoull (selector, &end, 10);
  if (end != selector && *end == '\0')
    {
      if (v >= list->len)
        {
          g_set_error (error, RV_ERROR, RV_ERROR_NO_DEVICE,
                       "There is no device %s; this machine has %u (see “reverie-cli devices”).",
                       selector, list->len);
          return FALSE;
        }
      *index = (guint) v;
      return TRUE;
    }
  g_autofree char *needle = g_utf8_casefold (selector, -1);
  for (guint i = 0; i < list->len; i++)
    {
      g_autofree char *hay = g_utf8_casefold (g_array_index (list, RvDeviceCaps, i).name, -1);
      if (strstr (hay, needle) != NULL)
        {
          *index = i;
          return TRUE;
        }
    }
  g_set_error (error, RV_ERROR, RV_ERROR_NO_DEVICE,
               "No device matches “%s” (see “reverie-cli devices” for the list).", selector);
  return FALSE;
}

RvDevice *
rv_device_new (const char *selector, GError **error)
{
  if (selector == NULL || *selector == '\0')
    selector = g_getenv ("REVERIE_DEVICE");

  g_autoptr (GPtrArray) phys = NULL;
  g_autoptr (GArray) list = rv_device_enumerate_physical (&phys, error);
  if (list == NULL)
    return NULL;
  guint index = 0;
  if (!select_index (list, selector, &index, error))
    {
      instance_release ();
      return NULL;
    }

  RvDevice *dev = g_new0 (RvDevice, 1);
  dev->ref_count = 1;
  dev->physical = g_ptr_array_index (phys, index);
  dev->caps = g_array_index (list, RvDeviceCaps, index);
  g_mutex_init (&dev->queue_lock);
  g_rec_mutex_init (&dev->job_lock);
  g_mutex_init (&dev->mem_lock);
  g_mutex_init (&dev->kernel_lock);
  g_cond_init (&dev->kernel_built);
  dev->failed_kernels = g_ptr_array_new ();
  dev->blocks = g_ptr_array_new ();
  dev->kernels = g_hash_table_new (g_str_hash, g_str_equal);
  RvDeviceCaps *caps = &dev->caps;

  /* queue */
  guint32 nq = 0;
  rv_vkGetPhysicalDeviceQueueFamilyProperties (dev->physical, &nq, NULL);
  g_autofree VkQueueFamilyProperties *qf = g_new0 (VkQueueFamilyProperties, MAX (nq, 1));
  rv_vkGetPhysicalDeviceQueueFamilyProperties (dev->physical, &nq, qf);
  dev->queue_family = G_MAXUINT32;
  for (guint32 i = 0; i < nq; i++)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
      {
        /* prefer a family that has compute without graphics (async compute) only
         * if it also reports timestamps; otherwise the first compute family */
        if (dev->queue_family == G_MAXUINT32)
          dev->queue_family = i;
      }
  if (dev->queue_family == G_MAXUINT32)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_NO_DEVICE,
                   "The device “%s” has no compute queue.", caps->name);
      rv_device_unref (dev);
      return NULL;
    }
  if (qf[dev->queue_family].timestampValidBits == 0)
    caps->timestamps = FALSE;

  /* features */
  VkPhysicalDeviceVulkan11Features f11 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES };
  VkPhysicalDeviceVulkan12Features f12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &f11 };
  VkPhysicalDeviceSubgroupSizeControlFeaturesEXT ssc = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT };
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV };
  VkPhysicalDeviceFeatures2 feats = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12 };
  f11.storageBuffer16BitAccess = caps->storage16;
  f12.shaderFloat16 = caps->fp16;
  const char *exts[4];
  guint n_exts = 0;
  void **tail = &f11.pNext;
  if (caps->subgroup_size_control)
    {
      ssc.subgroupSizeControl = VK_TRUE;
      if (caps->api_version < VK_API_VERSION_1_3)
        exts[n_exts++] = VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME;
      *tail = &ssc;
      tail = &ssc.pNext;
    }
  if (caps->push_descriptor)
    exts[n_exts++] = VK_KHR_PUSH_DESCRIPTOR_EXTENSION_NAME;
  if (caps->coopmat_nv)
    {
      coop.cooperativeMatrix = VK_TRUE;
      exts[n_exts++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
      *tail = &coop;
      tail = &coop.pNext;
    }

  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci = {
    .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
    .queueFamilyIndex = dev->queue_family,
    .queueCount = 1,
    .pQueuePriorities = &prio,
  };
  VkDeviceCreateInfo dci = {
    .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
    .pNext = &feats,
    .queueCreateInfoCount = 1,
    .pQueueCreateInfos = &qci,
    .enabledExtensionCount = n_exts,
    .ppEnabledExtensionNames = exts,
  };
  VkResult r = rv_vkCreateDevice (dev->physical, &dci, NULL, &dev->device);
  if (!_rv_vk_check (r, "opening the device", error))
    {
      dev->device = VK_NULL_HANDLE;
      rv_device_unref (dev);
      return NULL;
    }
  rv_vkGetDeviceQueue (dev->device, dev->queue_family, 0, &dev->queue);
  if (rv_vkCmdPushDescriptorSetKHR == NULL)
    caps->push_descriptor = FALSE;

  dev->device_memory_type = find_memory_type (dev->physical, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, TRUE);
  if (dev->device_memory_type == G_MAXUINT32)
    dev->device_memory_type = find_memory_type (dev->physical, 0, 0, TRUE);
  dev->host_memory_type = find_memory_type (dev->physical,
                                            VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                            VK_MEMORY_PROPERTY_HOST_COHERENT_BIT |
                                            VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0, FALSE);
  if (dev->host_memory_type == G_MAXUINT32)
    dev->host_memory_type = find_memory_type (dev->physical,
                                              VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                              VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0, FALSE);
  if (dev->host_memory_type == G_MAXUINT32)
    {
      g_set_error (error, RV_ERROR, RV_ERROR_NO_DEVICE,
                   "The device “%s” has no host-visible coherent memory.", caps->name);
      rv_device_unref (dev);
      return NULL;
    }

  /* Blocks of 256 MiB (or less when the device allows less), each one buffer;
   * larger tensors get a block of their own. */
  dev->block_size = MIN ((VkDeviceSize) 256 << 20, caps->max_allocation);

  pipeline_cache_load (dev);
  return dev;
}

RvDevice *
rv_device_ref (RvDevice *dev)
{
  g_atomic_int_inc (&dev->ref_count);
  return dev;
}

static void
kernel_free (RvDevice *dev, RvKernel *k)
{
  rv_vkDestroyPipeline (dev->device, k->pipeline, NULL);
  rv_vkDestroyPipelineLayout (dev->device, k->layout, NULL);
  rv_vkDestroyDescriptorSetLayout (dev->device, k->set_layout, NULL);
  g_clear_error (&k->error);
  g_clear_pointer (&k->code, g_bytes_unref);
  g_free (k->name);
  g_free (k);
}

void
rv_device_unref (RvDevice *dev)
{
  if (dev == NULL || !g_atomic_int_dec_and_test (&dev->ref_count))
    return;
  /* the builder threads' tasks for this device end at once now */
  g_atomic_int_set (&dev->stopping, 1);
  g_mutex_lock (&dev->kernel_lock);
  while (dev->builds_pending > 0)
    g_cond_wait (&dev->kernel_built, &dev->kernel_lock);
  g_mutex_unlock (&dev->kernel_lock);
  if (dev->device != VK_NULL_HANDLE)
    {
      rv_vkDeviceWaitIdle (dev->device);
      pipeline_cache_save (dev);
      GHashTableIter it;
      gpointer value;
      g_hash_table_iter_init (&it, dev->kernels);
      while (g_hash_table_iter_next (&it, NULL, &value))
        kernel_free (dev, value);   /* the key is the kernel's name: freed with it */
      for (guint i = 0; i < dev->failed_kernels->len; i++)
        kernel_free (dev, dev->failed_kernels->pdata[i]);
      if (dev->pipeline_cache != VK_NULL_HANDLE)
        rv_vkDestroyPipelineCache (dev->device, dev->pipeline_cache, NULL);
      _rv_device_free_blocks (dev);
      rv_vkDestroyDevice (dev->device, NULL);
    }
  g_hash_table_unref (dev->kernels);
  g_ptr_array_unref (dev->failed_kernels);
  g_ptr_array_unref (dev->blocks);
  g_free (dev->pipeline_cache_path);
  g_free (dev->cache_stem);
  g_cond_clear (&dev->kernel_built);
  g_mutex_clear (&dev->queue_lock);
  g_rec_mutex_clear (&dev->job_lock);
  g_mutex_clear (&dev->mem_lock);
  g_mutex_clear (&dev->kernel_lock);
  g_free (dev);
  instance_release ();
}

const RvDeviceCaps *
rv_device_caps (RvDevice *dev)
{
  return &dev->caps;
}

/* ---- kernels ---- */

static GBytes *
lookup_module (const char *module, GError **error)
{
  static gsize once;
  if (g_once_init_enter (&once))
    {
      g_resources_register (rv_shaders_get_resource ());
      g_once_init_leave (&once, 1);
    }
  g_autofree char *path = g_strdup_printf ("/io/github/reverie/shaders/%s.spv", module);
  GBytes *bytes = g_resources_lookup_data (path, G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
  if (bytes == NULL)
    g_set_error (error, RV_ERROR, RV_ERROR_INVALID,
                 "No compute kernel named “%s” is built into this program.", module);
  return bytes;
}

/* Builds the pipeline of kernel k (name and bindings set); no lock held. */
static VkResult
kernel_build (RvDevice *dev, RvKernel *k, GBytes *code, const guint32 *spec, guint n_spec)
{
  VkDescriptorSetLayoutBinding lb[16];
  for (guint i = 0; i < k->n_bindings; i++)
    lb[i] = (VkDescriptorSetLayoutBinding) {
      .binding = i,
      .descriptorType = k->bindings[i] == 'T' ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                              : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
      .descriptorCount = 1,
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    };
  VkDescriptorSetLayoutCreateInfo dl = {
    .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
    .flags = dev->caps.push_descriptor ? VK_DESCRIPTOR_SET_LAYOUT_CREATE_PUSH_DESCRIPTOR_BIT_KHR : 0,
    .bindingCount = k->n_bindings,
    .pBindings = lb,
  };
  VkPushConstantRange pcr = { VK_SHADER_STAGE_COMPUTE_BIT, 0, RV_PUSH_MAX };
  VkShaderModule sm = VK_NULL_HANDLE;
  gsize code_len = 0;
  const guint32 *code_data = g_bytes_get_data (code, &code_len);
  VkShaderModuleCreateInfo smi = {
    .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
    .codeSize = code_len,
    .pCode = code_data,
  };
  VkSpecializationMapEntry entries[RV_SPEC_MAX];
  for (guint i = 0; i < n_spec; i++)
    entries[i] = (VkSpecializationMapEntry) { i, i * 4, 4 };
  VkSpecializationInfo si = { n_spec, entries, n_spec * 4, spec };

  VkResult r = rv_vkCreateDescriptorSetLayout (dev->device, &dl, NULL, &k->set_layout);
  if (r == VK_SUCCESS)
    {
      VkPipelineLayoutCreateInfo pl = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &k->set_layout,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
      };
      r = rv_vkCreatePipelineLayout (dev->device, &pl, NULL, &k->layout);
    }
  if (r == VK_SUCCESS)
    r = rv_vkCreateShaderModule (dev->device, &smi, NULL, &sm);
  if (r == VK_SUCCESS)
    {
      VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
          .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
          .stage = VK_SHADER_STAGE_COMPUTE_BIT,
          .module = sm,
          .pName = "main",
          .pSpecializationInfo = n_spec ? &si : NULL,
        },
        .layout = k->layout,
      };
      /* the pipeline cache is internally synchronised: builds may run side by side */
      r = rv_vkCreateComputePipelines (dev->device, dev->pipeline_cache, 1, &ci, NULL, &k->pipeline);
      rv_vkDestroyShaderModule (dev->device, sm, NULL);
    }
  if (r != VK_SUCCESS)
    {
      if (k->layout != VK_NULL_HANDLE)
        rv_vkDestroyPipelineLayout (dev->device, k->layout, NULL);
      if (k->set_layout != VK_NULL_HANDLE)
        rv_vkDestroyDescriptorSetLayout (dev->device, k->set_layout, NULL);
      k->layout = VK_NULL_HANDLE;
      k->set_layout = VK_NULL_HANDLE;
    }
  return r;
}

/* After a build: the kernel is ready, or failed and leaves the table (the
 * next request builds it again; streams that hold it see the error). Called
 * with kernel_lock held. */
static void
kernel_built (RvDevice *dev, RvKernel *k, VkResult r)
{
  g_clear_pointer (&k->code, g_bytes_unref);
  if (r != VK_SUCCESS)
    {
      g_autofree char *what = g_strdup_printf ("building the compute kernel %s", k->name);
      _rv_vk_check (r, what, &k->error);
      k->failed = TRUE;
      g_hash_table_steal (dev->kernels, k->name);
      g_ptr_array_add (dev->failed_kernels, k);
    }
  else
    {
      g_atomic_int_set (&k->ready, TRUE);
      dev->pipeline_cache_dirty = TRUE;
    }
  g_cond_broadcast (&dev->kernel_built);
}

typedef enum {
  GET_WAIT,       /* a dispatch needs it now */
  GET_REQUEST,    /* a dispatch needs it, built in the background */
  GET_PREWARM,    /* the kernel list: built here if nobody has it yet, not marked used */
} GetMode;

static void builders_push (RvDevice *dev, RvKernel *k, char *key);

/* The kernel named by key (module|bindings|spec...): the one already built or
 * being built, or a new one. GET_WAIT waits for it (and builds a new one on
 * this thread); GET_REQUEST returns it at once, a new one queued for the
 * builder threads; GET_PREWARM builds a new one on this thread and leaves one
 * that exists as it is (a builder thread never waits: see builder_run).
 * Kernels a dispatch asked for are marked used, for the kernel list. */
static RvKernel *
kernel_get (RvDevice *dev, const char *module, const char *bindings,
            const guint32 *spec, guint n_spec, GetMode mode, GError **error)
{
  g_return_val_if_fail (n_spec <= RV_SPEC_MAX, NULL);
  g_return_val_if_fail (strlen (bindings) < 16, NULL);
  GString *key = g_string_new (module);
  g_string_append_printf (key, "|%s", bindings);
  for (guint i = 0; i < n_spec; i++)
    g_string_append_printf (key, "|%u", spec[i]);

  g_mutex_lock (&dev->kernel_lock);
  RvKernel *k;
  while ((k = g_hash_table_lookup (dev->kernels, key->str)) != NULL && mode == GET_WAIT &&
         !g_atomic_int_get (&k->ready))
    g_cond_wait (&dev->kernel_built, &dev->kernel_lock);
  if (k != NULL)
    {
      if (mode != GET_PREWARM && k->first_use == 0)
        k->first_use = ++dev->kernel_uses;
      g_mutex_unlock (&dev->kernel_lock);
      g_string_free (key, TRUE);
      return k;
    }

  g_autoptr (GBytes) code = lookup_module (module, error);
  if (code == NULL)
    {
      g_mutex_unlock (&dev->kernel_lock);
      g_string_free (key, TRUE);
      return NULL;
    }

  /* a placeholder while it is built, so that no other thread builds it too */
  k = g_new0 (RvKernel, 1);
  k->name = g_string_free (key, FALSE);
  g_strlcpy (k->bindings, bindings, sizeof k->bindings);
  k->n_bindings = strlen (bindings);
  k->code = g_bytes_ref (code);
  if (n_spec > 0)
    memcpy (k->spec, spec, n_spec * sizeof (guint32));
  k->n_spec = n_spec;
  g_hash_table_insert (dev->kernels, k->name, k);
  if (mode != GET_PREWARM)
    k->first_use = ++dev->kernel_uses;
  if (mode == GET_REQUEST)
    {
      builders_push (dev, k, NULL);
      g_mutex_unlock (&dev->kernel_lock);
      return k;
    }
  g_mutex_unlock (&dev->kernel_lock);

  VkResult r = kernel_build (dev, k, k->code, k->spec, k->n_spec);

  g_mutex_lock (&dev->kernel_lock);
  kernel_built (dev, k, r);
  if (k->failed)
    {
      if (error != NULL)
        *error = g_error_copy (k->error);
      k = NULL;
    }
  g_mutex_unlock (&dev->kernel_lock);
  return k;
}

gboolean
rv_kernel_ready (RvKernel *k)
{
  return g_atomic_int_get (&k->ready);
}

gboolean
rv_kernel_wait (RvDevice *dev, RvKernel *k, GError **error)
{
  if (g_atomic_int_get (&k->ready))
    return TRUE;
  g_mutex_lock (&dev->kernel_lock);
  while (!g_atomic_int_get (&k->ready) && !k->failed)
    g_cond_wait (&dev->kernel_built, &dev->kernel_lock);
  gboolean ok = !k->failed;
  if (!ok && error != NULL)
    *error = g_error_copy (k->error);
  g_mutex_unlock (&dev->kernel_lock);
  return ok;
}

RvKernel *
rv_device_kernel_request (RvDevice *dev, const char *module, const char *bindings,
                          const guint32 *spec, guint n_spec, GError **error)
{
  return kernel_get (dev, module, bindings, spec, n_spec, GET_REQUEST, error);
}

RvKernel *
rv_device_kernel (RvDevice *dev, const char *module, const char *bindings,
                  const guint32 *spec, guint n_spec, GError **error)
{
  return kernel_get (dev, module, bindings, spec, n_spec, GET_WAIT, error);
}

/* ---- kernel lists ---- */

#define KERNEL_LIST_MAX 128

static char *
kernel_list_path (RvDevice *dev, const char *tag)
{
  if (dev->cache_stem == NULL || tag == NULL || *tag == '\0' ||
      g_strcmp0 (g_getenv ("REVERIE_PIPELINE_CACHE"), "0") == 0)
    return NULL;
  for (const char *c = tag; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_')
      return NULL;
  g_autofree char *name = g_strdup_printf ("kernels-%s-%s.txt", dev->cache_stem, tag);
  return g_build_filename (g_get_user_cache_dir (), "reverie", name, NULL);
}

/* Parses "module|bindings|n|n|..." as rv_device_kernel's key. */
static gboolean
parse_kernel_key (const char *line, char **module, char **bindings, guint32 *spec, guint *n_spec)
{
  g_auto (GStrv) part = g_strsplit (line, "|", -1);
  guint n = g_strv_length (part);
  if (n < 2 || n - 2 > RV_SPEC_MAX || part[0][0] == '\0' || strlen (part[1]) >= 16)
    return FALSE;
  for (const char *c = part[0]; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_')
      return FALSE;
  for (const char *c = part[1]; *c; c++)
    if (*c != 'S' && *c != 'T')
      return FALSE;
  for (guint i = 2; i < n; i++)
    {
      guint64 v;
      if (!g_ascii_string_to_unsigned (part[i], 10, 0, G_MAXUINT32, &v, NULL))
        return FALSE;
      spec[i - 2] = (guint32) v;
    }
  *n_spec = n - 2;
  *module = g_strdup (part[0]);
  *bindings = g_strdup (part[1]);
  return TRUE;
}

/* A key that names a kernel built into this program. */
static gboolean
kernel_key_valid (const char *line)
{
  g_autofree char *module = NULL, *bindings = NULL;
  guint32 spec[RV_SPEC_MAX];
  guint n_spec;
  if (!parse_kernel_key (line, &module, &bindings, spec, &n_spec))
    return FALSE;
  g_autoptr (GBytes) code = lookup_module (module, NULL);
  return code != NULL;
}

/* ---- builder threads ----
 * One pool for the process, never freed, whose threads live as long as the
 * process: a thread that has built pipelines holds per-thread state in the
 * driver, which its exit would leak. A task builds a requested kernel, or the
 * next kernel of its device's list; requests go first. */

typedef struct {
  RvDevice *dev;
  RvKernel *k;       /* a requested kernel, or NULL: */
  char     *key;     /* a listed one */
  guint     seq;
} BuildTask;

static GThreadPool *builder_pool;
static gint builder_seq;

static void
builder_run (gpointer data, gpointer user_data)
{
  BuildTask *t = data;
  RvDevice *dev = t->dev;
  gboolean stop = g_atomic_int_get (&dev->stopping);
  if (t->k != NULL)
    {
      VkResult r = stop ? VK_ERROR_INITIALIZATION_FAILED
                        : kernel_build (dev, t->k, t->k->code, t->k->spec, t->k->n_spec);
      g_mutex_lock (&dev->kernel_lock);
      kernel_built (dev, t->k, r);
      g_mutex_unlock (&dev->kernel_lock);
    }
  else if (!stop)
    {
      g_autofree char *module = NULL, *bindings = NULL;
      guint32 spec[RV_SPEC_MAX];
      guint n_spec = 0;
      if (parse_kernel_key (t->key, &module, &bindings, spec, &n_spec))
        (void) kernel_get (dev, module, bindings, spec, n_spec, GET_PREWARM, NULL);
    }
  g_mutex_lock (&dev->kernel_lock);
  dev->builds_pending--;
  g_cond_broadcast (&dev->kernel_built);
  g_mutex_unlock (&dev->kernel_lock);
  g_free (t->key);
  g_free (t);
}

static gint
task_order (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const BuildTask *x = a, *y = b;
  if ((x->k != NULL) != (y->k != NULL))
    return x->k != NULL ? -1 : 1;
  return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Queues a task for dev: the requested kernel k, or the listed key (taken).
 * kernel_lock held. */
static void
builders_push (RvDevice *dev, RvKernel *k, char *key)
{
  static gsize once;
  if (g_once_init_enter (&once))
    {
      /* two threads: a CPU driver's compiler is single-threaded, and the
       * first kernels of a job are needed at once */
      builder_pool = g_thread_pool_new (builder_run, NULL, MIN (2, MAX (1, g_get_num_processors ())),
                                        TRUE, NULL);
      g_thread_pool_set_sort_function (builder_pool, task_order, NULL);
      g_once_init_leave (&once, 1);
    }
  BuildTask *t = g_new0 (BuildTask, 1);
  t->dev = dev;
  t->k = k;
  t->key = key;
  t->seq = (guint) g_atomic_int_add (&builder_seq, 1);
  dev->builds_pending++;
  g_thread_pool_push (builder_pool, t, NULL);
}

void
rv_device_prewarm_kernels (RvDevice *dev, const char *tag)
{
  g_autofree char *path = kernel_list_path (dev, tag);
  g_autofree char *text = NULL;
  if (path == NULL || dev->prewarmed || dev->lost || !g_file_get_contents (path, &text, NULL, NULL))
    return;
  dev->prewarmed = TRUE;
  g_auto (GStrv) lines = g_strsplit (text, "\n", KERNEL_LIST_MAX + 1);
  g_mutex_lock (&dev->kernel_lock);
  for (guint i = 0; lines[i] != NULL && i < KERNEL_LIST_MAX; i++)
    if (lines[i][0] != '\0' && g_hash_table_lookup (dev->kernels, lines[i]) == NULL)
      builders_push (dev, NULL, g_strdup (lines[i]));
  g_mutex_unlock (&dev->kernel_lock);
}

guint
rv_device_kernel_count (RvDevice *dev)
{
  guint n = 0;
  GHashTableIter it;
  gpointer value;
  g_mutex_lock (&dev->kernel_lock);
  g_hash_table_iter_init (&it, dev->kernels);
  while (g_hash_table_iter_next (&it, NULL, &value))
    n += ((RvKernel *) value)->ready;
  g_mutex_unlock (&dev->kernel_lock);
  return n;
}

static gint
by_first_use (gconstpointer a, gconstpointer b)
{
  const RvKernel *ka = *(RvKernel *const *) a, *kb = *(RvKernel *const *) b;
  return (ka->first_use > kb->first_use) - (ka->first_use < kb->first_use);
}

void
rv_device_save_kernel_list (RvDevice *dev, const char *tag)
{
  g_autofree char *path = kernel_list_path (dev, tag);
  if (path == NULL)
    return;
  g_autoptr (GPtrArray) used = g_ptr_array_new ();
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_lock (&dev->kernel_lock);
  if (dev->kernel_uses == dev->kernel_uses_saved)
    {
      g_mutex_unlock (&dev->kernel_lock);
      return;
    }
  dev->kernel_uses_saved = dev->kernel_uses;
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, dev->kernels);
  while (g_hash_table_iter_next (&it, NULL, &value))
    if (((RvKernel *) value)->ready && ((RvKernel *) value)->first_use > 0)
      g_ptr_array_add (used, value);
  g_ptr_array_sort (used, by_first_use);
  GString *out = g_string_new (NULL);
  guint n = 0;
  for (guint i = 0; i < used->len && n < KERNEL_LIST_MAX; i++, n++)
    {
      const char *name = ((RvKernel *) used->pdata[i])->name;
      g_string_append_printf (out, "%s\n", name);
      g_hash_table_add (seen, g_strdup (name));
    }
  g_mutex_unlock (&dev->kernel_lock);

  /* kernels of the model set's other kinds of job, from earlier runs, after this run's */
  g_autofree char *old = NULL;
  if (g_file_get_contents (path, &old, NULL, NULL))
    {
      g_auto (GStrv) lines = g_strsplit (old, "\n", KERNEL_LIST_MAX + 1);
      for (guint i = 0; lines[i] != NULL && n < KERNEL_LIST_MAX; i++)
        if (lines[i][0] != '\0' && !g_hash_table_contains (seen, lines[i]) && kernel_key_valid (lines[i]))
          {
            g_string_append_printf (out, "%s\n", lines[i]);
            g_hash_table_add (seen, g_strdup (lines[i]));
            n++;
          }
    }
  g_autofree char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);
  g_file_set_contents (path, out->str, out->len, NULL);   /* atomic: temporary file and rename */
  g_string_free (out, TRUE);
}

const char *
rv_kernel_name (RvKernel *k)
{
  return k->name;
}
