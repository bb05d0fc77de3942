/* fuzz-server-multipart.c: multipart/form-data bodies of the edit and
 * variation endpoints through the server's parser, uploads included. The
 * first byte picks the endpoint, the first line is the Content-Type header,
 * the rest is the body. */
#include "fuzz.h"
#include "fuzz-server.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  RvApiKind kind = data[0] & 1 ? RV_API_VARIATION : RV_API_EDIT;
  const uint8_t *nl = memchr (data + 1, '\n', size - 1);
  if (nl == NULL)
    return 0;
  g_autofree char *type = g_strndup ((const char *) data + 1, nl - data - 1);
  g_autoptr (SoupMessageHeaders) headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_REQUEST);
  /* libsoup never hands over a header value with a line break in it */
  if (g_utf8_validate (type, -1, NULL) && strchr (type, '\r') == NULL)
    soup_message_headers_replace (headers, "Content-Type", type);
  g_autoptr (GBytes) body = g_bytes_new_static (nl + 1, size - (nl + 1 - data));
  g_autoptr (RvApiError) e = NULL;
  g_autoptr (RvApiRequest) r = rv_api_request_parse_multipart (kind, headers, body, &fuzz_limits, &e);
  fuzz_check_parse (r, e);
  return 0;
}
