//! Reading Markdown tables in tests that hold a document to its source (the PRSB table,
//! the Send Document conformance matrix).
#![allow(dead_code)]

/// A Markdown table line's cells, trimmed: split on `|` except where escaped (`\|`, which
/// GitHub's tables need even inside code).
pub fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

pub fn is_separator(line: &str) -> bool {
    line.trim().starts_with('|')
        && cells(line).iter().all(|c| {
            let c = c.trim_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        })
}
