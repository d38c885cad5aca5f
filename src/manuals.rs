//! Manual pages and shell completions, made from the clap definitions in `cli.rs` so that
//! they cannot drift from the real command line. The Debian package runs the hidden commands
//! `mynalink generate-manpages DIR` and `mynalink generate-completions SHELL` when it is built
//! (`cargo xtask package`); nobody else needs them.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell};

/// Exit status for a directory that cannot be written, as for other usage errors.
const EXIT_FAILURE: i32 = 1;

/// Writes `mynalink.1` and one page per visible subcommand (`mynalink-outbox-flush.1`, …)
/// into `dir`; prints each file written.
pub fn write_manpages(dir: &Path) -> i32 {
    match write_all(dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            0
        }
        Err(e) => {
            eprintln!(
                "mynalink: cannot write the manual pages into {}: {e}",
                dir.display()
            );
            EXIT_FAILURE
        }
    }
}

fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building gives every subcommand its display name (`mynalink-outbox-flush`).
    root.build();
    let mut written = Vec::new();
    write_tree(&root, dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        // Subcommands carry no version of their own: name the program's on every page.
        .source(format!("mynalink {}", env!("CARGO_PKG_VERSION")))
        .manual("mynalink");
    written.push(man.generate_to(dir)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}

/// Prints the completion script for `shell` on standard output.
pub fn write_completions(shell: CompletionShell) -> i32 {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "mynalink",
        &mut std::io::stdout().lock(),
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write_all(dir.path()).expect("pages written");
        let mut names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        names.sort();
        for expected in [
            "mynalink.1",
            "mynalink-headless.1",
            "mynalink-kiosk.1",
            "mynalink-outbox.1",
            "mynalink-outbox-flush.1",
            "mynalink-operator-password.1",
            "mynalink-doctor.1",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        // The packaging helpers are not for people: no page, and none for `help`.
        assert!(
            !names
                .iter()
                .any(|n| n.contains("generate") || n.contains("help")),
            "{names:?}"
        );
        let main = std::fs::read_to_string(dir.path().join("mynalink.1")).expect("main page");
        assert!(main.contains(".TH mynalink 1"), "{main}");
        assert!(main.contains(&format!("mynalink {}", env!("CARGO_PKG_VERSION"))));
        let headless =
            std::fs::read_to_string(dir.path().join("mynalink-headless.1")).expect("page");
        assert!(headless.contains("pin\\-stdin"), "{headless}");
    }
}
