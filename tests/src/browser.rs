//! A real browser for the dashboard's tests: Debian's `chromium` driven through its
//! `chromedriver` (WebDriver) from Rust with fantoccini, headless, on loopback only. Without a
//! chromedriver, [`Browser::start`] fails the test when `CI=true` (`.ci/run` installs
//! `chromium` and `chromium-driver`) and otherwise says loudly that it skipped and how to run
//! it. The browser's own log (console errors, failed requests) is read through chromedriver's
//! log endpoint, so a test can require a page to have none.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};

/// The chromedriver to run: `BATTLEPLAN_CHROMEDRIVER`, or `chromedriver` on the PATH.
fn driver() -> Option<PathBuf> {
    let candidate = std::env::var_os("BATTLEPLAN_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromedriver"));
    let works = Command::new(&candidate)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        return Some(candidate);
    }
    let how = "install Debian's `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver fonts-noto-cjk`), or set BATTLEPLAN_CHROMEDRIVER";
    assert!(
        std::env::var("CI").map_or(true, |ci| ci != "true"),
        "CI=true and no chromedriver at {}: {how}",
        candidate.display()
    );
    eprintln!(
        "\n!!! SKIPPED: this test needs a browser and its driver ({} does not run): {how}\n",
        candidate.display()
    );
    None
}

/// The chromium binary: `BATTLEPLAN_CHROMIUM`, or Debian's.
fn chromium() -> String {
    std::env::var("BATTLEPLAN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("no free port: {error}"))
}

/// A chromedriver and one browser session; both end when it is dropped.
pub struct Browser {
    driver: Child,
    pub client: Client,
    pub runtime: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

/// chromedriver's `POST /session/{id}/se/log`: the browser's log entries since the last ask.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

impl Browser {
    /// A headless browser of `width` x `height`, or `None` (said loudly) where the test may
    /// skip.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let driver_path = driver()?;
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", driver_path.display()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("no tokio runtime: {error}"));
        let profile = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_string(),
            serde_json::json!({
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions", "--lang=en-US",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        capabilities.insert(
            "goog:loggingPrefs".to_string(),
            serde_json::json!({"browser": "ALL"}),
        );
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: ask until it does (bounded).
        let client = runtime.block_on(async {
            let mut last = String::new();
            for _ in 0..100 {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => return client,
                    Err(error) => last = error.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("chromedriver on port {port} gave no session: {last}");
        });
        Some(Browser {
            driver,
            client,
            runtime,
            _profile: profile,
        })
    }

    /// The browser's log entries since the last call: (level, message).
    pub fn log(&self) -> Vec<(String, String)> {
        let entries = self
            .runtime
            .block_on(self.client.issue_cmd(BrowserLog))
            .unwrap_or_else(|error| panic!("cannot read the browser's log: {error}"));
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| {
                        (
                            entry["level"].as_str().unwrap_or_default().to_string(),
                            entry["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails when the browser logged an error or a warning since the last look (a console
    /// error, a request that failed, a script refused by the page's policy).
    pub fn assert_clean(&self, page: &str) {
        let bad: Vec<(String, String)> = self
            .log()
            .into_iter()
            .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
            .collect();
        assert!(bad.is_empty(), "{page}: the browser logged {bad:#?}");
    }

    /// Saves a screenshot of the page as `DIRECTORY/NAME.png`.
    pub fn screenshot(&self, directory: &Path, name: &str) -> PathBuf {
        let png = self
            .runtime
            .block_on(self.client.screenshot())
            .unwrap_or_else(|error| panic!("no screenshot: {error}"));
        std::fs::create_dir_all(directory).unwrap_or_else(|error| panic!("{error}"));
        let path = directory.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|error| panic!("{error}"));
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the dashboard's screenshots go: `target/dashboard-screenshots` (CI keeps them).
pub fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("dashboard-screenshots")
}
