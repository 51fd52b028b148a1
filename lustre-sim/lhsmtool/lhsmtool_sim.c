/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * lhsmtool-sim: a small POSIX copytool for tests, our stand-in for
 * lhsmtool_posix. It is written against the public liblustreapi API only
 * (<lustre/lustreapi.h>) and runs unchanged on real Lustre or, through
 * LD_LIBRARY_PATH, on the lustre-sim fake library.
 *
 * Usage: lhsmtool-sim [--archive N]... --hsm-root DIR [--fanout N]
 *          [--delay-ms N] [--wait-file PATH] [--fail-every N] [--nonblock]
 *          [--noop] [--trace FILE] MOUNTPOINT
 *
 * Archive copies live in DIR/<fid without braces>. The stderr log is
 * machine-readable (one write per line, see lustre-sim/README.md):
 *   lhsmtool-sim: HAL archive_id=1 flags=0x0 items=3
 * for every action list received, and for every finished item
 *   lhsmtool-sim: ARCHIVE [fid] cookie=0x.. rc=0 errval=0 data=7461673d00
 * where rc is the return of llapi_hsm_action_end (or of the call that
 * failed first, named by an `at=` word before rc), errval what was reported
 * to action_end and data the item's hai_data in lowercase hex.
 *
 * --noop: no data work (benchmarks): begin + end(0) only; RESTORE sizes
 * the volatile file like the original (sparse zeros) instead of copying.
 * --trace FILE: append "<cookie hex> <fid> <CLOCK_REALTIME ns>" for every
 * item when llapi_hsm_copytool_recv returns it (buffered; flushed every
 * 100 ms and at exit).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lustre/lustreapi.h>

#define MAX_ARCHIVES 64
#define CHUNK (1 << 20)
#define MAX_RUNNING 4096
#define MAX_DATA 4096 /* the kernel's limit on hai_data */
#define LOG_LINE (2 * MAX_DATA + 1024)

static struct {
	int archives[MAX_ARCHIVES];
	int archive_count;
	const char *hsm_root;
	const char *mnt;
	int fanout;
	long delay_ms;
	const char *wait_file;
	long fail_every;
	bool nonblock;
	bool noop;
	const char *trace;
} opt = { .fanout = 8 };

/* --trace output; stdio locks the stream, so the flusher may fflush it. */
static FILE *trace_out;

static char fsname[MAX_OBD_NAME + 1];
static int mnt_fd = -1;
static struct hsm_copytool_private *ctdata;
static volatile sig_atomic_t stop_requested;
static atomic_long item_counter;

/* Work queue. */
struct job {
	struct job *next;
	__u64 hal_flags;
	struct hsm_action_item *hai; /* malloc'd copy, hai_len bytes */
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct job *q_head, *q_tail;

/* Cookies of running or queued items that were cancelled. */
static pthread_mutex_t c_lock = PTHREAD_MUTEX_INITIALIZER;
static __u64 cancelled[MAX_RUNNING];
static int n_cancelled;

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...)
{
	char buf[LOG_LINE];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write per line so lines never interleave. */
	if (write(STDERR_FILENO, buf, n) < 0)
		return;
}

/* Lowercase hex of an item's hai_data into buf (at least 2 * MAX_DATA + 1). */
static const char *data_hex(const struct hsm_action_item *hai, char *buf)
{
	static const char digits[] = "0123456789abcdef";
	size_t head = offsetof(struct hsm_action_item, hai_data);
	size_t len = hai->hai_len > head ? hai->hai_len - head : 0;
	size_t i;

	if (len > MAX_DATA)
		len = MAX_DATA;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)hai->hai_data[i];

		buf[2 * i] = digits[c >> 4];
		buf[2 * i + 1] = digits[c & 0xf];
	}
	buf[2 * len] = '\0';
	return buf;
}

static void mark_cancelled(__u64 cookie)
{
	pthread_mutex_lock(&c_lock);
	if (n_cancelled < MAX_RUNNING)
		cancelled[n_cancelled++] = cookie;
	pthread_mutex_unlock(&c_lock);
}

static bool is_cancelled(__u64 cookie)
{
	bool found = false;
	int i;

	pthread_mutex_lock(&c_lock);
	for (i = 0; i < n_cancelled; i++)
		if (cancelled[i] == cookie)
			found = true;
	pthread_mutex_unlock(&c_lock);
	return found;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void archive_path(char *buf, size_t len, const struct lu_fid *fid)
{
	snprintf(buf, len, "%s/" DFID_NOBRACE, opt.hsm_root, PFID(fid));
}

/* Report progress; returns 0 or the negative errno (e.g. -ECANCELED). */
static int report(struct hsm_copyaction_private *hcp, __u64 off, __u64 len,
		  __u64 total, __u64 cookie)
{
	struct hsm_extent he = { .offset = off, .length = len };
	int rc;

	if (is_cancelled(cookie))
		return -ECANCELED;
	rc = llapi_hsm_action_progress(hcp, &he, total, 0);
	return rc;
}

/* --delay-ms: sleep in small steps, reporting progress so a cancel is seen. */
static int delay(struct hsm_copyaction_private *hcp, __u64 cookie)
{
	long left = opt.delay_ms;
	int rc;

	while (left > 0) {
		long step = left < 50 ? left : 50;

		sleep_ms(step);
		left -= step;
		rc = report(hcp, 0, 0, 0, cookie);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Copy src_fd to dst_fd, reporting progress. Returns 0 or -errno. */
static int copy_data(struct hsm_copyaction_private *hcp, int src_fd,
		     int dst_fd, __u64 cookie, __u64 *copied)
{
	char *buf = malloc(CHUNK);
	off_t pos = 0;
	int rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		ssize_t n = pread(src_fd, buf, CHUNK, pos);
		ssize_t done = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		while (done < n) {
			ssize_t w = pwrite(dst_fd, buf + done, n - done,
					   pos + done);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				goto out;
			}
			done += w;
		}
		rc = report(hcp, pos, n, 0, cookie);
		if (rc < 0)
			break;
		pos += n;
	}
out:
	free(buf);
	*copied = pos;
	return rc;
}

static int do_archive(struct hsm_copyaction_private *hcp, __u64 cookie,
		      const struct lu_fid *fid)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	__u64 copied = 0;
	int src, dst, rc;

	src = llapi_hsm_action_get_fd(hcp);
	if (src < 0)
		return src;
	archive_path(path, sizeof(path), fid);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	dst = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (dst < 0) {
		rc = -errno;
		close(src);
		return rc;
	}
	rc = delay(hcp, cookie);
	if (rc == 0)
		rc = copy_data(hcp, src, dst, cookie, &copied);
	if (rc == 0 && fsync(dst) < 0)
		rc = -errno;
	close(dst);
	close(src);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc != 0)
		unlink(tmp);
	return rc;
}

static int do_restore(struct hsm_copyaction_private *hcp, __u64 cookie,
		      const struct lu_fid *fid)
{
	char path[PATH_MAX];
	struct lu_fid dfid;
	struct stat st;
	__u64 copied = 0;
	int src, dst, rc;

	rc = llapi_hsm_action_get_dfid(hcp, &dfid);
	if (rc < 0)
		return rc;
	archive_path(path, sizeof(path), fid);
	src = open(path, O_RDONLY);
	if (src < 0)
		return -errno;
	dst = llapi_hsm_action_get_fd(hcp);
	if (dst < 0) {
		close(src);
		return dst;
	}
	rc = delay(hcp, cookie);
	if (rc == 0)
		rc = copy_data(hcp, src, dst, cookie, &copied);
	if (rc == 0 && fstat(src, &st) == 0 && ftruncate(dst, st.st_size) < 0)
		rc = -errno;
	if (rc == 0 && fsync(dst) < 0)
		rc = -errno;
	close(dst);
	close(src);
	return rc;
}

static int do_remove(struct hsm_copyaction_private *hcp, __u64 cookie,
		     const struct lu_fid *fid)
{
	char path[PATH_MAX];
	int rc;

	rc = delay(hcp, cookie);
	if (rc < 0)
		return rc;
	archive_path(path, sizeof(path), fid);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static void wait_for_file(void)
{
	struct stat st;

	while (opt.wait_file != NULL && !stop_requested &&
	       stat(opt.wait_file, &st) < 0)
		sleep_ms(20);
}

/* The per-item result line; `at` names the call that failed (or NULL). */
static void result(const struct hsm_action_item *hai, const char *at, int rc,
		   int errval)
{
	char hex[2 * MAX_DATA + 1];

	log_msg("lhsmtool-sim: %s " DFID " cookie=%#llx%s%s rc=%d errval=%d data=%s",
		hsm_copytool_action2name(hai->hai_action), PFID(&hai->hai_fid),
		(unsigned long long)hai->hai_cookie, at != NULL ? " at=" : "",
		at != NULL ? at : "", rc, errval, data_hex(hai, hex));
}

/* --noop RESTORE: no copy; the volatile file gets the original's size
 * (sparse zeros, what a released file reads as). Best effort. */
static int noop_restore(struct hsm_copyaction_private *hcp,
			const struct lu_fid *fid)
{
	struct stat st;
	int src, dst, rc = 0;

	src = llapi_open_by_fid(opt.mnt, fid, O_RDONLY | O_NONBLOCK);
	if (src < 0)
		return 0;
	dst = llapi_hsm_action_get_fd(hcp);
	if (dst >= 0 && fstat(src, &st) == 0 && st.st_size > 0 &&
	    ftruncate(dst, st.st_size) < 0)
		rc = -errno;
	if (dst >= 0)
		close(dst);
	close(src);
	return rc;
}

static void process(struct job *job)
{
	struct hsm_action_item *hai = job->hai;
	struct hsm_copyaction_private *hcp = NULL;
	struct hsm_extent he = hai->hai_extent;
	__u64 cookie = hai->hai_cookie;
	long n = atomic_fetch_add(&item_counter, 1) + 1;
	int mdt_index = -1;
	int rc, errval = 0;

	wait_for_file();
	switch (hai->hai_action) {
	case HSMA_ARCHIVE:
	case HSMA_REMOVE:
		break;
	case HSMA_RESTORE:
		rc = llapi_get_mdt_index_by_fid(mnt_fd, &hai->hai_fid,
						&mdt_index);
		if (rc < 0) {
			result(hai, "get_mdt_index", rc, 0);
			return;
		}
		break;
	default:
		rc = llapi_hsm_action_begin(&hcp, ctdata, hai, -1, 0, true);
		if (rc == 0)
			rc = llapi_hsm_action_end(&hcp, &he, 0, EINVAL);
		result(hai, NULL, rc, EINVAL);
		return;
	}

	if (opt.fail_every > 0 && n % opt.fail_every == 0) {
		rc = llapi_hsm_action_begin(&hcp, ctdata, hai, mdt_index, 0,
					    true);
		if (rc == 0)
			rc = llapi_hsm_action_end(&hcp, &he, 0, EIO);
		result(hai, NULL, rc, EIO);
		return;
	}

	rc = llapi_hsm_action_begin(&hcp, ctdata, hai, mdt_index, 0, false);
	if (rc < 0) {
		result(hai, "begin", rc, 0);
		return;
	}
	if (is_cancelled(cookie))
		rc = -ECANCELED;
	else if (opt.noop)
		rc = hai->hai_action == HSMA_RESTORE ?
			     noop_restore(hcp, &hai->hai_fid) : 0;
	else if (hai->hai_action == HSMA_ARCHIVE)
		rc = do_archive(hcp, cookie, &hai->hai_fid);
	else if (hai->hai_action == HSMA_RESTORE)
		rc = do_restore(hcp, cookie, &hai->hai_fid);
	else
		rc = do_remove(hcp, cookie, &hai->hai_fid);
	errval = rc < 0 ? -rc : 0;
	rc = llapi_hsm_action_end(&hcp, &he, 0, errval);
	result(hai, NULL, rc, errval);
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct job *job;

		pthread_mutex_lock(&q_lock);
		while (q_head == NULL)
			pthread_cond_wait(&q_cond, &q_lock);
		job = q_head;
		q_head = job->next;
		if (q_head == NULL)
			q_tail = NULL;
		pthread_mutex_unlock(&q_lock);

		process(job);
		free(job->hai);
		free(job);
	}
	return NULL;
}

static void enqueue(const struct hsm_action_item *hai, __u64 flags)
{
	struct job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return;
	job->hai = malloc(hai->hai_len);
	if (job->hai == NULL) {
		free(job);
		return;
	}
	memcpy(job->hai, hai, hai->hai_len);
	job->hal_flags = flags;
	pthread_mutex_lock(&q_lock);
	if (q_tail != NULL)
		q_tail->next = job;
	else
		q_head = job;
	q_tail = job;
	pthread_cond_signal(&q_cond);
	pthread_mutex_unlock(&q_lock);
}

/* --trace: one line per item, stamped when recv returned the list. */
static void trace_hal(struct hsm_action_list *hal, int msgsize,
		      const struct timespec *ts)
{
	struct hsm_action_item *hai = hai_first(hal);
	unsigned long long ns = (unsigned long long)ts->tv_sec * 1000000000ULL +
				(unsigned long long)ts->tv_nsec;
	__u32 i;

	for (i = 0; i < hal->hal_count; i++, hai = hai_next(hai)) {
		if ((char *)hai + sizeof(*hai) - (char *)hal > msgsize)
			return;
		fprintf(trace_out, "0x%llx " DFID " %llu\n",
			(unsigned long long)hai->hai_cookie, PFID(&hai->hai_fid),
			ns);
	}
}

static void *trace_flusher(void *arg)
{
	(void)arg;
	for (;;) {
		sleep_ms(100);
		fflush(trace_out);
	}
	return NULL;
}

static void handle_hal(struct hsm_action_list *hal, int msgsize)
{
	struct hsm_action_item *hai;
	__u32 i;

	if (hal->hal_version != HAL_VERSION) {
		log_msg("lhsmtool-sim: bad hal_version %u", hal->hal_version);
		return;
	}
	if (strcmp(hal->hal_fsname, fsname) != 0) {
		log_msg("lhsmtool-sim: hal for fsname '%s', expected '%s'",
			hal->hal_fsname, fsname);
		return;
	}
	log_msg("lhsmtool-sim: HAL archive_id=%u flags=0x%llx items=%u",
		hal->hal_archive_id, (unsigned long long)hal->hal_flags,
		hal->hal_count);
	hai = hai_first(hal);
	for (i = 0; i < hal->hal_count; i++, hai = hai_next(hai)) {
		if ((char *)hai - (char *)hal > msgsize) {
			log_msg("lhsmtool-sim: item %u beyond the message", i);
			return;
		}
		if (hai->hai_action == HSMA_CANCEL) {
			mark_cancelled(hai->hai_cookie);
			log_msg("lhsmtool-sim: CANCEL " DFID " cookie=%#llx",
				PFID(&hai->hai_fid),
				(unsigned long long)hai->hai_cookie);
			continue;
		}
		enqueue(hai, hal->hal_flags);
	}
}

/* An action list just returned by llapi_hsm_copytool_recv. */
static void received(struct hsm_action_list *hal, int msgsize)
{
	if (trace_out != NULL) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		trace_hal(hal, msgsize, &ts);
	}
	handle_hal(hal, msgsize);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(int rc)
{
	fprintf(stderr,
		"usage: lhsmtool-sim [--archive N]... --hsm-root DIR [--fanout N]\n"
		"         [--delay-ms N] [--wait-file PATH] [--fail-every N] [--nonblock]\n"
		"         [--noop] [--trace FILE] MOUNTPOINT\n");
	exit(rc);
}

static long parse_num(const char *s, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno != 0 || *end != '\0' || v < 0) {
		fprintf(stderr, "lhsmtool-sim: invalid %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "archive", required_argument, NULL, 'A' },
		{ "hsm-root", required_argument, NULL, 'p' },
		{ "hsm_root", required_argument, NULL, 'p' },
		{ "fanout", required_argument, NULL, 'F' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "wait-file", required_argument, NULL, 'w' },
		{ "fail-every", required_argument, NULL, 'f' },
		{ "nonblock", no_argument, NULL, 'n' },
		{ "noop", no_argument, NULL, 'N' },
		{ "trace", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sigaction sa;
	int c, rc, i, errors = 0;

	while ((c = getopt_long(argc, argv, "A:p:F:d:w:f:nNt:h", long_opts,
				NULL)) != -1) {
		switch (c) {
		case 'A':
			if (opt.archive_count >= MAX_ARCHIVES) {
				fprintf(stderr, "lhsmtool-sim: too many archives\n");
				return 2;
			}
			opt.archives[opt.archive_count++] =
				(int)parse_num(optarg, "archive id");
			break;
		case 'p':
			opt.hsm_root = optarg;
			break;
		case 'F':
			opt.fanout = (int)parse_num(optarg, "fanout");
			break;
		case 'd':
			opt.delay_ms = parse_num(optarg, "delay");
			break;
		case 'w':
			opt.wait_file = optarg;
			break;
		case 'f':
			opt.fail_every = parse_num(optarg, "fail-every");
			break;
		case 'n':
			opt.nonblock = true;
			break;
		case 'N':
			opt.noop = true;
			break;
		case 't':
			opt.trace = optarg;
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	if (optind != argc - 1 || opt.hsm_root == NULL || opt.fanout < 1)
		usage(2);
	opt.mnt = argv[optind];

	llapi_msg_set_level(LLAPI_MSG_INFO);
	rc = llapi_search_fsname(opt.mnt, fsname);
	if (rc < 0) {
		fprintf(stderr, "lhsmtool-sim: %s: not a Lustre mount: %s\n",
			opt.mnt, strerror(-rc));
		return 1;
	}
	mnt_fd = open(opt.mnt, O_RDONLY | O_DIRECTORY);
	if (mnt_fd < 0) {
		fprintf(stderr, "lhsmtool-sim: open %s: %s\n", opt.mnt,
			strerror(errno));
		return 1;
	}
	if (mkdir(opt.hsm_root, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "lhsmtool-sim: mkdir %s: %s\n", opt.hsm_root,
			strerror(errno));
		return 1;
	}

	if (opt.trace != NULL) {
		pthread_t t;

		trace_out = fopen(opt.trace, "a");
		if (trace_out == NULL) {
			fprintf(stderr, "lhsmtool-sim: open %s: %s\n",
				opt.trace, strerror(errno));
			return 1;
		}
		setvbuf(trace_out, NULL, _IOFBF, 1 << 20);
		if (pthread_create(&t, NULL, trace_flusher, NULL) != 0) {
			fprintf(stderr, "lhsmtool-sim: pthread_create failed\n");
			return 1;
		}
		pthread_detach(t);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a blocking recv returns -EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	rc = llapi_hsm_copytool_register(&ctdata, opt.mnt, opt.archive_count,
					 opt.archives,
					 opt.nonblock ? O_NONBLOCK : 0);
	if (rc < 0) {
		fprintf(stderr, "lhsmtool-sim: cannot register on %s: %s\n",
			opt.mnt, strerror(-rc));
		return 1;
	}
	for (i = 0; i < opt.fanout; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, worker, NULL) != 0) {
			fprintf(stderr, "lhsmtool-sim: pthread_create failed\n");
			return 1;
		}
		pthread_detach(t);
	}
	log_msg("lhsmtool-sim: registered on %s fsname=%s", opt.mnt, fsname);

	rc = 0;
	while (!stop_requested) {
		struct hsm_action_list *hal;
		int msgsize;

		if (opt.nonblock) {
			struct pollfd pfd = {
				.fd = llapi_hsm_copytool_get_fd(ctdata),
				.events = POLLIN,
			};

			if (poll(&pfd, 1, 1000) <= 0)
				continue;
			for (;;) {
				rc = llapi_hsm_copytool_recv(ctdata, &hal,
							     &msgsize);
				if (rc < 0)
					break;
				received(hal, msgsize);
			}
			if (rc == -EAGAIN) {
				rc = 0;
				continue;
			}
		} else {
			rc = llapi_hsm_copytool_recv(ctdata, &hal, &msgsize);
			if (rc == 0) {
				errors = 0;
				received(hal, msgsize);
				continue;
			}
		}
		if (rc == -EINTR)
			continue;
		if (rc == -ESHUTDOWN) {
			log_msg("lhsmtool-sim: shutdown message received");
			rc = 0;
			break;
		}
		if (rc == -EPIPE) {
			log_msg("lhsmtool-sim: the coordinator went away");
			break;
		}
		log_msg("lhsmtool-sim: recv failed: %s", strerror(-rc));
		if (++errors > 10)
			break;
	}
	if (stop_requested)
		rc = 0;
	llapi_hsm_copytool_unregister(&ctdata);
	if (trace_out != NULL)
		fflush(trace_out);
	log_msg("lhsmtool-sim: unregistered, exiting rc=%d", rc);
	return rc == 0 ? 0 : 1;
}
