//! The baseline of the SMTP benchmark (BENCHMARKS.md, "Mail over SMTP"): a bare lettre loop
//! that sends one message to each recipient of a file over N connections, and nothing else: no
//! log, no plan, no rendering engine. Each of N tasks opens its own connection (lettre's
//! `AsyncSmtpConnection`, no TLS, loopback only) and takes the next recipient until none is
//! left, building the message with lettre's builder (the same shape as the SMTP channel's: HTML
//! with a plain text alternative, `Message-ID`, `List-Unsubscribe` with a signed one-click link,
//! the `X-Battleplan-*` headers) and sending it with lettre's `send`, one transaction (MAIL,
//! RCPT, DATA, the content). Measured beside the daemon in the same run, it shows what the
//! server and lettre allow on this machine.
//!
//! lettre's `send` writes the content and its ending `CRLF . CRLF` in two writes, and lettre's
//! own connections leave Nagle's algorithm on: the ending then waits for the server's delayed
//! acknowledgement, about 40 ms a message. So the connections here are opened with
//! `TCP_NODELAY` (a tokio `TcpStream` handed to lettre); `--stock` opens them as lettre does,
//! to show that wait.
//!
//! `cargo run --release -p battleplan-adapters --example bare_lettre -- 127.0.0.1:2525 4 RECIPIENTS [--stock]`
//!
//! RECIPIENTS has one recipient a line: `customer-id<TAB>address<TAB>name`. It prints one line:
//! `sent=N failed=F connections=C seconds=S per_second=R` (S from the first message started to
//! the last one answered, the connections already open).

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use battleplan_core::outreach::links;
use battleplan_core::plan::model::ChannelKind;
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;

const CAMPAIGN: &str = "sept-festival-2026";
const REACH_OUT: &str = "warm-up-recall";
const SUBJECT: &str = "September Procurement Festival 2026 is coming: an early look for you";

type Failure = Box<dyn Error + Send + Sync>;

struct Recipient {
    id: String,
    address: Address,
    name: String,
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// The message to one recipient, as it goes on the wire.
fn message(from: &Mailbox, to: &Recipient) -> Result<Vec<u8>, Failure> {
    let key = format!("{CAMPAIGN}/{REACH_OUT}/{}/1", to.id);
    let digest = blake3::hash(key.as_bytes());
    let hex: String = digest.as_bytes()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let url = links::unsubscribe_url(
        "http://127.0.0.1:1/api/v1",
        &[42; 32],
        CAMPAIGN,
        &to.id,
        ChannelKind::Mail,
    );
    let text = format!(
        "Dear {},\n\nThe September Procurement Festival 2026 starts soon. As one of our buyers you get an early look at the sale items,\nand you can already claim a coupon.\n\nBest regards,\nshop-mail\n\nUnsubscribe: {url}\n",
        to.name
    );
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head><body>\n<p>Dear {},</p>\n<p>The September Procurement Festival 2026 starts soon. As one of our buyers you get an early look at the sale items,<br>\nand you can already claim a coupon.</p>\n<p>Best regards,<br>\nshop-mail</p>\n<p>Unsubscribe: <a href=\"{url}\">{url}</a></p>\n</body></html>\n",
        to.name
    );
    let built = lettre::Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to.address.clone()))
        .reply_to("sales@example.com".parse()?)
        .subject(SUBJECT)
        .message_id(Some(format!("<{hex}@example.com>")))
        .date(SystemTime::now())
        .raw_header(header("X-Battleplan-Campaign", CAMPAIGN))
        .raw_header(header("X-Battleplan-Key", &key))
        .raw_header(header("X-Battleplan-Reach-Out", REACH_OUT))
        .raw_header(header("List-Unsubscribe", &format!("<{url}>")))
        .raw_header(header(
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click",
        ))
        .multipart(MultiPart::alternative_plain_html(text, html))?;
    Ok(built.formatted())
}

fn recipients(path: &str) -> Result<Vec<Recipient>, Failure> {
    let text = std::fs::read_to_string(path)?;
    let mut all = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut fields = line.split('\t');
        let (Some(id), Some(address), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("{path}:{}: not `id<TAB>address<TAB>name`", number + 1).into());
        };
        let address = address
            .parse()
            .map_err(|error| format!("{path}:{}: {address:?}: {error}", number + 1))?;
        all.push(Recipient {
            id: id.to_string(),
            address,
            name: name.to_string(),
        });
    }
    Ok(all)
}

async fn run(
    server: String,
    connections: usize,
    recipients: Vec<Recipient>,
    stock: bool,
) -> Result<(), Failure> {
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| format!("{server:?}: not HOST:PORT"))?;
    let port: u16 = port.parse()?;
    let from: Mailbox = "Shop 商城 <shop@example.com>".parse()?;
    let hello = ClientId::Domain("example.com".to_string());
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        let connection = if stock {
            AsyncSmtpConnection::connect_tokio1((host, port), None, &hello, None, None).await?
        } else {
            let stream = tokio::net::TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await?
        };
        opened.push(connection);
    }
    let recipients = Arc::new(recipients);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for mut connection in opened {
        let recipients = recipients.clone();
        let next = next.clone();
        let from = from.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sent, mut failed) = (0_u64, 0_u64);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(to) = recipients.get(index) else {
                    break;
                };
                let bytes = message(&from, to)?;
                let envelope = Envelope::new(Some(from.email.clone()), vec![to.address.clone()])?;
                match connection.send(&envelope, &bytes).await {
                    Ok(_) => sent += 1,
                    Err(error) => {
                        failed += 1;
                        eprintln!("bare_lettre: {}: {error}", to.address);
                        if connection.has_broken() {
                            return Err::<(u64, u64), Failure>(
                                format!("the connection broke: {error}").into(),
                            );
                        }
                    }
                }
            }
            let _ = connection.quit().await;
            Ok((sent, failed))
        }));
    }
    let (mut sent, mut failed) = (0, 0);
    for task in tasks {
        let (task_sent, task_failed) = task.await??;
        sent += task_sent;
        failed += task_failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sent={sent} failed={failed} connections={connections} seconds={seconds:.3} per_second={:.0}",
        sent as f64 / seconds
    );
    if failed > 0 {
        return Err(format!("{failed} message(s) not taken").into());
    }
    Ok(())
}

fn main() -> Result<(), Failure> {
    let mut arguments = std::env::args().skip(1);
    let (Some(server), Some(connections), Some(path)) =
        (arguments.next(), arguments.next(), arguments.next())
    else {
        return Err("usage: bare_lettre HOST:PORT CONNECTIONS RECIPIENTS [--stock]".into());
    };
    let stock = match arguments.next().as_deref() {
        None => false,
        Some("--stock") => true,
        Some(other) => return Err(format!("{other:?}: only --stock").into()),
    };
    let connections: usize = connections.parse()?;
    if connections == 0 {
        return Err("at least one connection".into());
    }
    let recipients = recipients(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(server, connections, recipients, stock))
}
