//! The `lockserver` command: see `lockserver --help` and the README.

fn main() -> std::process::ExitCode {
    lockserver::cli::main()
}
