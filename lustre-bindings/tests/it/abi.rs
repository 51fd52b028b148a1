//! Compiles a small C program that prints `sizeof`/`offsetof`/constant
//! values, and compares them with the ABI facts and with our Rust `sys`
//! bindings and codec constants.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use lustre_bindings::{hal, kuc, sys};

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <lustre/lustreapi.h>
#include <linux/lustre/lustre_user.h>
#if defined(REAL_LUSTRE) && __has_include(<linux/lustre/lustre_kernelcomm.h>)
#include <linux/lustre/lustre_kernelcomm.h>
#endif

#define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define C(c) printf("const %s %llu\n", #c, (unsigned long long)(c))

int main(void)
{
	S(lu_fid); O(lu_fid, f_seq); O(lu_fid, f_oid); O(lu_fid, f_ver);
	S(hsm_extent); O(hsm_extent, offset); O(hsm_extent, length);
	S(hsm_action_item); O(hsm_action_item, hai_len); O(hsm_action_item, hai_action);
	O(hsm_action_item, hai_fid); O(hsm_action_item, hai_dfid);
	O(hsm_action_item, hai_extent); O(hsm_action_item, hai_cookie);
	O(hsm_action_item, hai_gid); O(hsm_action_item, hai_data);
	S(hsm_action_list); O(hsm_action_list, hal_version); O(hsm_action_list, hal_count);
	O(hsm_action_list, hal_compound_id); O(hsm_action_list, hal_flags);
	O(hsm_action_list, hal_archive_id); O(hsm_action_list, padding1);
	O(hsm_action_list, hal_fsname);
	S(hsm_progress); O(hsm_progress, hp_cookie); O(hsm_progress, hp_extent);
	O(hsm_progress, hp_flags); O(hsm_progress, hp_errval);
	S(hsm_copy); O(hsm_copy, hc_flags); O(hsm_copy, hc_errval); O(hsm_copy, hc_hai);
	S(hsm_request); S(hsm_user_item); S(hsm_user_state); S(hsm_current_action);
	S(hsm_state_set);
#ifdef KUC_MAGIC
	S(kuc_hdr); O(kuc_hdr, kuc_transport); O(kuc_hdr, kuc_msgtype); O(kuc_hdr, kuc_msglen);
	C(KUC_MAGIC); C(KUC_TRANSPORT_HSM); C(HMT_ACTION_LIST); C(KUC_MSG_SHUTDOWN);
	S(lustre_kernelcomm);
#endif
	C(HAL_VERSION); C(HSMA_NONE); C(HSMA_ARCHIVE); C(HSMA_RESTORE); C(HSMA_REMOVE);
	C(HSMA_CANCEL); C(HSM_FORCE_ACTION); C(HSM_GHOST_COPY); C(HP_FLAG_COMPLETED);
	C(HP_FLAG_RETRY); C(LUSTRE_MAXFSNAME);
	return 0;
}
"#;

/// (key, value from the ABI facts, value from our Rust side).
fn expected() -> Vec<(&'static str, usize, usize)> {
    use sys::*;
    vec![
        ("sizeof lu_fid", 16, size_of::<lu_fid>()),
        ("offsetof lu_fid.f_seq", 0, offset_of!(lu_fid, f_seq)),
        ("offsetof lu_fid.f_oid", 8, offset_of!(lu_fid, f_oid)),
        ("offsetof lu_fid.f_ver", 12, offset_of!(lu_fid, f_ver)),
        ("sizeof hsm_extent", 16, size_of::<hsm_extent>()),
        (
            "offsetof hsm_extent.offset",
            0,
            offset_of!(hsm_extent, offset),
        ),
        (
            "offsetof hsm_extent.length",
            8,
            offset_of!(hsm_extent, length),
        ),
        ("sizeof hsm_action_item", 72, size_of::<hsm_action_item>()),
        (
            "offsetof hsm_action_item.hai_len",
            0,
            offset_of!(hsm_action_item, hai_len),
        ),
        (
            "offsetof hsm_action_item.hai_action",
            4,
            offset_of!(hsm_action_item, hai_action),
        ),
        (
            "offsetof hsm_action_item.hai_fid",
            8,
            offset_of!(hsm_action_item, hai_fid),
        ),
        (
            "offsetof hsm_action_item.hai_dfid",
            24,
            offset_of!(hsm_action_item, hai_dfid),
        ),
        (
            "offsetof hsm_action_item.hai_extent",
            40,
            offset_of!(hsm_action_item, hai_extent),
        ),
        (
            "offsetof hsm_action_item.hai_cookie",
            56,
            offset_of!(hsm_action_item, hai_cookie),
        ),
        (
            "offsetof hsm_action_item.hai_gid",
            64,
            offset_of!(hsm_action_item, hai_gid),
        ),
        (
            "offsetof hsm_action_item.hai_data",
            72,
            offset_of!(hsm_action_item, hai_data),
        ),
        ("sizeof hsm_action_list", 32, size_of::<hsm_action_list>()),
        (
            "offsetof hsm_action_list.hal_version",
            0,
            offset_of!(hsm_action_list, hal_version),
        ),
        (
            "offsetof hsm_action_list.hal_count",
            4,
            offset_of!(hsm_action_list, hal_count),
        ),
        (
            "offsetof hsm_action_list.hal_compound_id",
            8,
            offset_of!(hsm_action_list, hal_compound_id),
        ),
        (
            "offsetof hsm_action_list.hal_flags",
            16,
            offset_of!(hsm_action_list, hal_flags),
        ),
        (
            "offsetof hsm_action_list.hal_archive_id",
            24,
            offset_of!(hsm_action_list, hal_archive_id),
        ),
        (
            "offsetof hsm_action_list.padding1",
            28,
            offset_of!(hsm_action_list, padding1),
        ),
        (
            "offsetof hsm_action_list.hal_fsname",
            32,
            offset_of!(hsm_action_list, hal_fsname),
        ),
        ("sizeof hsm_progress", 48, size_of::<hsm_progress>()),
        (
            "offsetof hsm_progress.hp_cookie",
            16,
            offset_of!(hsm_progress, hp_cookie),
        ),
        (
            "offsetof hsm_progress.hp_extent",
            24,
            offset_of!(hsm_progress, hp_extent),
        ),
        (
            "offsetof hsm_progress.hp_flags",
            40,
            offset_of!(hsm_progress, hp_flags),
        ),
        (
            "offsetof hsm_progress.hp_errval",
            42,
            offset_of!(hsm_progress, hp_errval),
        ),
        ("sizeof hsm_copy", 88, size_of::<hsm_copy>()),
        (
            "offsetof hsm_copy.hc_flags",
            8,
            offset_of!(hsm_copy, hc_flags),
        ),
        (
            "offsetof hsm_copy.hc_errval",
            10,
            offset_of!(hsm_copy, hc_errval),
        ),
        ("offsetof hsm_copy.hc_hai", 16, offset_of!(hsm_copy, hc_hai)),
        ("sizeof hsm_request", 24, size_of::<hsm_request>()),
        ("sizeof hsm_user_item", 32, size_of::<hsm_user_item>()),
        ("sizeof hsm_user_state", 32, size_of::<hsm_user_state>()),
        (
            "sizeof hsm_current_action",
            24,
            size_of::<hsm_current_action>(),
        ),
        ("sizeof hsm_state_set", 24, size_of::<hsm_state_set>()),
        ("sizeof kuc_hdr", 8, size_of::<kuc_hdr>()),
        (
            "offsetof kuc_hdr.kuc_transport",
            2,
            offset_of!(kuc_hdr, kuc_transport),
        ),
        (
            "offsetof kuc_hdr.kuc_msgtype",
            4,
            offset_of!(kuc_hdr, kuc_msgtype),
        ),
        (
            "offsetof kuc_hdr.kuc_msglen",
            6,
            offset_of!(kuc_hdr, kuc_msglen),
        ),
        (
            "sizeof lustre_kernelcomm",
            24,
            size_of::<lustre_kernelcomm>(),
        ),
        ("const KUC_MAGIC", 0x191c, usize::from(kuc::KUC_MAGIC)),
        (
            "const KUC_TRANSPORT_HSM",
            2,
            usize::from(kuc::KUC_TRANSPORT_HSM),
        ),
        (
            "const HMT_ACTION_LIST",
            100,
            usize::from(kuc::HMT_ACTION_LIST),
        ),
        (
            "const KUC_MSG_SHUTDOWN",
            1,
            usize::from(kuc::KUC_MSG_SHUTDOWN),
        ),
        ("const HAL_VERSION", 1, hal::HAL_VERSION as usize),
        ("const HSMA_NONE", 10, HSMA_NONE as usize),
        ("const HSMA_ARCHIVE", 20, HSMA_ARCHIVE as usize),
        ("const HSMA_RESTORE", 21, HSMA_RESTORE as usize),
        ("const HSMA_REMOVE", 22, HSMA_REMOVE as usize),
        ("const HSMA_CANCEL", 23, HSMA_CANCEL as usize),
        ("const HSM_FORCE_ACTION", 1, HSM_FORCE_ACTION as usize),
        ("const HSM_GHOST_COPY", 2, HSM_GHOST_COPY as usize),
        ("const HP_FLAG_COMPLETED", 1, HP_FLAG_COMPLETED as usize),
        ("const HP_FLAG_RETRY", 2, HP_FLAG_RETRY as usize),
        ("const LUSTRE_MAXFSNAME", 8, hal::LUSTRE_MAXFSNAME),
    ]
}

/// Compiles and runs the probe against `include_dir`; returns its key/values.
fn probe(include_dir: &Path, real: bool) -> BTreeMap<String, usize> {
    let dir = std::env::temp_dir().join(format!(
        "lustre-bindings-abi-{}-{}",
        std::process::id(),
        if real { "real" } else { "ours" }
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, PROGRAM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.arg(format!("-I{}", include_dir.display()))
        .args(["-std=gnu11", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src);
    if real {
        cmd.arg("-DREAL_LUSTRE");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running C compiler {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling the ABI probe against {} failed:\n{}",
        include_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("running the ABI probe");
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn check(found: &BTreeMap<String, usize>, require_all: bool) {
    let mut problems = Vec::new();
    for (key, fact, rust) in expected() {
        if fact != rust {
            problems.push(format!("{key}: facts say {fact}, Rust has {rust}"));
        }
        match found.get(key) {
            Some(&c) if c != fact => problems.push(format!("{key}: C says {c}, facts say {fact}")),
            None if require_all => problems.push(format!("{key}: not printed by the C probe")),
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "ABI mismatches:\n{}",
        problems.join("\n")
    );
}

#[test]
fn our_headers_match_rust_layouts() {
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include");
    assert!(
        include.join("lustre_hsm_subset.h").is_file(),
        "our headers are missing from {}",
        include.display()
    );
    let found = probe(&include, false);
    check(&found, true);
}

#[test]
#[ignore = "needs real Lustre headers; run with --ignored where they exist"]
fn real_lustre_headers_match_rust_layouts() {
    let dir = std::env::var_os("LUSTRE_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    if !dir.join("lustre/lustreapi.h").is_file() {
        println!(
            "SKIPPED: real Lustre headers not found ({}/lustre/lustreapi.h; set LUSTRE_INCLUDE_DIR)",
            dir.display()
        );
        return;
    }
    let found = probe(&dir, true);
    // kuc_hdr and lustre_kernelcomm live in lustre_kernelcomm.h, which not
    // every installation ships: only what was printed is compared.
    check(&found, false);
}
