/* rv-safetensors.h: safetensors files (mmap, strict header validation) and the
 * strict JSON reader every model file of the engine goes through. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define RV_SAFETENSORS_ERROR (rv_safetensors_error_quark ())
GQuark rv_safetensors_error_quark (void);

/* Each way a file can be bad has its own code (the message names the file and,
 * where there is one, the tensor). */
typedef enum {
  RV_SAFETENSORS_ERROR_IO,              /* cannot open or map the file */
  RV_SAFETENSORS_ERROR_TRUNCATED,       /* shorter than its header says */
  RV_SAFETENSORS_ERROR_HEADER_SIZE,     /* header length zero or over the bound */
  RV_SAFETENSORS_ERROR_BAD_JSON,        /* header is not well-formed JSON / not an object */
  RV_SAFETENSORS_ERROR_BAD_ENTRY,       /* an entry lacks or mistypes dtype/shape/data_offsets */
  RV_SAFETENSORS_ERROR_UNKNOWN_DTYPE,
  RV_SAFETENSORS_ERROR_SIZE_MISMATCH,   /* shape × dtype size ≠ data_offsets span */
  RV_SAFETENSORS_ERROR_OUT_OF_BOUNDS,   /* span outside the data area */
  RV_SAFETENSORS_ERROR_OVERLAP,         /* two spans overlap */
  RV_SAFETENSORS_ERROR_DUPLICATE,       /* a name appears twice */
  RV_SAFETENSORS_ERROR_WRONG_DTYPE,     /* conversion asked of a tensor of another kind */
} RvSafetensorsErrorCode;

/* Header lengths above this are refused (real headers are a few MB at most). */
#define RV_SAFETENSORS_MAX_HEADER (100 * 1024 * 1024)
#define RV_ST_MAX_DIMS 8

typedef enum {
  RV_ST_BOOL,
  RV_ST_U8,
  RV_ST_I8,
  RV_ST_I16,
  RV_ST_U16,
  RV_ST_I32,
  RV_ST_U32,
  RV_ST_I64,
  RV_ST_U64,
  RV_ST_F8_E4M3,
  RV_ST_F8_E5M2,
  RV_ST_F16,
  RV_ST_BF16,
  RV_ST_F32,
  RV_ST_F64,
} RvStDType;

const char *rv_st_dtype_name (RvStDType dtype);      /* "F32" */
gsize       rv_st_dtype_size (RvStDType dtype);
/* F16, BF16, F32, F64: convertible to f32 */
gboolean    rv_st_dtype_is_float (RvStDType dtype);
/* BOOL and the integer types: convertible to int64 */
gboolean    rv_st_dtype_is_integer (RvStDType dtype);

/* One tensor of a file. `data` points into the mapping (no alignment
 * guarantee) and lives as long as the file. */
typedef struct {
  const char   *name;
  const char   *file;       /* the file's path, for messages */
  RvStDType     dtype;
  int           ndim;       /* 0 for a scalar */
  gint64        shape[RV_ST_MAX_DIMS];
  gint64        numel;
  const guint8 *data;
  gsize         nbytes;
} RvStTensor;

typedef struct _RvSafetensors RvSafetensors;

RvSafetensors    *rv_safetensors_open (const char *path, GError **error);
/* The same checks on bytes in memory; `origin` names them in messages. */
RvSafetensors    *rv_safetensors_new_from_bytes (GBytes *bytes, const char *origin,
                                                 GError **error);
void              rv_safetensors_free (RvSafetensors *st);
const char       *rv_safetensors_path (RvSafetensors *st);
/* Tensors in the order of their data offsets. */
guint             rv_safetensors_n_tensors (RvSafetensors *st);
const RvStTensor *rv_safetensors_nth (RvSafetensors *st, guint i);
const RvStTensor *rv_safetensors_lookup (RvSafetensors *st, const char *name);
/* A value of the header's `__metadata__` string map, or NULL. */
const char       *rv_safetensors_metadata (RvSafetensors *st, const char *key);

/* The tensor's values as a new host array (g_free), converted from F16, BF16,
 * F32 or F64 (resp. BOOL or any integer type); other dtypes are an error. */
float            *rv_st_tensor_to_f32 (const RvStTensor *t, GError **error);
gint64           *rv_st_tensor_to_i64 (const RvStTensor *t, GError **error);
/* "F32 (2, 77, 32)" */
char             *rv_st_tensor_describe (const RvStTensor *t);

/* Writes tensors (name, dtype, ndim, shape, data, nbytes; other fields are
 * ignored) to a new safetensors file, atomically, data 8-byte aligned, with
 * an optional string map as __metadata__. */
gboolean          rv_safetensors_save (const char *path, const RvStTensor *tensors, guint n,
                                       GHashTable *metadata, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RvSafetensors, rv_safetensors_free)

/* Strict JSON for model files: well-formed UTF-8 JSON without duplicate
 * member names, nesting at most 64 deep, integers that fit in 64 bits, no
 * NUL characters. Python's bare `Infinity`, `-Infinity` and `NaN` (written by
 * json.dumps into scheduler configs) are read as the strings "inf", "-inf" and
 * "nan". Errors are RV_ERROR_MODEL naming `origin`. Returns the root
 * node (json_node_unref); empty input is an error. */
JsonNode         *rv_json_parse (const char *data, gsize len, const char *origin, GError **error);
/* rv_json_parse of a whole file whose root must be an object. */
JsonNode         *rv_json_load_object (const char *path, GError **error);

G_END_DECLS
