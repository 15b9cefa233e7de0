//! The webhook channel: each message POSTed as JSON to a receiver the merchant runs (their
//! platform integration for in-site messages, an RPA tool, any system of theirs), signed per
//! the Standard Webhooks specification:
//! - `webhook-id`: the message's idempotency key (percent-encoded where it is not plain
//!   ASCII), the same on every attempt, so a receiver that keeps the ids it took takes each
//!   message once;
//! - `webhook-timestamp`: the attempt's Unix time in seconds;
//! - `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the
//!   secret (`whsec_` and base64, read from the environment or a file the plan names).
//!
//! The body is documented in docs/channels.md.
//!
//! Each answer answers its message alone:
//! - 2xx: sent;
//! - 410: the receiver is gone for good; any other 4xx but 408 and 429: the message refused;
//! - 408, 429 and 5xx: deferred, for the time a `Retry-After` asks when there is one;
//! - no answer within the timeout, a connection that cannot be made or breaks: deferred (the
//!   receiver may have taken it: the same id goes again, and the receiver drops the repeat);
//!   once as many requests in a row as there are connections got no answer, the rest of the
//!   batch is deferred without being tried, so that a receiver that hangs holds up nothing
//!   else for long;
//! - a redirect: refused (redirects are not followed: the signature is for the address in the
//!   plan).
//!
//! Requests go side by side over at most `connections` at once, the answers in the batch's
//! order. A body larger than [`LARGEST_BODY`] is refused before it goes; of an answer, at most
//! [`LARGEST_ANSWER`] bytes are read.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use battleplan_core::outreach::links;
use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message, Refusal};
use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// How the words of a request that got no answer begin.
const NO_ANSWER: &str = "no answer";

/// The largest body sent: a message above it is refused, not sent in part.
pub const LARGEST_BODY: usize = 256 * 1024;
/// The most of a receiver's answer read (for the detail of a refusal).
pub const LARGEST_ANSWER: usize = 4 * 1024;

/// Where and how to POST.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: String,
    /// The signing secret's bytes (decoded from `whsec_...`).
    pub secret: Vec<u8>,
    /// The longest wait for an answer, connecting included.
    pub timeout: Duration,
    /// The most requests at once.
    pub connections: usize,
}

impl fmt::Debug for WebhookSettings {
    // Never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// Why settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// A signing secret as Standard Webhooks writes it (`whsec_` and base64; the prefix optional),
/// decoded. The error never repeats the text.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, SettingsError> {
    let text = text.trim();
    let encoded = text.strip_prefix("whsec_").unwrap_or(text);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| {
            SettingsError(
                "the signing secret is not base64 (write it as whsec_ followed by base64)"
                    .to_string(),
            )
        })?;
    if bytes.len() < 16 {
        return Err(SettingsError(format!(
            "the signing secret has {} byte(s); at least 16 (24 to 64 is usual)",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The `webhook-signature` of a body: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes a key of any length: never here.
        return "v1,".to_string();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The `webhook-id` of a key: the key itself when it is plain printable ASCII (ids, dates and
/// slashes, as battleplan makes them), else percent-encoded.
pub fn webhook_id(key: &str) -> String {
    if key.bytes().all(|byte| byte.is_ascii_graphic()) {
        key.to_string()
    } else {
        links::percent_encoded(key)
    }
}

/// The JSON body of a message: `type`, `timestamp` (the instant it was decided to go) and the
/// message in `data`.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    key: &'a str,
    campaign: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reach_out: Option<&'a str>,
    channel: &'a str,
    kind: &'static str,
    customer: &'a str,
    address: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
}

/// The body a message is POSTed with.
pub fn body(message: &Message) -> Vec<u8> {
    let body = Body {
        kind: "battleplan.message",
        timestamp: message
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data: Data {
            key: &message.key,
            campaign: &message.campaign,
            reach_out: message.reach_out.as_deref(),
            channel: &message.channel,
            kind: message.kind.as_str(),
            customer: &message.to,
            address: &message.address,
            account: message.from.as_deref(),
            subject: message.subject.as_deref(),
            body: &message.body,
            template: message.template.as_deref(),
            template_version: message.template_version,
            attempt: message.attempt,
        },
    };
    // Strings and numbers only: serialising cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The webhook channel. See the module's documentation.
pub struct WebhookChannel {
    settings: WebhookSettings,
    client: reqwest::Client,
    url: reqwest::Url,
    /// Requests in a row of the batch under way that got no answer (a timeout, no connection);
    /// an answer resets it, and so does each batch.
    silent: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl WebhookChannel {
    pub fn new(settings: WebhookSettings) -> Result<WebhookChannel, SettingsError> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|error| SettingsError(format!("the address {:?}: {error}", settings.url)))?;
        let loopback = url.host_str().is_some_and(crate::smtp::is_loopback);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(SettingsError(format!(
                    "a webhook to {} over plain http: only to a receiver on this machine",
                    url.host_str().unwrap_or_default()
                )))
            }
            other => return Err(SettingsError(format!("{other}: not an http(s) address"))),
        }
        if settings.connections == 0 {
            return Err(SettingsError("at least one connection".to_string()));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_max_idle_per_host(settings.connections)
            .user_agent(concat!("battleplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| SettingsError(format!("the HTTP client: {error}")))?;
        Ok(WebhookChannel {
            settings,
            client,
            url,
            silent: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// One message POSTed, and what the receiver answered. Once as many requests in a row as
    /// there are connections got no answer, the rest of the batch is not tried (each would wait
    /// the whole timeout, and hold up the other channels' messages behind this batch): they are
    /// deferred with the others.
    async fn post(&self, message: &Message) -> Delivery {
        use std::sync::atomic::Ordering;
        let silent = self.silent.load(Ordering::Acquire);
        if silent >= self.settings.connections.max(1) {
            return Delivery::Deferred {
                detail: format!(
                    "not tried: the receiver did not answer {silent} requests in a row"
                ),
                retry_after_ms: None,
            };
        }
        let answer = self.attempt(message).await;
        match &answer {
            Delivery::Deferred { detail, .. } if detail.starts_with(NO_ANSWER) => {
                self.silent.fetch_add(1, Ordering::AcqRel);
            }
            _ => self.silent.store(0, Ordering::Release),
        }
        answer
    }

    async fn attempt(&self, message: &Message) -> Delivery {
        let body = body(message);
        if body.len() > LARGEST_BODY {
            return Delivery::Refused {
                refusal: Refusal::Message,
                detail: format!(
                    "the message is {} bytes; a webhook body is at most {LARGEST_BODY}",
                    body.len()
                ),
            };
        }
        let id = webhook_id(&message.key);
        let timestamp = chrono::Utc::now().timestamp();
        let signed = signature(&self.settings.secret, &id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                // The address may carry a token in its query: never in the words kept.
                let error = error.without_url();
                return Delivery::Deferred {
                    detail: if error.is_timeout() {
                        format!(
                            "{NO_ANSWER}: no answer within {} s",
                            self.settings.timeout.as_secs()
                        )
                    } else if error.is_connect() {
                        format!("{NO_ANSWER}: cannot connect: {}", error_chain(&error))
                    } else {
                        format!("the request failed: {}", error_chain(&error))
                    },
                    retry_after_ms: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(retry_after_ms);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let words = answer_words(response, self.settings.timeout).await;
        let said = |what: &str| {
            if words.is_empty() {
                format!("{} {what}", status.as_u16())
            } else {
                format!("{} {what}: {words}", status.as_u16())
            }
        };
        match status.as_u16() {
            200..=299 => Delivery::Sent,
            408 | 429 | 500..=599 => Delivery::Deferred {
                detail: said(status.canonical_reason().unwrap_or("try again later")),
                retry_after_ms: retry_after,
            },
            410 => Delivery::Refused {
                refusal: Refusal::Gone,
                detail: said("Gone"),
            },
            300..=399 => Delivery::Refused {
                refusal: Refusal::Message,
                detail: format!(
                    "{} redirect to {}; redirects are not followed (point the plan at the new address)",
                    status.as_u16(),
                    location.as_deref().unwrap_or("(no Location)")
                ),
            },
            _ => Delivery::Refused {
                refusal: Refusal::Message,
                detail: said(status.canonical_reason().unwrap_or("refused")),
            },
        }
    }
}

/// At most [`LARGEST_ANSWER`] bytes of an answer's body, as one line of text.
async fn answer_words(mut response: reqwest::Response, timeout: Duration) -> String {
    let mut read: Vec<u8> = Vec::new();
    let reading = async {
        while read.len() < LARGEST_ANSWER {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    // The answer's head came; its body gets no longer than the timeout either.
    let _ = tokio::time::timeout(timeout, reading).await;
    read.truncate(LARGEST_ANSWER);
    let text = String::from_utf8_lossy(&read);
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect();
    line
}

/// An error and its causes, one line (reqwest's own message says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A `Retry-After` in milliseconds: seconds, or an HTTP date (from now).
pub fn retry_after_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(u64::try_from(wait.num_milliseconds()).unwrap_or(0))
}

#[async_trait::async_trait]
impl Channel for WebhookChannel {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        // Each batch tries the receiver afresh.
        self.silent.store(0, std::sync::atomic::Ordering::Release);
        let posts: Vec<_> = messages.iter().map(|message| self.post(message)).collect();
        let answers = futures_util::stream::iter(posts)
            .buffered(self.settings.connections)
            .collect()
            .await;
        Ok(answers)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_one_the_specification_shows() {
        // The Standard Webhooks specification's example (and its reference libraries' tests).
        let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_or_default();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_that_is_not_base64_or_too_short_is_refused_without_repeating_it() {
        let error = parse_secret("whsec_not base64!").map(|_| ()).unwrap_err();
        assert!(!error.to_string().contains("not base64!"), "{error}");
        assert!(parse_secret("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(retry_after_ms("120"), Some(120_000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(retry_after_ms("soon"), None);
    }

    #[test]
    fn an_id_is_the_key_or_its_percent_encoding() {
        assert_eq!(webhook_id("sept/warm-up/c-1/1"), "sept/warm-up/c-1/1");
        assert!(webhook_id("sept/warm-up/客户/1").is_ascii());
    }
}
