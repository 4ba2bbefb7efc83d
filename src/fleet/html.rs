//! The fleet as one self-contained static HTML page that reads like the vendor portal's
//! license page (`docs/fleet-model.md`): the summary tiles (All, Active, Expiring
//! Shortly, Impending, Inactive: counts of license rows by the status each is shown
//! with), a banner when the licenses were not verified, the license table (one row per
//! feature grant: License ID, kind, Feature Code, Description, Type, Transaction Type,
//! Start, End, days left, devices in use against the capacity, Status; Expiring
//! Shortly rows in red, a renewed term shown Active with its Renewal, Inactive rows
//! grey), the per-site totals, what to act on (one expandable entry per group, with
//! its phones) and the files that are not reports. Inline CSS and script only, nothing
//! fetched (a Content Security Policy forbids it too): it works offline and can be
//! served from the provisioning server as a plain file.
//!
//! Everything from the reports is data, never markup: the numbers and words the tool
//! computes are written into the page HTML-escaped, and the rows and groups travel as
//! one JSON island (`<script type="application/json">`, with `<`, `>`, `&` and the
//! line separators written as `\uXXXX` so no text can close it) that the script renders
//! with `textContent` only. The script shows a page of rows (and of groups) at a time,
//! so a fleet of 150,000 rows stays quick. The phones listed under the groups are
//! capped, at [`MAX_GROUP_PHONES`] a group and [`MAX_ATTENTION_PHONES`] in all (each
//! group says how many more it has; the counts always cover them all, `--json` and
//! `--csv=phones` keep every one).
//!
//! The view lives in the URL fragment, every filter combinable:
//! `#q=TEXT&kind=site|phone&site=SERIAL&transaction=trial|new|addon|renewal&status=active|expiring-shortly|impending|inactive&days=N&over=1&sort=COLUMN&dir=asc|desc&page=N`
//! for the license rows (`site` keeps the rows of that site license; `days` keeps the
//! rows with at most N days left, never one without an end), and
//! `what=KIND&aq=TEXT&gpage=N` for the groups. With no sort, rows come in the data's
//! order: site licenses first, then by end.
//!
//! Stable hooks for tests and scripts, written server-side: `#phones`, `#count-all`,
//! `#count-active`, `#count-expiring-shortly`, `#count-impending`, `#count-inactive`
//! (the tiles, fleet-wide whatever the filters), `#verification[data-verified="0|1"]`,
//! `#license-total` (rows), `tr#site-<serial>[data-serial]` with `td[data-col]` (the
//! per-site totals), `#attention-group-total` (groups), `#attention-total` (phone
//! items over all groups), `#attention-in-page` (phone items listed in the page),
//! `#attention-left-out`, `#attention-count-<kind>` (phone items of a kind) and
//! `#attention-groups-<kind>` (groups of a kind), `#unreadable-total`. Once the
//! script has run: `body[data-ready="1"]`, `#license-matching` (rows that pass the
//! filters), `#license-rows tr[data-id][data-kind][data-feature][data-transaction][data-status]`
//! (the shown page of rows; class `expiring-shortly` exactly when red) with
//! `td[data-col]` (`id`, `kind`, `feature`, `description`, `type`, `transaction`,
//! `start`, `end`, `days`, `devices`, `status`), `#attention-group-matching` and
//! `#attention-groups details[data-what][data-count]` (the shown page of groups; each
//! lists its phones as `li[data-mac]`).

use std::collections::HashMap;
use std::fmt::Write;

use super::model::{Fleet, KINDS};
use super::Unreadable;
use crate::engine::status::Status;
use crate::words::or_unknown;

/// The most phones the page lists under one group.
pub(crate) const MAX_GROUP_PHONES: usize = 200;
/// The most phones the page lists under all groups together.
pub(crate) const MAX_ATTENTION_PHONES: usize = 10_000;
/// The most files that are not reports the page lists.
pub(crate) const MAX_UNREADABLE: usize = 1_000;

/// `text` with `&`, `<`, `>`, `"` and `'` as character references.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside a `<script>` element: no `<`, `>` or `&` (so nothing can
/// close the element or open a comment), no U+2028/U+2029. Those characters only occur
/// inside JSON strings, where `\uXXXX` means the same.
fn script_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 64);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 "DejaVu Sans",Arial,Helvetica,sans-serif;color:#1d2733;background:#f3f5f8}
header{background:#233447;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#c9d3de}
main{padding:16px 24px}
section{background:#fff;border:1px solid #d8dee6;border-radius:4px;margin:0 0 16px;padding:12px 16px}
h2{font-size:16px;margin:0 0 10px}
.banner{background:#fff4e0;border:1px solid #e6b460;color:#7a4b00;border-radius:4px;padding:8px 12px;margin:0 0 16px;font-weight:600}
.banner.ok{background:#eaf5ea;border-color:#9fcf9f;color:#23602a;font-weight:400}
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{flex:1 1 140px;border:1px solid #d8dee6;border-radius:4px;padding:10px 12px;cursor:pointer;background:#fafbfc;text-align:left;font:inherit;color:inherit}
.tile .n{display:block;font-size:26px;font-weight:600}
.tile.expiring{color:#c62828;border-color:#e7a4a4}
.tile.selected{outline:2px solid #2f6fb3}
.tools{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin:0 0 8px}
.tools input[type=search]{min-width:220px;padding:4px 6px}
.tools input[type=number]{width:90px;padding:4px 6px}
.note{color:#5b6776}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e3e7ed;vertical-align:top}
th{background:#eef1f5;white-space:nowrap}
#license th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \25B2"}
th[aria-sort=descending]::after{content:" \25BC"}
tr.expiring-shortly td{color:#c62828;font-weight:600}
tr.inactive td{color:#8a949f}
td[data-col=start],td[data-col=end]{white-space:nowrap}
td[data-col=days],td[data-col=devices]{text-align:right;white-space:nowrap}
td[data-col=status]{min-width:190px}
td.over,.over{color:#c62828;font-weight:600}
td .sub{display:block;color:#7a8591;font-size:12px;font-weight:400}
td .fp{font-family:"DejaVu Sans Mono",monospace}
tr.selected td{background:#eef4fb}
button.link{border:0;background:none;padding:0;color:#2f6fb3;cursor:pointer;font:inherit;text-decoration:underline}
.pager{display:flex;gap:8px;align-items:center;margin-top:8px}
.counts{display:flex;gap:6px 16px;flex-wrap:wrap;margin:0 0 8px;padding:0;list-style:none}
.counts li.none{color:#a0a8b2}
#attention-groups details{border-bottom:1px solid #e3e7ed;padding:4px 0}
#attention-groups summary{cursor:pointer}
#attention-groups .what{display:inline-block;min-width:150px;font-family:"DejaVu Sans Mono",monospace;font-size:12px;color:#5b6776}
#attention-groups .n{font-weight:600;margin-left:6px}
#attention-groups ul{margin:4px 0 4px 24px;padding:0}
#attention-groups .mac{font-family:"DejaVu Sans Mono",monospace;margin-right:8px}
.cut{color:#8a5a00}
"#;

const SCRIPT: &str = r##"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fleet-data").textContent);
  var PAGE = 100, GPAGE = 100;
  // The portal's words for each status, and its order (html.rs, PORTAL_ORDER).
  var LABEL = data.labels, RANK = {};
  data.order.forEach(function (s, i) { RANK[s] = i; });
  var TRANSACTION = {"trial": "Trial", "new": "New", "addon": "Addon", "renewal": "Renewal"};
  // A row (see the island's doc in html.rs): its fields by position.
  var ID = 0, KIND = 1, FEATURE = 2, DESC = 3, COUNTED = 4, TRANS = 5, START = 6, END = 7,
    DAYS = 8, STATUS = 9, RENEWED = 10, FETCHED = 11, ADDS = 12, LIMIT = 13, CAP = 14,
    USE = 15, OVER = 16, PHONES = 17, FP = 18, VERIFIED = 19, RENEWAL_OF = 20;
  // A group: [what, detail, phones (count), [[mac, detail]...] (the listed ones)].
  var rows = data.rows, groups = data.groups;
  function description(r) { return data.descriptions[r[DESC]] || ""; }
  function typeLabel(r) { return r[COUNTED] ? "Managed Device" : "Feature"; }
  function transactionLabel(r) { return TRANSACTION[r[TRANS]] || r[TRANS]; }
  function daysText(r) { return r[DAYS] === null ? "\u2014" : String(r[DAYS]); }
  function devicesText(r) {
    if (r[ADDS] !== null) { return "+" + r[LIMIT] + " to " + r[ADDS]; }
    if (r[COUNTED] || r[CAP] > 0) { return r[USE] + " of " + r[CAP] + (r[OVER] ? " OVER" : ""); }
    return String(r[USE]);
  }
  var SORT = {
    id: function (r) { return r[ID]; },
    kind: function (r) { return r[KIND]; },
    feature: function (r) { return r[FEATURE]; },
    description: description,
    type: typeLabel,
    transaction: function (r) { return r[TRANS]; },
    start: function (r) { return r[START]; },
    end: function (r) { return r[END]; },
    days: function (r) { return r[DAYS] === null ? Infinity : r[DAYS]; },
    devices: function (r) { return r[USE]; },
    status: function (r) { return r[STATUS] in RANK ? RANK[r[STATUS]] : 9; }
  };
  var params = {};
  function readHash() {
    params = {};
    var hash = location.hash.replace(/^#/, "");
    if (hash) {
      new URLSearchParams(hash).forEach(function (v, k) { params[k] = v; });
    }
  }
  function writeHash() {
    var q = new URLSearchParams();
    Object.keys(params).sort().forEach(function (k) {
      if (params[k] !== "" && params[k] !== undefined) { q.set(k, params[k]); }
    });
    var text = q.toString();
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }
  var text = null, groupText = null;
  // Every shown text of each row (and its license's fingerprint), lowercase, once.
  function haystack() {
    if (!text) {
      text = rows.map(function (r) {
        return [r[ID], r[KIND], r[FEATURE], description(r), typeLabel(r), transactionLabel(r),
          r[START], r[END], LABEL[r[STATUS]] || r[STATUS], r[RENEWED] || "", r[ADDS] || "",
          r[FP]].join(" ").toLowerCase();
      });
    }
    return text;
  }
  function groupHaystack() {
    if (!groupText) {
      groupText = groups.map(function (g) {
        return [g[0], g[1]].concat(g[3].map(function (p) { return p[0] + " " + p[1]; }))
          .join(" ").toLowerCase();
      });
    }
    return groupText;
  }
  // The row filters of the fragment, each a test.
  function tests() {
    var t = [];
    if (params.kind) { t.push(function (r) { return r[KIND] === params.kind; }); }
    if (params.site) {
      t.push(function (r) { return r[KIND] === "site" && r[ID] === params.site; });
    }
    if (params.transaction) { t.push(function (r) { return r[TRANS] === params.transaction; }); }
    if (params.status) { t.push(function (r) { return r[STATUS] === params.status; }); }
    if (params.days !== undefined && params.days !== "" && isFinite(Number(params.days))) {
      var most = Number(params.days);
      t.push(function (r) { return r[DAYS] !== null && r[DAYS] <= most; });
    }
    if (params.over === "1") { t.push(function (r) { return r[OVER] === 1; }); }
    return t;
  }
  function matching() {
    var t = tests(), n = t.length;
    var hay = params.q ? haystack() : null, needle = (params.q || "").toLowerCase();
    var out = [];
    outer: for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      for (var j = 0; j < n; j++) { if (!t[j](r)) { continue outer; } }
      if (hay && hay[i].indexOf(needle) < 0) { continue; }
      out.push(r);
    }
    var get = SORT[params.sort];
    if (get) {
      var desc = params.dir === "desc" ? -1 : 1;
      // Stable: equal keys keep the data's order.
      out.sort(function (a, b) {
        var x = get(a), y = get(b);
        var c = (typeof x === "number" && typeof y === "number") ?
          (x === y ? 0 : x < y ? -1 : 1) : (x < y ? -1 : x > y ? 1 : 0);
        return desc * c;
      });
    }
    return out;
  }
  function cell(tr, col, value, cls) {
    var td = document.createElement("td");
    td.setAttribute("data-col", col);
    td.textContent = value;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function sub(td, value, title) {
    var s = document.createElement("span");
    s.className = "sub";
    s.textContent = value;
    if (title) { s.title = title; }
    td.appendChild(s);
    return s;
  }
  function licenseRow(r) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", r[ID]);
    tr.setAttribute("data-kind", r[KIND]);
    tr.setAttribute("data-feature", r[FEATURE]);
    tr.setAttribute("data-transaction", r[TRANS]);
    tr.setAttribute("data-status", r[STATUS]);
    tr.className = r[STATUS];
    var id = cell(tr, "id", r[ID]);
    sub(id, r[FP].slice(0, 12) + (data.verified && !r[VERIFIED] ? " \u00b7 not verified" : ""),
      r[FP]).classList.add("fp");
    cell(tr, "kind", r[KIND]);
    cell(tr, "feature", r[FEATURE]);
    cell(tr, "description", description(r));
    cell(tr, "type", typeLabel(r));
    cell(tr, "transaction", transactionLabel(r));
    cell(tr, "start", r[START]);
    cell(tr, "end", r[END]);
    cell(tr, "days", daysText(r));
    cell(tr, "devices", devicesText(r), r[OVER] ? "over" : "");
    var st = cell(tr, "status", LABEL[r[STATUS]] || r[STATUS]);
    if (r[RENEWED] !== null) {
      sub(st, "renewed until " + r[RENEWED] + (r[FETCHED] !== null ?
        ", fetched by " + r[FETCHED] + " of " + r[RENEWAL_OF] + " phones" : ""));
    }
    return tr;
  }
  function groupEntry(g) {
    var d = document.createElement("details");
    d.setAttribute("data-what", g[0]);
    d.setAttribute("data-count", String(g[2]));
    var s = document.createElement("summary");
    var what = document.createElement("span");
    what.className = "what";
    what.textContent = g[0];
    var detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = g[1];
    var n = document.createElement("span");
    n.className = "n";
    n.textContent = g[2] === 1 ? "1 phone" : g[2] + " phones";
    s.appendChild(what);
    s.appendChild(detail);
    s.appendChild(n);
    d.appendChild(s);
    var ul = document.createElement("ul");
    g[3].forEach(function (p) {
      var li = document.createElement("li");
      li.setAttribute("data-mac", p[0]);
      var mac = document.createElement("span");
      mac.className = "mac";
      mac.textContent = p[0];
      li.appendChild(mac);
      li.appendChild(document.createTextNode(p[1]));
      ul.appendChild(li);
    });
    if (g[3].length < g[2]) {
      var more = document.createElement("li");
      more.className = "cut";
      more.textContent = "and " + (g[2] - g[3].length) + " more: license-fleet --csv=phones";
      ul.appendChild(more);
    }
    d.appendChild(ul);
    return d;
  }
  function pageOf(key, count, size) {
    var pages = Math.max(1, Math.ceil(count / size));
    var page = Math.max(1, parseInt(params[key] || "1", 10) || 1);
    return {page: Math.min(page, pages), pages: pages};
  }
  var shown = {page: 1, gpage: 1};
  function renderLicenses() {
    var list = matching();
    var p = pageOf("page", list.length, PAGE);
    var first = (p.page - 1) * PAGE, last = Math.min(list.length, first + PAGE);
    var body = document.getElementById("license-rows");
    body.textContent = "";
    var frag = document.createDocumentFragment();
    for (var i = first; i < last; i++) { frag.appendChild(licenseRow(list[i])); }
    body.appendChild(frag);
    document.getElementById("license-matching").textContent = String(list.length);
    document.getElementById("license-range").textContent = list.length ?
      "rows " + (first + 1) + "\u2013" + last + ", page " + p.page + " of " + p.pages : "no rows";
    document.getElementById("license-prev").disabled = p.page <= 1;
    document.getElementById("license-next").disabled = p.page >= p.pages;
    shown.page = p.page;
    var heads = document.querySelectorAll("#license th[data-key]");
    for (var h = 0; h < heads.length; h++) {
      var key = heads[h].getAttribute("data-key");
      if (key === params.sort) {
        heads[h].setAttribute("aria-sort", params.dir === "desc" ? "descending" : "ascending");
      } else {
        heads[h].removeAttribute("aria-sort");
      }
    }
  }
  function renderGroups() {
    var hay = params.aq ? groupHaystack() : null, needle = (params.aq || "").toLowerCase();
    var list = [];
    for (var i = 0; i < groups.length; i++) {
      if (params.what && groups[i][0] !== params.what) { continue; }
      if (hay && hay[i].indexOf(needle) < 0) { continue; }
      list.push(groups[i]);
    }
    var p = pageOf("gpage", list.length, GPAGE);
    var first = (p.page - 1) * GPAGE, last = Math.min(list.length, first + GPAGE);
    var box = document.getElementById("attention-groups");
    box.textContent = "";
    var frag = document.createDocumentFragment();
    for (var k = first; k < last; k++) { frag.appendChild(groupEntry(list[k])); }
    box.appendChild(frag);
    document.getElementById("attention-group-matching").textContent = String(list.length);
    document.getElementById("attention-range").textContent = list.length ?
      "groups " + (first + 1) + "\u2013" + last + ", page " + p.page + " of " + p.pages : "no groups";
    document.getElementById("attention-prev").disabled = p.page <= 1;
    document.getElementById("attention-next").disabled = p.page >= p.pages;
    shown.gpage = p.page;
  }
  var FIELDS = {"license-filter": "q", "license-kind": "kind", "license-site": "site",
    "license-transaction": "transaction", "license-status": "status", "license-days": "days",
    "attention-filter": "aq", "attention-what": "what"};
  function render() {
    renderLicenses();
    renderGroups();
    Object.keys(FIELDS).forEach(function (id) {
      var el = document.getElementById(id);
      if (el !== document.activeElement) { el.value = params[FIELDS[id]] || ""; }
    });
    document.getElementById("license-over").checked = params.over === "1";
    var tiles = document.querySelectorAll(".tile");
    for (var i = 0; i < tiles.length; i++) {
      tiles[i].classList.toggle("selected", (params.status || "") === tiles[i].getAttribute("data-status"));
    }
    var sites = document.querySelectorAll("#sites tr[data-serial]");
    for (var s = 0; s < sites.length; s++) {
      sites[s].classList.toggle("selected", sites[s].getAttribute("data-serial") === params.site);
    }
    document.body.setAttribute("data-ready", "1");
  }
  function set(changes) {
    Object.keys(changes).forEach(function (k) { params[k] = changes[k]; });
    writeHash();
    render();
  }
  var heads = document.querySelectorAll("#license th[data-key]");
  for (var h = 0; h < heads.length; h++) {
    heads[h].addEventListener("click", function (e) {
      var key = e.currentTarget.getAttribute("data-key");
      set({dir: params.sort === key && params.dir !== "desc" ? "desc" : "asc", sort: key, page: ""});
    });
  }
  Object.keys(FIELDS).forEach(function (id) {
    var el = document.getElementById(id);
    var key = FIELDS[id];
    var reset = key === "aq" || key === "what" ? "gpage" : "page";
    el.addEventListener(el.tagName === "SELECT" ? "change" : "input", function (e) {
      var change = {};
      change[key] = e.target.value;
      change[reset] = "";
      set(change);
    });
  });
  document.getElementById("license-over").addEventListener("change", function (e) {
    set({over: e.target.checked ? "1" : "", page: ""});
  });
  document.getElementById("license-clear").addEventListener("click", function () {
    set({q: "", kind: "", site: "", transaction: "", status: "", days: "", over: "", page: ""});
  });
  document.getElementById("license-prev").addEventListener("click", function () {
    set({page: String(shown.page - 1)});
  });
  document.getElementById("license-next").addEventListener("click", function () {
    set({page: String(shown.page + 1)});
  });
  document.getElementById("attention-prev").addEventListener("click", function () {
    set({gpage: String(shown.gpage - 1)});
  });
  document.getElementById("attention-next").addEventListener("click", function () {
    set({gpage: String(shown.gpage + 1)});
  });
  var tiles = document.querySelectorAll(".tile");
  for (var i = 0; i < tiles.length; i++) {
    tiles[i].addEventListener("click", function (e) {
      set({status: e.currentTarget.getAttribute("data-status"), page: ""});
    });
  }
  var serials = document.querySelectorAll("#sites button[data-serial]");
  for (var s = 0; s < serials.length; s++) {
    serials[s].addEventListener("click", function (e) {
      set({site: e.currentTarget.getAttribute("data-serial"), page: ""});
    });
  }
  var kinds = document.querySelectorAll("#attention-counts button[data-what]");
  for (var k = 0; k < kinds.length; k++) {
    kinds[k].addEventListener("click", function (e) {
      set({what: e.currentTarget.getAttribute("data-what"), gpage: ""});
    });
  }
  window.addEventListener("hashchange", function () { readHash(); render(); });
  readHash();
  render();
})();
"##;

/// The JSON island: `{"verified": bool, "descriptions": [text...], "rows": [[id, kind,
/// feature, description (index into descriptions), counted (1: Managed Device, 0:
/// Feature), transaction, start, end, days_left|null, status, renewed_until|null,
/// renewal_fetched|null, adds_to|null, limit, capacity, in_use, over (0/1), phones,
/// fingerprint (the first license's), verified (0/1), renewal_phones|null]...], "groups": [[what, detail,
/// phones (the count), [[mac, detail]...] (those listed)]...]}`, written row by row
/// (no tree of values for 150,000 rows), then made safe for a script element. Also
/// the phone items it lists.
fn island(fleet: &Fleet) -> (String, usize) {
    let mut json = String::with_capacity(64 + fleet.rows.len() * 200);
    let _ = write!(json, "{{\"verified\":{},\"rows\":[", fleet.verified);
    let mut descriptions: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (n, r) in fleet.rows.iter().enumerate() {
        let description = *index.entry(r.description.as_str()).or_insert_with(|| {
            descriptions.push(&r.description);
            descriptions.len() - 1
        });
        let row = serde_json::json!([
            r.id,
            r.kind,
            r.feature,
            description,
            u8::from(r.kind_of_count == "managed-device"),
            r.transaction,
            r.start,
            r.end,
            r.days_left,
            or_unknown::word(r.status),
            r.renewed_until,
            r.renewal_fetched,
            r.adds_to,
            r.limit,
            r.capacity,
            r.in_use,
            u8::from(r.over),
            r.phones,
            r.licenses.first().map_or("", String::as_str),
            u8::from(r.verified),
            r.renewal_phones,
        ]);
        if n > 0 {
            json.push(',');
        }
        json.push_str(&row.to_string());
    }
    json.push_str("],\"labels\":");
    let mut labels: serde_json::Map<String, serde_json::Value> = PORTAL_ORDER
        .iter()
        .map(|s| (s.id().to_string(), s.label().into()))
        .collect();
    labels.insert(or_unknown::UNKNOWN.into(), "Unknown".into());
    json.push_str(&serde_json::Value::Object(labels).to_string());
    json.push_str(",\"order\":");
    let order: Vec<&str> = PORTAL_ORDER.iter().map(|s| s.id()).collect();
    json.push_str(&serde_json::to_string(&order).unwrap_or_else(|_| "[]".into()));
    json.push_str(",\"descriptions\":");
    json.push_str(&serde_json::to_string(&descriptions).unwrap_or_else(|_| "[]".into()));
    json.push_str(",\"groups\":[");
    let mut listed = 0usize;
    for (n, g) in fleet.attention.iter().enumerate() {
        let take = g
            .phones
            .len()
            .min(MAX_GROUP_PHONES)
            .min(MAX_ATTENTION_PHONES - listed);
        listed += take;
        let phones: Vec<(&str, &str)> = g.phones[..take]
            .iter()
            .map(|p| (p.mac.as_str(), p.detail.as_str()))
            .collect();
        let group = (&g.what, &g.detail, g.phones.len(), phones);
        if n > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(&group).unwrap_or_else(|_| "[]".into()));
    }
    json.push_str("]}");
    (script_safe(&json), listed)
}

/// The statuses in the order the portal lists them (its tiles, filters and columns).
const PORTAL_ORDER: [Status; 4] = [
    Status::Active,
    Status::ExpiringShortly,
    Status::Impending,
    Status::Inactive,
];

/// The page of the fleet.
pub(crate) fn page(fleet: &Fleet, unreadable: &[Unreadable]) -> String {
    let s = &fleet.summary;
    let (data, listed) = island(fleet);
    let total_rows = fleet.rows.len();
    let status_options: String = PORTAL_ORDER
        .iter()
        .map(|s| format!("<option value=\"{}\">{}</option>", s.id(), s.label()))
        .collect();
    let status_columns: String = PORTAL_ORDER
        .iter()
        .map(|s| format!("<th>{}</th>", s.label()))
        .collect();
    let items = fleet.attention_items();
    let mut out = String::with_capacity(8192 + data.len() + fleet.sites.len() * 400);
    let at = escape(&fleet.at);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
         base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"license-fleet\">\n\
         <title>Licenses: the fleet at {at}</title>\n<style>{CSS}</style>\n</head>\n\
         <body data-ready=\"0\">\n<header><h1>Licenses</h1>\
         <p id=\"fleet-at\" data-at=\"{at}\">The fleet at {at}: <span id=\"phones\">{}</span> \
         phones reporting</p></header>\n<main>\n",
        fleet.phones
    );
    out.push_str(
        "<noscript><p>The tables need JavaScript; the counts and the per-site totals do not.</p></noscript>\n",
    );
    if fleet.verified {
        out.push_str(
            "<p id=\"verification\" class=\"banner ok\" data-verified=\"1\">Licenses verified \
             with the keyring: a row counts only for license files whose signature verifies.</p>\n",
        );
    } else {
        out.push_str(
            "<p id=\"verification\" class=\"banner\" data-verified=\"0\">Licenses not verified \
             (run with --keyring): every row is what the reports say.</p>\n",
        );
    }

    // The tiles.
    out.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"tiles\">\n");
    let tiles = PORTAL_ORDER.iter().map(|&st| (Some(st), s.of(st)));
    for (st, n) in std::iter::once((None, s.all)).chain(tiles) {
        let id = st.map_or("all", Status::id);
        let status = st.map_or("", Status::id);
        let name = st.map_or("All", Status::label);
        let class = if st == Some(Status::ExpiringShortly) {
            "tile expiring"
        } else {
            "tile"
        };
        let _ = writeln!(
            out,
            "<button type=\"button\" class=\"{class}\" data-status=\"{status}\">\
             <span class=\"n\" id=\"count-{id}\">{n}</span>{name}</button>"
        );
    }
    out.push_str(
        "</div><p class=\"note\">License rows (one per feature a license grants, each once \
         however many phones hold it) by the status each is shown with; Expiring Shortly: \
         fewer than 31 days left, not yet renewed. A renewed term shows as Active.</p></section>\n",
    );

    // The license table and its filters.
    out.push_str(
        "<section><h2>Licenses</h2>\n<div class=\"tools\">\
         <input id=\"license-filter\" type=\"search\" placeholder=\"Filter licenses\" aria-label=\"Filter licenses\">\
         <select id=\"license-kind\" aria-label=\"Kind\"><option value=\"\">Any kind</option>\
         <option value=\"site\">Site</option><option value=\"phone\">Phone</option></select>\
         <select id=\"license-site\" aria-label=\"Site serial\"><option value=\"\">Any site</option>",
    );
    for site in &fleet.sites {
        let serial = escape(&site.serial);
        let _ = write!(out, "<option value=\"{serial}\">{serial}</option>");
    }
    let _ = write!(
        out,
        "</select>\
         <select id=\"license-transaction\" aria-label=\"Transaction Type\"><option value=\"\">Any transaction</option>\
         <option value=\"trial\">Trial</option><option value=\"new\">New</option>\
         <option value=\"addon\">Addon</option><option value=\"renewal\">Renewal</option></select>\
         <select id=\"license-status\" aria-label=\"Status\"><option value=\"\">Any status</option>{status_options}</select>\
         <label>at most <input id=\"license-days\" type=\"number\" min=\"0\" aria-label=\"Days left at most\"> days left</label>\
         <label><input id=\"license-over\" type=\"checkbox\"> over capacity</label>\
         <button id=\"license-clear\" type=\"button\">Clear</button>\
         <span class=\"note\"><span id=\"license-matching\">0</span> of <span id=\"license-total\">{total_rows}</span> rows</span></div>\n\
         <div class=\"scroll\"><table id=\"license\"><thead><tr>\
         <th data-key=\"id\">License ID</th><th data-key=\"kind\">Kind</th>\
         <th data-key=\"feature\">Feature Code</th><th data-key=\"description\">Description</th>\
         <th data-key=\"type\">Type</th><th data-key=\"transaction\">Transaction Type</th>\
         <th data-key=\"start\">Start Time</th><th data-key=\"end\">End Time</th>\
         <th data-key=\"days\">Days left</th><th data-key=\"devices\">Devices in use</th>\
         <th data-key=\"status\">Status</th></tr></thead><tbody id=\"license-rows\"></tbody></table></div>\n\
         <div class=\"pager\"><button id=\"license-prev\" type=\"button\">Previous</button>\
         <button id=\"license-next\" type=\"button\">Next</button><span id=\"license-range\"></span></div></section>\n"
    );

    // The per-site totals.
    let _ = write!(
        out,
        "<section><h2>Sites: <span id=\"site-total\">{}</span></h2>\n\
         <table id=\"sites\"><thead><tr><th>Site serial</th><th>Phones</th><th>Licenses</th>\
         {status_columns}<th>Devices in use</th></tr></thead><tbody>",
        fleet.sites.len()
    );
    for site in &fleet.sites {
        let serial = escape(&site.serial);
        let r = &site.rows;
        let over = site.capacity > 0 && site.in_use as u64 > site.capacity;
        let counts: String = PORTAL_ORDER
            .iter()
            .map(|&s| format!("<td data-col=\"{}\">{}</td>", s.id(), r.of(s)))
            .collect();
        let _ = write!(
            out,
            "<tr id=\"site-{serial}\" data-serial=\"{serial}\">\
             <td data-col=\"serial\"><button type=\"button\" class=\"link\" data-serial=\"{serial}\">{serial}</button></td>\
             <td data-col=\"phones\">{}</td><td data-col=\"licenses\">{}</td>{counts}\
             <td data-col=\"devices\"{}>{} of {}{}</td></tr>",
            site.phones,
            r.all,
            if over { " class=\"over\"" } else { "" },
            site.in_use,
            site.capacity,
            if over { " OVER" } else { "" },
        );
    }
    out.push_str("</tbody></table></section>\n");

    // To act on.
    let _ = write!(
        out,
        "<section><h2>To act on: <span id=\"attention-group-total\">{}</span> groups, \
         <span id=\"attention-total\">{items}</span> phone items</h2>\n<ul class=\"counts\" id=\"attention-counts\">",
        fleet.attention.len()
    );
    for kind in KINDS {
        let of_kind = fleet.attention.iter().filter(|g| g.what == kind);
        let (groups, phones) =
            of_kind.fold((0usize, 0usize), |(g, p), x| (g + 1, p + x.phones.len()));
        let none = if groups == 0 { " class=\"none\"" } else { "" };
        let _ = write!(
            out,
            "<li{none}><button type=\"button\" class=\"link\" data-what=\"{kind}\">{kind}</button>: \
             <span id=\"attention-groups-{kind}\">{groups}</span> {}, \
             <span id=\"attention-count-{kind}\">{phones}</span> {}</li>",
            if groups == 1 { "group" } else { "groups" },
            if phones == 1 { "phone" } else { "phones" }
        );
    }
    out.push_str(
        "</ul>\n<div class=\"tools\">\
         <input id=\"attention-filter\" type=\"search\" placeholder=\"Filter groups\" aria-label=\"Filter groups\">\
         <select id=\"attention-what\" aria-label=\"Kind\"><option value=\"\">Any kind</option>",
    );
    for kind in KINDS {
        let _ = write!(out, "<option value=\"{kind}\">{kind}</option>");
    }
    let left_out = items - listed;
    let _ = writeln!(
        out,
        "</select><span class=\"note\"><span id=\"attention-group-matching\">0</span> of {} groups; \
         <span id=\"attention-in-page\">{listed}</span> of {items} phone items listed in this page</span></div>",
        fleet.attention.len()
    );
    if left_out > 0 {
        let _ = writeln!(
            out,
            "<p class=\"cut\">The page lists at most {MAX_GROUP_PHONES} phones a group and \
             {MAX_ATTENTION_PHONES} in all: <span id=\"attention-left-out\">{left_out}</span> \
             more are left out (license-fleet --csv=phones or --json lists them all).</p>"
        );
    } else {
        out.push_str("<span hidden id=\"attention-left-out\">0</span>\n");
    }
    out.push_str(
        "<div id=\"attention-groups\"></div>\n\
         <div class=\"pager\"><button id=\"attention-prev\" type=\"button\">Previous</button>\
         <button id=\"attention-next\" type=\"button\">Next</button><span id=\"attention-range\"></span></div></section>\n",
    );

    // Files that are not reports.
    let _ = write!(
        out,
        "<section><h2>Files that are not reports: <span id=\"unreadable-total\">{}</span></h2>\n<ul id=\"unreadable\">",
        unreadable.len()
    );
    for u in unreadable.iter().take(MAX_UNREADABLE) {
        let _ = write!(out, "<li>{}: {}</li>", escape(&u.file), escape(&u.why));
    }
    if unreadable.len() > MAX_UNREADABLE {
        let _ = write!(
            out,
            "<li class=\"cut\">and {} more (license-fleet --csv=unreadable)</li>",
            unreadable.len() - MAX_UNREADABLE
        );
    }
    out.push_str("</ul></section>\n</main>\n<script id=\"fleet-data\" type=\"application/json\">");
    out.push_str(&data);
    out.push_str("</script>\n<script>");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}
