/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * coordinatool: Lustre HSM user-space ABI subset.
 *
 * This is an independent transcription of the public Lustre 2.15+ HSM ABI
 * (names, types, sizes, offsets and constants), written from the facts
 * collected in the facts file (lustre-hsm-abi.md, sections 1 and 2). It is not
 * a copy of the Lustre headers. Only what copytools and our simulator need is
 * declared here. All structures are little-endian host order.
 */
#ifndef COORDINATOOL_LINUX_LUSTRE_USER_H
#define COORDINATOOL_LINUX_LUSTRE_USER_H

#include <linux/types.h>
#include <stddef.h>
#include <sys/types.h>
#include <string.h>
#include <fcntl.h>

#ifndef __ALIGN_KERNEL
#define __ALIGN_KERNEL_MASK(x, mask) (((x) + (mask)) & ~(mask))
#define __ALIGN_KERNEL(x, a) __ALIGN_KERNEL_MASK(x, (__typeof__(x))(a) - 1)
#endif

/* ---- Names and limits ------------------------------------------------- */

/* Longest Lustre filesystem name, in characters (no NUL). */
#define LUSTRE_MAXFSNAME 8
/* Longest OBD device name. */
#define MAX_OBD_NAME 128
/* The hidden directory at the root of every client mount. */
#define dot_lustre_name ".lustre"
/* Extended attribute holding a file's layout. */
#define XATTR_LUSTRE_PREFIX "lustre."
#define XATTR_LUSTRE_LOV XATTR_LUSTRE_PREFIX "lov"
/* open(2) flag asking Lustre not to allocate a layout yet. */
#define O_LOV_DELAY_CREATE_1_8 0100000000
#define O_LOV_DELAY_CREATE_MASK (O_NOCTTY | FASYNC)
#define O_LOV_DELAY_CREATE O_LOV_DELAY_CREATE_MASK

/* Archive ids: the pre-2.12 bitmap width, and the (unenforced) array cap. */
#define LL_HSM_ORIGIN_MAX_ARCHIVE (sizeof(__u32) * 8)
#define LL_HSM_MAX_ARCHIVES_PER_AGENT 1024

#ifndef LNET_MTU
#define LNET_MTU (1 << 20)
#endif

/* ---- FIDs -------------------------------------------------------------- */

/* A Lustre file identifier: 16 bytes, packed. */
struct lu_fid {
	__u64 f_seq; /* sequence */
	__u32 f_oid; /* object id within the sequence */
	__u32 f_ver; /* version, 0 in practice */
} __attribute__((packed));

/* Since 2.11 lustre_fid is a macro, not a typedef. */
#define lustre_fid struct lu_fid

/* printf helpers: printf("fid=" DFID "\n", PFID(&fid)); */
#define DFID_NOBRACE "%#llx:0x%x:0x%x"
#define DFID "[" DFID_NOBRACE "]"
#define PFID(fid)                                                          \
	(unsigned long long)(fid)->f_seq, (unsigned int)(fid)->f_oid,       \
		(unsigned int)(fid)->f_ver
#define SFID "0x%llx:0x%x:0x%x"
#define RFID(fid) &((fid)->f_seq), &((fid)->f_oid), &((fid)->f_ver)

/* Longest FID text without and with the brackets. */
#define FID_NOBRACE_LEN 40
#define FID_LEN (FID_NOBRACE_LEN + 2)

/* ---- HSM action lists (MDT -> copytool) ------------------------------- */

/* A byte range; "whole file" is offset 0, length ~0ULL. Packed, 16 bytes. */
struct hsm_extent {
	__u64 offset;
	__u64 length;
} __attribute__((packed));

/* What a copytool is asked to do (hai_action). */
enum hsm_copytool_action {
	HSMA_NONE = 10,
	HSMA_ARCHIVE = 20,
	HSMA_RESTORE = 21,
	HSMA_REMOVE = 22,
	HSMA_CANCEL = 23,
};

static inline const char *hsm_copytool_action2name(enum hsm_copytool_action a)
{
	switch (a) {
	case HSMA_NONE:
		return "NOOP";
	case HSMA_ARCHIVE:
		return "ARCHIVE";
	case HSMA_RESTORE:
		return "RESTORE";
	case HSMA_REMOVE:
		return "REMOVE";
	case HSMA_CANCEL:
		return "CANCEL";
	default:
		return "UNKNOWN";
	}
}

/* One action item: fixed part is 72 bytes, then hai_len - 72 data bytes. */
struct hsm_action_item {
	__u32 hai_len;        /* 72 + data length, not rounded */
	__u32 hai_action;     /* enum hsm_copytool_action */
	struct lu_fid hai_fid;  /* the Lustre file */
	struct lu_fid hai_dfid; /* data fid (volatile file for RESTORE) */
	struct hsm_extent hai_extent;
	__u64 hai_cookie;     /* request id given by the coordinator */
	__u64 hai_gid;        /* grouplock id, always 0 */
	char hai_data[];      /* opaque user data, no NUL */
} __attribute__((packed));

/* The only hal_version ever defined. */
#define HAL_VERSION 1
/* Largest message the library accepts (LNET_MTU). */
#define HAL_MAXSIZE LNET_MTU

/* Request flags (hal_flags / hr_flags). */
#define HSM_FORCE_ACTION 0x0001
#define HSM_GHOST_COPY 0x0002
#define HSM_REQ_BLOCKING 0x0004

/* A list of action items, all for one archive id. Fixed part is 32 bytes. */
struct hsm_action_list {
	__u32 hal_version;
	__u32 hal_count;
	__u64 hal_compound_id; /* always 0 since 2.12 */
	__u64 hal_flags;
	__u32 hal_archive_id;
	__u32 padding1;
	char hal_fsname[];     /* NUL terminated, zero padded to 8 */
} __attribute__((packed));

/* First item: after the fsname, rounded up to 8 bytes. */
static inline struct hsm_action_item *hai_first(struct hsm_action_list *hal)
{
	size_t off = __ALIGN_KERNEL(strlen(hal->hal_fsname) + 1, 8);

	return (struct hsm_action_item *)(hal->hal_fsname + off);
}

/* Next item: this one's hai_len rounded up to 8 bytes further. */
static inline struct hsm_action_item *hai_next(struct hsm_action_item *hai)
{
	size_t len = __ALIGN_KERNEL((size_t)hai->hai_len, 8);

	return (struct hsm_action_item *)((char *)hai + len);
}

/* Size of a whole list, header, fsname and items. */
static inline size_t hal_size(struct hsm_action_list *hal)
{
	struct hsm_action_item *hai;
	size_t sz;
	__u32 i;

	sz = sizeof(*hal) + __ALIGN_KERNEL(strlen(hal->hal_fsname) + 1, 8);
	hai = hai_first(hal);
	for (i = 0; i < hal->hal_count; i++, hai = hai_next(hai))
		sz += __ALIGN_KERNEL((size_t)hai->hai_len, 8);
	return sz;
}

/* ---- Per-file HSM state ------------------------------------------------ */

enum hsm_states {
	HS_NONE = 0x00000000,
	HS_EXISTS = 0x00000001,
	HS_DIRTY = 0x00000002,
	HS_RELEASED = 0x00000004,
	HS_ARCHIVED = 0x00000008,
	HS_NORELEASE = 0x00000010,
	HS_NOARCHIVE = 0x00000020,
	HS_LOST = 0x00000040,
	HS_PCCRW = 0x00000080,
	HS_PCCRO = 0x00000100,
};

/* Flags any owner may set; others need CAP_SYS_ADMIN. */
#define HSM_USER_MASK (HS_NORELEASE | HS_NOARCHIVE | HS_DIRTY)
/* Flags describing the archive copy. */
#define HSM_STATUS_MASK                                                     \
	(HS_EXISTS | HS_LOST | HS_RELEASED | HS_ARCHIVED | HS_PCCRW | HS_PCCRO)

/* Progress of the current action on a file. */
enum hsm_progress_states {
	HPS_NONE = 0,
	HPS_WAITING = 1,
	HPS_RUNNING = 2,
	HPS_DONE = 3,
};

/* What llapi_hsm_state_get() fills: 32 bytes. */
struct hsm_user_state {
	__u32 hus_states;             /* enum hsm_states bits */
	__u32 hus_archive_id;
	__u32 hus_in_progress_state;  /* enum hsm_progress_states */
	__u32 hus_in_progress_action; /* enum hsm_copytool_action */
	struct hsm_extent hus_in_progress_location;
	char hus_extended_info[];
};

/* What llapi_hsm_current_action() fills: 24 bytes. */
struct hsm_current_action {
	__u32 hca_state;  /* enum hsm_progress_states */
	__u32 hca_action; /* enum hsm_copytool_action */
	struct hsm_extent hca_location;
};

/* llapi_hsm_state_set() / LL_IOC_HSM_STATE_SET. */
#define HSS_SETMASK 0x01
#define HSS_CLEARMASK 0x02
#define HSS_ARCHIVE_ID 0x04

struct hsm_state_set {
	__u32 hss_valid;
	__u32 hss_archive_id;
	__u64 hss_setmask;
	__u64 hss_clearmask;
};

/* ---- User requests (lfs hsm_* -> MDT) ---------------------------------- */

enum hsm_user_action {
	HUA_NONE = 1,
	HUA_ARCHIVE = 10,
	HUA_RESTORE = 11,
	HUA_RELEASE = 12,
	HUA_REMOVE = 13,
	HUA_CANCEL = 14,
};

/* 24 bytes. */
struct hsm_request {
	__u32 hr_action;     /* enum hsm_user_action */
	__u32 hr_archive_id; /* 0: the file's id, else default_archive_id */
	__u64 hr_flags;      /* HSM_FORCE_ACTION ... */
	__u32 hr_itemcount;
	__u32 hr_data_len;
};

/* 32 bytes, packed. */
struct hsm_user_item {
	lustre_fid hui_fid;
	struct hsm_extent hui_extent;
} __attribute__((packed));

/* The header, hr_itemcount items, then hr_data_len bytes of data. */
struct hsm_user_request {
	struct hsm_request hur_request;
	struct hsm_user_item hur_user_item[];
} __attribute__((packed));

/* Start of the data blob that follows the items. */
static inline void *hur_data(struct hsm_user_request *hur)
{
	return &hur->hur_user_item[hur->hur_request.hr_itemcount];
}

/* Total size of a user request, or -1 on overflow. */
static inline ssize_t hur_len(struct hsm_user_request *hur)
{
	__u64 size = offsetof(struct hsm_user_request, hur_user_item) +
		     (__u64)hur->hur_request.hr_itemcount *
			     sizeof(hur->hur_user_item[0]) +
		     hur->hur_request.hr_data_len;

	if ((ssize_t)size < 0)
		return -1;
	return (ssize_t)size;
}

/* ---- Copytool progress and copy control -------------------------------- */

/* hp_flags / hc_flags */
#define HP_FLAG_COMPLETED 0x01
#define HP_FLAG_RETRY 0x02

/* LL_IOC_HSM_PROGRESS argument: 48 bytes, natural alignment. */
struct hsm_progress {
	lustre_fid hp_fid;
	__u64 hp_cookie;
	struct hsm_extent hp_extent;
	__u16 hp_flags;
	__u16 hp_errval; /* positive errno */
	__u32 padding;
};

/* LL_IOC_HSM_COPY_START / COPY_END argument: 88 bytes. */
struct hsm_copy {
	__u64 hc_data_version;
	__u16 hc_flags;
	__u16 hc_errval; /* positive errno */
	__u32 padding;
	struct hsm_action_item hc_hai; /* fixed part only */
};

/* ---- Kernel/user communication (KUC) pipe ------------------------------ */

/* 8-byte header in front of every message written to a copytool pipe. */
struct kuc_hdr {
	__u16 kuc_magic;     /* KUC_MAGIC */
	__u8 kuc_transport;  /* KUC_TRANSPORT_* */
	__u8 kuc_flags;
	__u16 kuc_msgtype;   /* HMT_ACTION_LIST or KUC_MSG_SHUTDOWN */
	__u16 kuc_msglen;    /* including this header */
} __attribute__((aligned(8)));

#define KUC_MAGIC 0x191C
#define KUC_TRANSPORT_GENERIC 1
#define KUC_TRANSPORT_HSM 2
#define KUC_MSG_SHUTDOWN 1
#define HMT_ACTION_LIST 100
#define KUC_GRP_HSM 0x02
#define KUC_GRP_MAX KUC_GRP_HSM

/* Registration control block (LL_IOC_HSM_CT_START): 24 bytes + ids. */
#define LK_FLG_STOP 0x01
#define LK_FLG_DATANR 0x02
#define LK_NOFD -1U

struct lustre_kernelcomm {
	__u32 lk_wfd;
	__u32 lk_rfd;
	__u32 lk_uid;
	__u32 lk_group;
	__u32 lk_data_count;
	__u32 lk_flags;
	__u32 lk_data[];
} __attribute__((packed));

#endif /* COORDINATOOL_LINUX_LUSTRE_USER_H */
