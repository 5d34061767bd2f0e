//! Link flags for the installed module and C library (the cdylib of this package).

fn main() {
    // The PAM module must never be unloaded while a thread or TLS destructor of ours could still run.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblockserver.so.0");
    // Relative relocations packed (DT_RELR: glibc >= 2.36, binutils >= 2.38; Debian 12 has both): the
    // ~7,000 of them shrink from 24 bytes each to a bitmap, and ld.so applies them in one pass at load.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
}
