//! Escaping text for XML and HTML, in element content and in double-quoted attribute
//! values alike (the ITK3 message, the operator console; neither quotes attributes
//! with apostrophes, so an apostrophe stays as it is).

/// Whether XML 1.0 allows the character at all (`Char`: tab, line feed, carriage return,
/// and U+0020 up, less U+FFFE and U+FFFF): a vertical tab from a word processor, say, is
/// not, and one in a document makes it unreadable to every parser.
pub fn xml_allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// The text with every character that could end content or an attribute replaced by
/// its entity; line breaks and tabs kept as character references so attribute values
/// keep them; characters XML forbids left out.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| xml_allowed(*c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_characters_become_entities() {
        assert_eq!(super::escape("a<b>&\"c'\n"), "a&lt;b&gt;&amp;&quot;c'&#10;");
    }

    #[test]
    fn characters_xml_forbids_are_left_out() {
        assert_eq!(
            super::escape("line\u{b}break\u{0}\u{1f}\u{FFFE}ok\t"),
            "linebreakok&#9;"
        );
    }
}
