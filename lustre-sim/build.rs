//! Builds the `lhsmtool-sim` C copytool, linked against a tiny link stub
//! `liblustreapi.so` (SONAME `liblustreapi.so.1`), exactly as a copytool
//! built against real Lustre. At run time the fake library is found through
//! `LD_LIBRARY_PATH` (see `lustre_sim::paths::fake_lib_dir`).

use std::path::PathBuf;
use std::process::Command;

/// Every function the fake library exports (the link stub provides them).
const FUNCTIONS: &[&str] = &[
    "llapi_hsm_copytool_register",
    "llapi_hsm_copytool_unregister",
    "llapi_hsm_copytool_get_fd",
    "llapi_hsm_copytool_recv",
    "llapi_hsm_action_begin",
    "llapi_hsm_action_end",
    "llapi_hsm_action_progress",
    "llapi_hsm_action_get_dfid",
    "llapi_hsm_action_get_fd",
    "llapi_hsm_log_error",
    "llapi_hsm_register_event_fifo",
    "llapi_hsm_unregister_event_fifo",
    "llapi_hsm_import",
    "llapi_hsm_state_get",
    "llapi_hsm_state_set",
    "llapi_hsm_current_action",
    "llapi_hsm_request",
    "llapi_hsm_user_request_alloc",
    "llapi_search_fsname",
    "llapi_fid2path",
    "llapi_fid2path_at",
    "llapi_fid_parse",
    "llapi_path2fid",
    "llapi_fd2fid",
    "llapi_open_by_fid",
    "llapi_get_mdt_index_by_fid",
    "llapi_parse_size",
    "llapi_msg_set_level",
    "llapi_msg_get_level",
    "llapi_error_callback_set",
    "llapi_error",
    "llapi_printf",
];

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler for {what}: {e}"));
    if !out.status.success() {
        panic!(
            "building {what} failed: {:?}\n{}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        println!("cargo:warning={line}");
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let include = manifest.join("../lustre-bindings/include");
    let src = manifest.join("lhsmtool/lhsmtool_sim.c");
    println!("cargo:rerun-if-changed=lhsmtool/lhsmtool_sim.c");
    println!("cargo:rerun-if-changed=../lustre-bindings/include");
    println!("cargo:rerun-if-changed=build.rs");

    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();

    // The link stub: one empty function per symbol, plus the variable.
    let stub_dir = out.join("link-stub");
    std::fs::create_dir_all(&stub_dir).expect("create link-stub dir");
    let mut stub = String::from(
        "/* generated link stub: never loaded at run time */\n_Bool liblustreapi_initialized;\n",
    );
    for f in FUNCTIONS {
        stub.push_str(&format!("void {f}(void) {{}}\n"));
    }
    let stub_c = stub_dir.join("stub.c");
    std::fs::write(&stub_c, stub).expect("write stub.c");
    let mut cmd = compiler.to_command();
    cmd.args(["-shared", "-fPIC", "-Wl,-soname,liblustreapi.so.1", "-o"])
        .arg(stub_dir.join("liblustreapi.so"))
        .arg(&stub_c);
    run(cmd, "the liblustreapi link stub");

    // The copytool.
    let exe = out.join("lhsmtool-sim");
    let mut cmd = compiler.to_command();
    cmd.args([
        "-std=gnu99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O1",
        "-g",
        "-I",
    ])
    .arg(&include)
    .arg(&src)
    .arg("-L")
    .arg(&stub_dir)
    .args(["-llustreapi", "-lpthread", "-o"])
    .arg(&exe);
    run(cmd, "lhsmtool-sim");

    println!("cargo:rustc-env=LUSTRE_SIM_LHSMTOOL={}", exe.display());
    println!(
        "cargo:rustc-env=LUSTRE_SIM_LINK_STUB_DIR={}",
        stub_dir.display()
    );
}
