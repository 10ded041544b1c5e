#include "when.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
when_parse_rfc3339(const char *s, size_t n, int64_t *ms)
{
	char buf[64];
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, off = 0;
	const char *p;
	int64_t frac = 0, scale = 1000;

	if (n < 20 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (sscanf(buf, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
		return -1;
	p = buf + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9') {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
			p++;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
			return -1;
		off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*ms = ((int64_t)timegm(&tm) - off) * 1000 + frac;
	return 0;
}

int
when_parse(const char *s, int64_t now_ms, int64_t *ms)
{
	char *end;
	long long v;

	if (when_parse_rfc3339(s, strlen(s), ms) == 0)
		return 0;
	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v > 1000000000LL)
		return -1;
	if (strcmp(end, "s") == 0)
		v *= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60 * 1000;
	else if (strcmp(end, "h") == 0)
		v *= 3600 * 1000;
	else if (strcmp(end, "d") == 0)
		v *= 86400 * 1000;
	else
		return -1;
	*ms = now_ms - v;
	return 0;
}
