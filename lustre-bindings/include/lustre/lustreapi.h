/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * coordinatool: liblustreapi prototypes used by HSM copytools.
 *
 * This is an independent transcription of the public liblustreapi 2.15+ API
 * (function names, prototypes, constants), written from the facts collected
 * in the facts file (lustre-hsm-abi.md, sections 1 and 2). It is not a copy
 * of the Lustre header. Only the HSM copytool subset is declared; our fake
 * liblustreapi.so.1 (lustre-sim/fakelib) implements every function below.
 * Functions return 0 or a negative errno unless stated otherwise.
 */
#ifndef COORDINATOOL_LUSTRE_LUSTREAPI_H
#define COORDINATOOL_LUSTRE_LUSTREAPI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <linux/lustre/lustre_user.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Library state and messages ---------------------------------------- */

extern bool liblustreapi_initialized;

static inline bool llapi_liblustreapi_initialized(void)
{
	return liblustreapi_initialized;
}

enum llapi_message_level {
	LLAPI_MSG_OFF = 0,
	LLAPI_MSG_FATAL = 1,
	LLAPI_MSG_ERROR = 2,
	LLAPI_MSG_WARN = 3,
	LLAPI_MSG_NORMAL = 4,
	LLAPI_MSG_INFO = 5,
	LLAPI_MSG_DEBUG = 6,
	LLAPI_MSG_MAX
};

/* Bits of the level argument: the level itself, and "do not print errno". */
#define LLAPI_MSG_MASK 0x00000007
#define LLAPI_MSG_NO_ERRNO 0x00000010

typedef void (*llapi_log_callback_t)(enum llapi_message_level level, int err,
				     const char *fmt, va_list ap);

void llapi_msg_set_level(int level);
int llapi_msg_get_level(void);
llapi_log_callback_t llapi_error_callback_set(llapi_log_callback_t cb);
void llapi_error(enum llapi_message_level level, int err, const char *fmt, ...)
	__attribute__((__format__(__printf__, 3, 4)));
void llapi_printf(enum llapi_message_level level, const char *fmt, ...)
	__attribute__((__format__(__printf__, 2, 3)));

#define llapi_err_noerrno(level, fmt, a...)                                 \
	llapi_error((level) | LLAPI_MSG_NO_ERRNO, 0, fmt, ##a)

int llapi_parse_size(const char *optarg, unsigned long long *size,
		     unsigned long long *size_units, int bytes_spec);

/* ---- Paths and FIDs ---------------------------------------------------- */

int llapi_search_fsname(const char *pathname, char *fsname);
int llapi_fid_parse(const char *fidstr, struct lu_fid *fid, char **endptr);
int llapi_fid2path(const char *device, const char *fidstr, char *path,
		   int pathlen, long long *recno, int *linkno);
int llapi_fid2path_at(int mnt_fd, const struct lu_fid *fid, char *path,
		      int pathlen, long long *recno, int *linkno);
int llapi_path2fid(const char *path, struct lu_fid *fid);
int llapi_fd2fid(int fd, struct lu_fid *fid);
int llapi_open_by_fid(const char *lustre_dir, const struct lu_fid *fid,
		      int open_flags);
int llapi_get_mdt_index_by_fid(int fd, const struct lu_fid *fid,
			       int *mdt_index);

/* ---- HSM: copytool side ------------------------------------------------ */

/* Opaque handles; the library owns them. */
struct hsm_copytool_private;
struct hsm_copyaction_private;

int llapi_hsm_copytool_register(struct hsm_copytool_private **priv,
				const char *mnt, int archive_count,
				int *archives, int rfd_flags);
int llapi_hsm_copytool_unregister(struct hsm_copytool_private **priv);
int llapi_hsm_copytool_get_fd(struct hsm_copytool_private *ct);
int llapi_hsm_copytool_recv(struct hsm_copytool_private *ct,
			    struct hsm_action_list **hal, int *msgsize);
int llapi_hsm_action_begin(struct hsm_copyaction_private **phcp,
			   const struct hsm_copytool_private *ct,
			   const struct hsm_action_item *hai,
			   int restore_mdt_index, int restore_open_flags,
			   bool is_error);
int llapi_hsm_action_end(struct hsm_copyaction_private **phcp,
			 const struct hsm_extent *he, int hp_flags,
			 int errval);
int llapi_hsm_action_progress(struct hsm_copyaction_private *hcp,
			      const struct hsm_extent *he, __u64 total,
			      int hp_flags);
int llapi_hsm_action_get_dfid(const struct hsm_copyaction_private *hcp,
			      struct lu_fid *fid);
int llapi_hsm_action_get_fd(const struct hsm_copyaction_private *hcp);

int llapi_hsm_register_event_fifo(const char *path);
int llapi_hsm_unregister_event_fifo(const char *path);
void llapi_hsm_log_error(enum llapi_message_level level, int _rc,
			 const char *fmt, va_list args);

int llapi_hsm_import(const char *dst, int archive, const struct stat *st,
		     unsigned long long stripe_size, int stripe_offset,
		     int stripe_count, int stripe_pattern, char *pool_name,
		     struct lu_fid *newfid);

/* ---- HSM: user side ---------------------------------------------------- */

int llapi_hsm_state_get(const char *path, struct hsm_user_state *hus);
int llapi_hsm_state_set(const char *path, __u64 setmask, __u64 clearmask,
			__u32 archive_id);
int llapi_hsm_current_action(const char *path, struct hsm_current_action *hca);
/* calloc() of a request for itemcount items and data_len bytes; free() it. */
struct hsm_user_request *llapi_hsm_user_request_alloc(int itemcount,
						      int data_len);
int llapi_hsm_request(const char *path,
		      const struct hsm_user_request *request);

#ifdef __cplusplus
}
#endif

#endif /* COORDINATOOL_LUSTRE_LUSTREAPI_H */
