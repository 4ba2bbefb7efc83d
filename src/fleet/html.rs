//! The fleet as one self-contained static HTML page that reads like the vendor portal's
//! license page: the summary counts (All, Active, Expiring Shortly, Impending,
//! Inactive), the license table (one row per feature a license grants: feature code,
//! description, type, devices in use against the Managed Device limit, transaction,
//! start, end, status; Expiring Shortly in red), what needs attention and the files that
//! are not reports. Inline CSS and script only, nothing fetched (a Content Security
//! Policy forbids it too): it works offline and can be served from the provisioning
//! server as a plain file.
//!
//! Everything from the reports is data, never markup: the numbers and words the tool
//! computes are written into the page HTML-escaped, and the rows travel as one JSON
//! island (`<script type="application/json">`, with `<`, `>`, `&` and the line
//! separators written as `\uXXXX` so no text can close it) that the script renders
//! with `textContent` only. The script shows a page of rows at a time, so a fleet of
//! 100,000 phones and their licenses stays quick; the attention rows in the page are
//! capped at [`MAX_ATTENTION`] (the counts by kind cover them all, `--json` and `--csv`
//! keep every one).
//!
//! Stable hooks for tests and scripts: `#phones`, `#count-all`, `#count-active`,
//! `#count-expiring-shortly`, `#count-impending`, `#count-inactive`, `#license-total`
//! (table rows), `#attention-total`, `#attention-in-page`, `#attention-left-out`,
//! `#attention-count-<kind>`, `#unreadable-total`; once the script has run,
//! `body[data-ready="1"]`, `#license-matching` and `#attention-matching` (rows that
//! pass the filters), `tr[data-fingerprint][data-status]` with `td[data-col]`. The
//! page reads its filters and sort order from the URL fragment and keeps them there:
//! `#status=expiring-shortly&q=vqmon&sort=end&dir=desc&page=2&what=stale-report&aq=…`.

use std::fmt::Write;

use super::view::{description, Fleet, KINDS};
use super::Unreadable;

/// The most attention rows the page holds.
pub(crate) const MAX_ATTENTION: usize = 5_000;
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
.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{flex:1 1 140px;border:1px solid #d8dee6;border-radius:4px;padding:10px 12px;cursor:pointer;background:#fafbfc}
.tile .n{display:block;font-size:26px;font-weight:600}
.tile.expiring{color:#c62828;border-color:#e7a4a4}
.tile.selected{outline:2px solid #2f6fb3}
.tools{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin:0 0 8px}
.tools input{min-width:240px;padding:4px 6px}
.tools .note{color:#5b6776}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e7ed;vertical-align:top}
th{background:#eef1f5;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \25B2"}
th[aria-sort=descending]::after{content:" \25BC"}
tr.expiring-shortly td{color:#c62828;font-weight:600}
td[data-col=start],td[data-col=end]{white-space:nowrap}
tr.inactive td{color:#7a8591}
td.over{color:#c62828;font-weight:600}
td .sub{display:block;color:#7a8591;font-size:12px;font-family:"DejaVu Sans Mono",monospace}
.pager{display:flex;gap:8px;align-items:center;margin-top:8px}
.counts{display:flex;gap:16px;flex-wrap:wrap;margin:0 0 8px;padding:0;list-style:none}
.cut{color:#8a5a00}
"#;

const SCRIPT: &str = r##"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fleet-data").textContent);
  var PAGE = 100;
  var LABEL = {"active": "Active", "expiring-shortly": "Expiring Shortly",
    "impending": "Impending", "inactive": "Inactive"};
  // A license row: [fingerprint, kind, serial, feature, limit, in_use, over, transaction, start, end, status].
  var LICENSE = {
    license: function (r) { return r[2]; },
    feature: function (r) { return r[3]; },
    description: function (r) { return data.descriptions[r[3]] || ""; },
    type: function (r) { return r[4] > 0 ? "Managed Device" : "not counted"; },
    devices: function (r) { return r[5]; },
    transaction: function (r) { return r[7]; },
    start: function (r) { return r[8]; },
    end: function (r) { return r[9]; },
    status: function (r) { return r[10]; }
  };
  var ATTENTION = {
    mac: function (r) { return r[0]; },
    what: function (r) { return r[1]; },
    detail: function (r) { return r[2]; }
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
  // Every column's text of each row (and the fingerprint of a license), lowercase, once.
  function haystack(rows, cols, cache) {
    if (!cache.text) {
      var keys = Object.keys(cols);
      cache.text = rows.map(function (r) {
        var words = keys.map(function (k) { return String(cols[k](r)); });
        if (cols === LICENSE) { words.push(r[1], r[0]); }
        return words.join(" ").toLowerCase();
      });
    }
    return cache.text;
  }
  function compare(cols, key, dir) {
    var get = cols[key];
    return function (a, b) {
      var x = get(a), y = get(b);
      var c = (typeof x === "number" && typeof y === "number") ? x - y : (x < y ? -1 : x > y ? 1 : 0);
      return dir === "desc" ? -c : c;
    };
  }
  function selected(rows, cols, cache, query, keep, sortKey, dir) {
    var text = query ? haystack(rows, cols, cache) : null;
    var needle = (query || "").toLowerCase();
    var out = [];
    for (var i = 0; i < rows.length; i++) {
      if (keep && !keep(rows[i])) { continue; }
      if (text && text[i].indexOf(needle) < 0) { continue; }
      out.push(rows[i]);
    }
    if (sortKey && cols[sortKey]) { out.sort(compare(cols, sortKey, dir)); }
    return out;
  }
  function cell(tr, col, text, cls) {
    var td = document.createElement("td");
    td.setAttribute("data-col", col);
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function licenseRow(r) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-fingerprint", r[0]);
    tr.setAttribute("data-status", r[10]);
    tr.className = r[10];
    var td = cell(tr, "license", r[2]);
    var sub = document.createElement("span");
    sub.className = "sub";
    sub.textContent = r[1] + " \u00b7 " + r[0].slice(0, 12);
    sub.title = r[0];
    td.appendChild(sub);
    cell(tr, "feature", r[3]);
    cell(tr, "description", data.descriptions[r[3]] || "");
    cell(tr, "type", r[4] > 0 ? "Managed Device" : "not counted");
    cell(tr, "devices", r[4] > 0 ? r[5] + " of " + r[4] + (r[6] ? " OVER" : "") : String(r[5]),
      r[6] ? "over" : "");
    cell(tr, "transaction", r[7]);
    cell(tr, "start", r[8]);
    cell(tr, "end", r[9]);
    cell(tr, "status", LABEL[r[10]] || r[10]);
    return tr;
  }
  function attentionRow(r) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-what", r[1]);
    cell(tr, "mac", r[0]);
    cell(tr, "what", r[1]);
    cell(tr, "detail", r[2]);
    return tr;
  }
  function table(t) {
    var p = t.prefix;
    var page = Math.max(1, parseInt(params[p + "page"] || "1", 10) || 1);
    var rows = selected(t.rows, t.cols, t.cache, params[t.query], t.keep(), params[p + "sort"],
      params[p + "dir"]);
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(page, pages);
    var body = document.getElementById(t.id + "-rows");
    body.textContent = "";
    var first = (page - 1) * PAGE;
    var frag = document.createDocumentFragment();
    for (var i = first; i < Math.min(rows.length, first + PAGE); i++) {
      frag.appendChild(t.render(rows[i]));
    }
    body.appendChild(frag);
    document.getElementById(t.id + "-matching").textContent = String(rows.length);
    document.getElementById(t.id + "-range").textContent = rows.length ?
      "rows " + (first + 1) + "\u2013" + Math.min(rows.length, first + PAGE) + ", page " + page + " of " + pages :
      "no rows";
    document.getElementById(t.id + "-prev").disabled = page <= 1;
    document.getElementById(t.id + "-next").disabled = page >= pages;
    t.page = page;
    var heads = document.querySelectorAll("#" + t.id + " th");
    for (var h = 0; h < heads.length; h++) {
      var key = heads[h].getAttribute("data-key");
      if (key === params[p + "sort"]) {
        heads[h].setAttribute("aria-sort", params[p + "dir"] === "desc" ? "descending" : "ascending");
      } else {
        heads[h].removeAttribute("aria-sort");
      }
    }
  }
  var tables = [
    {id: "license", prefix: "", query: "q", rows: data.licenses, cols: LICENSE, cache: {},
      render: licenseRow, keep: function () {
        var s = params.status;
        if (!s) { return null; }
        if (s === "over") { return function (r) { return !!r[6]; }; }
        return function (r) { return r[10] === s; };
      }},
    {id: "attention", prefix: "a", query: "aq", rows: data.attention, cols: ATTENTION, cache: {},
      render: attentionRow, keep: function () {
        var w = params.what;
        return w ? function (r) { return r[1] === w; } : null;
      }}
  ];
  function render() {
    tables.forEach(table);
    document.getElementById("license-filter").value = params.q || "";
    document.getElementById("license-status").value = params.status || "";
    document.getElementById("attention-filter").value = params.aq || "";
    document.getElementById("attention-what").value = params.what || "";
    var tiles = document.querySelectorAll(".tile");
    for (var i = 0; i < tiles.length; i++) {
      var s = tiles[i].getAttribute("data-status");
      tiles[i].classList.toggle("selected", (params.status || "") === s);
    }
    document.body.setAttribute("data-ready", "1");
  }
  function set(changes) {
    Object.keys(changes).forEach(function (k) { params[k] = changes[k]; });
    writeHash();
    render();
  }
  tables.forEach(function (t) {
    var p = t.prefix;
    var heads = document.querySelectorAll("#" + t.id + " th");
    for (var h = 0; h < heads.length; h++) {
      heads[h].addEventListener("click", function (e) {
        var key = e.currentTarget.getAttribute("data-key");
        var change = {};
        change[p + "dir"] = params[p + "sort"] === key && params[p + "dir"] !== "desc" ? "desc" : "asc";
        change[p + "sort"] = key;
        change[p + "page"] = "";
        set(change);
      });
    }
    document.getElementById(t.id + "-prev").addEventListener("click", function () {
      var change = {}; change[p + "page"] = String(t.page - 1); set(change);
    });
    document.getElementById(t.id + "-next").addEventListener("click", function () {
      var change = {}; change[p + "page"] = String(t.page + 1); set(change);
    });
  });
  document.getElementById("license-filter").addEventListener("input", function (e) {
    set({q: e.target.value, page: ""});
  });
  document.getElementById("license-status").addEventListener("change", function (e) {
    set({status: e.target.value, page: ""});
  });
  document.getElementById("attention-filter").addEventListener("input", function (e) {
    set({aq: e.target.value, apage: ""});
  });
  document.getElementById("attention-what").addEventListener("change", function (e) {
    set({what: e.target.value, apage: ""});
  });
  var tiles = document.querySelectorAll(".tile");
  for (var i = 0; i < tiles.length; i++) {
    tiles[i].addEventListener("click", function (e) {
      set({status: e.currentTarget.getAttribute("data-status"), page: ""});
    });
  }
  window.addEventListener("hashchange", function () { readHash(); render(); });
  readHash();
  render();
})();
"##;

/// The JSON island: `{"licenses":[[fingerprint, kind, serial, feature, limit, in_use,
/// over (0/1), transaction, start, end, status]...], "attention":[[mac, what,
/// detail]...], "descriptions":{feature: text}}`, written row by row (no tree of
/// values for 100,000 licenses), then made safe for a script element.
fn island(fleet: &Fleet) -> (String, usize) {
    let mut json = String::from("{\"licenses\":[");
    let mut rows = 0usize;
    let mut names = std::collections::BTreeMap::new();
    let mut push = |json: &mut String, row: serde_json::Result<String>| {
        if rows > 0 {
            json.push(',');
        }
        json.push_str(&row.unwrap_or_else(|_| "[]".into()));
        rows += 1;
    };
    for r in &fleet.rows {
        let known = description(&r.feature);
        if !known.is_empty() {
            names.insert(r.feature.as_str(), known);
        }
        let row = (
            r.licenses.first().map_or("", String::as_str),
            &r.kind,
            &r.id,
            &r.feature,
            r.capacity,
            r.in_use,
            u8::from(r.over),
            &r.transaction,
            &r.start,
            &r.end,
            &r.status,
        );
        push(&mut json, serde_json::to_string(&row));
    }
    json.push_str("],\"attention\":[");
    let items = fleet
        .attention
        .iter()
        .flat_map(|g| g.phones.iter().map(move |p| (&p.mac, &g.what, &p.detail)));
    for (n, a) in items.take(MAX_ATTENTION).enumerate() {
        if n > 0 {
            json.push(',');
        }
        let row = serde_json::to_string(&a);
        json.push_str(&row.unwrap_or_else(|_| "[]".into()));
    }
    json.push_str("],\"descriptions\":");
    json.push_str(&serde_json::to_string(&names).unwrap_or_else(|_| "{}".into()));
    json.push('}');
    (script_safe(&json), rows)
}

/// The page of the fleet.
pub(crate) fn page(fleet: &Fleet, unreadable: &[Unreadable]) -> String {
    let s = &fleet.summary;
    let (data, total_rows) = island(fleet);
    let in_page = fleet.attention.len().min(MAX_ATTENTION);
    let mut out = String::with_capacity(4096 + total_rows * 200);
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
        "<noscript><p>The tables need JavaScript; the counts below do not.</p></noscript>\n",
    );
    out.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"tiles\">\n");
    for (id, label, n) in [
        ("all", "All", s.all),
        ("active", "Active", s.active),
        ("expiring-shortly", "Expiring Shortly", s.expiring_shortly),
        ("impending", "Impending", s.impending),
        ("inactive", "Inactive", s.inactive),
    ] {
        let (status, class) = match id {
            "all" => ("", "tile"),
            "expiring-shortly" => (id, "tile expiring"),
            _ => (id, "tile"),
        };
        let _ = writeln!(
            out,
            "<div class=\"{class}\" data-status=\"{status}\"><span class=\"n\" id=\"count-{id}\">{n}</span>{label}</div>"
        );
    }
    out.push_str("</div><p class=\"note\">Licenses, each once however many phones hold it; Expiring Shortly: fewer than 31 days left.</p></section>\n");

    let _ = write!(
        out,
        "<section><h2>Licenses</h2>\n<div class=\"tools\">\
         <input id=\"license-filter\" type=\"search\" placeholder=\"Filter licenses\" aria-label=\"Filter licenses\">\
         <select id=\"license-status\" aria-label=\"Status\"><option value=\"\">Any status</option>\
         <option value=\"active\">Active</option><option value=\"expiring-shortly\">Expiring Shortly</option>\
         <option value=\"impending\">Impending</option><option value=\"inactive\">Inactive</option>\
         <option value=\"over\">Over its limit</option></select>\
         <span class=\"note\"><span id=\"license-matching\">0</span> of <span id=\"license-total\">{total_rows}</span> rows \
         (one per feature a license grants)</span></div>\n\
         <table id=\"license\"><thead><tr>\
         <th data-key=\"license\">License</th><th data-key=\"feature\">Feature Code</th>\
         <th data-key=\"description\">Description</th><th data-key=\"type\">Type</th>\
         <th data-key=\"devices\">Devices in use</th><th data-key=\"transaction\">Transaction Type</th>\
         <th data-key=\"start\">Start Time</th><th data-key=\"end\">End Time</th>\
         <th data-key=\"status\">Status</th></tr></thead><tbody id=\"license-rows\"></tbody></table>\n\
         <div class=\"pager\"><button id=\"license-prev\" type=\"button\">Previous</button>\
         <button id=\"license-next\" type=\"button\">Next</button><span id=\"license-range\"></span></div></section>\n"
    );

    let left_out = fleet.attention.len().saturating_sub(MAX_ATTENTION);
    let _ = write!(
        out,
        "<section><h2>Needs attention</h2>\n<ul class=\"counts\">"
    );
    for kind in KINDS {
        let n = fleet.attention.iter().filter(|a| a.what == kind).count();
        let _ = write!(
            out,
            "<li data-what=\"{kind}\"><span id=\"attention-count-{kind}\">{n}</span> {kind}</li>"
        );
    }
    let _ = write!(
        out,
        "</ul>\n<div class=\"tools\">\
         <input id=\"attention-filter\" type=\"search\" placeholder=\"Filter\" aria-label=\"Filter attention\">\
         <select id=\"attention-what\" aria-label=\"Kind\"><option value=\"\">Any kind</option>"
    );
    for kind in KINDS {
        let _ = write!(out, "<option value=\"{kind}\">{kind}</option>");
    }
    let _ = writeln!(
        out,
        "</select><span class=\"note\"><span id=\"attention-matching\">0</span> shown of \
         <span id=\"attention-in-page\">{}</span> in this page, \
         <span id=\"attention-total\">{}</span> in all</span></div>",
        in_page,
        fleet.attention.len()
    );
    if left_out > 0 {
        let _ = writeln!(
            out,
            "<p class=\"cut\">This page holds the first {MAX_ATTENTION} items: \
             <span id=\"attention-left-out\">{left_out}</span> more are left out \
             (license-fleet --json or --csv=attention lists them all).</p>"
        );
    } else {
        out.push_str("<span id=\"attention-left-out\" hidden>0</span>\n");
    }
    out.push_str(
        "<table id=\"attention\"><thead><tr><th data-key=\"mac\">Phone</th>\
         <th data-key=\"what\">What</th><th data-key=\"detail\">Detail</th></tr></thead>\
         <tbody id=\"attention-rows\"></tbody></table>\n\
         <div class=\"pager\"><button id=\"attention-prev\" type=\"button\">Previous</button>\
         <button id=\"attention-next\" type=\"button\">Next</button><span id=\"attention-range\"></span></div></section>\n",
    );

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
