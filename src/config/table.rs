//! Reading toml's spanned parse tree ([`toml::de::DeTable`]) key by key: every value
//! keeps its full dotted key and its place in the file, so that every error can name both.
//!
//! The serde route (`toml::from_str` into derived structs) was not taken: its errors carry
//! the key path only in a private field, so a wrong type or an unknown key inside `[timing]`
//! could not be named as `timing.poll_interval`.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

/// The text being read and the file it came from: what every error needs.
#[derive(Clone, Copy)]
pub(crate) struct Source<'t> {
    pub(crate) text: &'t str,
    pub(crate) file: &'t Path,
    /// Full dotted keys read as if absent: the bad values `run` sets aside
    /// ([`super::Config::load_setting_aside`]).
    pub(crate) ignored: &'t [String],
}

impl Source<'_> {
    /// An error about `key` (a full dotted path), at `span` of the text when known.
    pub(crate) fn error(
        &self,
        key: Option<&str>,
        span: Option<Range<usize>>,
        message: impl fmt::Display,
    ) -> ConfigError {
        let message = match span {
            Some(span) => {
                let (line, column) = self.place(span.start);
                format!("line {line}, column {column}: {message}")
            }
            None => message.to_string(),
        };
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.map(str::to_string),
            message,
        }
    }

    /// Line and column (from 1, the column in characters) of a byte offset.
    pub(crate) fn place(&self, offset: usize) -> (usize, usize) {
        let bytes = self.text.as_bytes();
        let offset = offset.min(bytes.len());
        let line_start = bytes[..offset]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + bytes[..line_start].iter().filter(|b| **b == b'\n').count();
        let column = match self.text.get(line_start..offset) {
            Some(s) => s.chars().count(),
            None => offset - line_start,
        };
        (line, column + 1)
    }

    /// A TOML syntax error, with the key it is about when the line makes that clear.
    pub(crate) fn syntax_error(
        &self,
        error: &toml::de::Error,
        known: &dyn Fn(&str) -> bool,
    ) -> ConfigError {
        let message = error.message().trim().replace('\n', "; ");
        let span = error.span();
        let key = span
            .as_ref()
            .and_then(|s| guess_key(self.text, s.start))
            .filter(|k| known(k));
        self.error(
            key.as_deref(),
            span,
            format_args!("invalid TOML: {message}"),
        )
    }
}

/// A table of the file, and the dotted path that leads to it.
pub(crate) struct Table<'a, 'i> {
    src: Source<'a>,
    prefix: String,
    map: &'a DeTable<'i>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The document itself.
    pub(crate) fn root(src: Source<'a>, doc: &'a DeTable<'i>) -> Self {
        Table {
            src,
            prefix: String::new(),
            map: doc,
        }
    }

    /// Refuses the first key (in file order) that is not one of `known`, suggesting the
    /// nearest known one.
    pub(crate) fn check_keys(&self, known: &[&str]) -> Result<(), ConfigError> {
        let unknown = self
            .map
            .keys()
            .filter(|k| !known.contains(&k.get_ref().as_ref()))
            .filter(|k| !self.ignores(k.get_ref()))
            .min_by_key(|k| k.span().start);
        let Some(key) = unknown else {
            return Ok(());
        };
        let name: &str = key.get_ref();
        let place = if self.prefix.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in [{}]", self.prefix)
        };
        let hint = match nearest(name, known) {
            Some(near) => format!(" (did you mean {near}?)"),
            None => String::new(),
        };
        Err(self.src.error(
            Some(&self.path_of(name)),
            Some(key.span()),
            format_args!(
                "unknown key{hint}; the keys {place} are: {}",
                known.join(", ")
            ),
        ))
    }

    /// The value of `name` in this table, if given (and not set aside).
    pub(crate) fn get(&self, name: &str) -> Option<Item<'a, 'i>> {
        if self.ignores(name) {
            return None;
        }
        self.map.get(name).map(|value| Item {
            src: self.src,
            key: self.path_of(name),
            value,
        })
    }

    /// The sub-table `name`, if given; any other type is an error.
    pub(crate) fn table(&self, name: &str) -> Result<Option<Table<'a, 'i>>, ConfigError> {
        let Some(item) = self.get(name) else {
            return Ok(None);
        };
        match item.value.get_ref() {
            DeValue::Table(map) => Ok(Some(Table {
                src: self.src,
                prefix: item.key,
                map,
            })),
            other => Err(item.error(format_args!(
                "expected a table ([{}]), found {}",
                item.key,
                article(other)
            ))),
        }
    }

    /// The error for a required key that is not there.
    pub(crate) fn missing(&self, name: &str, message: impl fmt::Display) -> ConfigError {
        self.src.error(Some(&self.path_of(name)), None, message)
    }

    fn ignores(&self, name: &str) -> bool {
        !self.src.ignored.is_empty() && self.src.ignored.contains(&self.path_of(name))
    }

    fn path_of(&self, name: &str) -> String {
        let name = key_segment(name);
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}.{name}", self.prefix)
        }
    }
}

/// One value of the file, with its full key and its place.
pub(crate) struct Item<'a, 'i> {
    src: Source<'a>,
    /// The full dotted key, as shown in errors (`timing.poll_interval`).
    pub(crate) key: String,
    value: &'a Spanned<DeValue<'i>>,
}

impl<'a, 'i> Item<'a, 'i> {
    pub(crate) fn value(&self) -> &'a DeValue<'i> {
        self.value.get_ref()
    }

    /// The line the value starts on.
    pub(crate) fn line(&self) -> usize {
        self.src.place(self.value.span().start).0
    }

    /// An error about this value, at its place.
    pub(crate) fn error(&self, message: impl fmt::Display) -> ConfigError {
        self.src
            .error(Some(&self.key), Some(self.value.span()), message)
    }

    /// The value as a string; `what` says what was expected, for the type error.
    pub(crate) fn str(&self, what: &str) -> Result<&'a str, ConfigError> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            other => Err(self.type_error(what, other)),
        }
    }

    /// One of the words `allowed` (a string), or an error that lists them.
    pub(crate) fn word(&self, allowed: &[&'static str]) -> Result<&'static str, ConfigError> {
        let quoted: Vec<String> = allowed.iter().map(|w| format!("\"{w}\"")).collect();
        let what = quoted.join(", ");
        let text = self.str(&what)?;
        allowed
            .iter()
            .find(|w| **w == text)
            .copied()
            .ok_or_else(|| {
                self.error(format_args!(
                    "{}: expected one of {what}",
                    super::values::shown(text)
                ))
            })
    }

    /// The elements of an array value (each keeps this key and has its own place).
    pub(crate) fn array(&self, what: &str) -> Result<Vec<Item<'a, 'i>>, ConfigError> {
        match self.value.get_ref() {
            DeValue::Array(items) => Ok(items
                .iter()
                .map(|value| Item {
                    src: self.src,
                    key: self.key.clone(),
                    value,
                })
                .collect()),
            other => Err(self.type_error(what, other)),
        }
    }

    /// "expected `what`, found an integer".
    pub(crate) fn type_error(&self, what: &str, found: &DeValue<'_>) -> ConfigError {
        self.error(format_args!("expected {what}, found {}", article(found)))
    }
}

/// A TOML type with its article, for messages.
fn article(value: &DeValue<'_>) -> String {
    let kind = value.type_str();
    let a = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{a} {kind}")
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

/// The known key nearest to `name` (at most 2 edits away), for "did you mean".
fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters (names are short; capped inputs keep it cheap).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// For a syntax error at `offset`: the dotted key of its line when the line reads
/// `key = …` with bare keys, prefixed by the nearest `[table]` header above. A guess (a
/// multi-line value can fool it), so the caller keeps it only when it is a known key.
fn guess_key(text: &str, offset: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let offset = offset.min(bytes.len());
    let line_start = bytes[..offset]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = bytes[offset..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |i| offset + i);
    let line = text.get(line_start..line_end)?;
    let (key, _) = line.split_once('=')?;
    let key = bare_dotted(key)?;
    let above = text.get(..line_start)?;
    let header = above
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with('['));
    match header {
        None => Some(key),
        Some(h) if h.starts_with("[[") => None,
        Some(h) => {
            let inside = h.strip_prefix('[')?.split_once(']')?.0;
            Some(format!("{}.{key}", bare_dotted(inside)?))
        }
    }
}

/// `a.b.c` (bare keys, spaces around the dots allowed) → `a.b.c`; anything else → None.
fn bare_dotted(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('.').map(str::trim).collect();
    let ok = parts.iter().all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    ok.then(|| parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_count_lines_and_characters() {
        let src = Source {
            text: "a = 1\nbé = \"x\"\n",
            file: Path::new("f"),
            ignored: &[],
        };
        assert_eq!(src.place(0), (1, 1));
        assert_eq!(src.place(6), (2, 1));
        assert_eq!(src.place(10), (2, 4)); // after the two-byte é
        assert_eq!(src.place(1000), (3, 1));
        assert_eq!(src.place(8), (2, 3)); // inside é: no panic, byte column
    }

    #[test]
    fn key_guesses() {
        let text = "mac = x\n[timing]\npoll_interval = 1h\n";
        assert_eq!(guess_key(text, 6).as_deref(), Some("mac"));
        assert_eq!(guess_key(text, 33).as_deref(), Some("timing.poll_interval"));
        assert_eq!(guess_key("[[t]]\na = b", 10), None);
        assert_eq!(guess_key("\"a b\" = c", 8), None);
        assert_eq!(guess_key("", 5), None);
    }

    #[test]
    fn suggestions() {
        let known = ["keyring", "state_dir", "server"];
        assert_eq!(nearest("keyrnig", &known), Some("keyring"));
        assert_eq!(nearest("statedir", &known), Some("state_dir"));
        assert_eq!(nearest("colour", &known), None);
        assert_eq!(key_segment("a.b"), "\"a.b\"");
        assert_eq!(key_segment("poll_interval"), "poll_interval");
    }
}
