/* rv-cli-devices.c: `reverie-cli devices` and `reverie-cli bench`. */
#include "config.h"

#include "rv-cli.h"
#include "rv-bench.h"
#include "rv-device.h"

#include <string.h>

static const char *
type_name (VkPhysicalDeviceType t)
{
  switch (t)
    {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
    }
}

static const char *
yes_no (gboolean b)
{
  return b ? "yes" : "no";
}

int
rv_cli_devices (int argc, char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("— list Vulkan devices");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);

  g_autoptr (GArray) list = rv_device_enumerate (&error);
  if (list == NULL)
    return rv_cli_error ("%s", error->message);
  if (list->len == 0)
    return rv_cli_error ("No Vulkan 1.2 device was found. Install a Vulkan driver, or Mesa's "
                         "CPU driver: apt-get install mesa-vulkan-drivers");

  /* which one would be used */
  guint chosen = G_MAXUINT;
  {
    g_autoptr (GError) e2 = NULL;
    g_autoptr (RvDevice) dev = rv_device_new (NULL, &e2);
    if (dev != NULL)
      for (guint i = 0; i < list->len; i++)
        if (strcmp (g_array_index (list, RvDeviceCaps, i).name, rv_device_caps (dev)->name) == 0)
          {
            chosen = i;
            break;
          }
  }

  for (guint i = 0; i < list->len; i++)
    {
      const RvDeviceCaps *c = &g_array_index (list, RvDeviceCaps, i);
      if (json)
        {
          g_print ("%s{\"index\": %u, \"name\": \"%s\", \"type\": \"%s\", \"driver\": \"%s\", "
                   "\"memory_mib\": %" G_GUINT64_FORMAT ", \"fp16\": %s, \"storage16\": %s, "
                   "\"subgroup_size\": %u, \"subgroup_ops\": %s, \"coopmat_nv\": %s, "
                   "\"push_descriptor\": %s, \"selected\": %s}%s",
                   i == 0 ? "[" : " ", i, c->name, type_name (c->type), c->driver,
                   (guint64) (c->device_local_bytes >> 20), c->fp16 ? "true" : "false",
                   c->storage16 ? "true" : "false", c->subgroup_size,
                   c->subgroup_arith ? "true" : "false", c->coopmat_nv ? "true" : "false",
                   c->push_descriptor ? "true" : "false", i == chosen ? "true" : "false",
                   i + 1 == list->len ? "]\n" : ",\n");
          continue;
        }
      g_print ("%s%u: %s\n", i == chosen ? "* " : "  ", i, c->name);
      g_print ("     type:              %s\n", type_name (c->type));
      g_print ("     driver:            %s\n", c->driver);
      g_print ("     Vulkan:            %u.%u.%u\n", VK_API_VERSION_MAJOR (c->api_version),
               VK_API_VERSION_MINOR (c->api_version), VK_API_VERSION_PATCH (c->api_version));
      g_print ("     memory:            %.0f MiB device-local%s\n", c->device_local_bytes / 1048576.0,
               c->unified_memory ? " (shared with the host)" : "");
      g_print ("     largest buffer:    %.0f MiB allocation, %.0f MiB binding\n",
               c->max_allocation / 1048576.0, c->max_storage_range / 1048576.0);
      g_print ("     fp16 arithmetic:   %s\n", yes_no (c->fp16));
      g_print ("     16-bit storage:    %s\n", yes_no (c->storage16));
      g_print ("     subgroups:         %s (size %u)\n", yes_no (c->subgroup_arith), c->subgroup_size);
      g_print ("     cooperative matrix (NV): %s\n", yes_no (c->coopmat_nv));
      g_print ("     push descriptors:  %s\n", yes_no (c->push_descriptor));
      g_print ("     timestamps:        %s\n", yes_no (c->timestamps));
    }
  if (!json)
    g_print ("\n* = used by default. Choose another with --device N|NAME or REVERIE_DEVICE.\n");
  return 0;
}

int
rv_cli_bench (int argc, char **argv)
{
  if (argc >= 2 && g_str_equal (argv[1], "pipeline"))
    return rv_cli_bench_pipeline (argc - 1, argv + 1);
  gboolean json = FALSE;
  char *device = NULL, *filter = NULL;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device, "Device index or name", "N|NAME" },
    { "filter", 'f', 0, G_OPTION_ARG_STRING, &filter, "Only ops whose name or shape contains TEXT", "TEXT" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("ops|pipeline — measure the engine");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return rv_cli_error ("%s", error->message);
  if (argc < 2 || strcmp (argv[1], "ops") != 0)
    return rv_cli_error ("usage: reverie-cli bench ops [--json] [--filter TEXT] [--device N]\n"
                         "       reverie-cli bench pipeline [--runs N] [--json] [image options]");

  g_autoptr (RvDevice) dev = rv_device_new (device, &error);
  if (dev == NULL)
    return rv_cli_error ("%s", error->message);
  if (!json)
    g_print ("device: %s (%s)\n", rv_device_caps (dev)->name, rv_device_caps (dev)->driver);
  RvBench *b = rv_bench_new (dev, json, filter, &error);
  if (b == NULL)
    return rv_cli_error ("%s", error->message);
  rv_bench_ops_gemm (b);
  rv_bench_ops_attention (b);
  rv_bench_ops_basic (b);
  rv_bench_finish (b);
  rv_bench_free (b);
  g_free (device);
  g_free (filter);
  return 0;
}
