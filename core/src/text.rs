//! Text that came from outside (a CSV cell, a column name, a customer's name, an outcome's note)
//! made safe to put in front of a person or into a message header.
//!
//! A terminal obeys control characters: `ESC ] 0 ;` sets the window title, a carriage return
//! and a line feed fake lines of output. Wherever user data is printed, in an error, in
//! `explain`, in `history`, it goes through [`printable`]. A header-bound field (a mail subject,
//! a recipient's display name) goes through [`single_line`], which refuses CR and LF outright
//! rather than let a customer named `"Evil\r\nBcc: attacker@evil.example"` add a header.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character written as a visible escape: `\n`, `\r`, `\t` and
/// `\u{1b}` style for the rest (C0, DEL, C1 and the Unicode line and paragraph separators and
/// bidirectional overrides, which reorder what a terminal shows). Ordinary text is borrowed
/// unchanged.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` must not reach a terminal raw.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Why a header-bound field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("holds a line break or a control character at character {at}: {}", printable(.text))]
pub struct NotSingleLine {
    /// The offending text.
    pub text: String,
    /// The character index (from 1) of the first offending character.
    pub at: usize,
}

/// `text` when it fits on one header line: no CR, no LF, no other control character. A header
/// is never repaired silently, since a repaired subject is a different subject.
pub fn single_line(text: &str) -> Result<&str, NotSingleLine> {
    match text.chars().position(needs_escape) {
        None => Ok(text),
        Some(index) => Err(NotSingleLine {
            text: text.to_owned(),
            at: index + 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed() {
        assert!(matches!(printable("王小明, Acme Ltd."), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(
            printable("Evil\r\nBcc: x\u{1b}]0;owned\u{7}\u{202e}"),
            "Evil\\r\\nBcc: x\\u{1b}]0;owned\\u{7}\\u{202e}"
        );
    }

    #[test]
    fn a_header_refuses_line_breaks() {
        assert_eq!(single_line("Hello Wang"), Ok("Hello Wang"));
        let refused = single_line("Evil\r\nBcc: attacker@evil.example").unwrap_err();
        assert_eq!(refused.at, 5);
        assert!(refused.to_string().contains("Evil\\r\\nBcc"));
    }
}

/// A number's decimal digits as `Display` writes them, made without `fmt`'s machinery (tens of
/// millions are made: an export's numbers, the outbox's send keys).
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    digits: [u8; 20],
    at: usize,
}

impl Decimal {
    pub fn of(mut number: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (number % 10) as u8;
            number /= 10;
            if number == 0 {
                break;
            }
        }
        Decimal { digits, at }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.at..]
    }

    pub fn as_str(&self) -> &str {
        // ASCII digits only.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod decimal_tests {
    proptest::proptest! {
        #[test]
        fn a_decimal_is_what_display_writes(number in proptest::prelude::any::<u64>()) {
            let decimal = super::Decimal::of(number);
            proptest::prop_assert_eq!(decimal.as_str(), number.to_string());
        }
    }

    #[test]
    fn the_ends_of_the_range() {
        assert_eq!(super::Decimal::of(0).as_str(), "0");
        assert_eq!(
            super::Decimal::of(u64::MAX).as_str(),
            "18446744073709551615"
        );
    }
}
