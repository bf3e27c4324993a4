/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The REPL client: a blocking conversation with a daemon's control socket. Text mode reads
 * frames `STATUS LENGTH\n` + body; JSON mode reads one JSON line per reply. Interactive
 * sessions use libedit (readline emulation) with a history file, Tab completion (asked of the
 * server: `\complete WORD`) and Ctrl-C: at the prompt it clears the line, while a reply is
 * awaited it sends `\interrupt` (the server stops the evaluation and answers with an error);
 * the session goes on either way.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <editline/readline.h>

#include "moonstack/rt.h"
#include "rt_json.h"
#include "rt_repl_client.h"

#define HEADER_MAX  64
#define HISTORY_MAX 1000

enum reply_status { REPLY_OK, REPLY_ERROR, REPLY_MORE, REPLY_BYE };

struct session {
	int fd;
	const char *label;
	const struct rt_repl_opts *o;
	FILE *in, *out, *err;
	char buf[16384]; /* bytes read from the socket and not consumed yet */
	size_t pos, len;
	bool json; /* the connection's mode: --json, or the user typed \json (\text back) */
	bool interruptible; /* Ctrl-C sends \interrupt while a reply is awaited */
};

/* Set by the SIGINT handler of interactive sessions. */
static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig)
{
	(void)sig;
	got_sigint = 1;
}

/* The session whose server completes names (libedit's completion callbacks take no context). */
static struct session *completing;

int rt_repl_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "cannot connect to %s: socket path too long", path);
		return -1;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
		return -1;
	}
	int rc;
	do {
		rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	} while (rc != 0 && errno == EINTR);
	if (rc != 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int io_error(struct session *s, const char *what)
{
	const char *why = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno);
	fprintf(s->err, "moonstack repl: %s %s: %s\n", what, s->label, why);
	return -1;
}

static int write_all(struct session *s, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return io_error(s, "cannot send to");
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read more bytes into the buffer. Returns 0, or -1 (end of stream or error, reported). */
static int fill(struct session *s)
{
	if (s->pos == s->len) {
		s->pos = s->len = 0;
	} else if (s->pos > 0) {
		memmove(s->buf, s->buf + s->pos, s->len - s->pos);
		s->len -= s->pos;
		s->pos = 0;
	}
	for (;;) {
		ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
		if (n > 0) {
			s->len += (size_t)n;
			return 0;
		}
		if (n == 0) {
			fprintf(s->err, "moonstack repl: %s closed the connection\n", s->label);
			return -1;
		}
		if (errno != EINTR)
			return io_error(s, "no reply from");
		if (got_sigint && s->interruptible) {
			got_sigint = 0;
			fputc('\n', s->err); /* after the terminal's ^C */
			static const char cmd[] = "\\interrupt\n";
			ssize_t w;
			do {
				w = send(s->fd, cmd, sizeof(cmd) - 1, MSG_NOSIGNAL);
			} while (w < 0 && errno == EINTR);
		}
	}
}

/* Read up to and without the next '\n' into @p line. At most @p max bytes (0: no limit). */
static int read_line(struct session *s, struct rt_buf *line, size_t max)
{
	for (;;) {
		char *start = s->buf + s->pos;
		char *nl = memchr(start, '\n', s->len - s->pos);
		size_t n = nl ? (size_t)(nl - start) : s->len - s->pos;
		if (rt_buf_add(line, start, n) != 0) {
			fprintf(s->err, "moonstack repl: out of memory\n");
			return -1;
		}
		s->pos += n;
		if (nl) {
			s->pos++;
			return 0;
		}
		if (max && line->len > max) {
			fprintf(s->err, "moonstack repl: %s: not a moonstack control socket\n",
				s->label);
			return -1;
		}
		if (fill(s) != 0)
			return -1;
	}
}

/* Copy exactly @p n bytes of the stream to @p f. */
static int copy_body(struct session *s, size_t n, FILE *f)
{
	while (n > 0) {
		if (s->pos == s->len && fill(s) != 0)
			return -1;
		size_t chunk = s->len - s->pos < n ? s->len - s->pos : n;
		fwrite(s->buf + s->pos, 1, chunk, f);
		s->pos += chunk;
		n -= chunk;
	}
	fflush(f);
	return 0;
}

/* Read a text frame's header: its status and the length of its body. */
static int read_text_header(struct session *s, enum reply_status *st, size_t *len)
{
	struct rt_buf hdr = { 0 };
	char status[16];
	int n = 0;

	if (read_line(s, &hdr, HEADER_MAX) != 0) {
		rt_buf_free(&hdr);
		return -1;
	}
	rt_buf_putc(&hdr, '\0');
	if (hdr.failed || sscanf(hdr.data, "%15s %zu%n", status, len, &n) != 2 ||
	    hdr.data[n] != '\0') {
		fprintf(s->err, "moonstack repl: %s: not a moonstack control socket\n", s->label);
		rt_buf_free(&hdr);
		return -1;
	}
	rt_buf_free(&hdr);
	if (strcmp(status, "ok") == 0)
		*st = REPLY_OK;
	else if (strcmp(status, "error") == 0)
		*st = REPLY_ERROR;
	else if (strcmp(status, "more") == 0)
		*st = REPLY_MORE;
	else if (strcmp(status, "bye") == 0)
		*st = REPLY_BYE;
	else {
		fprintf(s->err, "moonstack repl: %s: unknown reply status '%s'\n", s->label,
			status);
		return -1;
	}
	return 0;
}

static int read_text_reply(struct session *s, enum reply_status *st)
{
	size_t len;

	if (read_text_header(s, st, &len) != 0)
		return -1;
	return copy_body(s, len, *st == REPLY_ERROR ? s->err : s->out);
}

/* Read exactly @p n bytes of the stream into @p body. */
static int collect_body(struct session *s, size_t n, struct rt_buf *body)
{
	while (n > 0) {
		if (s->pos == s->len && fill(s) != 0)
			return -1;
		size_t chunk = s->len - s->pos < n ? s->len - s->pos : n;
		if (rt_buf_add(body, s->buf + s->pos, chunk) != 0)
			return -1;
		s->pos += chunk;
		n -= chunk;
	}
	return 0;
}

/* The names the server offers to complete the word being typed (libedit's state). */
static struct {
	char **names;
	size_t n, next;
} cand;

static void free_candidates(void)
{
	for (size_t i = 0; i < cand.n; i++)
		free(cand.names[i]);
	free(cand.names);
	cand.names = NULL;
	cand.n = cand.next = 0;
}

/* Ask the server for the completions of @p text (`\complete TEXT`): text mode only. */
static void fetch_candidates(struct session *s, const char *text)
{
	free_candidates();
	if (s->json || strchr(text, '\n'))
		return;
	struct rt_buf req = { 0 }, body = { 0 };
	enum reply_status st;
	size_t len;
	rt_buf_add(&req, "\\complete ", 10);
	rt_buf_add(&req, text, strlen(text));
	rt_buf_putc(&req, '\n');
	if (req.failed || write_all(s, req.data, req.len) != 0 ||
	    read_text_header(s, &st, &len) != 0 || collect_body(s, len, &body) != 0 ||
	    st != REPLY_OK)
		goto out;
	size_t max = 0;
	for (size_t i = 0; i < body.len; i++)
		max += body.data[i] == '\n';
	cand.names = calloc(max + 1, sizeof(*cand.names));
	if (!cand.names)
		goto out;
	for (size_t i = 0; i < body.len;) {
		char *nl = memchr(body.data + i, '\n', body.len - i);
		size_t n = nl ? (size_t)(nl - (body.data + i)) : body.len - i;
		if (n > 0 && cand.n < max + 1)
			cand.names[cand.n++] = strndup(body.data + i, n);
		i += n + 1;
	}
out:
	rt_buf_free(&req);
	rt_buf_free(&body);
}

static char *complete_entry(const char *text, int state)
{
	if (state == 0 && completing)
		fetch_candidates(completing, text);
	while (cand.next < cand.n) {
		const char *name = cand.names[cand.next++];
		if (name)
			return strdup(name);
	}
	return NULL;
}

static char **complete_names(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	rl_attempted_completion_over = 1; /* names from the server only, never file names */
	return rl_completion_matches(text, complete_entry);
}

/* libedit's input: Ctrl-C (SIGINT, or the byte when the terminal passes it) becomes ^U, which
 * clears the line being edited; the session stays. */
static int repl_getc(FILE *f)
{
	unsigned char c;

	for (;;) {
		ssize_t n = read(fileno(f), &c, 1);
		if (n == 1)
			return c == 0x03 ? 0x15 : c;
		if (n == 0 || errno != EINTR)
			return EOF;
		if (got_sigint) {
			got_sigint = 0;
			return 0x15;
		}
	}
}

static int read_json_reply(struct session *s, enum reply_status *st, bool print)
{
	struct rt_buf line = { 0 };

	if (read_line(s, &line, 0) != 0) {
		rt_buf_free(&line);
		return -1;
	}
	static const char ok[] = "{\"ok\":true", bye[] = "{\"ok\":true,\"bye\":";
	if (line.len >= sizeof(bye) - 1 && memcmp(line.data, bye, sizeof(bye) - 1) == 0)
		*st = REPLY_BYE;
	else if (line.len >= sizeof(ok) - 1 && memcmp(line.data, ok, sizeof(ok) - 1) == 0)
		*st = REPLY_OK;
	else
		*st = REPLY_ERROR;
	if (print && line.len > 0) {
		fwrite(line.data, 1, line.len, s->out);
		fputc('\n', s->out);
		fflush(s->out);
	}
	rt_buf_free(&line);
	return 0;
}

/* Whether `line` is the control command `cmd` (`\json`, `\text`) and nothing after it but
 * blanks, as the server reads it. */
static bool is_command(const char *line, const char *cmd)
{
	size_t n = strlen(cmd);
	if (strncmp(line, cmd, n) != 0)
		return false;
	for (line += n; *line; line++)
		if (*line != ' ' && *line != '\t' && *line != '\r')
			return false;
	return true;
}

/* Send one line and read its reply. The server answers `\json` with a JSON line and switches
 * the connection to JSON mode, and `\text` with a text frame: follow it. Returns 0 (with *st)
 * or -1 (reported). */
static int exchange(struct session *s, const char *line, size_t len, enum reply_status *st)
{
	if (write_all(s, line, len) != 0 || write_all(s, "\n", 1) != 0)
		return -1;
	if (is_command(line, "\\json")) {
		s->json = true;
		return read_json_reply(s, st, true);
	}
	if (is_command(line, "\\text")) {
		s->json = false;
		return read_text_reply(s, st);
	}
	if (s->json)
		return read_json_reply(s, st, true);
	return read_text_reply(s, st);
}

/* The next input line (without '\n'), malloc'd, or NULL at the end of the input. */
static char *next_line(struct session *s, bool interactive, bool more, const char **expr)
{
	if (*expr) {
		if (**expr == '\0')
			return NULL;
		const char *nl = strchr(*expr, '\n');
		size_t n = nl ? (size_t)(nl - *expr) : strlen(*expr);
		char *line = strndup(*expr, n);
		*expr += nl ? n + 1 : n;
		return line;
	}
	if (interactive) {
		char prompt[128];
		snprintf(prompt, sizeof(prompt), "%s%s ", s->o->name, more ? ">>" : ">");
		return readline(prompt);
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, s->in);
	if (n < 0) {
		free(line);
		return NULL;
	}
	if (n > 0 && line[n - 1] == '\n')
		line[n - 1] = '\0';
	return line;
}

static void history_add(const char *file, const char *line)
{
	const char *p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return;
	add_history(line);
	if (file) {
		mode_t old = umask(077); /* the history may hold secrets typed by the operator */
		write_history(file);
		umask(old);
	}
}

int rt_repl_session(int fd, const char *label, const struct rt_repl_opts *opts)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return RT_REPL_EXIT_IO;
	struct rt_repl_opts o = *opts;
	s->fd = fd;
	s->label = label;
	s->o = &o;
	s->in = o.in ? o.in : stdin;
	s->out = o.out ? o.out : stdout;
	s->err = o.err ? o.err : stderr;
	if (!o.name)
		o.name = label;
	if (o.timeout > 0) {
		struct timeval tv = {
			.tv_sec = (time_t)o.timeout,
			.tv_usec = (suseconds_t)((o.timeout - (double)(time_t)o.timeout) * 1e6)
		};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	bool interactive = !o.expr && (o.interactive < 0 ? isatty(STDIN_FILENO) : o.interactive);
	int code = RT_REPL_EXIT_IO;
	enum reply_status st;
	struct sigaction old_int;
	bool editing = false; /* libedit and the SIGINT handler are set up */
	s->json = o.json;
	if (o.json) {
		if (write_all(s, "\\json\n", 6) != 0 || read_json_reply(s, &st, false) != 0)
			goto out;
		if (st != REPLY_OK) {
			fprintf(s->err, "moonstack repl: %s refused JSON mode\n", label);
			goto out;
		}
	}
	if (interactive) {
		static char breaks[] = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
		struct sigaction sa = { .sa_handler =
						on_sigint }; /* no SA_RESTART: reads see EINTR */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old_int);
		editing = true;
		got_sigint = 0;
		s->interruptible = true;
		completing = s;
		rl_catch_signals = 0;
		rl_getc_function = repl_getc;
		rl_attempted_completion_function = complete_names;
		rl_completer_word_break_characters = breaks;
		rl_basic_word_break_characters = breaks;
		rl_completion_append_character = '\0';
		using_history();
		stifle_history(HISTORY_MAX);
		if (o.history)
			read_history(o.history);
	}
	const char *expr = o.expr;
	bool more = false, failed = false, eof = false;
	for (;;) {
		char *line = next_line(s, interactive, more, &expr);
		if (!line) {
			eof = true;
			break;
		}
		if (interactive)
			history_add(o.history, line);
		int rc = exchange(s, line, strlen(line), &st);
		free(line);
		if (rc != 0)
			goto out;
		more = st == REPLY_MORE;
		if (st == REPLY_ERROR)
			failed = true;
		if (st == REPLY_BYE)
			break;
	}
	if (interactive && eof)
		fputc('\n', s->out); /* Ctrl-D: end the prompt's line */
	if (more) {
		fprintf(s->err, "moonstack repl: incomplete chunk at the end of the input\n");
		failed = true;
	}
	code = o.expr && failed ? RT_REPL_EXIT_EVAL : RT_REPL_EXIT_OK;
out:
	if (editing) {
		sigaction(SIGINT, &old_int, NULL);
		completing = NULL;
		free_candidates();
	}
	fflush(s->out);
	free(s);
	return code;
}

int rt_repl_client_run(const char *path, const struct rt_repl_opts *opts)
{
	char err[256 + sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd = rt_repl_connect(path, err, sizeof(err));
	if (fd < 0) {
		fprintf(opts->err ? opts->err : stderr, "moonstack repl: %s\n", err);
		return RT_REPL_EXIT_IO;
	}
	struct rt_repl_opts o = *opts;
	if (!o.name) {
		const char *slash = strrchr(path, '/');
		o.name = slash && slash[1] ? slash + 1 : path;
	}
	int code = rt_repl_session(fd, path, &o);
	close(fd);
	return code;
}

static const char *opt_string(lua_State *L, const char *field)
{
	lua_getfield(L, 2, field);
	const char *v = NULL;
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_argerror(L, 2,
				      lua_pushfstring(L, "replclient.run: opts.%s must be a string",
						      field));
		v = lua_tostring(L, -1); /* stays alive: opts holds it */
	}
	lua_pop(L, 1);
	return v;
}

/* run(socket_path [, opts]) -> exit code */
static int l_run(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct rt_repl_opts o = { .interactive = -1 };

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_getfield(L, 2, "json");
		o.json = lua_toboolean(L, -1);
		lua_getfield(L, 2, "timeout");
		if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
			luaL_argerror(L, 2, "replclient.run: opts.timeout must be a number");
		o.timeout = lua_tonumber(L, -1);
		lua_pop(L, 2);
		o.expr = opt_string(L, "expr");
		o.history = opt_string(L, "history");
		o.name = opt_string(L, "name");
	}
	fflush(stdout);
	lua_pushinteger(L, rt_repl_client_run(path, &o));
	return 1;
}

static const luaL_Reg functions[] = {
	{ "run", l_run },
	{ NULL, NULL },
};

int luaopen_moonstack_native_replclient(lua_State *L)
{
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	return 1;
}
