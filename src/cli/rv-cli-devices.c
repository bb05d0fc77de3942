/* rv-cli-devices.c: `reverie-cli devices`, through reverie.h's device list. */
#include "config.h"

#include "rv-cli.h"

static const char *
type_name (RvDeviceType t)
{
  switch (t)
    {
    case RV_DEVICE_DISCRETE_GPU: return "discrete GPU";
    case RV_DEVICE_INTEGRATED_GPU: return "integrated GPU";
    case RV_DEVICE_VIRTUAL_GPU: return "virtual GPU";
    case RV_DEVICE_CPU: return "CPU";
    case RV_DEVICE_OTHER:
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

  g_autoptr (GArray) list = rv_engine_list_device_info (&error);
  if (list == NULL)
    return rv_cli_error ("%s", error->message);
  if (list->len == 0)
    return rv_cli_error ("No Vulkan 1.2 device was found. Install a Vulkan driver, or Mesa's "
                         "CPU driver: apt-get install mesa-vulkan-drivers");

  for (guint i = 0; i < list->len; i++)
    {
      const RvDeviceInfo *d = &g_array_index (list, RvDeviceInfo, i);
      if (json)
        {
          g_print ("%s{\"index\": %u, \"name\": \"%s\", \"type\": \"%s\", \"driver\": \"%s\", "
                   "\"memory_mib\": %" G_GUINT64_FORMAT ", \"fp16\": %s, \"storage16\": %s, "
                   "\"subgroup_size\": %u, \"subgroup_ops\": %s, \"coopmat_nv\": %s, "
                   "\"push_descriptor\": %s, \"selected\": %s}%s",
                   i == 0 ? "[" : " ", i, d->name, type_name (d->type), d->driver,
                   d->memory_bytes >> 20, d->fp16 ? "true" : "false",
                   d->storage16 ? "true" : "false", d->subgroup_size,
                   d->subgroup_ops ? "true" : "false", d->coopmat_nv ? "true" : "false",
                   d->push_descriptor ? "true" : "false", d->selected ? "true" : "false",
                   i + 1 == list->len ? "]\n" : ",\n");
          continue;
        }
      g_print ("%s%u: %s\n", d->selected ? "* " : "  ", i, d->name);
      g_print ("     type:              %s\n", type_name (d->type));
      g_print ("     driver:            %s\n", d->driver);
      g_print ("     Vulkan:            %u.%u.%u\n", d->vulkan_major, d->vulkan_minor,
               d->vulkan_patch);
      g_print ("     memory:            %.0f MiB device-local%s\n", d->memory_bytes / 1048576.0,
               d->unified_memory ? " (shared with the host)" : "");
      g_print ("     largest buffer:    %.0f MiB allocation, %.0f MiB binding\n",
               d->max_allocation_bytes / 1048576.0, d->max_binding_bytes / 1048576.0);
      g_print ("     fp16 arithmetic:   %s\n", yes_no (d->fp16));
      g_print ("     16-bit storage:    %s\n", yes_no (d->storage16));
      g_print ("     subgroups:         %s (size %u)\n", yes_no (d->subgroup_ops), d->subgroup_size);
      g_print ("     cooperative matrix (NV): %s\n", yes_no (d->coopmat_nv));
      g_print ("     push descriptors:  %s\n", yes_no (d->push_descriptor));
      g_print ("     timestamps:        %s\n", yes_no (d->timestamps));
    }
  if (!json)
    g_print ("\n* = used by default. Choose another with --device N|NAME or REVERIE_DEVICE.\n");
  return 0;
}
