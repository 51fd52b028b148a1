/* A stand-in "real" liblustreapi.so.1 for the shim's tests (the simulator's
 * fake library replaces it in the end-to-end tests). Only what the shim
 * forwards to is here:
 * - llapi_search_fsname: writes "stubfs";
 * - llapi_hsm_action_begin: reads ct->mnt_fd and ct->open_by_fid_fd at the
 *   offsets of Lustre's private struct and fails with -EBADF unless both are
 *   open directories; fails with -ENOENT for cookie 4243 ("unknown to the
 *   MDT"); otherwise allocates a copy-action handle holding the cookie;
 * - llapi_hsm_action_end: frees it, sets *phcp = NULL, returns 0.
 * Each call is logged on stdout as "stub <call> <cookie> <rc>". */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct hsm_copytool_private {
	int magic;
	char *mnt;
	void *kuch;
	int mnt_fd;
	int open_by_fid_fd;
	void *kuc;
};

struct hsm_copyaction_private {
	uint32_t magic;
	uint64_t cookie;
};

static int is_dir(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

int llapi_search_fsname(const char *pathname, char *fsname)
{
	(void)pathname;
	strcpy(fsname, "stubfs");
	return 0;
}

int llapi_hsm_action_begin(struct hsm_copyaction_private **phcp,
			   const struct hsm_copytool_private *ct,
			   const void *hai, int restore_mdt_index,
			   int restore_open_flags, bool is_error)
{
	uint64_t cookie;
	int rc = 0;

	(void)restore_mdt_index;
	(void)restore_open_flags;
	(void)is_error;
	memcpy(&cookie, (const char *)hai + 56, 8);
	if (!is_dir(ct->mnt_fd) || !is_dir(ct->open_by_fid_fd))
		rc = -EBADF;
	else if (cookie == 4243)
		rc = -ENOENT;
	if (rc == 0) {
		*phcp = calloc(1, sizeof(**phcp));
		(*phcp)->magic = 0x19880429;
		(*phcp)->cookie = cookie;
	}
	printf("stub begin %llu %d\n", (unsigned long long)cookie, rc);
	fflush(stdout);
	return rc;
}

int llapi_hsm_action_end(struct hsm_copyaction_private **phcp,
			 const void *he, int hp_flags, int errval)
{
	(void)he;
	(void)hp_flags;
	(void)errval;
	if (phcp == NULL || *phcp == NULL)
		return -EINVAL;
	printf("stub end %llu 0\n", (unsigned long long)(*phcp)->cookie);
	fflush(stdout);
	free(*phcp);
	*phcp = NULL;
	return 0;
}

/* The copytool calls these; under LD_PRELOAD the shim's win. Reaching one
 * of these would mean the shim was not preloaded. */
int llapi_hsm_copytool_register(void **priv, const char *mnt, int n, int *a, int f)
{
	(void)priv; (void)mnt; (void)n; (void)a; (void)f;
	fprintf(stderr, "stub register called: the shim is not preloaded\n");
	return -EPROTO;
}
int llapi_hsm_copytool_unregister(void **priv) { (void)priv; return -EPROTO; }
int llapi_hsm_copytool_get_fd(void *ct) { (void)ct; return -EPROTO; }
int llapi_hsm_copytool_recv(void *ct, void **hal, int *sz) { (void)ct; (void)hal; (void)sz; return -EPROTO; }
