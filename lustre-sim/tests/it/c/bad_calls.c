/* Exercises the fake liblustreapi's error codes. Prints "name=rc" lines. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lustre/lustreapi.h>

#define SHOW(name, expr) printf("%s=%d\n", name, (int)(expr))

/* A handle with another magic but the real prefix, like the preload shim's. */
struct foreign_ct {
	unsigned magic;
	char *mnt;
	void *kuch;
	int mnt_fd;
	int open_by_fid_fd;
	void *kuc;
};

/* Error callback: formats what the variadic llapi_error passed through. */
static void capture_error(enum llapi_message_level level, int err,
			  const char *fmt, va_list ap)
{
	char text[128];

	vsnprintf(text, sizeof(text), fmt, ap);
	printf("error_varargs=%d/%d/%s\n", (int)(level & LLAPI_MSG_MASK), err, text);
}

int main(int argc, char **argv)
{
	const char *mnt = argv[1], *file = argv[2], *other = argv[3];
	struct hsm_copytool_private *ct = NULL, *ct2 = NULL;
	struct hsm_copyaction_private *hcp = NULL;
	struct hsm_action_list *hal;
	struct hsm_action_item *hai, copy;
	struct hsm_user_request *hur;
	struct hsm_extent he = { 0, (__u64)-1 };
	struct lu_fid fid, ofid;
	struct foreign_ct foreign;
	char fsname[MAX_OBD_NAME + 1];
	int msgsize, rc, idx;

	if (argc != 4)
		return 2;
	SHOW("register_tmp", llapi_hsm_copytool_register(&ct2, "/", 0, NULL, 0));
	SHOW("register_null", llapi_hsm_copytool_register(NULL, mnt, 0, NULL, 0));
	SHOW("register_negative", llapi_hsm_copytool_register(&ct2, mnt, 1, (int[]){ -1 }, 0));
	SHOW("recv_null", llapi_hsm_copytool_recv(NULL, &hal, &msgsize));
	SHOW("get_fd_null", llapi_hsm_copytool_get_fd(NULL));
	SHOW("unregister_null", llapi_hsm_copytool_unregister(NULL));
	SHOW("unregister_nullp", llapi_hsm_copytool_unregister(&ct2));
	SHOW("end_null", llapi_hsm_action_end(NULL, &he, 0, 0));
	SHOW("progress_null", llapi_hsm_action_progress(NULL, &he, 0, 0));
	SHOW("get_dfid_null", llapi_hsm_action_get_dfid(NULL, &fid));
	SHOW("search_fsname_tmp", llapi_search_fsname("/", fsname));
	SHOW("search_fsname", llapi_search_fsname(mnt, fsname));
	printf("fsname=%s\n", fsname);
	SHOW("fid_parse_bad", llapi_fid_parse("nope", &fid, NULL));

	rc = llapi_hsm_copytool_register(&ct, mnt, 0, NULL, O_NONBLOCK);
	SHOW("register", rc);
	if (rc != 0)
		return 1;
	SHOW("recv_empty", llapi_hsm_copytool_recv(ct, &hal, &msgsize));
	SHOW("path2fid", llapi_path2fid(file, &fid));
	SHOW("path2fid_other", llapi_path2fid(other, &ofid));

	/* Unknown cookie: begin (COPY_START) gets -ENOENT. */
	memset(&copy, 0, sizeof(copy));
	copy.hai_len = sizeof(copy);
	copy.hai_action = HSMA_ARCHIVE;
	copy.hai_fid = fid;
	copy.hai_dfid = fid;
	copy.hai_extent = he;
	copy.hai_cookie = 0x1234;
	SHOW("begin_unknown_cookie", llapi_hsm_action_begin(&hcp, ct, &copy, -1, 0, false));

	/* A real request. */
	hur = llapi_hsm_user_request_alloc(1, 0);
	hur->hur_request.hr_action = HUA_ARCHIVE;
	hur->hur_request.hr_itemcount = 1;
	hur->hur_user_item[0].hui_fid = fid;
	hur->hur_user_item[0].hui_extent = he;
	SHOW("request", llapi_hsm_request(file, hur));
	free(hur);
	do {
		usleep(20000);
		rc = llapi_hsm_copytool_recv(ct, &hal, &msgsize);
	} while (rc == -EAGAIN);
	SHOW("recv", rc);
	if (rc != 0)
		return 1;
	hai = hai_first(hal);
	SHOW("hal_count", hal->hal_count);
	SHOW("msgsize_is_hal_size", (size_t)msgsize == hal_size(hal));
	copy = *hai;

	/* Wrong fid with the right cookie: -EINVAL. */
	copy.hai_fid = ofid;
	copy.hai_dfid = ofid;
	SHOW("begin_wrong_fid", llapi_hsm_action_begin(&hcp, ct, &copy, -1, 0, false));
	copy = *hai;

	/* Any handle with the real prefix works for begin/end (magic unchecked). */
	memset(&foreign, 0, sizeof(foreign));
	foreign.magic = 0xC52C9B6F;
	foreign.mnt_fd = open(mnt, O_RDONLY | O_DIRECTORY);
	foreign.open_by_fid_fd = -1;
	rc = llapi_hsm_action_begin(&hcp, (struct hsm_copytool_private *)&foreign, &copy, -1, 0, false);
	SHOW("begin_foreign_ct", rc);
	SHOW("get_fd_archive_ok", llapi_hsm_action_get_fd(hcp) >= 0);
	SHOW("progress", llapi_hsm_action_progress(hcp, &he, 0, 0));
	SHOW("mdt_index", llapi_get_mdt_index_by_fid(foreign.mnt_fd, &fid, &idx));
	printf("mdt_index_value=%d\n", idx);
	SHOW("end", llapi_hsm_action_end(&hcp, &he, 0, 0));
	SHOW("end_cleared", hcp == NULL);
	SHOW("end_again", llapi_hsm_action_end(&hcp, &he, 0, 0));

	/* Completed request: its cookie is unknown now. */
	rc = llapi_hsm_action_begin(&hcp, ct, &copy, -1, 0, true);
	SHOW("begin_is_error", rc);
	SHOW("get_dfid_is_error_archive", llapi_hsm_action_get_dfid(hcp, &fid) == 0);
	SHOW("end_unknown_cookie", llapi_hsm_action_end(&hcp, &he, 0, EIO));
	SHOW("end_unknown_cookie_cleared", hcp == NULL);

	/* REMOVE: get_fd and get_dfid are -EINVAL. */
	copy.hai_action = HSMA_REMOVE;
	SHOW("begin_remove", llapi_hsm_action_begin(&hcp, ct, &copy, -1, 0, false));
	SHOW("get_fd_remove", llapi_hsm_action_get_fd(hcp));
	SHOW("get_dfid_remove", llapi_hsm_action_get_dfid(hcp, &fid));
	SHOW("end_remove_unknown", llapi_hsm_action_end(&hcp, &he, 0, 0));

	/* Cancel of a running request: CANCEL item with the same cookie, then
	 * progress gets -ECANCELED. */
	hur = llapi_hsm_user_request_alloc(1, 0);
	hur->hur_request.hr_action = HUA_ARCHIVE;
	hur->hur_request.hr_itemcount = 1;
	hur->hur_user_item[0].hui_fid = ofid;
	hur->hur_user_item[0].hui_extent = he;
	SHOW("request_other", llapi_hsm_request(other, hur));
	do {
		usleep(20000);
		rc = llapi_hsm_copytool_recv(ct, &hal, &msgsize);
	} while (rc == -EAGAIN);
	copy = *hai_first(hal);
	SHOW("begin_other", llapi_hsm_action_begin(&hcp, ct, &copy, -1, 0, false));
	hur->hur_request.hr_action = HUA_CANCEL;
	SHOW("request_cancel", llapi_hsm_request(other, hur));
	free(hur);
	do {
		usleep(20000);
		rc = llapi_hsm_copytool_recv(ct, &hal, &msgsize);
	} while (rc == -EAGAIN);
	SHOW("recv_cancel", rc);
	SHOW("cancel_action", hai_first(hal)->hai_action);
	SHOW("cancel_same_cookie", hai_first(hal)->hai_cookie == copy.hai_cookie);
	SHOW("progress_cancelled", llapi_hsm_action_progress(hcp, &he, 0, 0));
	SHOW("end_cancelled", llapi_hsm_action_end(&hcp, &he, 0, ECANCELED));

	SHOW("unregister", llapi_hsm_copytool_unregister(&ct));
	SHOW("unregister_cleared", ct == NULL);

	/* The variadic entry points pass their arguments through untouched. */
	llapi_msg_set_level(LLAPI_MSG_INFO);
	llapi_printf(LLAPI_MSG_NORMAL, "printf_varargs=%d%s%c\n", 42, "abc", 'z');
	llapi_error_callback_set(capture_error);
	llapi_error(LLAPI_MSG_ERROR, -EIO, "%s-%ld-%d", "boom", 1234567890123L, 7);
	fflush(stdout);

	/* State of the archived file, through the fake's own calls. */
	{
		struct hsm_user_state hus;
		struct hsm_current_action hca;

		memset(&hus, 0xff, sizeof(hus));
		SHOW("state_get", llapi_hsm_state_get(file, &hus));
		SHOW("state_flags", hus.hus_states);
		SHOW("state_archive_id", hus.hus_archive_id);
		SHOW("state_get_null", llapi_hsm_state_get(file, NULL));
		memset(&hca, 0xff, sizeof(hca));
		SHOW("current_action", llapi_hsm_current_action(file, &hca));
		SHOW("current_action_state", hca.hca_state);
		SHOW("current_action_null", llapi_hsm_current_action(NULL, &hca));
	}
	return 0;
}
