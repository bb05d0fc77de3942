/* fuzz-safetensors.c: the safetensors parser on arbitrary bytes; whatever it
 * accepts must be readable in full. */
#include "fuzz.h"
#include "rv-safetensors.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (data, size);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvSafetensors) st = rv_safetensors_new_from_bytes (bytes, "fuzz", &error);
  if (st == NULL)
    {
      g_assert (error != NULL && error->domain == RV_SAFETENSORS_ERROR);
      return 0;
    }
  for (guint i = 0; i < rv_safetensors_n_tensors (st); i++)
    {
      const RvStTensor *t = rv_safetensors_nth (st, i);
      g_assert (rv_safetensors_lookup (st, t->name) == t);
      g_assert (t->data >= data + 8 && t->data + t->nbytes <= data + size);
      g_autofree char *desc = rv_st_tensor_describe (t);
      g_autoptr (GError) e = NULL;
      if (rv_st_dtype_is_float (t->dtype))
        g_free (rv_st_tensor_to_f32 (t, &e));
      else if (rv_st_dtype_is_integer (t->dtype))
        g_free (rv_st_tensor_to_i64 (t, &e));
    }
  rv_safetensors_metadata (st, "format");
  return 0;
}
