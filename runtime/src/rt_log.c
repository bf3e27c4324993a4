/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: one record per line on stderr, as text or as JSON lines, shared by C and Lua. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "moonstack/rt.h"
#include "rt_json.h"

static enum rt_log_level log_level = RT_LOG_INFO;
static bool log_json;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void rt_log_set_level(enum rt_log_level level)
{
	log_level = level;
}

enum rt_log_level rt_log_get_level(void)
{
	return log_level;
}

void rt_log_set_json(bool json)
{
	log_json = json;
}

bool rt_log_is_json(void)
{
	return log_json;
}

int rt_log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (name && strcmp(name, level_names[i]) == 0)
			return (int)i;
	if (name && strcmp(name, "warning") == 0)
		return RT_LOG_WARN;
	return -1;
}

const char *rt_log_level_name(enum rt_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "?";
	return level_names[level];
}

static void format_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Members of a JSON object text without its braces, or "" if it has none. */
static void object_members(const char *obj, const char **start, size_t *len)
{
	*start = "";
	*len = 0;
	if (!obj)
		return;
	const char *open = strchr(obj, '{');
	const char *close = strrchr(obj, '}');
	if (!open || !close || close <= open + 1)
		return;
	*start = open + 1;
	*len = (size_t)(close - open - 1);
}

void rt_log_emit(enum rt_log_level level, const char *component, const char *msg,
		 const char *fields_json)
{
	if (level < log_level)
		return;
	char ts[40];
	format_time(ts, sizeof(ts));
	component = component ? component : "moonstack";
	msg = msg ? msg : "";

	struct rt_buf b = { 0 };
	if (log_json) {
		const char *members;
		size_t mlen;
		rt_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts,
			      rt_log_level_name(level));
		rt_json_quote(&b, component, strlen(component));
		rt_buf_puts(&b, ",\"msg\":");
		rt_json_quote(&b, msg, strlen(msg));
		object_members(fields_json, &members, &mlen);
		if (mlen) {
			rt_buf_putc(&b, ',');
			rt_buf_add(&b, members, mlen);
		}
		rt_buf_puts(&b, "}\n");
	} else {
		rt_buf_printf(&b, "%s %-5s [%s] %s", ts, rt_log_level_name(level), component, msg);
		if (fields_json && strcmp(fields_json, "{}") != 0)
			rt_buf_printf(&b, " %s", fields_json);
		rt_buf_putc(&b, '\n');
	}
	if (b.data) {
		/* One write per record so lines from concurrent processes do not interleave. */
		fwrite(b.data, 1, b.len, stderr);
		fflush(stderr);
	}
	rt_buf_free(&b);
}

void rt_log(enum rt_log_level level, const char *component, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (level < log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rt_log_emit(level, component, msg, NULL);
}
