//! The fleet as CSV for a spreadsheet (RFC 4180: comma-separated, CRLF line ends, a
//! header line; a field holding a comma, a quote, a CR or an LF is quoted and its quotes
//! doubled). One table per call: the license rows (one per feature grant, as the
//! portal lists them), the groups to act on, each group's phones, the per-site totals,
//! the summary, or the files that are not reports.
//!
//! Text from the reports (devices in the field) that a spreadsheet would take for a
//! formula (starting with `=`, `+`, `-`, `@`, a tab or a CR) gets a leading `'`, so
//! opening the file never runs anything; numbers and the tool's own words are as in
//! `--json`.

use super::model::Fleet;
use super::Unreadable;
use crate::words::or_unknown;

/// The tables `--csv=TABLE` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Licenses,
    Attention,
    Phones,
    Sites,
    Summary,
    Unreadable,
}

impl Table {
    pub(crate) fn parse(text: &str) -> Option<Table> {
        match text {
            "licenses" => Some(Table::Licenses),
            "attention" => Some(Table::Attention),
            "phones" => Some(Table::Phones),
            "sites" => Some(Table::Sites),
            "summary" => Some(Table::Summary),
            "unreadable" => Some(Table::Unreadable),
            _ => None,
        }
    }
}

/// The columns of the licenses table, in order.
pub(crate) const LICENSE_COLUMNS: [&str; 22] = [
    "license_id",
    "kind",
    "feature",
    "description",
    "type",
    "transaction",
    "start",
    "end",
    "days_left",
    "status",
    "term_status",
    "renewed_until",
    "renewal_fetched",
    "renewal_phones",
    "adds_to",
    "limit",
    "capacity",
    "in_use",
    "over",
    "phones",
    "verified",
    "licenses",
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
            for r in &fleet.rows {
                let numbers = [
                    r.days_left.map_or(String::new(), |d| d.to_string()),
                    r.renewal_fetched.map_or(String::new(), |n| n.to_string()),
                    r.renewal_phones.map_or(String::new(), |n| n.to_string()),
                    r.limit.to_string(),
                    r.capacity.to_string(),
                    r.in_use.to_string(),
                    r.phones.to_string(),
                ];
                let licenses = r.licenses.join(" ");
                record(
                    &mut out,
                    &[
                        (&r.id, true),
                        (r.kind.id(), true),
                        (&r.feature, true),
                        (&r.description, false),
                        (&r.kind_of_count, false),
                        (&r.transaction, true),
                        (&r.start, true),
                        (&r.end, true),
                        (&numbers[0], false),
                        (or_unknown::word(r.status), false),
                        (or_unknown::word(r.term_status), false),
                        (r.renewed_until.as_deref().unwrap_or(""), true),
                        (&numbers[1], false),
                        (&numbers[2], false),
                        (r.adds_to.as_deref().unwrap_or(""), true),
                        (&numbers[3], false),
                        (&numbers[4], false),
                        (&numbers[5], false),
                        (if r.over { "true" } else { "false" }, false),
                        (&numbers[6], false),
                        (if r.verified { "true" } else { "false" }, false),
                        (&licenses, true),
                    ],
                );
            }
        }
        Table::Attention => {
            header(&mut out, &["what", "subject", "phones", "detail"]);
            for g in &fleet.attention {
                let n = g.phones.len().to_string();
                record(
                    &mut out,
                    &[
                        (&g.what, false),
                        (&g.subject, true),
                        (&n, false),
                        (&g.detail, true),
                    ],
                );
            }
        }
        Table::Phones => {
            header(&mut out, &["what", "subject", "mac", "detail"]);
            for g in &fleet.attention {
                for p in &g.phones {
                    record(
                        &mut out,
                        &[
                            (&g.what, false),
                            (&g.subject, true),
                            (&p.mac, true),
                            (&p.detail, true),
                        ],
                    );
                }
            }
        }
        Table::Sites => {
            header(
                &mut out,
                &[
                    "serial",
                    "phones",
                    "all",
                    "active",
                    "expiring_shortly",
                    "impending",
                    "inactive",
                    "in_use",
                    "capacity",
                ],
            );
            for site in &fleet.sites {
                let numbers = [
                    site.phones,
                    site.rows.all,
                    site.rows.active,
                    site.rows.expiring_shortly,
                    site.rows.impending,
                    site.rows.inactive,
                    site.in_use,
                ]
                .map(|n| n.to_string());
                let capacity = site.capacity.to_string();
                let mut fields = vec![(site.serial.as_str(), true)];
                fields.extend(numbers.iter().map(|n| (n.as_str(), false)));
                fields.push((&capacity, false));
                record(&mut out, &fields);
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
                fleet.attention_items(),
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
