/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * The parts of the fake liblustreapi that take C variadic arguments or a
 * va_list: llapi_error, llapi_printf, llapi_hsm_log_error, and the HSM event
 * FIFO they write to. These are compiled with hidden visibility under
 * *_impl names; the Rust side exports the public names as naked tail jumps
 * (see lib.rs), because a Rust cdylib only exports Rust symbols.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lustre/lustreapi.h>

/* Provided by the Rust side: the callback set with
 * llapi_error_callback_set, or NULL for the default one. */
extern llapi_log_callback_t fakelib_error_callback(void);

static void default_error_cb(enum llapi_message_level level, int err,
			     const char *fmt, va_list ap)
{
	vfprintf(stderr, fmt, ap);
	if (!(level & LLAPI_MSG_NO_ERRNO) && err != 0)
		fprintf(stderr, ": %s (%d)", strerror(err), err);
	fputc('\n', stderr);
}

void fakelib_llapi_error_impl(enum llapi_message_level level, int err,
			      const char *fmt, ...)
{
	llapi_log_callback_t cb = fakelib_error_callback();
	va_list ap;

	if ((int)(level & LLAPI_MSG_MASK) > llapi_msg_get_level())
		return;
	if (cb == NULL)
		cb = default_error_cb;
	va_start(ap, fmt);
	cb(level, err < 0 ? -err : err, fmt, ap);
	va_end(ap);
}

void fakelib_llapi_printf_impl(enum llapi_message_level level,
			       const char *fmt, ...)
{
	va_list ap;

	if ((int)(level & LLAPI_MSG_MASK) > llapi_msg_get_level())
		return;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
}

/* ---- HSM event FIFO ---------------------------------------------------- */

static int event_fd = -1;
static int event_fifo_created;

int fakelib_register_event_fifo(const char *path)
{
	int created = 0;
	int fd;

	if (path == NULL)
		return -EINVAL;
	if (mkfifo(path, 0644) == 0)
		created = 1;
	else if (errno != EEXIST)
		return -errno;
	fd = open(path, O_WRONLY | O_NONBLOCK);
	if (fd < 0) {
		int rc = -errno;

		if (created)
			unlink(path);
		return rc;
	}
	/* A reader may go away: ignore SIGPIPE, as the real library does. */
	signal(SIGPIPE, SIG_IGN);
	event_fd = fd;
	event_fifo_created = created;
	return 0;
}

int fakelib_unregister_event_fifo(const char *path)
{
	if (path == NULL)
		return -EINVAL;
	if (event_fd < 0)
		return 0;
	close(event_fd);
	event_fd = -1;
	if (event_fifo_created)
		unlink(path);
	event_fifo_created = 0;
	return 0;
}

void fakelib_hsm_log_error_impl(enum llapi_message_level level, int rc,
				const char *fmt, va_list args)
{
	char msg[1024], line[2300];
	size_t i, o = 0;
	int n;

	if ((int)(level & LLAPI_MSG_MASK) > llapi_msg_get_level())
		return;
	if (event_fd < 0)
		return;
	vsnprintf(msg, sizeof(msg), fmt, args);
	/* JSON-escape into the event line. */
	n = snprintf(line, sizeof(line), "{\"event_time\": %ld, \"error\": \"",
		     (long)time(NULL));
	o = (size_t)n;
	for (i = 0; msg[i] != '\0' && o < sizeof(line) - 64; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c == '"' || c == '\\') {
			line[o++] = '\\';
			line[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(line + o, 8, "\\u%04x", c);
		} else {
			line[o++] = (char)c;
		}
	}
	n = snprintf(line + o, sizeof(line) - o, "\", \"return_code\": %d}\n",
		     rc);
	if (n > 0 && write(event_fd, line, o + (size_t)n) < 0)
		return;
}
