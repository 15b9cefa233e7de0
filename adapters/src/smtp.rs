//! Mail over SMTP (lettre on tokio, rustls; no OpenSSL): the channel a merchant's mail service
//! speaks. Each message is built from what the dispatcher rendered: the HTML body with a plain
//! text alternative, a `Message-ID` derived from the idempotency key (a message handed over again
//! after a crash carries the same id, which mail clients show once), `List-Unsubscribe` with the
//! customer's signed one-click link and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
//! (RFC 8058), and the campaign, reach-out and key in `X-Battleplan-*` headers.
//!
//! Each message is its own SMTP transaction (MAIL, RCPT, DATA, the content), so that every
//! reply is known at the step it came at and answers that message alone:
//! - 2xx after the content: sent;
//! - 4xx at any step (or the connection lost before the content went): deferred, to be handed
//!   over again later with the same key;
//! - 5xx at RCPT: the recipient refused (a hard bounce); 5xx at MAIL, DATA or after the
//!   content: the message refused;
//! - no reply after the content within the timeout, or the connection lost then: unknown (the
//!   server may have taken it; the plan says whether to hand it over again).
//!
//! A batch none of whose messages could be handed over because no connection could be made (the
//! server refuses connections, TLS fails, the credentials are refused) fails as a whole and asks
//! for a person: the dispatcher pauses the channel and tells ops.
//!
//! Connections are pooled (at most `connections` at once, kept between batches) and message
//! starts are spaced to at most `per_second`. The password is read by the caller from the
//! environment or a file the plan names, kept only in memory, and never printed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use battleplan_core::outreach::links;
use battleplan_core::outreach::port::{Channel, ChannelError, Delivery, Message, Refusal};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use tokio::sync::Mutex;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain, then upgraded with STARTTLS before anything else (port 587); refused if the
    /// server cannot.
    StartTls,
    /// No TLS at all: only to a server on this machine (a relay on loopback).
    None,
}

/// Where and how to send.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The user name and password, when the server wants them.
    pub credentials: Option<(String, String)>,
    /// The sender (`Shop <shop@example.com>`).
    pub from: String,
    pub reply_to: Option<String>,
    /// The most connections open at once.
    pub connections: usize,
    /// The most messages started a second; `None` for no limit.
    pub per_second: Option<u32>,
    /// The longest wait for any reply of the server.
    pub timeout: Duration,
    /// The name the client gives in EHLO, and the right side of each `Message-ID`.
    pub domain: String,
    /// Where one-click unsubscribe links point, and the key that signs them.
    pub unsubscribe: Option<UnsubscribeLinks>,
}

/// The daemon's public base address (`https://shop.example.com/battleplan`) and the merchant's
/// key for the signed links.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    pub base: String,
    pub key: [u8; 32],
}

impl fmt::Debug for SmtpSettings {
    // Never the password, nor the signing key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "user",
                &self.credentials.as_ref().map(|(user, _)| user.as_str()),
            )
            .field("from", &self.from)
            .field("connections", &self.connections)
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

/// Why settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// The SMTP channel. See the module's documentation.
pub struct SmtpChannel {
    settings: Arc<SmtpSettings>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    /// When the next message may start (`per_second`).
    next_start: Mutex<tokio::time::Instant>,
}

impl fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What became of one message on a connection.
enum Step {
    Done(Delivery),
    /// The answer is known, and the connection cannot carry another message (its state after
    /// a silence, or a transaction that could not be reset, is not known).
    DoneDropped(Delivery),
    /// The connection failed before the message was handed over: try it on another one.
    Lost(String),
    /// The server refuses us, not the message (the sender, relaying, the login): nothing will
    /// go until a person sees to it.
    Refuses(String),
}

impl SmtpChannel {
    pub fn new(settings: SmtpSettings) -> Result<SmtpChannel, SettingsError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|error| SettingsError(format!("the sender {:?}: {error}", settings.from)))?;
        let reply_to = match &settings.reply_to {
            Some(text) => Some(
                text.parse::<Mailbox>()
                    .map_err(|error| SettingsError(format!("reply-to {text:?}: {error}")))?,
            ),
            None => None,
        };
        if settings.tls == SmtpTls::None && !is_loopback(&settings.host) {
            return Err(SettingsError(format!(
                "mail to {} without TLS: plain SMTP is only for a server on this machine (127.0.0.1, ::1, localhost); use implicit TLS or STARTTLS",
                settings.host
            )));
        }
        if settings.connections == 0 {
            return Err(SettingsError("at least one connection".to_string()));
        }
        Ok(SmtpChannel {
            settings: Arc::new(settings),
            from,
            reply_to,
            idle: Mutex::new(Vec::new()),
            next_start: Mutex::new(tokio::time::Instant::now()),
        })
    }

    /// The message's `Message-ID`: the same for the same key, whoever builds it.
    pub fn message_id(&self, key: &str) -> String {
        let digest = blake3::hash(key.as_bytes());
        let hex: String = digest.as_bytes()[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("<{hex}@{}>", self.settings.domain)
    }

    /// The message as it goes on the wire, and its recipient; or why it cannot go.
    fn build(&self, message: &Message) -> Result<(Vec<u8>, Address), (Refusal, String)> {
        let Some(address) = message.address.first() else {
            return Err((
                Refusal::Recipient,
                "the customer has no address".to_string(),
            ));
        };
        let to: Address = address
            .parse()
            .map_err(|error| (Refusal::Recipient, format!("{address:?}: {error}")))?;
        let mut html = message.body.clone();
        let mut unsubscribe = None;
        if let (Some(links), Some(_)) = (&self.settings.unsubscribe, &message.reach_out) {
            let url = links::unsubscribe_url(
                &links.base,
                &links.key,
                &message.campaign,
                &message.to,
                message.kind,
            );
            // The renderer's placeholder (`unsubscribe_url`) becomes the signed link.
            let placeholder = format!(
                "unsubscribe://{}/{}",
                links::percent_encoded(&message.campaign),
                links::percent_encoded(&message.to)
            );
            html = html.replace(&placeholder, &url);
            unsubscribe = Some(url);
        }
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(message.subject.clone().unwrap_or_default())
            .message_id(Some(self.message_id(&message.key)))
            .date(std::time::SystemTime::from(message.at))
            .raw_header(header("X-Battleplan-Campaign", &message.campaign))
            .raw_header(header("X-Battleplan-Key", &message.key));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(reach_out) = &message.reach_out {
            builder = builder.raw_header(header("X-Battleplan-Reach-Out", reach_out));
        }
        if let Some(url) = unsubscribe {
            builder = builder
                .raw_header(header("List-Unsubscribe", &format!("<{url}>")))
                .raw_header(header(
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click",
                ));
        }
        // A template written as plain text (escaped for HTML by the renderer) becomes HTML
        // paragraphs with live links; its text part is itself, unescaped.
        let (html, text) = if looks_like_html(&html) {
            let text = html_to_text(&html);
            (html, text)
        } else {
            let text = decode_entities(&html);
            (text_to_html(&html), text)
        };
        let built = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|error| {
                (
                    Refusal::Message,
                    format!("cannot build the message: {error}"),
                )
            })?;
        Ok((built.formatted(), to))
    }

    /// A connection from the pool, or a new one: connected, protected and logged in.
    async fn connection(&self) -> Result<AsyncSmtpConnection, String> {
        loop {
            let kept = self.idle.lock().await.pop();
            let Some(mut kept) = kept else { break };
            if !kept.has_broken()
                && tokio::time::timeout(self.settings.timeout, kept.test_connected())
                    .await
                    .unwrap_or(false)
            {
                return Ok(kept);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let settings = &self.settings;
        let hello = ClientId::Domain(settings.domain.clone());
        let tls = |host: &str| {
            TlsParameters::new(host.to_string()).map_err(|error| format!("TLS for {host}: {error}"))
        };
        let implicit = match settings.tls {
            SmtpTls::Implicit => Some(tls(&settings.host)?),
            _ => None,
        };
        let server = format!("{}:{}", settings.host, settings.port);
        let connecting = AsyncSmtpConnection::connect_tokio1(
            (settings.host.as_str(), settings.port),
            Some(settings.timeout),
            &hello,
            implicit,
            None,
        );
        let mut connection = tokio::time::timeout(settings.timeout, connecting)
            .await
            .map_err(|_| format!("no answer from {server} within {:?}", settings.timeout))?
            .map_err(|error| format!("cannot connect to {server}: {error}"))?;
        if settings.tls == SmtpTls::StartTls {
            if !connection.can_starttls() {
                return Err(format!("{server} does not offer STARTTLS"));
            }
            tokio::time::timeout(
                settings.timeout,
                connection.starttls(tls(&settings.host)?, &hello),
            )
            .await
            .map_err(|_| format!("STARTTLS with {server} timed out"))?
            .map_err(|error| format!("STARTTLS with {server}: {error}"))?;
        }
        if let Some((user, password)) = &settings.credentials {
            let credentials = Credentials::new(user.clone(), password.clone());
            tokio::time::timeout(
                settings.timeout,
                connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
            )
            .await
            .map_err(|_| format!("logging in to {server} timed out"))?
            // The server's words, never the password.
            .map_err(|error| format!("{server} refused the login of {user}: {error}"))?;
        }
        Ok(connection)
    }

    /// Waits for the message's turn under `per_second`.
    async fn pace(&self) {
        let Some(per_second) = self.settings.per_second.filter(|n| *n > 0) else {
            return;
        };
        let gap = Duration::from_secs(1) / per_second;
        let start = {
            let mut next = self.next_start.lock().await;
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + gap;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// One message as one transaction on `connection`.
    async fn transact(
        &self,
        connection: &mut AsyncSmtpConnection,
        from: &Address,
        to: &Address,
        bytes: &[u8],
    ) -> Step {
        let timeout = self.settings.timeout;
        let mail = Mail::new(Some(from.clone()), Vec::new());
        if let Err(step) = command(connection, timeout, mail, "MAIL FROM", Refusal::Message).await {
            return step;
        }
        let rcpt = Rcpt::new(to.clone(), Vec::new());
        if let Err(step) = command(connection, timeout, rcpt, "RCPT TO", Refusal::Recipient).await {
            return step;
        }
        if let Err(step) = command(connection, timeout, Data, "DATA", Refusal::Message).await {
            return step;
        }
        // The content: from here on, silence means the server may have it.
        let handed = async {
            match content(bytes) {
                Some(whole) => connection.command(whole).await,
                None => connection.message(bytes).await,
            }
        };
        match tokio::time::timeout(timeout, handed).await {
            Err(_) => Step::DoneDropped(Delivery::Unknown {
                detail: format!("no reply within {timeout:?} after the message's data"),
            }),
            Ok(Ok(_)) => Step::Done(Delivery::Sent),
            Ok(Err(error)) => match reply(&error) {
                Some((code, words)) if code >= 500 => Step::Done(Delivery::Refused {
                    refusal: Refusal::Message,
                    detail: format!("{code} {words}"),
                }),
                Some((code, words)) => Step::Done(deferred(format!("{code} {words}"))),
                None => Step::DoneDropped(Delivery::Unknown {
                    detail: format!("the connection failed after the message's data: {error}"),
                }),
            },
        }
    }
}

/// The content of a message as it goes after DATA, in one write: dot-stuffed (RFC 5321, 4.5.2:
/// a line that starts with a dot gets one more) and ended with `CRLF . CRLF`. lettre's
/// `message` writes the content and the ending in two writes; on a socket with Nagle's
/// algorithm (lettre does not set `TCP_NODELAY`) the five bytes of the ending then wait for the
/// server to acknowledge the content, which a server that delays its acknowledgements (Linux:
/// 40 ms; aiosmtpd on loopback, measured) does only when its timer runs out: 44 ms a message,
/// 23 messages a second a connection (BENCHMARKS.md, "Mail over SMTP"). `None` when the bytes
/// are not text (lettre builds text; then lettre's own `message`).
fn content(bytes: &[u8]) -> Option<Content> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut whole = String::with_capacity(text.len() + 64);
    let mut line_start = true;
    let mut after_cr = false;
    for c in text.chars() {
        if c == '.' && line_start {
            whole.push('.');
        }
        whole.push(c);
        line_start = after_cr && c == '\n';
        after_cr = c == '\r';
    }
    whole.push_str("\r\n.\r\n");
    Some(Content(whole))
}

/// A message's content, written by `AsyncSmtpConnection::command` as it is.
struct Content(String);

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a 5xx at RCPT is about the recipient's address (a hard bounce): an enhanced status
/// 5.1.x (bad mailbox or domain) or 5.2.1 (mailbox disabled), or without one 550, 551 or 553.
/// A 5.7.x (relaying denied, authentication required, policy) is about us, not them.
fn recipient_refused(code: u16, words: &str) -> bool {
    match words
        .split_whitespace()
        .next()
        .filter(|word| word.starts_with("5."))
    {
        Some(enhanced) => enhanced.starts_with("5.1.") || enhanced == "5.2.1",
        None => matches!(code, 550 | 551 | 553),
    }
}

/// Whether a 5xx is the server refusing us rather than one message: an enhanced status 5.7.x,
/// or 530 / 535 (authentication).
fn refuses_us(code: u16, words: &str) -> bool {
    matches!(code, 530 | 535)
        || words
            .split_whitespace()
            .next()
            .is_some_and(|word| word.starts_with("5.7."))
}

/// One command of a message's transaction: `Ok` on a positive reply; otherwise what becomes of
/// the message: a 5xx refuses it (`refusal`: the recipient at RCPT, the message elsewhere), a
/// 4xx defers it (the transaction reset, so the connection carries the next one), and no reply
/// or a failed connection loses the connection. The answer names the step, but for RCPT, whose
/// reply is about the recipient alone.
async fn command<C: fmt::Display>(
    connection: &mut AsyncSmtpConnection,
    timeout: Duration,
    command: C,
    step: &str,
    refusal: Refusal,
) -> Result<(), Step> {
    match tokio::time::timeout(timeout, connection.command(command)).await {
        Err(_) => Err(Step::Lost(format!("no reply to {step}"))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            let Some((code, words)) = reply(&error) else {
                return Err(Step::Lost(format!("{step}: {error}")));
            };
            // A 5xx to our MAIL FROM, or a policy refusal anywhere, is the server refusing us.
            if code >= 500 && (step == "MAIL FROM" || refuses_us(code, &words)) {
                return Err(Step::Refuses(format!("{step}: {code} {words}")));
            }
            let detail = if refusal == Refusal::Recipient {
                format!("{code} {words}")
            } else {
                format!("{step}: {code} {words}")
            };
            let delivery = match (code >= 500, refusal) {
                (true, Refusal::Recipient) if !recipient_refused(code, &words) => {
                    Delivery::Refused {
                        refusal: Refusal::Message,
                        detail,
                    }
                }
                (true, refusal) => Delivery::Refused { refusal, detail },
                (false, _) => deferred(detail),
            };
            // The transaction reset, so the connection carries the next one; a connection
            // that cannot be reset is not used again.
            Err(if reset(connection, timeout).await {
                Step::Done(delivery)
            } else {
                Step::DoneDropped(delivery)
            })
        }
    }
}

/// The reply code and words of an error that is the server's reply.
fn reply(error: &lettre::transport::smtp::Error) -> Option<(u16, String)> {
    let code = error.status()?;
    let code: u16 = code.to_string().parse().ok()?;
    // The error's text holds the server's words after the kind ("permanent error (550): ...").
    let text = error.to_string();
    let words = text
        .split_once("): ")
        .map_or(text.as_str(), |(_, words)| words)
        .trim()
        .to_string();
    Some((code, words))
}

fn deferred(detail: String) -> Delivery {
    Delivery::Deferred {
        detail,
        retry_after_ms: None,
    }
}

/// Ends a failed transaction so the connection can carry the next one; `false` when it could
/// not (no reply in time, or a refusal), and the connection must not be used again.
async fn reset(connection: &mut AsyncSmtpConnection, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, connection.command(Rset)).await,
        Ok(Ok(_))
    )
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a body is written in HTML (it has a tag a mail body uses), rather than as text.
fn looks_like_html(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    [
        "<p", "<br", "<div", "<a ", "<html", "<table", "<ul", "<h1", "<h2", "<span", "<img",
    ]
    .iter()
    .any(|tag| lower.contains(tag))
}

/// HTML for a body written as text (already escaped for HTML): a blank line starts a
/// paragraph, a line break is kept, and each `http://` or `https://` address is a link.
pub fn text_to_html(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .replace("\r\n", "\n")
        .split("\n\n")
        .map(str::trim)
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| {
            let lines: Vec<String> = paragraph.lines().map(linked).collect();
            format!("<p>{}</p>", lines.join("<br>\n"))
        })
        .collect();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{}\n</body></html>\n",
        paragraphs.join("\n")
    )
}

/// A line of escaped text with its web addresses made links (an address ends at blank space
/// or at a character that cannot end one).
fn linked(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '<' || c == '"')
            .unwrap_or(tail.len());
        let url = tail[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        rest = &tail[url.len()..];
    }
    out.push_str(rest);
    out
}

/// The plain text alternative of an HTML body: tags dropped (a paragraph or heading ends with
/// an empty line; a line break, a list item, a row or a block ends a line), the named entities
/// of XML, `&nbsp;` and numeric references decoded, a link followed by its address, runs of
/// blank space made one.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut pending_href: Vec<String> = Vec::new();
    while let Some(open) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..open]));
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[open + 1..open + close];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let closing = tag.starts_with('/');
        match name.as_str() {
            "br" => out.push('\n'),
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" if closing => out.push_str("\n\n"),
            "div" | "li" | "tr" | "ul" | "ol" | "table" if closing => out.push('\n'),
            "a" if !closing => {
                let href = tag
                    .split_once("href=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(href, _)| decode_entities(href));
                pending_href.push(href.unwrap_or_default());
            }
            "a" => {
                if let Some(href) = pending_href.pop().filter(|href| !href.is_empty()) {
                    out.push_str(&format!(" ({href})"));
                }
            }
            _ => {}
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(&decode_entities(rest));
    // Blank space: each line trimmed, no more than one empty line in a row.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            if blank > 1 || text.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.trim_end().to_string() + "\n"
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let Some(end) = after.find(';').filter(|end| *end <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[async_trait::async_trait]
impl Channel for SmtpChannel {
    async fn deliver(&self, messages: &[Message]) -> Result<Vec<Delivery>, ChannelError> {
        let mut answers: Vec<Option<Delivery>> = vec![None; messages.len()];
        let mut work: Vec<(usize, Vec<u8>, Address)> = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match self.build(message) {
                Ok((bytes, to)) => work.push((index, bytes, to)),
                Err((refusal, detail)) => {
                    answers[index] = Some(Delivery::Refused { refusal, detail })
                }
            }
        }
        let from = self.from.email.clone();
        let queue = Mutex::new(work.into_iter());
        let results = Mutex::new(Vec::new());
        let failures = Mutex::new(Vec::<String>::new());
        let workers = self.settings.connections.min(messages.len()).max(1);
        // Set when the server cannot be reached or refuses us: no worker takes more work.
        let down = std::sync::atomic::AtomicBool::new(false);
        let worker = || async {
            let mut connection: Option<AsyncSmtpConnection> = None;
            loop {
                if down.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let Some((index, bytes, to)) = queue.lock().await.next() else {
                    break;
                };
                self.pace().await;
                // A lost connection is replaced once for the message; a second loss defers it.
                let mut answer = None;
                for _ in 0..2 {
                    let mut current = match connection.take() {
                        Some(current) => current,
                        None => match self.connection().await {
                            Ok(made) => made,
                            Err(failure) => {
                                down.store(true, std::sync::atomic::Ordering::Release);
                                failures.lock().await.push(failure);
                                break;
                            }
                        },
                    };
                    match self.transact(&mut current, &from, &to, &bytes).await {
                        Step::Done(delivery) => {
                            connection = Some(current);
                            answer = Some(delivery);
                            break;
                        }
                        // Closed without a QUIT, which would wait for a reply too.
                        Step::DoneDropped(delivery) => {
                            drop(current);
                            answer = Some(delivery);
                            break;
                        }
                        Step::Lost(why) => {
                            drop(current);
                            answer = Some(deferred(format!("the connection failed: {why}")));
                        }
                        Step::Refuses(why) => {
                            reset(&mut current, self.settings.timeout).await;
                            down.store(true, std::sync::atomic::Ordering::Release);
                            failures.lock().await.push(format!(
                                "{}:{} refuses to send for us: {why}",
                                self.settings.host, self.settings.port
                            ));
                            break;
                        }
                    }
                }
                results.lock().await.push((index, answer));
            }
            if let Some(connection) = connection.filter(|c| !c.has_broken()) {
                self.idle.lock().await.push(connection);
            }
        };
        futures_util::future::join_all((0..workers).map(|_| worker())).await;
        let results = results.into_inner();
        let failures = failures.into_inner();
        // Nothing handed over, and no connection to be had or the server refusing us: the
        // server needs a person. (Had some gone, they are answered and the rest deferred: the
        // next batch meets the failure first and pauses.)
        if !failures.is_empty() && results.iter().all(|(_, answer)| answer.is_none()) {
            return Err(ChannelError {
                channel: messages
                    .first()
                    .map_or_else(String::new, |message| message.channel.clone()),
                detail: failures.into_iter().next().unwrap_or_default(),
                pause: true,
            });
        }
        for (index, answer) in results {
            answers[index] = Some(answer.unwrap_or_else(|| {
                deferred(format!(
                    "no connection to {}:{}",
                    self.settings.host, self.settings.port
                ))
            }));
        }
        Ok(answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| deferred("not handed over".to_string())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_alternative_reads_as_the_html_does() {
        let html = "<p>Dear Li &amp; Co,</p><p>The sale starts <b>now</b>.<br>See \
                    <a href=\"https://shop.example.com/?a=1&amp;b=2\">the offers</a>.</p>\
                    <ul><li>10&#x25; off</li><li>&lt;free&gt; delivery</li></ul>";
        assert_eq!(
            html_to_text(html),
            "Dear Li & Co,\n\nThe sale starts now.\nSee the offers (https://shop.example.com/?a=1&b=2).\n\n10% off\n<free> delivery\n"
        );
        assert_eq!(html_to_text("a & b &unknown; &"), "a & b &unknown; &\n");
    }

    #[test]
    fn a_body_written_as_text_becomes_paragraphs_with_live_links() {
        let text = "Dear Li &amp; Co,\n\nThe sale starts soon.\nSee https://shop.example.com/?a=1&amp;b=2.\n\nUnsubscribe: http://127.0.0.1:8080/api/v1/unsubscribe/s/c-1/mail/00";
        assert!(!looks_like_html(text));
        let html = text_to_html(text);
        assert!(html.contains("<p>Dear Li &amp; Co,</p>"), "{html}");
        assert!(
            html.contains("<p>The sale starts soon.<br>\nSee <a href=\"https://shop.example.com/?a=1&amp;b=2\">https://shop.example.com/?a=1&amp;b=2</a>.</p>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"http://127.0.0.1:8080/api/v1/unsubscribe/s/c-1/mail/00\">"),
            "{html}"
        );
        assert!(looks_like_html(&html));
        assert_eq!(decode_entities(text).lines().next(), Some("Dear Li & Co,"));
    }

    #[test]
    fn the_content_goes_dot_stuffed_and_ended_in_one_piece() {
        let Some(Content(whole)) = content(b".a\r\nb.\r\n..c\r\n.\r\nd\n.e\r.f") else {
            panic!("text refused");
        };
        assert_eq!(whole, "..a\r\nb.\r\n...c\r\n..\r\nd\n.e\r.f\r\n.\r\n");
        assert!(content(&[0xff, b'a']).is_none());
    }

    #[test]
    fn plain_smtp_is_only_for_this_machine() {
        let settings = |host: &str, tls| SmtpSettings {
            host: host.to_string(),
            port: 25,
            tls,
            credentials: Some(("shop".to_string(), "secret-password".to_string())),
            from: "Shop <shop@example.com>".to_string(),
            reply_to: None,
            connections: 1,
            per_second: None,
            timeout: Duration::from_secs(5),
            domain: "example.com".to_string(),
            unsubscribe: None,
        };
        for host in ["127.0.0.1", "::1", "[::1]", "localhost"] {
            assert!(
                SmtpChannel::new(settings(host, SmtpTls::None)).is_ok(),
                "{host}"
            );
        }
        let refused = SmtpChannel::new(settings("smtp.example.com", SmtpTls::None));
        assert!(refused.is_err());
        assert!(SmtpChannel::new(settings("smtp.example.com", SmtpTls::StartTls)).is_ok());
        // The password is never printed.
        let shown = format!("{:?}", settings("smtp.example.com", SmtpTls::Implicit));
        assert!(!shown.contains("secret-password"), "{shown}");
        assert!(shown.contains("shop"), "{shown}");
    }

    #[test]
    fn the_message_id_is_the_keys() {
        let Ok(channel) = SmtpChannel::new(SmtpSettings {
            host: "127.0.0.1".to_string(),
            port: 25,
            tls: SmtpTls::None,
            credentials: None,
            from: "shop@example.com".to_string(),
            reply_to: None,
            connections: 1,
            per_second: None,
            timeout: Duration::from_secs(5),
            domain: "mail.example.com".to_string(),
            unsubscribe: None,
        }) else {
            panic!("settings refused");
        };
        let id = channel.message_id("sept/warm-up/c-1/1");
        assert_eq!(id, channel.message_id("sept/warm-up/c-1/1"));
        assert_ne!(id, channel.message_id("sept/warm-up/c-1/2"));
        assert!(
            id.starts_with('<') && id.ends_with("@mail.example.com>"),
            "{id}"
        );
    }
}
