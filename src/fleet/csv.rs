//! The fleet as CSV for a spreadsheet (RFC 4180: comma-separated, CRLF line ends, a
//! header line; a field holding a comma, a quote, a CR or an LF is quoted and its quotes
//! doubled). One table per call: the licenses (one row per feature record a license
//! grants, the license's columns repeated, so a sheet filters and sums by feature), the
//! attention items, the summary, or the files that are not reports.
//!
//! Text from the reports (devices in the field) that a spreadsheet would take for a
//! formula (starting with `=`, `+`, `-`, `@`, a tab or a CR) gets a leading `'`, so
//! opening the file never runs anything; numbers and the tool's own words are as in
//! `--json`.

use super::view::Fleet;
use super::Unreadable;

/// The tables `--csv=TABLE` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Licenses,
    Attention,
    Summary,
    Unreadable,
}

impl Table {
    pub(crate) fn parse(text: &str) -> Option<Table> {
        match text {
            "licenses" => Some(Table::Licenses),
            "attention" => Some(Table::Attention),
            "summary" => Some(Table::Summary),
            "unreadable" => Some(Table::Unreadable),
            _ => None,
        }
    }
}

/// The columns of the licenses table, in order.
pub(crate) const LICENSE_COLUMNS: [&str; 18] = [
    "fingerprint",
    "kind",
    "serial",
    "key",
    "license_status",
    "license_start",
    "license_end",
    "phones",
    "feature",
    "description",
    "type",
    "transaction",
    "start",
    "end",
    "status",
    "in_use",
    "limit",
    "over_limit",
];

/// One field as RFC 4180 wants it, stripped of control characters ([`super::plain`]);
/// `report` text is defused against formulas.
fn field(out: &mut String, text: &str, report: bool) {
    let text = &*super::plain(text);
    // A control character before a formula is a space by now: a spreadsheet may still
    // trim it, so what follows the leading spaces is judged.
    let defuse = report && text.trim_start().starts_with(['=', '+', '-', '@']);
    if defuse || text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        if defuse {
            out.push('\'');
        }
        for c in text.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// One record: the fields, each `(text, from a report)`.
fn record(out: &mut String, fields: &[(&str, bool)]) {
    for (n, (text, report)) in fields.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        field(out, text, *report);
    }
    out.push_str("\r\n");
}

fn header(out: &mut String, names: &[&str]) {
    let fields: Vec<(&str, bool)> = names.iter().map(|n| (*n, false)).collect();
    record(out, &fields);
}

/// The table `which` of the fleet.
pub(crate) fn csv(fleet: &Fleet, unreadable: &[Unreadable], which: Table) -> String {
    let mut out = String::new();
    match which {
        Table::Licenses => {
            header(&mut out, &LICENSE_COLUMNS);
            for l in &fleet.licenses {
                let phones = l.phones.to_string();
                let license: [(&str, bool); 8] = [
                    (&l.fingerprint, true),
                    (&l.kind, true),
                    (&l.serial, true),
                    (&l.key, true),
                    (&l.status, false),
                    (&l.start, true),
                    (&l.end, true),
                    (&phones, false),
                ];
                if l.grants.is_empty() {
                    let mut fields = license.to_vec();
                    fields.extend([("", false); 10]);
                    record(&mut out, &fields);
                }
                for g in &l.grants {
                    let (in_use, limit) = (g.in_use.to_string(), g.limit.to_string());
                    let kind = if g.limit > 0 {
                        "Managed Device"
                    } else {
                        "not counted"
                    };
                    let mut fields = license.to_vec();
                    fields.extend([
                        (g.name.as_str(), true),
                        (g.description.as_str(), false),
                        (kind, false),
                        (g.transaction.as_str(), true),
                        (g.start.as_str(), true),
                        (g.end.as_str(), true),
                        (g.status.as_str(), false),
                        (in_use.as_str(), false),
                        (limit.as_str(), false),
                        (if g.over_limit { "true" } else { "false" }, false),
                    ]);
                    record(&mut out, &fields);
                }
            }
        }
        Table::Attention => {
            header(&mut out, &["mac", "what", "detail"]);
            for a in &fleet.attention {
                record(
                    &mut out,
                    &[(&a.mac, true), (&a.what, false), (&a.detail, true)],
                );
            }
        }
        Table::Summary => {
            let s = &fleet.summary;
            header(
                &mut out,
                &[
                    "at",
                    "phones",
                    "all",
                    "active",
                    "expiring_shortly",
                    "impending",
                    "inactive",
                    "attention",
                    "unreadable",
                ],
            );
            let numbers = [
                fleet.phones,
                s.all,
                s.active,
                s.expiring_shortly,
                s.impending,
                s.inactive,
                fleet.attention.len(),
                unreadable.len(),
            ]
            .map(|n| n.to_string());
            let mut fields = vec![(fleet.at.as_str(), false)];
            fields.extend(numbers.iter().map(|n| (n.as_str(), false)));
            record(&mut out, &fields);
        }
        Table::Unreadable => {
            header(&mut out, &["file", "why"]);
            for u in unreadable {
                record(&mut out, &[(&u.file, true), (&u.why, true)]);
            }
        }
    }
    out
}
