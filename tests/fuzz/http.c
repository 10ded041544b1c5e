/* libFuzzer target for the HTTP mode's parser (agent/proxy_http_parse.c): any bytes as a
 * request head, a response head and a chunked body parse or fail cleanly; a request that
 * parses is rewritten within its bound and the rewrite parses again to the same framing; a
 * chunked body fed in two pieces frames exactly as fed whole. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/proxy_http_parse.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct proxy_http_msg m, again, resp;
	struct proxy_http_chunk a = {0}, b = {0};
	size_t scan = 0, hl = proxy_http_parse_head_end(p, size, &scan);
	ssize_t whole, first, second;

	if (hl > 0) {
		SHOAL_ASSERT(hl <= size && memcmp(p + hl - 4, "\r\n\r\n", 4) == 0);
		if (proxy_http_parse_request(p, hl, &m) == 0) {
			char *out = xmalloc(hl + PROXY_HTTP_ADD_MAX);
			size_t n =
			    proxy_http_parse_rewrite_request(p, &m, "192.168.56.11", false, out);

			SHOAL_ASSERT(n <= hl + PROXY_HTTP_ADD_MAX);
			SHOAL_ASSERT(proxy_http_parse_request(out, n, &again) == 0);
			SHOAL_ASSERT(again.body == m.body && again.length == m.length &&
			             again.keep_alive == m.keep_alive && again.xff_end != 0);
			free(out);
		}
	}
	scan = 0;
	hl = proxy_http_parse_resp_head_end(p, size, &scan);
	if (hl > 0) {
		memset(&m, 0, sizeof(m));
		if (proxy_http_parse_response(p, hl, &m, &resp) == 0) {
			char *out = xmalloc(2 * hl + 32);
			size_t n = proxy_http_parse_rewrite_response(p, &resp, true, out);

			/* The rewrite is a strict head that frames the body as chunked. */
			SHOAL_ASSERT(n <= 2 * hl + 32);
			SHOAL_ASSERT(proxy_http_parse_response(out, n, &m, &again) == 0);
			SHOAL_ASSERT(again.status == resp.status && again.minor == 1);
			free(out);
		}
	}
	whole = proxy_http_parse_chunk(&a, p, size);
	first = proxy_http_parse_chunk(&b, p, size / 2);
	if (first >= 0 && !b.done && (size_t)first == size / 2) {
		second = proxy_http_parse_chunk(&b, p + size / 2, size - size / 2);
		if (whole >= 0)
			SHOAL_ASSERT(second >= 0 && (size_t)(first + second) == (size_t)whole &&
			             a.done == b.done);
	}
	return 0;
}
