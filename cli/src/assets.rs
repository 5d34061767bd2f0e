//! `lockserver-assets DIR`: writes the man pages of the `lockserver` command (`man8/lockserver.8` and one
//! `lockserver-VERB.8` per verb) and its shell completions (`completions/lockserver.bash`, `_lockserver`,
//! `lockserver.fish`) into DIR, all from the command line's definition in `args.rs`.
#![forbid(unsafe_code)]

#[allow(dead_code)] // the definition's field accessors are for the CLI, not for rendering it
mod args;

use clap::CommandFactory;
use clap_complete::Shell;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: lockserver-assets DIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockserver-assets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> Result<(), String> {
    let mut cmd = args::Cli::command();
    cmd.build();
    let cmd = hide_help_verbs(cmd);
    let man = dir.join("man8");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    write_man(&cmd, &man.join("lockserver.8"))?;
    write_verb_pages(&cmd, "lockserver", &man)?;
    for (shell, file) in [
        (Shell::Bash, "lockserver.bash"),
        (Shell::Zsh, "_lockserver"),
        (Shell::Fish, "lockserver.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "lockserver", &mut out);
        write(&completions.join(file), &out)?;
    }
    Ok(())
}

/// Hides clap's `help` verbs (`lockserver help VERB` is `lockserver VERB --help`): no page of their own.
fn hide_help_verbs(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    names.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name.as_str(), |sub| {
            if sub.get_name() == "help" {
                sub.hide(true)
            } else {
                hide_help_verbs(sub)
            }
        })
    })
}

/// One page per verb, `lockserver-VERB.8`, and below it `lockserver-VERB-ACTION.8` (e.g. `totp create`):
/// the names the parent page's SUBCOMMANDS section refers to.
fn write_verb_pages(parent: &clap::Command, prefix: &str, man: &Path) -> Result<(), String> {
    for sub in parent.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page_name = format!("{prefix}-{}", sub.get_name());
        let words = format!("{} {}", prefix.replace('-', " "), sub.get_name());
        let page = sub.clone().name(page_name.clone()).bin_name(words);
        write_man(&page, &man.join(format!("{page_name}.8")))?;
        write_verb_pages(sub, &page_name, man)?;
    }
    Ok(())
}

fn write_man(cmd: &clap::Command, path: &Path) -> Result<(), String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("lockserver {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(|e| format!("cannot render {}: {e}", path.display()))?;
    write(path, &out)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
