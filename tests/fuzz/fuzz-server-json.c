/* fuzz-server-json.c: JSON bodies of POST /v1/images/generations through the
 * server's own parser and validation. */
#include "fuzz.h"
#include "fuzz-server.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GBytes) body = g_bytes_new_static (data, size);
  g_autoptr (RvApiError) e = NULL;
  g_autoptr (RvApiRequest) r = rv_api_request_parse_json (body, &fuzz_limits, &e);
  fuzz_check_parse (r, e);
  return 0;
}
