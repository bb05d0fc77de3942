/* test-safetensors.c: the safetensors reader on good files (every dtype,
 * scalars, empty tensors, padding, metadata) and on bad ones built here, each
 * of which must give its own error naming the file and the tensor. */
#include "rv-safetensors.h"
#include "rv-test-util.h"

#include <math.h>
#include <string.h>

/* A path in the test's own temporary folder (G_TEST_OPTION_ISOLATE_DIRS). */
static char *
tmp_path (const char *name)
{
  g_mkdir_with_parents (g_get_user_cache_dir (), 0700);
  return g_build_filename (g_get_user_cache_dir (), name, NULL);
}

/* A file of the 8-byte length, `header` (length `claimed` or its own) and data. */
static char *
write_raw (const char *name, guint64 claimed, const char *header, const void *data,
           gsize data_len)
{
  g_autoptr (GByteArray) b = g_byte_array_new ();
  guint64 n = GUINT64_TO_LE (claimed != 0 ? claimed : strlen (header));
  g_byte_array_append (b, (const guint8 *) &n, 8);
  g_byte_array_append (b, (const guint8 *) header, strlen (header));
  if (data_len > 0)
    g_byte_array_append (b, data, data_len);
  char *path = tmp_path (name);
  g_autoptr (GError) error = NULL;
  g_file_set_contents (path, (const char *) b->data, b->len, &error);
  g_assert_no_error (error);
  return path;
}

/* Opening must fail with `code`, and the message must name the file and `what`. */
static void
expect_error (const char *path, RvSafetensorsErrorCode code, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RvSafetensors) st = rv_safetensors_open (path, &error);
  g_assert_null (st);
  g_assert_error (error, RV_SAFETENSORS_ERROR, (gint) code);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, path));
  if (what != NULL && strstr (error->message, what) == NULL)
    g_error ("the message “%s” does not mention “%s”", error->message, what);
}

static void
test_round_trip (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);
  enum { N = 37 };
  float f32[N];
  guint16 f16[N], bf16[N];
  double f64[N];
  gint64 i64[N];
  guint8 u8[N], flags[N];
  gint32 i32[N];
  for (int i = 0; i < N; i++)
    {
      f32[i] = (float) g_rand_double_range (rand, -100, 100);
      f16[i] = rv_f32_to_f16 (f32[i]);
      guint32 bits;
      memcpy (&bits, &f32[i], 4);
      bf16[i] = bits >> 16;
      f64[i] = g_rand_double_range (rand, -1e6, 1e6);
      i64[i] = (gint64) g_rand_int (rand) * (g_rand_boolean (rand) ? -97 : 1031);
      i32[i] = (gint32) g_rand_int (rand);
      u8[i] = g_rand_int_range (rand, 0, 256);
      flags[i] = g_rand_boolean (rand);
    }
  float scalar = 3.25f;
  RvStTensor in[] = {
    { .name = "a.weight", .dtype = RV_ST_F32, .ndim = 2, .shape = { N, 1 }, .data = (guint8 *) f32, .nbytes = sizeof f32 },
    { .name = "b.f16", .dtype = RV_ST_F16, .ndim = 1, .shape = { N }, .data = (guint8 *) f16, .nbytes = sizeof f16 },
    { .name = "c.bf16", .dtype = RV_ST_BF16, .ndim = 3, .shape = { 1, N, 1 }, .data = (guint8 *) bf16, .nbytes = sizeof bf16 },
    { .name = "d.f64", .dtype = RV_ST_F64, .ndim = 1, .shape = { N }, .data = (guint8 *) f64, .nbytes = sizeof f64 },
    { .name = "e.position_ids", .dtype = RV_ST_I64, .ndim = 2, .shape = { 1, N }, .data = (guint8 *) i64, .nbytes = sizeof i64 },
    { .name = "f.u8", .dtype = RV_ST_U8, .ndim = 1, .shape = { N }, .data = u8, .nbytes = sizeof u8 },
    { .name = "g.bool", .dtype = RV_ST_BOOL, .ndim = 1, .shape = { N }, .data = flags, .nbytes = sizeof flags },
    { .name = "h.scalar", .dtype = RV_ST_F32, .ndim = 0, .data = (guint8 *) &scalar, .nbytes = 4 },
    { .name = "i.empty", .dtype = RV_ST_F32, .ndim = 2, .shape = { 0, 5 }, .data = NULL, .nbytes = 0 },
    { .name = "j.i32 “quoted” \\ name", .dtype = RV_ST_I32, .ndim = 1, .shape = { N }, .data = (guint8 *) i32, .nbytes = sizeof i32 },
  };
  g_autoptr (GHashTable) meta = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (meta, "format", "pt");
  g_autofree char *path = tmp_path ("good.safetensors");
  g_autoptr (GError) error = NULL;
  g_assert_true (rv_safetensors_save (path, in, G_N_ELEMENTS (in), meta, &error));
  g_assert_no_error (error);

  g_autoptr (RvSafetensors) st = rv_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rv_safetensors_n_tensors (st), ==, G_N_ELEMENTS (in));
  g_assert_cmpstr (rv_safetensors_metadata (st, "format"), ==, "pt");
  g_assert_null (rv_safetensors_metadata (st, "missing"));
  g_assert_null (rv_safetensors_lookup (st, "nope"));
  for (guint i = 0; i < G_N_ELEMENTS (in); i++)
    {
      const RvStTensor *t = rv_safetensors_lookup (st, in[i].name);
      g_assert_nonnull (t);
      g_assert_cmpint (t->dtype, ==, in[i].dtype);
      g_assert_cmpint (t->ndim, ==, in[i].ndim);
      for (int d = 0; d < t->ndim; d++)
        g_assert_cmpint (t->shape[d], ==, in[i].shape[d]);
      g_assert_cmpuint (t->nbytes, ==, in[i].nbytes);
      g_assert_true (t->nbytes == 0 || memcmp (t->data, in[i].data, t->nbytes) == 0);
    }
  /* nth walks the data in file order */
  for (guint i = 1; i < rv_safetensors_n_tensors (st); i++)
    g_assert_true (rv_safetensors_nth (st, i - 1)->data <= rv_safetensors_nth (st, i)->data);

  g_autofree float *a = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "a.weight"), &error);
  g_autofree float *b = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "b.f16"), &error);
  g_autofree float *c = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "c.bf16"), &error);
  g_autofree float *d = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "d.f64"), &error);
  g_autofree gint64 *e = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, "e.position_ids"), &error);
  g_autofree gint64 *f = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, "f.u8"), &error);
  g_autofree gint64 *g = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, "g.bool"), &error);
  g_autofree float *h = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "h.scalar"), &error);
  g_autofree gint64 *j = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, in[9].name), &error);
  g_assert_no_error (error);
  for (int i = 0; i < N; i++)
    {
      guint32 bits = (guint32) bf16[i] << 16;
      float bf;
      memcpy (&bf, &bits, 4);
      g_assert_cmpfloat (a[i], ==, f32[i]);
      g_assert_cmpfloat (b[i], ==, rv_f16_to_f32 (f16[i]));
      g_assert_cmpfloat (fabsf (b[i] - f32[i]), <=, fabsf (f32[i]) * 1e-3f);
      g_assert_cmpfloat (c[i], ==, bf);
      g_assert_cmpfloat (d[i], ==, (float) f64[i]);
      g_assert_cmpint (e[i], ==, i64[i]);
      g_assert_cmpint (f[i], ==, u8[i]);
      g_assert_cmpint (g[i], ==, flags[i]);
      g_assert_cmpint (j[i], ==, i32[i]);
    }
  g_assert_cmpfloat (h[0], ==, scalar);

  /* conversions of the wrong kind */
  g_autofree float *bad_f = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "e.position_ids"), &error);
  g_assert_null (bad_f);
  g_assert_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_WRONG_DTYPE);
  g_assert_nonnull (strstr (error->message, "e.position_ids"));
  g_clear_error (&error);
  g_autofree gint64 *bad_i = rv_st_tensor_to_i64 (rv_safetensors_lookup (st, "a.weight"), &error);
  g_assert_null (bad_i);
  g_assert_error (error, RV_SAFETENSORS_ERROR, RV_SAFETENSORS_ERROR_WRONG_DTYPE);
  g_autofree char *desc = rv_st_tensor_describe (rv_safetensors_lookup (st, "c.bf16"));
  g_assert_cmpstr (desc, ==, "BF16 (1, 37, 1)");
}

/* Holes between spans (alignment padding) and hand-written headers with
 * trailing spaces are fine. */
static void
test_padding_and_order (void)
{
  guint8 data[64] = { 0 };
  float one = 1.0f, two = 2.0f;
  memcpy (data + 40, &one, 4);
  memcpy (data + 8, &two, 4);
  g_autofree char *path = write_raw ("holes.safetensors", 0,
    "{\"late\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [40, 44]},"
    " \"early\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [8, 12]},"
    " \"__metadata__\": {\"case\": \"x\"}}      ", data, sizeof data);
  g_autoptr (GError) error = NULL;
  g_autoptr (RvSafetensors) st = rv_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (rv_safetensors_nth (st, 0)->name, ==, "early");
  g_assert_cmpstr (rv_safetensors_nth (st, 1)->name, ==, "late");
  g_autofree float *v = rv_st_tensor_to_f32 (rv_safetensors_lookup (st, "late"), &error);
  g_assert_cmpfloat (v[0], ==, 1.0f);
  g_assert_cmpstr (rv_safetensors_metadata (st, "case"), ==, "x");
}

static void
test_truncated (void)
{
  g_autofree char *empty = tmp_path ("empty.safetensors");
  g_file_set_contents (empty, "", 0, NULL);
  expect_error (empty, RV_SAFETENSORS_ERROR_TRUNCATED, "too short");

  g_autofree char *shorter = tmp_path ("short.safetensors");
  g_file_set_contents (shorter, "\x10\0\0", 3, NULL);
  expect_error (shorter, RV_SAFETENSORS_ERROR_TRUNCATED, NULL);

  /* the header claims more bytes than the file has */
  g_autofree char *cut = write_raw ("cut-header.safetensors", 4096, "{\"a\": {\"dtype\": \"F32\"",
                                    NULL, 0);
  expect_error (cut, RV_SAFETENSORS_ERROR_TRUNCATED, "truncated");

  /* the data area ends before a tensor does */
  guint8 data[12] = { 0 };
  g_autofree char *cut_data = write_raw ("cut-data.safetensors", 0,
    "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", data, sizeof data);
  expect_error (cut_data, RV_SAFETENSORS_ERROR_OUT_OF_BOUNDS, "“w”");
}

static void
test_header_size (void)
{
  g_autofree char *huge = write_raw ("huge.safetensors", (guint64) 200 << 20, "{}", NULL, 0);
  expect_error (huge, RV_SAFETENSORS_ERROR_HEADER_SIZE, "header length");
  g_autofree char *giant = write_raw ("giant.safetensors", G_MAXUINT64, "{}", NULL, 0);
  expect_error (giant, RV_SAFETENSORS_ERROR_HEADER_SIZE, NULL);
  g_autoptr (GByteArray) b = g_byte_array_new ();
  g_byte_array_append (b, (const guint8 *) "\0\0\0\0\0\0\0\0{}", 10);
  g_autofree char *zero = tmp_path ("zero.safetensors");
  g_file_set_contents (zero, (const char *) b->data, b->len, NULL);
  expect_error (zero, RV_SAFETENSORS_ERROR_HEADER_SIZE, NULL);
}

static void
test_overlap (void)
{
  guint8 data[32] = { 0 };
  g_autofree char *path = write_raw ("overlap.safetensors", 0,
    "{\"first\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
    " \"second\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [12, 20]}}",
    data, sizeof data);
  expect_error (path, RV_SAFETENSORS_ERROR_OVERLAP, "“first” and “second”");

  /* contained entirely in another */
  g_autofree char *inner = write_raw ("inner.safetensors", 0,
    "{\"outer\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
    " \"inner\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [20, 22]},"
    " \"after\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
    data, sizeof data);
  expect_error (inner, RV_SAFETENSORS_ERROR_OVERLAP, "“inner”");
}

static void
test_size_mismatch (void)
{
  guint8 data[64] = { 0 };
  g_autofree char *path = write_raw ("wrong-shape.safetensors", 0,
    "{\"ok\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
    " \"conv.weight\": {\"dtype\": \"F32\", \"shape\": [3, 4], \"data_offsets\": [8, 40]}}",
    data, sizeof data);
  expect_error (path, RV_SAFETENSORS_ERROR_SIZE_MISMATCH, "“conv.weight”");

  /* a shape whose byte size overflows 64 bits */
  g_autofree char *big = write_raw ("overflow.safetensors", 0,
    "{\"big\": {\"dtype\": \"F64\", \"shape\": [4294967296, 4294967296, 16], "
    "\"data_offsets\": [0, 0]}}", data, sizeof data);
  expect_error (big, RV_SAFETENSORS_ERROR_SIZE_MISMATCH, "“big”");
}

static void
test_bad_json (void)
{
  static const char *const headers[] = {
    "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}",   /* unclosed */
    "[1, 2, 3]",                                                             /* not an object */
    "{\"a\": 1,}",
    "\"just a string\"",
    "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} trailing",
  };
  for (guint i = 0; i < G_N_ELEMENTS (headers); i++)
    {
      g_autofree char *name = g_strdup_printf ("json%u.safetensors", i);
      guint8 data[4] = { 0 };
      g_autofree char *path = write_raw (name, 0, headers[i], data, sizeof data);
      expect_error (path, RV_SAFETENSORS_ERROR_BAD_JSON, NULL);
    }
  /* deep nesting must not overflow the parser's stack */
  g_autoptr (GString) deep = g_string_new ("{\"a\": ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  g_autofree char *path = write_raw ("deep.safetensors", 0, deep->str, NULL, 0);
  expect_error (path, RV_SAFETENSORS_ERROR_BAD_JSON, "nested");
  /* not UTF-8 */
  g_autofree char *latin = write_raw ("latin1.safetensors", 0, "{\"caf\xe9\": 1}", NULL, 0);
  expect_error (latin, RV_SAFETENSORS_ERROR_BAD_JSON, NULL);
}

static void
test_unknown_dtype (void)
{
  guint8 data[8] = { 0 };
  g_autofree char *path = write_raw ("dtype.safetensors", 0,
    "{\"w\": {\"dtype\": \"F13\", \"shape\": [2], \"data_offsets\": [0, 8]}}", data, sizeof data);
  expect_error (path, RV_SAFETENSORS_ERROR_UNKNOWN_DTYPE, "“F13”");
}

static void
test_duplicate (void)
{
  guint8 data[16] = { 0 };
  g_autofree char *path = write_raw ("dup.safetensors", 0,
    "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
    " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", data, sizeof data);
  expect_error (path, RV_SAFETENSORS_ERROR_DUPLICATE, "“w”");
}

static void
test_bad_entries (void)
{
  static const struct { const char *header, *what; } cases[] = {
    { "{\"w\": 5}", "“w”" },
    { "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "dtype" },
    { "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "shape" },
    { "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", "data_offsets" },
    { "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", "shape" },
    { "{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", "shape" },
    { "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", "data_offsets" },
    { "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", "data_offsets" },
    { "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
      "dimensions" },
    { "{\"__metadata__\": {\"n\": 1}}", "__metadata__" },
    { "{\"__metadata__\": [\"x\"]}", "__metadata__" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("entry%u.safetensors", i);
      guint8 data[8] = { 0 };
      g_autofree char *path = write_raw (name, 0, cases[i].header, data, sizeof data);
      expect_error (path, RV_SAFETENSORS_ERROR_BAD_ENTRY, cases[i].what);
    }
  /* integers past 64 bits are an error, not a silent wrap */
  guint8 data[8] = { 0 };
  g_autofree char *path = write_raw ("bigint.safetensors", 0,
    "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [18446744073709551617, 1]}}",
    data, sizeof data);
  expect_error (path, RV_SAFETENSORS_ERROR_BAD_JSON, "64 bits");
}

static void
test_missing_file (void)
{
  g_autofree char *path = tmp_path ("does-not-exist.safetensors");
  expect_error (path, RV_SAFETENSORS_ERROR_IO, NULL);
}

static void
test_json (void)
{
  g_autoptr (GError) error = NULL;
  const char *text = "{\"a\": -Infinity, \"b\": [Infinity, NaN], \"c\": \"-Infinity in a string\","
                     " \"d\": 9223372036854775807, \"e\": -12.5e3}";
  g_autoptr (JsonNode) root = rv_json_parse (text, strlen (text), "test", &error);
  g_assert_no_error (error);
  JsonObject *o = json_node_get_object (root);
  g_assert_cmpstr (json_object_get_string_member (o, "a"), ==, "-inf");
  JsonArray *b = json_object_get_array_member (o, "b");
  g_assert_cmpstr (json_array_get_string_element (b, 0), ==, "inf");
  g_assert_cmpstr (json_array_get_string_element (b, 1), ==, "nan");
  g_assert_cmpstr (json_object_get_string_member (o, "c"), ==, "-Infinity in a string");
  g_assert_cmpint (json_object_get_int_member (o, "d"), ==, G_MAXINT64);
  g_assert_cmpfloat (json_object_get_double_member (o, "e"), ==, -12500.0);

  static const char *const bad[] = {
    "", "   ", "{\"a\": 1, \"a\": 2}", "{\"x\": {\"a\": 1, \"b\": {}, \"a\": 3}}",
    "{\"a\": 99999999999999999999}", "{\"a\": \"nul \\u0000 here\"}", "{\"a\": 1} {}",
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (JsonNode) n = rv_json_parse (bad[i], strlen (bad[i]), "origin-name", &e);
      g_assert_null (n);
      g_assert_error (e, RV_ERROR, RV_ERROR_MODEL);
      g_assert_nonnull (strstr (e->message, "origin-name"));
    }
  /* bytes after a NUL are not ignored */
  g_autoptr (JsonNode) n = rv_json_parse ("{}\0{}", 5, "nul", &error);
  g_assert_null (n);
  g_assert_error (error, RV_ERROR, RV_ERROR_MODEL);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  rv_test_add ("/safetensors/round-trip", test_round_trip);
  rv_test_add ("/safetensors/padding-and-order", test_padding_and_order);
  rv_test_add ("/safetensors/truncated", test_truncated);
  rv_test_add ("/safetensors/header-size", test_header_size);
  rv_test_add ("/safetensors/overlap", test_overlap);
  rv_test_add ("/safetensors/size-mismatch", test_size_mismatch);
  rv_test_add ("/safetensors/bad-json", test_bad_json);
  rv_test_add ("/safetensors/unknown-dtype", test_unknown_dtype);
  rv_test_add ("/safetensors/duplicate", test_duplicate);
  rv_test_add ("/safetensors/bad-entries", test_bad_entries);
  rv_test_add ("/safetensors/missing-file", test_missing_file);
  rv_test_add ("/safetensors/json", test_json);
  return g_test_run ();
}
