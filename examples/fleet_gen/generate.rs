//! A generated fleet of phones' status reports (`docs/report-schema.md`), for the
//! benchmark of `license-fleet` (`scripts/bench-fleet.sh`) and its page test
//! (`tests/it/fleet_page.rs`): a few site licenses shared across the fleet (one over its
//! Managed Device limit, one with an impending renewal, an old ended one still held by
//! some phones), a phone license of each phone's own (active, expiring shortly, ended,
//! impending, never ending), some phones booted with an expired license and some
//! waiting to reboot for one, refusals (an unknown key, a wrong phone), stale reports,
//! clocks unsynced or wound back. Deterministic: the same arguments write the same
//! files.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

const DAY: i64 = 86_400;

/// What was written.
pub struct Written {
    pub files: usize,
    pub bytes: u64,
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// 0..n
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("@{t}"))
}

fn fingerprint(seed: u64) -> String {
    let mut rng = Rng(seed ^ 0x5EED_F00D);
    (0..4).map(|_| format!("{:016x}", rng.next())).collect()
}

/// One license: its JSON and, per feature, (name, start, end or None, limit).
struct Lic {
    fingerprint: String,
    kind: &'static str,
    serial: String,
    start: i64,
    end: Option<i64>,
    features: Vec<(&'static str, u32)>,
    transaction: &'static str,
}

impl Lic {
    fn in_force(&self, at: i64) -> bool {
        self.start <= at && self.end.is_none_or(|e| at < e)
    }
    fn status(&self, at: i64) -> &'static str {
        match self.end {
            _ if at < self.start => "impending",
            Some(e) if at >= e => "inactive",
            Some(e) if e - at < 31 * DAY => "expiring-shortly",
            _ => "active",
        }
    }
    fn end_text(&self) -> String {
        self.end.map_or_else(|| "never".into(), time)
    }
    fn json(&self, at: i64, role: &str) -> Value {
        json!({
            "fingerprint": self.fingerprint,
            "kind": self.kind,
            "serial": self.serial,
            "key": "1a2b3c4d",
            "role": role,
            "status": self.status(at),
            "start": time(self.start),
            "end": self.end_text(),
            "grants": self.features.iter().map(|(name, limit)| json!({
                "name": name,
                "transaction": self.transaction,
                "start": time(self.start),
                "end": self.end_text(),
                "limit": limit,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Writes `phones` reports into `dir` (`<mac>-license-status.json`), the fleet as it
/// is at `now` (Unix seconds).
pub fn generate(dir: &Path, phones: usize, now: i64) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let sites = (phones / 25_000).clamp(1, 8) + 2;
    let mut site_licenses: Vec<Vec<Lic>> = Vec::new();
    for s in 0..sites {
        let serial = format!("1000000000{s:02}");
        let per_site = phones / sites + 1;
        // Site 0 is over its limit; the others have room.
        let limit = if s == 0 {
            (per_site / 2) as u32
        } else {
            per_site as u32 + 100
        };
        let mut list = vec![Lic {
            fingerprint: fingerprint(1_000 + s as u64),
            kind: "site",
            serial: serial.clone(),
            start: now - (100 + 20 * s as i64) * DAY,
            // Site 1 ends in 20 days: Expiring Shortly, renewed (impending) below.
            end: Some(now + if s == 1 { 20 } else { 200 + 30 * s as i64 } * DAY),
            features: vec![("vqmon", limit), ("conference-management", 0)],
            transaction: "new",
        }];
        if s == 1 {
            list.push(Lic {
                fingerprint: fingerprint(2_000 + s as u64),
                kind: "site",
                serial: serial.clone(),
                start: now + 20 * DAY,
                end: Some(now + 385 * DAY),
                features: vec![("vqmon", limit), ("conference-management", 0)],
                transaction: "renewal",
            });
        }
        if s == 2 {
            list.push(Lic {
                fingerprint: fingerprint(3_000 + s as u64),
                kind: "site",
                serial,
                start: now - 500 * DAY,
                end: Some(now - 100 * DAY),
                features: vec![("vqmon", limit)],
                transaction: "new",
            });
        }
        site_licenses.push(list);
    }
    let phone_features = ["lync", "h323", "productivity-suite", "usb-call-recording"];
    let mut rng = Rng(0x000F_1EE7);
    let mut written = Written { files: 0, bytes: 0 };
    for p in 0..phones {
        let mac = format!("0004f2{:06x}", p);
        let site = p % sites;
        let feature = phone_features[p % phone_features.len()];
        // The phone's own license: ended (10 %), expiring shortly (10 %), impending
        // (5 %), never ending (10 %), active for the rest.
        let roll = rng.below(100);
        let (start, end) = match roll {
            0..=9 => (
                now - 400 * DAY,
                Some(now - (1 + rng.below(60) as i64) * DAY),
            ),
            10..=19 => (
                now - 300 * DAY,
                Some(now + (1 + rng.below(29) as i64) * DAY),
            ),
            20..=24 => (
                now + (1 + rng.below(30) as i64) * DAY,
                Some(now + 400 * DAY),
            ),
            25..=34 => (now - 50 * DAY, None),
            _ => (
                now - 100 * DAY,
                Some(now + (40 + rng.below(700) as i64) * DAY),
            ),
        };
        let own = Lic {
            fingerprint: fingerprint(1_000_000 + p as u64),
            kind: "phone",
            serial: mac.clone(),
            start,
            end,
            features: vec![(feature, 0)],
            transaction: ["new", "trial", "renewal"][p % 3],
        };
        // Stale (2 %): reported 10 to 40 days ago.
        let reported = if rng.below(100) < 2 {
            now - (10 + rng.below(30) as i64) * DAY
        } else {
            now - rng.below(6 * 3600) as i64
        };
        let clock = match rng.below(1000) {
            0..=4 => "unsynced",
            5..=9 => "windback",
            _ => "ok",
        };
        let judged = (clock != "unsynced").then_some(reported);
        let at = judged.unwrap_or(reported);
        let mut held: Vec<&Lic> = site_licenses[site].iter().collect();
        held.push(&own);
        let licenses: Vec<Value> = held
            .iter()
            .map(|l| {
                let role = if judged.is_none() {
                    "unknown"
                } else if l.in_force(at) || l.start > at {
                    "primary"
                } else {
                    "dropped"
                };
                let mut v = l.json(at, role);
                if judged.is_none() {
                    v["status"] = Value::Null;
                }
                v
            })
            .collect();
        // The merged set: each feature of a used license, the one in force winning.
        let mut features: Vec<Value> = Vec::new();
        let mut enabled: Vec<&str> = Vec::new();
        for l in &held {
            for (name, limit) in &l.features {
                let on = judged.is_some() && l.in_force(at);
                let already = features.iter().position(|f| f["name"] == *name);
                if let Some(i) = already {
                    if !on || features[i]["enabled"] == true {
                        continue;
                    }
                    features.remove(i);
                }
                if on {
                    enabled.push(name);
                }
                features.push(json!({
                    "name": name,
                    "status": judged.map(|_| l.status(at)),
                    "enabled": on,
                    "end": l.end_text(),
                    "source": l.kind,
                    "serial": l.serial,
                    "transaction": l.transaction,
                    "limit": limit,
                    "fingerprint": l.fingerprint,
                }));
            }
        }
        let configured = vec!["vqmon", feature];
        // A phone whose own license ended: half booted since without it (booted with an
        // expired license), half still run with it and wait to reboot.
        let ended = own.end.is_some_and(|e| e <= at);
        let waits = ended && rng.below(2) == 0;
        let mut booted = enabled.clone();
        if waits {
            booted.push(feature);
        }
        let reboot = waits.then(|| json!({"causes": ["license-expired"], "waiting_for": "idle"}));
        let mut refusals = Vec::new();
        match rng.below(200) {
            0 | 1 => refusals.push(json!({
                "at": time(reported - 3600),
                "subject": format!("{mac}-license.cfg"),
                "verdict": "unknown-key",
                "detail": "unknown-key: signed with key 99aabbcc, which is not in the trusted keyring",
                "key": "99aabbcc",
            })),
            2 => refusals.push(json!({
                "at": time(reported - 7200),
                "subject": format!("phone license {mac}"),
                "verdict": "not-this-phone",
                "detail": "not-this-phone: for 0004f2ffffff",
                "key": null,
            })),
            _ => {}
        }
        let report = json!({
            "schema": "license-agent-report/1",
            "mac": mac,
            "site_serial": format!("1000000000{site:02}"),
            "agent": {"version": "0.1.0", "board": "vvx-armv7"},
            "reported_at": time(reported),
            "clock": clock,
            "evaluated_at": judged.map(time),
            "licenses": licenses,
            "features": features,
            "configured": configured,
            "booted": judged.map(|_| booted),
            "refusals": refusals,
            "set_aside": [],
            "reboot": reboot,
            "last_fetch": {
                "at": time(reported - 60),
                "files": [
                    {"file": "000000000000-license.cfg", "at": time(reported - 60),
                     "outcome": "not-modified", "detail": "unchanged",
                     "server": "https://prov.example.net/", "transport": "https"},
                    {"file": format!("{mac}-license.cfg"), "at": time(reported - 60),
                     "outcome": "unchanged", "detail": "identical to a stored license",
                     "server": "https://prov.example.net/", "transport": "https"}
                ]
            }
        });
        let text = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(dir.join(format!("{mac}-license-status.json")))?;
        file.write_all(&text)?;
        written.files += 1;
        written.bytes += text.len() as u64;
    }
    Ok(written)
}
