/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * coordinatool: bindgen entry point for the Lustre HSM copytool ABI.
 *
 * An independent transcription of the public ABI (facts file
 * lustre-hsm-abi.md, sections 1 and 2); see the two headers it includes.
 */
#ifndef COORDINATOOL_LUSTRE_HSM_SUBSET_H
#define COORDINATOOL_LUSTRE_HSM_SUBSET_H

#include <linux/lustre/lustre_user.h>
#include <lustre/lustreapi.h>

#endif /* COORDINATOOL_LUSTRE_HSM_SUBSET_H */
