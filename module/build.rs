//! Link flags for the installed module and C library (the cdylib of this package).

use std::path::PathBuf;

fn main() {
    // The PAM module must never be unloaded while a thread or TLS destructor of ours could still run.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblockserver.so.0");
    // Relative relocations packed (DT_RELR: glibc >= 2.36, binutils >= 2.38; Debian 12 has both): the
    // ~7,000 of them shrink from 24 bytes each to a bitmap, and ld.so applies them in one pass at load.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    static_unwinder();
}

/// The unwinder (`panic = "unwind"`: the hooks and the C API catch panics) linked in from GCC's static
/// `libgcc_eh.a` instead of loading libgcc_s.so.1 at run time. Loading libgcc_s runs its constructor,
/// `__cpu_indicator_init`, whose CPUID instructions trap to the hypervisor on a virtual machine: ~180 µs
/// of every cold login measured on the 2-core VM (README, Performance), and a run-time dependency beyond
/// libc and libpam (DESIGN §10).
///
/// Rust's std asks for `-lgcc_s` itself (its `unwind` crate), so no flag can swap it: a linker script
/// named `libgcc_s.so` in a search directory that comes before the system ones answers `-lgcc_s` with
/// `libgcc_eh.a` (found in GCC's own directory, which the `cc` driver passes). This is what
/// `gcc -static-libgcc` does for a C shared library. The unwinder's symbols stay local: rustc's version
/// script for a cdylib exports only `pam_sm_*` and `lockserver_*` (tests/capi.rs checks both lists).
/// A host that loads libgcc_s itself (a C++ program) keeps its own; each unwinder finds the frames of
/// every object through `dl_iterate_phdr`, and no exception crosses the boundary in either direction.
fn static_unwinder() {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        println!("cargo:warning=OUT_DIR is not set: the module keeps libgcc_s");
        return;
    };
    let dir = out.join("static-unwinder");
    let script = dir.join("libgcc_s.so");
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&script, "INPUT(-lgcc_eh)\n"));
    if let Err(e) = written {
        println!(
            "cargo:warning=cannot write {}: {e}; the module keeps libgcc_s",
            script.display()
        );
        return;
    }
    // `rustc-link-search` applies to this package's final link only: the CLI and the tests keep libgcc_s.
    println!("cargo:rustc-link-search=native={}", dir.display());
}
