//! A real SMTP server on loopback for the end-to-end tests (aiosmtpd, `tests/smtp_server.py`),
//! each message it took parsed back by Python's standard `email` package. The server needs a
//! Python with aiosmtpd: `BATTLEPLAN_SMTP_PYTHON`, or `target/smtp-venv/bin/python` (`.ci/run`
//! makes it). Without one, [`python`] fails the test when `CI=true` and otherwise says loudly
//! that it skipped and how to run it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use battleplan_scenarios::customers::{write_customers, FileFormat, Options};

use crate::{bp, instant, mutate, ok, run_in};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python that has aiosmtpd and standardwebhooks (the webhook receiver's), or `None` (after saying so) where a test may skip.
pub fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("BATTLEPLAN_SMTP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            target.join("smtp-venv/bin/python")
        });
    let works = Command::new(&candidate)
        .args(["-c", "import aiosmtpd, standardwebhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        return Some(candidate);
    }
    let how = "make one with `python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd==1.4.6 standardwebhooks==1.3.0` \
               (or set BATTLEPLAN_SMTP_PYTHON to a Python that has them)";
    assert!(
        std::env::var("CI").map_or(true, |ci| ci != "true"),
        "CI=true and no Python with aiosmtpd and standardwebhooks at {}: {how}",
        candidate.display()
    );
    eprintln!(
        "\n!!! SKIPPED: this test needs a Python with aiosmtpd and standardwebhooks ({} lacks them): {how}\n",
        candidate.display()
    );
    None
}

/// A Python server of `tests/` started with `arguments`, once it says where it listens (its
/// first line ends with `:PORT`); its standard input is kept open, and ending it stops the
/// server.
pub(crate) fn serve(
    python: &Path,
    script: &str,
    arguments: &[&std::ffi::OsStr],
    what: &str,
) -> (Child, u16) {
    let mut child = Command::new(python)
        .arg(workspace().join("tests").join(script))
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {what}: {error}"));
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{what} said {line:?}"));
    (child, port)
}

/// The SMTP server, stopped when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    out: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start(python: &Path) -> SmtpServer {
        SmtpServer::start_on(python, 0)
    }

    /// Started on `port` (0: a free one).
    pub fn start_on(python: &Path, port: u16) -> SmtpServer {
        let out =
            tempfile::tempdir().unwrap_or_else(|error| panic!("a scratch directory: {error}"));
        let (child, port) = serve(
            python,
            "smtp_server.py",
            &[
                out.path().as_os_str(),
                "--port".as_ref(),
                port.to_string().as_ref(),
            ],
            "the SMTP server",
        );
        SmtpServer { child, port, out }
    }

    /// How many messages arrived.
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.out.path()).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
                .count()
        })
    }

    /// Every message that arrived, as Python parsed it, in arrival order.
    pub fn arrived(&self) -> Vec<serde_json::Value> {
        let Ok(entries) = std::fs::read_dir(self.out.path()) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|name| std::fs::read_to_string(name).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header of a parsed message.
pub fn header<'a>(message: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    message["headers"]
        .as_array()?
        .iter()
        .find(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|pair| pair[1].as_str())
}

/// The example plan, its mail without quotas or quiet hours and sent to the SMTP server on
/// `port` (replies awaited `timeout`; `channel_keys` added to the mail channel), applied, and
/// `count` generated customers imported, their CSV passed through `customers` first.
pub fn mail_campaign(
    dir: &Path,
    count: u64,
    port: u16,
    timeout: &str,
    channel_keys: &str,
    customers: impl FnOnce(String) -> String,
) {
    mail_campaign_with(dir, count, port, timeout, channel_keys, &[], customers);
}

/// [`mail_campaign`], with more changes to the example plan (each found once).
pub fn mail_campaign_with(
    dir: &Path,
    count: u64,
    port: u16,
    timeout: &str,
    channel_keys: &str,
    changes: &[(&str, &str)],
    customers: impl FnOnce(String) -> String,
) {
    ok(run_in(dir, &["init", "--out", "example.toml"]));
    let example = std::fs::read_to_string(dir.join("example.toml")).unwrap();
    let smtp = format!(
        "accounts = [\"shop-mail\"]\nsmtp = {{ host = \"127.0.0.1\", port = {port}, tls = \"none\", from = \"Shop 商城 <shop@example.com>\", reply_to = \"sales@example.com\", connections = 4, timeout = \"{timeout}\" }}\n{channel_keys}"
    );
    let plan = mutate(
        &example,
        &[
            (
                "free_per_day = 200          # the first 200 a day are free\n",
                "",
            ),
            (
                "daily_cap = 2000            # the platform's initial cap\n",
                "",
            ),
            ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
            (
                "quiet_hours = { start = \"22:00\", end = \"08:00\", policy = \"hold\" }\n",
                "",
            ),
            ("monthly_budget = 100.00\n", ""),
            ("accounts = [\"shop-mail\"]\n", &smtp),
        ],
    );
    let plan = mutate(&plan, changes);
    std::fs::write(dir.join("plan.toml"), plan).unwrap();
    ok(bp(
        dir,
        &[
            "plan",
            "apply",
            "plan.toml",
            "--clock-at",
            "2026-08-01T00:00:00Z",
        ],
    ));
    let mut customers_csv = Vec::new();
    write_customers(
        &mut customers_csv,
        Options {
            count,
            seed: 7,
            as_of: instant("2026-08-20T00:00:00+08:00"),
            format: FileFormat::Csv,
        },
    )
    .unwrap();
    let csv = customers(String::from_utf8(customers_csv).unwrap());
    std::fs::write(dir.join("customers.csv"), csv).unwrap();
    ok(bp(
        dir,
        &[
            "customers",
            "import",
            "customers.csv",
            "--clock-at",
            "2026-08-20T00:00:00Z",
        ],
    ));
}
