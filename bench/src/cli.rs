//! What the benchmark programs share on the command line: where the binaries they start
//! are, number options, and a run in a work directory of its own that Ctrl-C or SIGTERM
//! stops cleanly.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The folder of the running program: where `cargo build` put the binaries it starts.
pub fn here() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// `given`, the value of `option`, as a whole number of at least `at_least`.
///
/// # Errors
///
/// A message naming the option when `given` is not such a number.
pub fn count(option: &str, given: &str, at_least: usize) -> Result<usize, String> {
    given
        .parse()
        .ok()
        .filter(|&n| n >= at_least)
        .ok_or_else(|| format!("{option} {given}: a whole number ≥ {at_least} expected"))
}

/// Runs `run` with `work` as its folder, created first and removed after, and tells
/// how it went: `Ok(true)` is success, `Ok(false)` a measurement that missed something
/// (its report says what), `Err` a failure, printed with `program`'s name. On Ctrl-C or
/// SIGTERM, `run` is dropped, and with it the servers it started (they are killed).
#[allow(
    clippy::print_stderr,
    reason = "command-line programs report on stderr"
)]
pub async fn run_in(
    program: &str,
    work: &Path,
    run: impl Future<Output = Result<bool, String>>,
) -> ExitCode {
    if let Err(error) = std::fs::create_dir_all(work) {
        eprintln!("{program}: {}: {error}", work.display());
        return ExitCode::FAILURE;
    }
    let result = tokio::select! {
        result = run => result,
        () = interrupted() => Err("interrupted: stopping the servers".into()),
    };
    let _ = std::fs::remove_dir_all(work);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_from_a_floor() {
        assert_eq!(count("--rooms", "1000", 1), Ok(1000));
        assert_eq!(
            count("--processes", "1", 2),
            Err("--processes 1: a whole number ≥ 2 expected".into())
        );
        assert!(count("--rooms", "-3", 1).is_err());
        assert!(count("--rooms", "many", 1).is_err());
    }
}
