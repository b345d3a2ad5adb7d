//! The page around the report's sections: one self-contained file (inline CSS, inline SVG, a few
//! lines of vanilla JS to sort tables) that is also well-formed XML, so a test can parse the whole
//! page and every chart in it. Numbers are printed by the two helpers here, so the page shows one
//! format everywhere: percent with two decimals, learning rates as the shortest exact decimal.

use std::fmt::Write as _;

/// Text or an attribute value made safe for HTML and XML alike.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

/// A fraction as percent with two decimals ("—" for a missing or non-finite value).
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}", 100.0 * x)
    } else {
        "—".into()
    }
}

/// A learning rate exactly as result.json holds it (Rust's shortest round-trip decimal).
pub fn lr(x: f64) -> String {
    format!("{x}")
}

/// A table cell whose text is checked against result.json by the report test: `key` names the
/// JSON value (`summary.lrs.mean`, `runs.0.acc.syn_hard`, ...), `sort` the number it sorts by.
pub fn cell(key: &str, text: &str, sort: f64) -> String {
    format!(
        "<td data-k=\"{}\" data-sort=\"{sort}\">{}</td>",
        esc(key),
        esc(text)
    )
}

/// A plain cell.
pub fn td(text: &str) -> String {
    format!("<td>{}</td>", esc(text))
}

/// A header row.
pub fn header(cols: &[&str]) -> String {
    let mut s = String::from("<thead><tr>");
    for c in cols {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead>");
    s
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td:not([data-sort]) { text-align: left; }
table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e4e4e4; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 8px; }
.grid svg, .wide svg { width: 100%; height: auto; }
.warn { color: #a40; font-weight: bold; }
.muted { color: #777; font-size: .85em; }
.key span { display: inline-block; width: 1.2em; height: .6em; margin: 0 .3em 0 1em; }
details { margin: .6em 0; } summary { cursor: pointer; font-weight: bold; }
";

/// Clicking a header sorts its table's rows by that column's `data-sort` numbers (else its text);
/// a second click reverses. Without JavaScript the table keeps its server-side order.
const SORT_JS: &str = "
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var up = th.getAttribute('data-up') !== '1';
    th.setAttribute('data-up', up ? '1' : '0');
    var key = function (row) {
      var c = row.cells[col]; var v = parseFloat(c.getAttribute('data-sort'));
      return isNaN(v) ? c.textContent : v;
    };
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var r = (typeof x === 'number' ? (typeof y === 'number' ? x - y : -1)
                                     : String(x).localeCompare(String(y)));
      return up ? r : -r;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
";

/// The whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n\
         <meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         {body}\n<script>//<![CDATA[{SORT_JS}//]]></script>\n</body>\n</html>\n",
        esc(title)
    )
}
