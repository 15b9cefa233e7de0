//! Staff reminders to group robots: DingTalk's and WeCom's custom robots, each a webhook address
//! of a group chat. A robot takes about 20 messages a minute and has no idempotency key, so the
//! reminders of one hand-over go as one robot message (a Markdown list, one item a reminder; a
//! message with a document, the weekly report, alone as its own Markdown) and
//! the messages a minute are counted: past the limit, the reminders are deferred until the
//! minute allows.
//!
//! - DingTalk (`oapi.dingtalk.com/robot/send?access_token=...`): `{"msgtype": "markdown",
//!   "markdown": {"title", "text"}}`; with a signing secret (`SEC...`), the address gets
//!   `timestamp` (Unix milliseconds) and `sign`: the URL-encoded base64 HMAC-SHA256 of
//!   `timestamp + "\n" + secret` under the secret, as DingTalk's documentation shows.
//! - WeCom (`qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`): `{"msgtype": "markdown",
//!   "markdown": {"content"}}`.
//!
//! Both answer HTTP 200 with `{"errcode": 0, "errmsg": "ok"}` when they took it (a 2xx whose
//! answer cannot be read took it too); another `errcode` is a refusal in their words, except
//! their rate limits (DingTalk 130101, WeCom 45009), which defer. A 5xx, 429 or no answer
//! defers too (the robot may have posted it: it goes again). A hand-over too large for one
//! robot message (WeCom takes 4,096 bytes) goes as several. The address carries the robot's
//! token: it is read from the environment or a file, never printed.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use battleplan_core::outreach::links;
use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message, Refusal};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Mutex;

/// Which robot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotKind {
    DingTalk,
    WeCom,
}

/// Where and how to post.
#[derive(Clone)]
pub struct RobotSettings {
    pub kind: RobotKind,
    /// The robot's address, its token included.
    pub url: String,
    /// DingTalk's signing secret (`SEC...`), when the robot is set to sign.
    pub secret: Option<String>,
    pub timeout: Duration,
    /// The most messages a minute (20).
    pub per_minute: usize,
}

impl fmt::Debug for RobotSettings {
    // Never the address (its token) nor the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobotSettings")
            .field("kind", &self.kind)
            .field("signed", &self.secret.is_some())
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

/// Why settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// DingTalk's `sign` for a timestamp: the base64 HMAC-SHA256 of `timestamp + "\n" + secret`
/// under the secret, URL-encoded (as its documentation's examples compute it).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes a key of any length: never here.
        return String::new();
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    links::percent_encoded(&encoded)
}

/// The robot channel. See the module's documentation.
pub struct RobotChannel {
    settings: RobotSettings,
    client: reqwest::Client,
    /// When the last messages of the minute went.
    sent: Mutex<VecDeque<tokio::time::Instant>>,
}

impl fmt::Debug for RobotChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobotChannel")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RobotChannel {
    pub fn new(settings: RobotSettings) -> Result<RobotChannel, SettingsError> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|_| SettingsError("the robot's address is not a URL".to_string()))?;
        let loopback = url.host_str().is_some_and(crate::smtp::is_loopback);
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(SettingsError(
                "the robot's address must be https (http only to this machine)".to_string(),
            ));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .user_agent(concat!("battleplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| SettingsError(format!("the HTTP client: {error}")))?;
        Ok(RobotChannel {
            settings,
            client,
            sent: Mutex::new(VecDeque::new()),
        })
    }

    /// The body of one robot message carrying `messages`.
    pub fn body(&self, messages: &[Message]) -> serde_json::Value {
        let title = match messages {
            [one] => one
                .subject
                .clone()
                .unwrap_or_else(|| "battleplan".to_string()),
            _ => format!("{} reminders from battleplan", messages.len()),
        };
        let mut text = match messages {
            // A document (a weekly report) alone is posted as it is: it has its own heading.
            [one] if one.document.is_some() => String::new(),
            _ => format!("### {}\n", markdown_line(&title)),
        };
        for message in messages {
            match &message.document {
                Some(document) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&document.markdown);
                }
                None => text.push_str(&format!(
                    "\n- **{}**  \n  {}\n",
                    markdown_line(message.subject.as_deref().unwrap_or("")),
                    markdown_line(&message.body)
                )),
            }
        }
        match self.settings.kind {
            RobotKind::DingTalk => serde_json::json!({
                "msgtype": "markdown",
                "markdown": {"title": title, "text": text},
            }),
            RobotKind::WeCom => serde_json::json!({
                "msgtype": "markdown",
                "markdown": {"content": text},
            }),
        }
    }

    /// The batch cut into runs whose robot message stays under the platform's size (WeCom
    /// takes 4,096 bytes of Markdown, DingTalk about 20,000): a reminder too long for one
    /// message alone goes alone, cut short by the platform.
    fn pieces<'m>(&self, messages: &'m [Message]) -> Vec<&'m [Message]> {
        let limit = match self.settings.kind {
            RobotKind::DingTalk => 18_000,
            RobotKind::WeCom => 3_800,
        };
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut size = 0;
        for (index, message) in messages.iter().enumerate() {
            let body = message
                .document
                .as_ref()
                .map_or(message.body.len(), |document| document.markdown.len());
            let length = body + message.subject.as_deref().map_or(0, str::len) + 16;
            // A document (a weekly report) is a robot message of its own, between the others.
            let alone = message.document.is_some()
                || messages[start..index]
                    .iter()
                    .any(|earlier| earlier.document.is_some());
            if index > start && (alone || size + length > limit) {
                pieces.push(&messages[start..index]);
                start = index;
                size = 0;
            }
            size += length;
        }
        if start < messages.len() {
            pieces.push(&messages[start..]);
        }
        pieces
    }

    /// Takes a place in the minute, or says how long until one frees.
    async fn place(&self) -> Result<(), Duration> {
        let now = tokio::time::Instant::now();
        let minute = Duration::from_secs(60);
        let mut sent = self.sent.lock().await;
        while sent
            .front()
            .is_some_and(|first| now.duration_since(*first) >= minute)
        {
            sent.pop_front();
        }
        if sent.len() >= self.settings.per_minute.max(1) {
            let first = sent.front().copied().unwrap_or(now);
            return Err(minute.saturating_sub(now.duration_since(first)));
        }
        sent.push_back(now);
        Ok(())
    }

    /// The address with DingTalk's signature, when it signs.
    fn address(&self) -> String {
        match (&self.settings.secret, self.settings.kind) {
            (Some(secret), RobotKind::DingTalk) => {
                let timestamp = chrono::Utc::now().timestamp_millis();
                let joiner = if self.settings.url.contains('?') {
                    '&'
                } else {
                    '?'
                };
                format!(
                    "{}{joiner}timestamp={timestamp}&sign={}",
                    self.settings.url,
                    dingtalk_sign(secret, timestamp)
                )
            }
            _ => self.settings.url.clone(),
        }
    }

    async fn post(&self, messages: &[Message]) -> Delivery {
        if let Err(wait) = self.place().await {
            return Delivery::Deferred {
                detail: format!(
                    "the robot takes {} messages a minute",
                    self.settings.per_minute
                ),
                retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(60_000)),
            };
        }
        let sent = self
            .client
            .post(self.address())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body(messages).to_string())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Delivery::Deferred {
                    // reqwest's message names the address, and so the token: not repeated.
                    detail: if error.is_timeout() {
                        "the robot did not answer in time".to_string()
                    } else {
                        "cannot reach the robot".to_string()
                    },
                    retry_after_ms: None,
                };
            }
        };
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Delivery::Deferred {
                detail: format!("the robot answered {}", status.as_u16()),
                retry_after_ms: None,
            };
        }
        if !status.is_success() {
            return Delivery::Refused {
                refusal: Refusal::Message,
                detail: format!("the robot answered {}", status.as_u16()),
            };
        }
        // At most 64 KiB of the answer; a 2xx whose answer cannot be read took the message
        // (asking again would post it twice).
        let mut response = response;
        let mut read: Vec<u8> = Vec::new();
        while read.len() < 64 * 1024 {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&read) else {
            return Delivery::Sent;
        };
        let code = answer["errcode"].as_i64().unwrap_or(0);
        let words = answer["errmsg"].as_str().unwrap_or("no errmsg").to_string();
        match (code, self.settings.kind) {
            (0, _) => Delivery::Sent,
            (130_101, RobotKind::DingTalk) | (45_009, RobotKind::WeCom) => Delivery::Deferred {
                detail: format!("the robot is busy ({code}: {words})"),
                retry_after_ms: Some(60_000),
            },
            _ => Delivery::Refused {
                refusal: Refusal::Message,
                detail: format!("the robot refused it ({code}: {words})"),
            },
        }
    }
}

/// Text as one Markdown line: line breaks kept as Markdown breaks, nothing else changed.
fn markdown_line(text: &str) -> String {
    text.trim().replace("\r\n", "\n").replace('\n', "  \n  ")
}

#[async_trait::async_trait]
impl Channel for RobotChannel {
    /// The batch as few robot messages as the platform's size allows (the caller hands over
    /// one role's reminders at a time), each answered alike for the reminders it carries.
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let mut answers = Vec::with_capacity(messages.len());
        for piece in self.pieces(messages) {
            let answer = self.post(piece).await;
            answers.extend(std::iter::repeat_n(answer, piece.len()));
        }
        Ok(answers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_url_encoded_base64_of_the_hmac() {
        // The same steps as DingTalk's documented example, by hand: HMAC-SHA256 of
        // "1700000000000\nthis is secret" under "this is secret", base64, URL-encoded.
        let sign = dingtalk_sign("this is secret", 1_700_000_000_000);
        assert!(!sign.contains('+') && !sign.contains('/') && !sign.contains('='));
        assert!(sign.ends_with("%3D"), "{sign}");
    }
}
