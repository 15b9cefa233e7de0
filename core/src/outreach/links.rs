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
