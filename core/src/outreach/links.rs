//! The signed links a message carries: the one-click unsubscribe (RFC 8058) that the daemon
//! serves without a token, because the link itself proves which customer and channel it is for.
//! A link is `BASE/unsubscribe/CAMPAIGN/CUSTOMER/KIND/MAC`, the customer percent-encoded and MAC
//! the first 16 bytes (hex) of a keyed BLAKE3 of the three; a forged or altered link fails the
//! check. The key is the merchant's (kept beside the data, never in the log or the plan).

use crate::plan::model::ChannelKind;

/// The path segment before a link's parts.
pub const UNSUBSCRIBE: &str = "unsubscribe";

/// The MAC of an unsubscribe link: hex of the first 16 bytes of a keyed BLAKE3 over the
/// campaign, the customer and the channel kind, each framed by its length.
pub fn unsubscribe_mac(
    key: &[u8; 32],
    campaign: &str,
    customer: &str,
    kind: ChannelKind,
) -> String {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(b"battleplan unsubscribe v1");
    for part in [campaign, customer, kind.as_str()] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest.as_bytes()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The one-click unsubscribe link of a customer for a campaign's channel kind, under `base`
/// (the daemon's public address and path prefix, without a final slash).
pub fn unsubscribe_url(
    base: &str,
    key: &[u8; 32],
    campaign: &str,
    customer: &str,
    kind: ChannelKind,
) -> String {
    format!(
        "{}/{UNSUBSCRIBE}/{}/{}/{}/{}",
        base.trim_end_matches('/'),
        percent_encoded(campaign),
        percent_encoded(customer),
        kind.as_str(),
        unsubscribe_mac(key, campaign, customer, kind)
    )
}

/// Whether `mac` is the MAC of this campaign, customer and kind (compared in constant time).
pub fn unsubscribe_mac_holds(
    key: &[u8; 32],
    campaign: &str,
    customer: &str,
    kind: ChannelKind,
    mac: &str,
) -> bool {
    let expected = unsubscribe_mac(key, campaign, customer, kind);
    expected.len() == mac.len()
        && expected
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// The path segment before a tracked link's parts.
pub const CLICK: &str = "click";

/// The MAC of a tracked link: hex of the first 16 bytes of a keyed BLAKE3 over the message's
/// key and the address it leads to, each framed by its length. It covers the address, so a
/// tracked link never leads anywhere else (no open redirect).
pub fn click_mac(key: &[u8; 32], message: &str, target: &str) -> String {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(b"battleplan click v1");
    for part in [message, target] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest.as_bytes()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The tracked link of `target` in the message with idempotency key `message`:
/// `BASE/click/MAC/MESSAGE/TARGET`, both percent-encoded (one path segment each).
pub fn click_url(base: &str, key: &[u8; 32], message: &str, target: &str) -> String {
    format!(
        "{}/{CLICK}/{}/{}/{}",
        base.trim_end_matches('/'),
        click_mac(key, message, target),
        percent_encoded(message),
        percent_encoded(target)
    )
}

/// Whether `mac` is the MAC of this message and target (compared in constant time).
pub fn click_mac_holds(key: &[u8; 32], message: &str, target: &str, mac: &str) -> bool {
    let expected = click_mac(key, message, target);
    expected.len() == mac.len()
        && expected
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// A rendered body with each `http://` or `https://` address made a tracked link by `track`:
/// in HTML, the values of `href` attributes; in text (a body with no `href`), every address,
/// up to the first space, quote or angle bracket. Other links (the unsubscribe placeholder, a
/// `mailto:`) are left as they are.
pub fn track_links(body: &str, mut track: impl FnMut(&str) -> String) -> String {
    let is_web = |text: &str| text.starts_with("http://") || text.starts_with("https://");
    let mut out = String::with_capacity(body.len());
    if body.contains("href=") {
        let mut rest = body;
        while let Some(at) = rest.find("href=") {
            let (before, after) = rest.split_at(at + "href=".len());
            out.push_str(before);
            let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
            let Some(quote) = quote else {
                rest = after;
                continue;
            };
            let value_start = quote.len_utf8();
            let Some(length) = after[value_start..].find(quote) else {
                rest = after;
                continue;
            };
            let value = &after[value_start..value_start + length];
            out.push(quote);
            // The attribute's value is HTML: `&amp;` in it is `&` in the address.
            let address = value.replace("&amp;", "&");
            if is_web(&address) {
                out.push_str(&track(&address));
            } else {
                out.push_str(value);
            }
            out.push(quote);
            rest = &after[value_start + length + quote.len_utf8()..];
        }
        out.push_str(rest);
        return out;
    }
    let mut rest = body;
    loop {
        let next = ["http://", "https://"]
            .iter()
            .filter_map(|scheme| rest.find(scheme))
            .min();
        let Some(at) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        // An address is ASCII: it ends at the first space, quote, angle bracket or character
        // that is not (Chinese punctuation or text right after it).
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || !c.is_ascii() || matches!(c, '"' | '\'' | '<' | '>')
            })
            .unwrap_or(tail.len());
        // A sentence's full stop or comma after an address is not part of it.
        let address = tail[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        let written = address.replace("&amp;", "&");
        out.push_str(&track(&written));
        rest = &tail[address.len()..];
    }
}

/// Decodes `%XX` sequences; `None` when they do not make UTF-8 text.
pub fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes all but unreserved characters (RFC 3986), for a path segment.
pub fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_html_and_in_text_are_tracked_and_others_left_alone() {
        let html = r#"<p><a href="https://shop.example.com/sale?a=1&amp;b=2">Sale</a> <a href='mailto:x@y'>mail</a> <a href="unsubscribe://c/d">stop</a></p>"#;
        let tracked = track_links(html, |url| format!("T[{url}]"));
        assert_eq!(
            tracked,
            r#"<p><a href="T[https://shop.example.com/sale?a=1&b=2]">Sale</a> <a href='mailto:x@y'>mail</a> <a href="unsubscribe://c/d">stop</a></p>"#
        );
        let text = "See https://shop.example.com/new, and http://a.example/b?c=1.\nBye";
        assert_eq!(
            track_links(text, |url| format!("T[{url}]")),
            "See T[https://shop.example.com/new], and T[http://a.example/b?c=1].\nBye"
        );
        assert_eq!(track_links("no links", |_| String::new()), "no links");
        assert_eq!(
            track_links("详见 https://shop.example.com/sale。谢谢！", |url| format!(
                "T[{url}]"
            )),
            "详见 T[https://shop.example.com/sale]。谢谢！"
        );
    }

    #[test]
    fn percent_decoding_undoes_the_encoding() {
        let key = "sept/warm-up/客户 1/1";
        assert_eq!(percent_decoded(&percent_encoded(key)).as_deref(), Some(key));
        assert_eq!(percent_decoded("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decoded("%zz"), None);
        assert_eq!(percent_decoded("%ff"), None);
    }

    #[test]
    fn a_tracked_link_holds_only_for_its_message_and_address() {
        let key = [7u8; 32];
        let url = click_url(
            "https://bp.example/api/v1",
            &key,
            "s/r/c-1/1",
            "https://shop.example/x?y=1",
        );
        let parts: Vec<&str> = url.rsplitn(4, '/').collect();
        assert_eq!(parts[1], "s%2Fr%2Fc-1%2F1");
        assert_eq!(parts[0], "https%3A%2F%2Fshop.example%2Fx%3Fy%3D1");
        assert!(click_mac_holds(
            &key,
            "s/r/c-1/1",
            "https://shop.example/x?y=1",
            parts[2]
        ));
        assert!(!click_mac_holds(
            &key,
            "s/r/c-1/1",
            "https://evil.example/",
            parts[2]
        ));
        assert!(!click_mac_holds(
            &key,
            "s/r/c-2/1",
            "https://shop.example/x?y=1",
            parts[2]
        ));
    }

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_link_names_its_customer_and_holds_only_for_them() {
        let url = unsubscribe_url(
            "http://127.0.0.1:8080/",
            &KEY,
            "sept-festival-2026",
            "c/0 1",
            ChannelKind::Mail,
        );
        let mac = unsubscribe_mac(&KEY, "sept-festival-2026", "c/0 1", ChannelKind::Mail);
        assert_eq!(
            url,
            format!("http://127.0.0.1:8080/unsubscribe/sept-festival-2026/c%2F0%201/mail/{mac}")
        );
        assert_eq!(mac.len(), 32);
        assert!(unsubscribe_mac_holds(
            &KEY,
            "sept-festival-2026",
            "c/0 1",
            ChannelKind::Mail,
            &mac
        ));
        // Another customer, campaign, kind or key: refused.
        assert!(!unsubscribe_mac_holds(
            &KEY,
            "sept-festival-2026",
            "c/0 2",
            ChannelKind::Mail,
            &mac
        ));
        assert!(!unsubscribe_mac_holds(
            &KEY,
            "other",
            "c/0 1",
            ChannelKind::Mail,
            &mac
        ));
        assert!(!unsubscribe_mac_holds(
            &KEY,
            "sept-festival-2026",
            "c/0 1",
            ChannelKind::InSite,
            &mac
        ));
        assert!(!unsubscribe_mac_holds(
            &[8; 32],
            "sept-festival-2026",
            "c/0 1",
            ChannelKind::Mail,
            &mac
        ));
        // Framing: the parts cannot be shifted into each other.
        assert_ne!(
            unsubscribe_mac(&KEY, "ab", "c", ChannelKind::Mail),
            unsubscribe_mac(&KEY, "a", "bc", ChannelKind::Mail)
        );
        // A truncated or altered MAC is refused.
        assert!(!unsubscribe_mac_holds(
            &KEY,
            "sept-festival-2026",
            "c/0 1",
            ChannelKind::Mail,
            &mac[..31]
        ));
        let mut altered = mac.clone().into_bytes();
        altered[0] = if altered[0] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap_or_default();
        assert!(!unsubscribe_mac_holds(
            &KEY,
            "sept-festival-2026",
            "c/0 1",
            ChannelKind::Mail,
            &altered
        ));
    }
}
