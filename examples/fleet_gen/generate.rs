//! A generated fleet of phones' status reports (`docs/report-schema.md`), for the
//! benchmark of `license-fleet` (`scripts/bench-fleet.sh`) and its page test
//! (`tests/it/fleet_page.rs`): a few site licenses shared across the fleet (one over its
//! Managed Device limit, one with an impending renewal, an old ended one still held by
//! some phones), a phone license of each phone's own (active, expiring shortly, ended,
//! impending, never ending), some phones booted with an expired license and some
//! waiting to reboot for one, refusals (an unknown key, a wrong phone), stale reports,
//! clocks unsynced or wound back. Every license is a real one, signed by one fixed
//! vendor key (seed `[42; 32]`): each report carries its `signed` content and its true
//! fingerprint (SHA-256 of the signed message), and `keyring.txt` beside the reports
//! trusts the key, so `license-fleet --keyring` verifies every license. Deterministic:
//! the same arguments write the same files (Ed25519 signatures are deterministic).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use license_agent::format::{End, FeatureEntry, FeatureId, Kind, Serial, Transaction};
use license_agent::issuer::{issue, LicenseSpec, SigningKey};
use serde_json::{json, Value};

const DAY: i64 = 86_400;

/// The seed of the one vendor key that signs every generated license; its keyring line
/// is written to `keyring.txt` in the reports' folder.
const SEED: [u8; 32] = [42; 32];

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

/// The text of the first `<name>` element of an issued license file.
fn element<'t>(text: &'t str, name: &str) -> std::io::Result<&'t str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let from = text.find(&open).map(|i| i + open.len());
    let to = from.and_then(|f| text[f..].find(&close).map(|i| f + i));
    match (from, to) {
        (Some(f), Some(t)) => Ok(text[f..t].trim()),
        _ => Err(std::io::Error::other(format!(
            "the issued file has no <{name}>"
        ))),
    }
}

fn unix(t: i64) -> std::io::Result<u32> {
    u32::try_from(t).map_err(|_| std::io::Error::other(format!("{t} is not a u32 instant")))
}

/// One license, really signed: what the report says of it, and its signed content.
struct Lic {
    fingerprint: String,
    kind: &'static str,
    key: String,
    serial: String,
    start: i64,
    end: Option<i64>,
    features: Vec<(&'static str, u32)>,
    transaction: &'static str,
    /// The report's `signed` object: the parts of the file the signature covers.
    signed: Value,
}

impl Lic {
    /// Issues the license (every feature from `start` to `end`, or never ending) with
    /// `key`, as the vendor would.
    fn issue(
        key: &SigningKey,
        kind: &'static str,
        serial: String,
        (start, end): (i64, Option<i64>),
        features: Vec<(&'static str, u32)>,
        transaction: &'static str,
    ) -> std::io::Result<Lic> {
        let other = std::io::Error::other;
        let entries = features
            .iter()
            .map(|(name, limit)| {
                Ok(FeatureEntry {
                    id: FeatureId::parse(name).map_err(other)?,
                    transaction: Transaction::parse(transaction).map_err(other)?,
                    start: unix(start)?,
                    end: match end {
                        Some(e) => End::At(unix(e)?),
                        None => End::Never,
                    },
                    limit: *limit,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let spec = LicenseSpec {
            serial: Serial::parse(&serial).map_err(other)?,
            kind: Kind::parse(kind).map_err(other)?,
            features: entries,
        };
        let text = issue(&spec, key).map_err(other)?;
        let license =
            license_agent::format::parse(text.as_bytes()).map_err(|e| other(e.to_string()))?;
        let fingerprint = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            license.signed_message(),
        ));
        let key_id = element(&text, "Key")?.to_string();
        let signed = json!({
            "serial": element(&text, "Serial")?,
            "description": element(&text, "Description")?,
            "key": key_id,
            "features": element(&text, "Features")?,
            "signature": element(&text, "Signature")?,
        });
        Ok(Lic {
            fingerprint,
            kind,
            key: key_id,
            serial,
            start,
            end,
            features,
            transaction,
            signed,
        })
    }
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
            "key": self.key,
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
            "signed": self.signed,
        })
    }
}

/// One phone, as drawn from the generator (in phone order, so the fleet is the same
/// whichever thread then signs its license and writes its report).
struct Phone {
    p: usize,
    mac: String,
    site: usize,
    feature: &'static str,
    span: (i64, Option<i64>),
    reported: i64,
    clock: &'static str,
    waits: bool,
    refusal: u64,
}

/// Writes `phones` reports into `dir` (`<mac>-license-status.json`), the fleet as it
/// is at `now` (Unix seconds), and `keyring.txt`, the keyring that verifies every
/// license of them (`license-fleet --keyring DIR/keyring.txt DIR`; not a report, so
/// `license-fleet` does not read it as one). The phones' licenses are signed and their
/// reports written on every core.
pub fn generate(dir: &Path, phones: usize, now: i64) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let key = SigningKey::from_seed(&SEED).map_err(std::io::Error::other)?;
    std::fs::write(
        dir.join("keyring.txt"),
        format!("{}\n", key.keyring_line("fleet_gen (seed 42)")),
    )?;
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
        // Site 1 ends in 20 days: Expiring Shortly, renewed (impending) below.
        let end = now + if s == 1 { 20 } else { 200 + 30 * s as i64 } * DAY;
        let mut list = vec![Lic::issue(
            &key,
            "site",
            serial.clone(),
            (now - (100 + 20 * s as i64) * DAY, Some(end)),
            vec![("vqmon", limit), ("conference-management", 0)],
            "new",
        )?];
        if s == 1 {
            list.push(Lic::issue(
                &key,
                "site",
                serial.clone(),
                (now + 20 * DAY, Some(now + 385 * DAY)),
                vec![("vqmon", limit), ("conference-management", 0)],
                "renewal",
            )?);
        }
        if s == 2 {
            list.push(Lic::issue(
                &key,
                "site",
                serial,
                (now - 500 * DAY, Some(now - 100 * DAY)),
                vec![("vqmon", limit)],
                "new",
            )?);
        }
        site_licenses.push(list);
    }
    let phone_features = ["lync", "h323", "productivity-suite", "usb-call-recording"];
    let mut rng = Rng(0x000F_1EE7);
    let mut fleet = Vec::with_capacity(phones);
    for p in 0..phones {
        // The phone's own license: ended (10 %), expiring shortly (10 %), impending
        // (5 %), never ending (10 %), active for the rest.
        let roll = rng.below(100);
        let span = match roll {
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
        // A phone whose own license ended: half booted since without it (booted with an
        // expired license), half still run with it and wait to reboot.
        let at = reported;
        let ended = span.1.is_some_and(|e| e <= at);
        let waits = ended && rng.below(2) == 0;
        fleet.push(Phone {
            p,
            mac: format!("0004f2{:06x}", p),
            site: p % sites,
            feature: phone_features[p % phone_features.len()],
            span,
            reported,
            clock,
            waits,
            refusal: rng.below(200),
        });
    }
    // Signing is most of the work (an Ed25519 signature, and the issuer's own check of
    // it, per phone): every core takes the next batch of phones.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    let written = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (fleet, next, failed) = (&fleet, &next, &failed);
                let (key, site_licenses) = (&key, &site_licenses);
                scope.spawn(move || {
                    let mut written = Written { files: 0, bytes: 0 };
                    loop {
                        let from = next.fetch_add(64, Ordering::Relaxed);
                        let Some(batch) = fleet.get(from..(from + 64).min(fleet.len())) else {
                            break;
                        };
                        if batch.is_empty() {
                            break;
                        }
                        for phone in batch {
                            match write_report(dir, phone, &site_licenses[phone.site], key) {
                                Ok(bytes) => {
                                    written.files += 1;
                                    written.bytes += bytes;
                                }
                                Err(e) => {
                                    failed.lock().unwrap().get_or_insert(e);
                                    return written;
                                }
                            }
                        }
                    }
                    written
                })
            })
            .collect();
        handles
            .into_iter()
            .fold(Written { files: 0, bytes: 0 }, |mut all, h| {
                let w = h.join().expect("a generator thread panicked");
                all.files += w.files;
                all.bytes += w.bytes;
                all
            })
    });
    match failed.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// Signs `phone`'s own license and writes its report; the bytes written.
fn write_report(
    dir: &Path,
    phone: &Phone,
    site_licenses: &[Lic],
    key: &SigningKey,
) -> std::io::Result<u64> {
    let Phone {
        p,
        ref mac,
        site,
        feature,
        span,
        reported,
        clock,
        waits,
        refusal,
    } = *phone;
    let own = Lic::issue(
        key,
        "phone",
        mac.clone(),
        span,
        vec![(feature, 0)],
        ["new", "trial", "renewal"][p % 3],
    )?;
    let judged = (clock != "unsynced").then_some(reported);
    let at = judged.unwrap_or(reported);
    let mut held: Vec<&Lic> = site_licenses.iter().collect();
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
    let mut booted = enabled.clone();
    if waits {
        booted.push(feature);
    }
    let reboot = waits.then(|| json!({"causes": ["license-expired"], "waiting_for": "idle"}));
    let mut refusals = Vec::new();
    match refusal {
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
    Ok(text.len() as u64)
}
