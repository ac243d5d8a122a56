//! The pack as one self-contained HTML file: the pack, the DPIA annex and the DSA field
//! schedule rendered from their Markdown, the data-flow diagram inline, styles inline,
//! no script and no external reference — it opens offline and prints.

use pulldown_cmark::{Options, Parser, html};

use crate::model::markup::escape as esc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;\
padding:0 1em;color:#1b1b1b;line-height:1.45}h1{border-bottom:3px solid #005eb8}\
h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;margin:.5em 0 1em;\
width:100%;font-size:.92em}th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;\
vertical-align:top}th{background:#f0f4f5}tr:nth-child(even) td{background:#fafafa}\
code{background:#f3f3f3;padding:0 .2em;font-size:.95em}blockquote{border-left:4px solid #ffb81c;\
margin:1em 0;padding:.3em 1em;background:#fff8e6}figure{margin:1em 0;overflow-x:auto}figure svg{max-width:100%;height:auto}\
nav ul{columns:2}.part{page-break-before:always}@media print{body{max-width:none;margin:0}\
nav{display:none}a{color:inherit;text-decoration:none}}";

/// Markdown to HTML (tables on; raw HTML only ever comes from the gateway's own diagram:
/// configuration text is escaped before it reaches the Markdown).
pub fn from_markdown(markdown: &str) -> String {
    let mut out = String::new();
    html::push_html(
        &mut out,
        Parser::new_ext(
            markdown,
            Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES,
        ),
    );
    out
}

/// The whole document: each (anchor, title, Markdown) part in turn.
pub fn document(title: &str, parts: &[(&str, &str, String)]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><nav><p><strong>Contents</strong></p><ul>",
        esc(title)
    );
    for (anchor, name, _) in parts {
        out.push_str(&format!("<li><a href=\"#{anchor}\">{}</a></li>", esc(name)));
    }
    out.push_str("</ul></nav>");
    for (i, (anchor, _, markdown)) in parts.iter().enumerate() {
        let class = if i == 0 { "" } else { " class=\"part\"" };
        out.push_str(&format!("<section id=\"{anchor}\"{class}>"));
        out.push_str(&from_markdown(markdown));
        out.push_str("</section>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_text_escaped_for_markdown_stays_text_in_html() {
        let hostile = "<script>alert(1)</script> | *x* [a](http://evil)";
        let md = format!("| a |\n|---|\n| {} |\n", crate::ig::markdown::text(hostile));
        let html = from_markdown(&md);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("href="), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
