//! Helpers for the workspace-level tests: find the `battleplan` binary that `cargo test
//! --workspace` builds, and run it in a scratch directory.

// This crate exists only to support tests: a panic is how it reports a broken setup.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod http;
pub mod mount;
pub mod postgres;
pub mod smtp;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `battleplan` binary of this build (same target directory and profile as the running test).
pub fn binary() -> PathBuf {
    let current = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test binary> -> target/<profile>/battleplan
    let profile_directory = current
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let binary = profile_directory.join(format!("battleplan{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        binary.display()
    );
    binary
}

/// A finished run of the binary: exit code and what it printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The `USER` the tests' commands run as: the actor of what they record without `--actor`
/// (a command with neither is refused), the same on every machine.
pub const TESTER: &str = "tester";

/// Runs `battleplan ARGS` in `directory`, with no data directory set from outside, as
/// [`TESTER`].
pub fn run_in(directory: &Path, arguments: &[&str]) -> Run {
    run_as(directory, arguments, Some(TESTER))
}

/// Runs `battleplan ARGS` in `directory` as [`run_in`] does, with `USER` set to `user`, or
/// unset (as in many containers) for `None`.
pub fn run_as(directory: &Path, arguments: &[&str], user: Option<&str>) -> Run {
    let mut command = Command::new(binary());
    command
        .args(arguments)
        .current_dir(directory)
        .env_remove("BATTLEPLAN_DATA")
        .env_remove("RUST_LOG");
    match user {
        Some(user) => command.env("USER", user),
        None => command.env_remove("USER"),
    };
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot start battleplan: {error}"));
    Run::from_output(output)
}

/// Copies a directory tree (regular files and directories), as a data directory is copied
/// before a test damages or faults it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Replaces each `from` with its `to`, insisting that `from` occurs exactly once so that a case
/// cannot silently stop applying when the base text changes.
pub fn mutate(base: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = base.to_string();
    for (from, to) in replacements {
        let count = text.matches(from).count();
        assert_eq!(
            count, 1,
            "`{from}` occurs {count} times in the base plan, expected once"
        );
        text = text.replacen(from, to, 1);
    }
    text
}

/// A `battleplan run` in the background, its log lines read as they come.
pub struct Daemon {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every log line seen so far.
    pub seen: Vec<String>,
}

/// The longest a test waits for a daemon's line before failing (a safety net against a hang,
/// never a way to synchronise).
const LINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Daemon {
    /// Starts `battleplan ARGS` (normally `run ...`) in `directory`.
    pub fn start(directory: &Path, arguments: &[&str]) -> Daemon {
        Daemon::start_with(directory, arguments, &[])
    }

    /// Starts `battleplan ARGS` in `directory` with extra environment variables (failpoints).
    pub fn start_with(
        directory: &Path,
        arguments: &[&str],
        environment: &[(&str, &str)],
    ) -> Daemon {
        let mut command = Command::new(binary());
        command.args(arguments);
        Daemon::spawn(command, directory, environment)
    }

    /// Starts `battleplan ARGS` in `directory` allowed at most `descriptors` open files (the
    /// shell's `ulimit -n`, then `exec`: the daemon's pid is the child's).
    pub fn start_limited(directory: &Path, arguments: &[&str], descriptors: u32) -> Daemon {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {descriptors} && exec \"$0\" \"$@\""))
            .arg(binary())
            .args(arguments);
        Daemon::spawn(command, directory, &[])
    }

    fn spawn(mut command: Command, directory: &Path, environment: &[(&str, &str)]) -> Daemon {
        use std::io::BufRead;
        let mut child = command
            .envs(environment.iter().copied())
            .current_dir(directory)
            .env("USER", TESTER)
            .env_remove("BATTLEPLAN_DATA")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start battleplan: {error}"));
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads log lines until one contains `marker`; returns it. Panics, with everything seen,
    /// if the process ends first.
    pub fn wait_for(&mut self, marker: &str) -> String {
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(marker) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the daemon ended (or hung) before logging `{marker}`; it logged:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Reads log lines until one contains `marker` (returned), or the process closes its log
    /// by ending (`None`).
    pub fn wait_for_or_end(&mut self, marker: &str) -> Option<String> {
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(marker) {
                        return Some(line);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the daemon hung before logging `{marker}`; it logged:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whether the process has ended (without waiting for it).
    pub fn has_ended(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|status| status.is_some())
    }

    /// Reads log lines until one contains any of `markers` (returned), or the process ends.
    pub fn wait_for_or_end_any(&mut self, markers: &[&str]) -> Option<String> {
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if markers.iter().any(|marker| line.contains(marker)) {
                        return Some(line);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the daemon hung before logging any of {markers:?}; it logged:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The rest of the log, once the process has ended.
    pub fn finish(&mut self) -> (i32, Vec<String>) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(LINE_TIMEOUT) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen.clone())
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: the polite stop an operator's service manager sends.
    pub fn terminate(&mut self) -> (i32, Vec<String>) {
        self.send_terminate();
        self.finish()
    }

    /// Sends SIGTERM and returns at once (`finish` waits for the end).
    pub fn send_terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The CPU time the process has used so far, in clock ticks (user and system, from
    /// `/proc/PID/stat`; Linux reports them in hundredths of a second).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // After the command's name in parentheses: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

/// `battleplan --data data ARGUMENTS` in `dir`.
pub fn bp(dir: &Path, arguments: &[&str]) -> Run {
    let mut all = vec!["--data", "data"];
    all.extend_from_slice(arguments);
    run_in(dir, &all)
}

/// The run, once it is seen to have succeeded (its output shown if not).
pub fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// An RFC 3339 instant a test writes.
pub fn instant(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .with_timezone(&chrono::Utc)
}

/// The customers `audience preview` says a reach-out of a campaign plans for at `at` (asked at
/// that instant), in its order.
pub fn planned(dir: &Path, campaign: &str, reach_out: &str, at: &str) -> Vec<String> {
    let run = ok(bp(
        dir,
        &[
            "audience",
            "preview",
            campaign,
            "--reach-out",
            reach_out,
            "--at",
            at,
            "--clock-at",
            at,
            "--json",
            "--customers",
        ],
    ));
    let preview: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("the preview's JSON: {error}"));
    preview["customers"]["sends"]
        .as_array()
        .map(|sends| {
            sends
                .iter()
                .filter_map(|send| send["customer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
