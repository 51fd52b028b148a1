/* A minimal copytool for the shim's tests: registers with O_NONBLOCK, checks
 * that recv says -EAGAIN before work, waits for work with poll() on
 * llapi_hsm_copytool_get_fd, receives one HAL, prints it, begins its first
 * two items through the "real" library (tests/c/stub_lustreapi.c), ends the
 * first, and unregisters.
 *
 * Usage: poll_copytool <mount> <archive_id>
 * Output lines: "key value", checked by tests/c_poll.rs. Exit 0 on success. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hsm_copytool_private;
struct hsm_copyaction_private;

int llapi_hsm_copytool_register(struct hsm_copytool_private **priv,
				const char *mnt, int archive_count,
				int *archives, int rfd_flags);
int llapi_hsm_copytool_unregister(struct hsm_copytool_private **priv);
int llapi_hsm_copytool_get_fd(struct hsm_copytool_private *ct);
int llapi_hsm_copytool_recv(struct hsm_copytool_private *ct,
			    void **hal, int *msgsize);
int llapi_hsm_action_begin(struct hsm_copyaction_private **phcp,
			   const struct hsm_copytool_private *ct,
			   const void *hai, int restore_mdt_index,
			   int restore_open_flags, bool is_error);
int llapi_hsm_action_end(struct hsm_copyaction_private **phcp,
			 const void *he, int hp_flags, int errval);

int main(int argc, char **argv)
{
	struct hsm_copytool_private *ct = NULL;
	struct hsm_copyaction_private *hcp = NULL, *hcp2 = NULL;
	size_t second;
	int rc2;
	uint32_t hai_len;
	struct pollfd pfd;
	void *hal = NULL;
	int msgsize = 0, rc, fd, archive;
	uint32_t count, archive_id;
	uint64_t cookie;
	const unsigned char *p;
	size_t first;

	if (argc != 3)
		return 2;
	archive = atoi(argv[2]);
	rc = llapi_hsm_copytool_register(&ct, argv[1], 1, &archive, O_NONBLOCK);
	printf("register %d\n", rc);
	if (rc)
		return 1;
	rc = llapi_hsm_copytool_recv(ct, &hal, &msgsize);
	printf("recv_before %d\n", rc);
	fd = llapi_hsm_copytool_get_fd(ct);
	printf("get_fd_ok %d\n", fd >= 0);
	fflush(stdout);
	pfd.fd = fd;
	pfd.events = POLLIN;
	rc = poll(&pfd, 1, 20000);
	printf("poll %d %d\n", rc, (pfd.revents & POLLIN) != 0);
	rc = llapi_hsm_copytool_recv(ct, &hal, &msgsize);
	printf("recv %d\n", rc);
	if (rc)
		return 1;
	p = hal;
	memcpy(&count, p + 4, 4);
	memcpy(&archive_id, p + 24, 4);
	printf("hal_count %u\n", count);
	printf("hal_archive_id %u\n", archive_id);
	printf("hal_fsname %s\n", (const char *)(p + 32));
	printf("aligned %d\n", ((uintptr_t)hal % 8) == 0);
	first = 32 + ((strlen((const char *)(p + 32)) + 1 + 7) & ~(size_t)7);
	memcpy(&cookie, p + first + 56, 8);
	printf("first_cookie %llu\n", (unsigned long long)cookie);
	printf("msgsize %d\n", msgsize);
	/* After taking the work, the fd is not readable any more. */
	rc = poll(&pfd, 1, 0);
	printf("poll_after %d\n", rc);
	/* Item 1 succeeds and ends with errval 0; item 2 fails to begin (the
	 * stub says ENOENT), so the shim reports it done with that error. */
	rc = llapi_hsm_action_begin(&hcp, ct, p + first, -1, 0, false);
	printf("begin1 %d\n", rc);
	memcpy(&hai_len, p + first, 4);
	second = first + ((hai_len + 7) & ~(size_t)7);
	rc2 = llapi_hsm_action_begin(&hcp2, ct, p + second, -1, 0, false);
	printf("begin2 %d\n", rc2);
	rc = llapi_hsm_action_end(&hcp, NULL, 0, 0);
	printf("end1 %d %d\n", rc, hcp == NULL);
	/* Ending again (as a cancel and its action both ending would): no-op. */
	rc = llapi_hsm_action_end(&hcp, NULL, 0, 0);
	printf("end_again %d\n", rc);
	fflush(stdout);
	rc = llapi_hsm_copytool_unregister(&ct);
	printf("unregister %d %d\n", rc, ct == NULL);
	rc = llapi_hsm_copytool_unregister(&ct);
	printf("unregister_again %d\n", rc);
	return 0;
}
