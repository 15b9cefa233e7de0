//! A webhook receiver on loopback for the channel tests (`tests/webhook_receiver.py`): every
//! request's signature checked by the `standardwebhooks` package from PyPI, every attempt
//! logged, faults chosen per customer. It runs on the Python [`crate::smtp::python`] finds.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;

use crate::smtp::serve;

/// A secret as Standard Webhooks writes it (24 bytes, base64), for the tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The receiver, stopped when dropped.
pub struct WebhookReceiver {
    child: Child,
    pub port: u16,
    out: tempfile::TempDir,
}

impl WebhookReceiver {
    /// Started with the faults by customer id (`"500x2"`, `"429x1"`, `"410"`, `"400"`,
    /// `"hangx1"`: see the script).
    pub fn start(python: &Path, faults: &BTreeMap<String, String>) -> WebhookReceiver {
        WebhookReceiver::start_on(python, faults, 0)
    }

    /// Started on `port` (0: a free one).
    pub fn start_on(
        python: &Path,
        faults: &BTreeMap<String, String>,
        port: u16,
    ) -> WebhookReceiver {
        let out =
            tempfile::tempdir().unwrap_or_else(|error| panic!("a scratch directory: {error}"));
        let faults_file = out.path().join("faults.json");
        let text = serde_json::to_string(faults).unwrap_or_default();
        std::fs::write(&faults_file, text)
            .unwrap_or_else(|error| panic!("writing the faults: {error}"));
        let (child, port) = serve(
            python,
            "webhook_receiver.py",
            &[
                out.path().as_os_str(),
                "--secret".as_ref(),
                SECRET.as_ref(),
                "--faults".as_ref(),
                faults_file.as_os_str(),
                "--port".as_ref(),
                port.to_string().as_ref(),
            ],
            "the webhook receiver",
        );
        WebhookReceiver { child, port, out }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/battleplan", self.port)
    }

    /// Every attempt that reached the receiver, in order (see the script for the fields).
    pub fn attempts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.path().join("attempts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// How many attempts the receiver answered 200 (first takes and repeats), cheaply.
    pub fn answered_ok(&self) -> usize {
        std::fs::read_to_string(self.out.path().join("attempts.jsonl"))
            .unwrap_or_default()
            .matches("\"status\": 200")
            .count()
    }

    /// The ids the receiver took (answered 2xx the first time), in order.
    pub fn taken(&self) -> Vec<String> {
        self.attempts()
            .iter()
            .filter(|attempt| attempt["status"] == 200 && attempt["duplicate"] == false)
            .filter_map(|attempt| attempt["id"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// DingTalk's and WeCom's group robots on loopback (`tests/robot_receiver.py`), stopped when
/// dropped.
pub struct RobotReceiver {
    child: Child,
    pub port: u16,
    out: tempfile::TempDir,
}

impl RobotReceiver {
    /// Started with DingTalk's signing secret to check, and the number of first requests to
    /// answer "sending too fast".
    pub fn start(python: &Path, dingtalk_secret: &str, busy: u32) -> RobotReceiver {
        let out =
            tempfile::tempdir().unwrap_or_else(|error| panic!("a scratch directory: {error}"));
        let (child, port) = serve(
            python,
            "robot_receiver.py",
            &[
                out.path().as_os_str(),
                "--dingtalk-secret".as_ref(),
                dingtalk_secret.as_ref(),
                "--busy".as_ref(),
                busy.to_string().as_ref(),
            ],
            "the robot receiver",
        );
        RobotReceiver { child, port, out }
    }

    /// The address of a DingTalk robot with its token.
    pub fn dingtalk(&self, token: &str) -> String {
        format!(
            "http://127.0.0.1:{}/dingtalk/robot/send?access_token={token}",
            self.port
        )
    }

    /// The address of a WeCom robot with its key.
    pub fn wecom(&self, key: &str) -> String {
        format!(
            "http://127.0.0.1:{}/wecom/cgi-bin/webhook/send?key={key}",
            self.port
        )
    }

    /// Every request the robots took, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for RobotReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
