//! The parts of a report (`docs/report-schema.md`) the fleet view reads, borrowed from
//! the file's bytes where the JSON allows (a text without escapes is not copied): a
//! folder of 100,000 reports is mostly parsed, not allocated. The words of a closed
//! vocabulary (a kind, a clock verdict, a refusal's verdict, a reboot's cause) are read
//! as the agent's own types ([`crate::words`]), so a report is read with the words it
//! was written with. Every field the schema requires must be there (those the view does
//! not use are skipped unread), so a file is a report here exactly when it is one for
//! [`crate::report::Report`], give or take the insides of the fields skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

use crate::engine::clock::ClockVerdict;
use crate::engine::reboot::Cause;
use crate::engine::Verdict;
use crate::format::Kind;
use crate::status::WaitingFor;
use crate::storage::dropped::Reason as DropReason;

/// A JSON string: borrowed from the input when it has no escapes, else owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Slim<'a> {
    #[serde(borrow)]
    pub(crate) schema: Text<'a>,
    #[serde(borrow)]
    pub(crate) mac: Text<'a>,
    /// The site serial the phone is configured with (null: any).
    #[serde(borrow, default)]
    pub(crate) site_serial: Option<Text<'a>>,
    /// Required, not read (so are `set_aside` and each license's `role`).
    #[serde(rename = "agent")]
    _agent: IgnoredAny,
    #[serde(borrow)]
    pub(crate) reported_at: Text<'a>,
    pub(crate) clock: ClockVerdict,
    #[serde(borrow, default)]
    pub(crate) evaluated_at: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) licenses: Vec<License<'a>>,
    #[serde(borrow)]
    pub(crate) features: Vec<Feature<'a>>,
    #[serde(borrow, default)]
    pub(crate) configured: Option<Vec<Text<'a>>>,
    #[serde(borrow, default)]
    pub(crate) booted: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub(crate) refusals: Vec<Refusal<'a>>,
    #[serde(rename = "set_aside")]
    _set_aside: IgnoredAny,
    #[serde(default)]
    pub(crate) reboot: Option<Reboot>,
    /// The licenses the phone dropped from its store lately (added within version 1;
    /// absent from older agents).
    #[serde(borrow, default)]
    pub(crate) dropped: Option<Vec<Dropped<'a>>>,
    /// The trust the phone holds (added within version 1 with trust updates; absent
    /// from older agents).
    #[serde(borrow, default)]
    pub(crate) trust: Option<Trust<'a>>,
    /// The configuration's bad values the phone set aside (added within version 1;
    /// absent from older agents and from phones with none).
    #[serde(borrow, default)]
    pub(crate) config_set_aside: Vec<ConfigSetAside<'a>>,
}

/// A bad value of a phone's configuration, set aside: its key and the phone's words.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigSetAside<'a> {
    #[serde(borrow)]
    pub(crate) key: Text<'a>,
    #[serde(borrow)]
    pub(crate) detail: Text<'a>,
}

/// The parts of a report's `trust` the fleet view reads (the rest is skipped).
#[derive(Debug, Deserialize)]
pub(crate) struct Trust<'a> {
    pub(crate) version: u32,
    #[serde(borrow)]
    pub(crate) expires: Text<'a>,
    pub(crate) expired: bool,
    #[serde(borrow, default)]
    pub(crate) last_update: Option<TrustJudged<'a>>,
    #[serde(borrow, default)]
    pub(crate) set_aside: Vec<TrustSetAside<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TrustJudged<'a> {
    pub(crate) version: u32,
    #[serde(borrow)]
    pub(crate) verdict: Text<'a>,
    #[serde(borrow)]
    pub(crate) detail: Text<'a>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TrustSetAside<'a> {
    #[serde(borrow)]
    pub(crate) license: Text<'a>,
    #[serde(borrow)]
    pub(crate) key: Text<'a>,
    pub(crate) version: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct License<'a> {
    #[serde(borrow)]
    pub(crate) fingerprint: Text<'a>,
    pub(crate) kind: Kind,
    #[serde(borrow)]
    pub(crate) serial: Text<'a>,
    #[serde(borrow)]
    pub(crate) key: Text<'a>,
    #[serde(rename = "role")]
    _role: IgnoredAny,
    /// Required, not read: a license's span is its grants'.
    #[serde(rename = "start")]
    _start: IgnoredAny,
    #[serde(rename = "end")]
    _end: IgnoredAny,
    #[serde(borrow)]
    pub(crate) grants: Vec<Grant<'a>>,
    /// The parts of the license file its signature covers (added within version 1;
    /// absent from older agents, null past the report's budget).
    #[serde(borrow, default)]
    pub(crate) signed: Option<Signed<'a>>,
}

/// The signed content of a license, as a report carries it: enough to rebuild the
/// signed message, hash it and check its signature.
#[derive(Debug, Deserialize)]
pub(crate) struct Signed<'a> {
    #[serde(borrow)]
    pub(crate) serial: Text<'a>,
    #[serde(borrow)]
    pub(crate) description: Text<'a>,
    #[serde(borrow)]
    pub(crate) key: Text<'a>,
    #[serde(borrow)]
    pub(crate) features: Text<'a>,
    #[serde(borrow)]
    pub(crate) signature: Text<'a>,
}

/// A license the phone dropped from its store: at its end (`ended`), or replaced by
/// another of its kind (`replaced`). A held license's fields, without its role.
#[derive(Debug, Deserialize)]
pub(crate) struct Dropped<'a> {
    #[serde(borrow)]
    pub(crate) fingerprint: Text<'a>,
    pub(crate) kind: Kind,
    #[serde(borrow)]
    pub(crate) serial: Text<'a>,
    #[serde(borrow)]
    pub(crate) key: Text<'a>,
    /// Required, not read: a license's span is its grants'.
    #[serde(rename = "start")]
    _start: IgnoredAny,
    #[serde(rename = "end")]
    _end: IgnoredAny,
    #[serde(borrow)]
    pub(crate) grants: Vec<Grant<'a>>,
    #[serde(borrow, default)]
    pub(crate) signed: Option<Signed<'a>>,
    #[serde(borrow)]
    pub(crate) dropped_at: Text<'a>,
    pub(crate) reason: DropReason,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Grant<'a> {
    #[serde(borrow)]
    pub(crate) name: Text<'a>,
    #[serde(borrow)]
    pub(crate) transaction: Text<'a>,
    #[serde(borrow)]
    pub(crate) start: Text<'a>,
    #[serde(borrow)]
    pub(crate) end: Text<'a>,
    pub(crate) limit: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Feature<'a> {
    #[serde(borrow)]
    pub(crate) name: Text<'a>,
    pub(crate) enabled: bool,
    #[serde(borrow)]
    pub(crate) end: Text<'a>,
    #[serde(borrow, default)]
    pub(crate) fingerprint: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Refusal<'a> {
    #[serde(borrow)]
    pub(crate) subject: Text<'a>,
    pub(crate) verdict: Verdict,
    #[serde(borrow)]
    pub(crate) detail: Text<'a>,
    #[serde(borrow, default)]
    pub(crate) key: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reboot {
    pub(crate) causes: Vec<Cause>,
    #[serde(default)]
    pub(crate) waiting_for: Option<WaitingFor>,
}
