/*
 * A tiny stand-in for liblustreapi used only by tests/it/llapi.rs to check
 * the dlopen wrapper. The "mount point" is a plain directory:
 *   recv returns the bytes of <mnt>/hal.<n> (n = 0, 1, ...), blocking until
 *   the file exists unless registered O_NONBLOCK (-EAGAIN), and returns
 *   -ESHUTDOWN once <mnt>/shutdown exists;
 *   begin/progress/end/unregister leave files behind for the test to check.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lustre/lustreapi.h>

struct hsm_copytool_private {
	char mnt[512];
	int mnt_fd;
	int nonblock;
	int next;
	char buf[65536];
};

struct hsm_copyaction_private {
	struct hsm_copytool_private *ct;
	struct hsm_action_item hai;
};

static int level = -1;

static void put(const char *mnt, const char *name, unsigned long long cookie,
		const void *data, size_t len)
{
	char path[700];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.%llx", mnt, name, cookie);
	f = fopen(path, "ab");
	if (!f)
		return;
	fwrite(data, 1, len, f);
	fclose(f);
}

void llapi_msg_set_level(int l) { level = l; }
int llapi_msg_get_level(void) { return level; }

int llapi_search_fsname(const char *pathname, char *fsname)
{
	if (strncmp(pathname, "/nope", 5) == 0)
		return -ENODEV;
	strcpy(fsname, "mockfs");
	return 0;
}

int llapi_hsm_copytool_register(struct hsm_copytool_private **priv,
				const char *mnt, int archive_count,
				int *archives, int rfd_flags)
{
	struct hsm_copytool_private *ct;
	char line[64];
	int i;

	if (archive_count > 0 && !archives)
		return -EINVAL;
	for (i = 0; i < archive_count; i++)
		if (archives[i] < 0)
			return -EINVAL;
	ct = calloc(1, sizeof(*ct));
	if (!ct)
		return -ENOMEM;
	snprintf(ct->mnt, sizeof(ct->mnt), "%s", mnt);
	ct->mnt_fd = open(mnt, O_RDONLY | O_DIRECTORY);
	if (ct->mnt_fd < 0) {
		free(ct);
		return -ENOENT;
	}
	ct->nonblock = (rfd_flags & O_NONBLOCK) != 0;
	snprintf(line, sizeof(line), "%d %d", archive_count, ct->nonblock);
	put(mnt, "registered", 0, line, strlen(line));
	*priv = ct;
	return 0;
}

int llapi_hsm_copytool_unregister(struct hsm_copytool_private **priv)
{
	if (!priv || !*priv)
		return -EINVAL;
	put((*priv)->mnt, "unregistered", 0, "1", 1);
	close((*priv)->mnt_fd);
	free(*priv);
	*priv = NULL;
	return 0;
}

int llapi_hsm_copytool_get_fd(struct hsm_copytool_private *ct)
{
	return ct ? ct->mnt_fd : -EINVAL;
}

int llapi_hsm_copytool_recv(struct hsm_copytool_private *ct,
			    struct hsm_action_list **hal, int *msgsize)
{
	char path[700], stop[700];
	int fd;
	ssize_t n;

	snprintf(stop, sizeof(stop), "%s/shutdown", ct->mnt);
	snprintf(path, sizeof(path), "%s/hal.%d", ct->mnt, ct->next);
	for (;;) {
		fd = open(path, O_RDONLY);
		if (fd >= 0)
			break;
		if (access(stop, F_OK) == 0)
			return -ESHUTDOWN;
		if (ct->nonblock)
			return -EAGAIN;
		usleep(1000);
	}
	n = read(fd, ct->buf, sizeof(ct->buf));
	close(fd);
	if (n < 0)
		return -errno;
	ct->next++;
	*hal = (struct hsm_action_list *)ct->buf;
	*msgsize = (int)n;
	return 0;
}

int llapi_hsm_action_begin(struct hsm_copyaction_private **phcp,
			   const struct hsm_copytool_private *ct,
			   const struct hsm_action_item *hai,
			   int restore_mdt_index, int restore_open_flags,
			   bool is_error)
{
	struct hsm_copyaction_private *hcp;
	char line[64];

	if (hai->hai_cookie == 0xdead)
		return -ENOENT;
	hcp = calloc(1, sizeof(*hcp));
	if (!hcp)
		return -ENOMEM;
	hcp->ct = (struct hsm_copytool_private *)ct;
	memcpy(&hcp->hai, hai, sizeof(*hai));
	/* The whole item as received: fixed part plus hai_len - 72 data bytes. */
	put(ct->mnt, "begun", hai->hai_cookie, hai, hai->hai_len);
	snprintf(line, sizeof(line), " %d %d %d", restore_mdt_index,
		 restore_open_flags, is_error);
	put(ct->mnt, "begin-args", hai->hai_cookie, line, strlen(line));
	hcp->hai.hai_len = sizeof(*hai);
	*phcp = hcp;
	return 0;
}

int llapi_hsm_action_progress(struct hsm_copyaction_private *hcp,
			      const struct hsm_extent *he, __u64 total,
			      int hp_flags)
{
	char line[128];

	if (hcp->hai.hai_cookie == 0xcafe)
		return -ECANCELED;
	snprintf(line, sizeof(line), "%llu %llu %llu %d\n",
		 (unsigned long long)he->offset,
		 (unsigned long long)he->length, (unsigned long long)total,
		 hp_flags);
	put(hcp->ct->mnt, "progress", hcp->hai.hai_cookie, line, strlen(line));
	return 0;
}

int llapi_hsm_action_end(struct hsm_copyaction_private **phcp,
			 const struct hsm_extent *he, int hp_flags, int errval)
{
	char line[128];

	if (!phcp || !*phcp)
		return -EINVAL;
	snprintf(line, sizeof(line), "%llu %llu %d %d",
		 (unsigned long long)he->offset,
		 (unsigned long long)he->length, hp_flags, errval);
	put((*phcp)->ct->mnt, "end", (*phcp)->hai.hai_cookie, line,
	    strlen(line));
	free(*phcp);
	*phcp = NULL;
	return errval == 77 ? -EBUSY : 0;
}

int llapi_hsm_action_get_dfid(const struct hsm_copyaction_private *hcp,
			      struct lu_fid *fid)
{
	if (hcp->hai.hai_action != HSMA_ARCHIVE &&
	    hcp->hai.hai_action != HSMA_RESTORE)
		return -EINVAL;
	*fid = hcp->hai.hai_dfid;
	return 0;
}

int llapi_hsm_action_get_fd(const struct hsm_copyaction_private *hcp)
{
	int fd;

	if (hcp->hai.hai_action != HSMA_ARCHIVE &&
	    hcp->hai.hai_action != HSMA_RESTORE)
		return -EINVAL;
	fd = open("/dev/null", O_RDONLY);
	return fd < 0 ? -errno : fd;
}
