//! A small HTTP/1.1 client for the tests of the daemon's API: one request per connection over
//! loopback, the whole answer read to the end (chunked bodies decoded). Enough to see every
//! byte the server sends, with nothing between the test and the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a test waits on a socket before failing (a safety net against a hang).
const TIMEOUT: Duration = Duration::from_secs(120);

/// An answer: its status, its headers (names in lower case) and its body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}); status {}, body:\n{}",
                self.status,
                self.text()
            )
        })
    }

    /// The problem detail (RFC 9457) this refusal is, checked as one.
    pub fn problem(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let problem = self.json();
        assert_eq!(problem["status"], self.status, "{problem:#}");
        for field in ["type", "title", "detail", "code"] {
            assert!(problem[field].is_string(), "{field} in {problem:#}");
        }
        problem
    }
}

/// The daemon's HTTP address, from the line it logs on binding
/// (`battleplan: HTTP API on http://127.0.0.1:PORT/api/v1`).
pub fn address_in(line: &str) -> String {
    let start = line
        .find("http://")
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        + "http://".len();
    let rest = &line[start..];
    rest[..rest.find('/').unwrap_or(rest.len())].to_string()
}

/// One request on its own connection; `Err` when the connection failed or closed before a
/// whole answer (a daemon killed mid-request, say).
pub fn send(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    send_declaring(address, method, path, headers, body, body.len())
}

/// [`send`], its `Content-Length` saying `declared` bytes whatever the body holds.
pub fn send_declaring(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    declared: usize,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {declared}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server that refuses a body early (413) may close before taking all of it: what it
    // answered is read all the same.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let mut piece = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut piece) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&piece[..read]),
            Err(error)
                if !raw.is_empty() && error.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                break
            }
            Err(error) => return Err(error),
        }
    }
    parse(&raw, method == "HEAD").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "not a whole HTTP answer: {}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ),
        )
    })
}

/// The answer in `raw`; `None` when it is cut short (a HEAD answer's length is the body it
/// would have had).
fn parse(raw: &[u8], head_only: bool) -> Option<Answer> {
    let end = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    if chunked && !head_only {
        body = dechunk(&body)?;
    } else if let (Some(length), false) = (length, head_only) {
        if body.len() < length {
            return None;
        }
    }
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|window| window == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}
