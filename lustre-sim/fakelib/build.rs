//! Sets the SONAME and builds the C part (the variadic/va_list logging
//! functions) of the fake liblustreapi.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblustreapi.so.1");
    println!("cargo:rerun-if-changed=src/msg.c");
    println!("cargo:rerun-if-changed=../../lustre-bindings/include");
    cc::Build::new()
        .file("src/msg.c")
        .include("../../lustre-bindings/include")
        .flag("-std=gnu99")
        .flag("-fvisibility=hidden")
        .warnings(true)
        .extra_warnings(true)
        .compile("fakelib_msg");
}
