//! A server's words made safe to show: the secrets a transport sends (the configured
//! password) hidden by value in the server's raw text *before* anything cuts or escapes
//! it, so that no cut can leave a beginning of one and no escape another spelling of it.
//!
//! Every message of `fetch` that carries what a server said goes through
//! [`Secrets::words`]: an FTP reply (fetch and upload), a reply the FTP client cannot
//! read, a TLS or transport error's text, a URL or `Location` a server redirected to.
//! It takes the raw text and gives one safe line: secrets hidden, the first line only,
//! trimmed, cut to a length, escaped (`escape_debug`), and checked once more (an escape
//! can spell a secret: `\"` from a `"` when the password is `\"`).
//!
//! Hiding is by value and errs on the side of hiding: every occurrence is hidden, in the
//! text as sent and percent-decoded (a URL carries `p%40ss` for `p@ss`), however short
//! the secret and whatever word it is part of (a password `in` hides the `in` of
//! `Logged in`). The user name is no secret: the agent names it in its own messages
//! (`the login as "phone" was refused`), as the configuration's `Debug` does.

use std::fmt;

/// What stands where a secret was.
pub(crate) const HIDDEN: &str = "***";

/// Shown instead of words in which a secret would still appear once hidden (only a
/// secret that the `***` itself helps spell, one made of `*` and what surrounds it).
const WITHHELD: &str = "(not shown: it would show a secret)";

/// The values never shown (none for an anonymous login or a server without a password).
/// `Debug` says only how many.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl Secrets {
    /// The values given, the empty ones left out (an empty password hides nothing).
    pub(crate) fn new<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Secrets {
        let mut values: Vec<String> = values
            .into_iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        // The longest first: a secret inside another is hidden with it.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets(values)
    }

    /// The server's words `raw` as one safe line: every secret hidden, then the first
    /// line, trimmed, cut to `max` characters and escaped (control characters, quotes
    /// and backslashes as `escape_debug` writes them).
    pub(crate) fn words(&self, raw: &str, max: usize) -> String {
        let hidden = self.hide(raw);
        let first = hidden.lines().next().unwrap_or("").trim();
        let cut: String = first.chars().take(max).collect();
        let escaped = cut.escape_debug().to_string();
        // The escape may spell a secret (a password `\"`, a `"` from the server).
        let shown = self.hide(&escaped);
        if self.appears_in(&shown) {
            WITHHELD.to_string()
        } else {
            shown
        }
    }

    /// `text` with every occurrence of a secret, as it is or percent-encoded, replaced
    /// by `***` (one for a run of them); nothing else changes. For text already made
    /// safe (a second net over a whole message), not a server's raw words: those go
    /// through [`Secrets::words`].
    pub(crate) fn hide(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        let mut masked = vec![false; text.len()];
        for secret in &self.0 {
            for (at, _) in text.match_indices(secret.as_str()) {
                masked[at..at + secret.len()].fill(true);
            }
        }
        if text.contains('%') {
            self.mask_encoded(text.as_bytes(), &mut masked);
        }
        let mut out = String::with_capacity(text.len());
        let mut in_run = false;
        for (at, c) in text.char_indices() {
            let hidden = masked
                .get(at..at + c.len_utf8())
                .is_some_and(|bytes| bytes.iter().any(|&m| m));
            match (hidden, in_run) {
                (true, false) => out.push_str(HIDDEN),
                (true, true) => {}
                (false, _) => out.push(c),
            }
            in_run = hidden;
        }
        out
    }

    /// Whether a secret appears in `text` (as it is).
    fn appears_in(&self, text: &str) -> bool {
        self.0.iter().any(|secret| text.contains(secret.as_str()))
    }

    /// Marks in `masked` the bytes of `text` that spell a secret once percent-decoded
    /// (`%XX` is one byte; anything else stands for itself).
    fn mask_encoded(&self, text: &[u8], masked: &mut [bool]) {
        // The decoded bytes, each with the span of `text` it came from.
        let mut decoded = Vec::with_capacity(text.len());
        let mut spans = Vec::with_capacity(text.len());
        let mut at = 0;
        while at < text.len() {
            let escape = (text[at] == b'%')
                .then(|| text.get(at + 1..at + 3))
                .flatten()
                .and_then(|hex| Some(hex_digit(hex[0])? << 4 | hex_digit(hex[1])?));
            let (byte, len) = escape.map_or((text[at], 1), |byte| (byte, 3));
            decoded.push(byte);
            spans.push((at, at + len));
            at += len;
        }
        for secret in &self.0 {
            let secret = secret.as_bytes();
            let mut from = 0;
            while let Some(found) = decoded
                .get(from..)
                .and_then(|rest| rest.windows(secret.len()).position(|w| w == secret))
            {
                let start = from + found;
                let end = start + secret.len();
                if let (Some(&(first, _)), Some(&(_, last))) =
                    (spans.get(start), spans.get(end - 1))
                {
                    if let Some(bytes) = masked.get_mut(first..last) {
                        bytes.fill(true);
                    }
                }
                from = end;
            }
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
