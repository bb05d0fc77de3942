/* rv-vk.h: Vulkan entry points, loaded at run time so that a machine without a
 * Vulkan loader gets an error message instead of a program that cannot start. */
#pragma once

#include <glib.h>
#include <vulkan/vulkan.h>

G_BEGIN_DECLS

#define RV_VK_GLOBAL_FUNCS(X) \
  X (vkCreateInstance) \
  X (vkEnumerateInstanceExtensionProperties) \
  X (vkEnumerateInstanceLayerProperties) \
  X (vkEnumerateInstanceVersion)

#define RV_VK_INSTANCE_FUNCS(X) \
  X (vkDestroyInstance) \
  X (vkEnumeratePhysicalDevices) \
  X (vkGetPhysicalDeviceProperties) \
  X (vkGetPhysicalDeviceProperties2) \
  X (vkGetPhysicalDeviceFeatures2) \
  X (vkGetPhysicalDeviceMemoryProperties) \
  X (vkGetPhysicalDeviceQueueFamilyProperties) \
  X (vkGetPhysicalDeviceFormatProperties) \
  X (vkEnumerateDeviceExtensionProperties) \
  X (vkCreateDevice) \
  X (vkGetDeviceProcAddr)

#define RV_VK_INSTANCE_OPTIONAL_FUNCS(X) \
  X (vkCreateDebugUtilsMessengerEXT) \
  X (vkDestroyDebugUtilsMessengerEXT) \
  X (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)

#define RV_VK_DEVICE_FUNCS(X) \
  X (vkDestroyDevice) \
  X (vkGetDeviceQueue) \
  X (vkAllocateMemory) \
  X (vkFreeMemory) \
  X (vkMapMemory) \
  X (vkUnmapMemory) \
  X (vkCreateBuffer) \
  X (vkDestroyBuffer) \
  X (vkGetBufferMemoryRequirements) \
  X (vkBindBufferMemory) \
  X (vkCreateBufferView) \
  X (vkDestroyBufferView) \
  X (vkCreateShaderModule) \
  X (vkDestroyShaderModule) \
  X (vkCreateDescriptorSetLayout) \
  X (vkDestroyDescriptorSetLayout) \
  X (vkCreatePipelineLayout) \
  X (vkDestroyPipelineLayout) \
  X (vkCreateComputePipelines) \
  X (vkDestroyPipeline) \
  X (vkCreatePipelineCache) \
  X (vkDestroyPipelineCache) \
  X (vkGetPipelineCacheData) \
  X (vkCreateCommandPool) \
  X (vkDestroyCommandPool) \
  X (vkResetCommandPool) \
  X (vkAllocateCommandBuffers) \
  X (vkBeginCommandBuffer) \
  X (vkEndCommandBuffer) \
  X (vkCmdBindPipeline) \
  X (vkCmdPushConstants) \
  X (vkCmdDispatch) \
  X (vkCmdPipelineBarrier) \
  X (vkCmdCopyBuffer) \
  X (vkCmdFillBuffer) \
  X (vkCmdBindDescriptorSets) \
  X (vkCreateDescriptorPool) \
  X (vkDestroyDescriptorPool) \
  X (vkResetDescriptorPool) \
  X (vkAllocateDescriptorSets) \
  X (vkUpdateDescriptorSets) \
  X (vkCreateFence) \
  X (vkDestroyFence) \
  X (vkResetFences) \
  X (vkWaitForFences) \
  X (vkQueueSubmit) \
  X (vkDeviceWaitIdle) \
  X (vkCreateQueryPool) \
  X (vkDestroyQueryPool) \
  X (vkCmdResetQueryPool) \
  X (vkCmdWriteTimestamp) \
  X (vkGetQueryPoolResults)

#define RV_VK_DEVICE_OPTIONAL_FUNCS(X) \
  X (vkCmdPushDescriptorSetKHR)

#define RV_VK_DECLARE(name) extern PFN_##name rv_##name;
RV_VK_GLOBAL_FUNCS (RV_VK_DECLARE)
RV_VK_INSTANCE_FUNCS (RV_VK_DECLARE)
RV_VK_INSTANCE_OPTIONAL_FUNCS (RV_VK_DECLARE)
RV_VK_DEVICE_FUNCS (RV_VK_DECLARE)
RV_VK_DEVICE_OPTIONAL_FUNCS (RV_VK_DECLARE)
#undef RV_VK_DECLARE

/* Loads the loader and the global entry points once; FALSE with an error
 * that says how to install Vulkan if it is missing. */
gboolean    rv_vk_load_global (GError **error);
void        rv_vk_load_instance (VkInstance instance);
const char *rv_vk_result_string (VkResult r);

G_END_DECLS
