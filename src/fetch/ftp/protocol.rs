//! The FTP control connection's words, without sockets (RFC 959, 2428, 3659, 4217): the
//! replies read from bytes, the commands written, and what the replies of `EPSV`,
//! `PASV`, `SIZE` and `MDTM` say. Every reply from the server goes through here, so
//! nothing it sends can make the client panic, allocate without bound or send a
//! command it did not mean to. The server's words are kept as they came and shown only
//! through [`Secrets::words`] ([`Reply::shown`], [`Broken::shown`]): the password a
//! server echoes is hidden before they are cut or escaped.

use crate::fetch::secrets::Secrets;

/// The longest reply line read, in bytes (RFC 959 sets no limit; real ones are short).
pub(crate) const MAX_LINE: usize = 1024;
/// The most bytes one reply (all its lines) may take: a banner can be long, not endless.
pub(crate) const MAX_REPLY: usize = 16 * 1024;

/// One reply: its three-digit code and its text (the lines joined by `\n`, without the
/// codes of the first and last line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl Reply {
    /// 2xx: done.
    pub(crate) fn completed(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// `550 Failed to open file.`: the code, and what the server said as one short safe
    /// line (`secrets` hidden, then cut to [`SHOWN_CHARS`] and escaped).
    pub(crate) fn shown(&self, secrets: &Secrets) -> String {
        format!("{} {}", self.code, secrets.words(&self.text, SHOWN_CHARS))
    }
}

/// The most characters of a reply's first line shown in a message.
pub(crate) const SHOWN_CHARS: usize = 120;

/// What in the server's bytes breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Broken {
    /// A line longer than [`MAX_LINE`].
    LongLine,
    /// A reply longer than [`MAX_REPLY`].
    LongReply,
    /// A line that does not start with a reply code: the line as it came (shown only
    /// through [`Broken::shown`]).
    NoCode(String),
}

impl Broken {
    /// In words, the server's made safe by `secrets`.
    pub(crate) fn shown(&self, secrets: &Secrets) -> String {
        match self {
            Broken::LongLine => format!("a reply line longer than {MAX_LINE} bytes"),
            Broken::LongReply => format!("a reply longer than {MAX_REPLY} bytes"),
            Broken::NoCode(line) => format!(
                "a reply that does not start with a code: \"{}\"",
                secrets.words(line, 80)
            ),
        }
    }
}

/// Reads replies from the bytes the server sends, in any pieces.
#[derive(Debug, Default)]
pub(crate) struct ReplyReader {
    /// Bytes of the line being read.
    line: Vec<u8>,
    /// The reply being read: its code, its lines so far, and its size.
    open: Option<(u16, Vec<String>)>,
    size: usize,
}

impl ReplyReader {
    /// Takes `bytes`; returns how many it used and the reply they completed, if any (the
    /// rest belongs to the next reply), or what breaks the protocol.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(usize, Option<Reply>), Broken> {
        for (i, &b) in bytes.iter().enumerate() {
            self.size += 1;
            if self.size > MAX_REPLY {
                return Err(Broken::LongReply);
            }
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    return Err(Broken::LongLine);
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(reply) = self.line_done(&line)? {
                self.size = 0;
                return Ok((i + 1, Some(reply)));
            }
        }
        Ok((bytes.len(), None))
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<Reply>, Broken> {
        // Replies are ASCII; anything else is shown, never trusted.
        let text = String::from_utf8_lossy(line).into_owned();
        let code = reply_code(line);
        match (&mut self.open, code) {
            // The first line: `ddd text` ends it, `ddd-text` opens a multi-line reply.
            (None, Some((code, b' '))) => Ok(Some(Reply {
                code,
                text: text.get(4..).unwrap_or("").to_string(),
            })),
            (None, Some((code, b'-'))) => {
                self.open = Some((code, vec![text.get(4..).unwrap_or("").to_string()]));
                Ok(None)
            }
            (None, _) => Err(Broken::NoCode(text)),
            // The last line of a multi-line reply repeats the code and a space.
            (Some((open, lines)), Some((code, b' '))) if *open == code => {
                lines.push(text.get(4..).unwrap_or("").to_string());
                let text = lines.join("\n");
                self.open = None;
                Ok(Some(Reply { code, text }))
            }
            (Some((_, lines)), _) => {
                lines.push(text);
                Ok(None)
            }
        }
    }
}

/// The code of a reply line and the byte after it (`' '` or `'-'`); also a bare `ddd`.
fn reply_code(line: &[u8]) -> Option<(u16, u8)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, b' ')),
        Some(&sep @ (b' ' | b'-')) => Some((code, sep)),
        Some(_) => None,
    }
}

/// A command line, `VERB arg\r\n`; refused if `arg` holds a line break or a NUL (so no
/// file name or password can smuggle a second command).
pub(crate) fn command(verb: &str, arg: Option<&str>) -> Result<String, String> {
    match arg {
        None => Ok(format!("{verb}\r\n")),
        Some(arg) if arg.contains(['\r', '\n', '\0']) => Err(format!(
            "{verb}: the argument holds a line break or NUL: not sent"
        )),
        Some(arg) => Ok(format!("{verb} {arg}\r\n")),
    }
}

/// The port of a `229 Entering Extended Passive Mode (|||port|)` reply (RFC 2428: any
/// delimiter, the same four times). An error names what is missing, not the reply (the
/// caller shows that with [`Reply::shown`]); so do those of [`pasv_port`] and [`size`].
pub(crate) fn epsv_port(text: &str) -> Result<u16, String> {
    let bad = || "EPSV: no (|||port|) in the reply".to_string();
    let open = text.find('(').ok_or_else(bad)?;
    let inner = &text[open + 1..];
    let close = inner.find(')').ok_or_else(bad)?;
    let inner = &inner[..close];
    let delimiter = inner.chars().next().ok_or_else(bad)?;
    let fields: Vec<&str> = inner.split(delimiter).collect();
    // `|||port|` splits into "", "", "", "port", "".
    match fields[..] {
        ["", "", "", port, ""] => port_number(port).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The port of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply. The address is
/// not used: the data connection goes to the control connection's peer, so a server (or
/// a man in the middle of plain FTP) cannot send the client to another host.
pub(crate) fn pasv_port(text: &str) -> Result<u16, String> {
    let bad = || "PASV: no h1,h2,h3,h4,p1,p2 in the reply".to_string();
    let start = text.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?;
    let numbers: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take(6)
        .map(|n| n.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match numbers[..] {
        [_, _, _, _, high, low] => {
            let port = u16::from(high) << 8 | u16::from(low);
            if port == 0 {
                Err(bad())
            } else {
                Ok(port)
            }
        }
        _ => Err(bad()),
    }
}

fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

/// The size of a `213 <n>` reply to `SIZE`.
pub(crate) fn size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| "SIZE: not a number of bytes".to_string())
}

#[cfg(test)]
mod tests;
