//! The readable document as a small PDF (the attachment GP Connect Send Document and
//! Docman carry): A4, the PDF base-14 Helvetica (every reader has it, so no font is
//! embedded), WinAnsi text, lines wrapped and paged.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

const PAGE: (f32, f32) = (595.0, 842.0);
const MARGIN: f32 = 50.0;
const SIZE: f32 = 10.0;
const LEADING: f32 = 13.0;
/// Characters per line at 10 pt Helvetica across the text width (its average width).
const WRAP: usize = 95;

/// UTF-8 → WinAnsi (cp1252) bytes for the base-14 fonts; anything else becomes '?'.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c as u32 {
            0x20..=0x7E | 0xA0..=0xFF => c as u8,
            0x20AC => 0x80,
            0x2013 => 0x96,
            0x2014 => 0x97,
            0x2018 => 0x91,
            0x2019 => 0x92,
            0x201C => 0x93,
            0x201D => 0x94,
            0x2022 => 0x95,
            _ => b'?',
        })
        .collect()
}

/// Breaks a line at spaces so none is longer than `width` characters.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let indent: String = line.chars().take_while(|c| *c == ' ').collect();
    let mut out = Vec::new();
    let mut current = String::new();
    for word in line.split_whitespace() {
        let extra = if current.is_empty() { 0 } else { 1 };
        if !current.is_empty() && current.chars().count() + extra + word.chars().count() > width {
            out.push(std::mem::take(&mut current));
            current.push_str(&indent);
            current.push_str("  ");
        } else if !current.is_empty() {
            current.push(' ');
        } else {
            current.push_str(&indent);
        }
        current.push_str(word);
    }
    out.push(current);
    out
}

/// A PDF of `lines` (the first is the title, also the document's title).
pub fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let wrapped: Vec<String> = lines.iter().flat_map(|l| wrap(l, WRAP)).collect();
    let per_page = ((PAGE.1 - 2.0 * MARGIN) / LEADING) as usize;
    let chunks: Vec<&[String]> = if wrapped.is_empty() {
        vec![&[][..]]
    } else {
        wrapped.chunks(per_page).collect()
    };
    let catalog = Ref::new(1);
    let pages = Ref::new(2);
    let font = Ref::new(3);
    let info = Ref::new(4);
    let font_name = Name(b"F1");
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages);
    let page_ids: Vec<Ref> = (0..chunks.len())
        .map(|i| Ref::new(5 + 2 * i as i32))
        .collect();
    pdf.pages(pages)
        .kids(page_ids.iter().copied())
        .count(chunks.len() as i32);
    for (i, chunk) in chunks.iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(6 + 2 * i as i32);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1));
        page.parent(pages);
        page.contents(content_id);
        page.resources().fonts().pair(font_name, font);
        page.finish();
        let mut c = Content::new();
        c.begin_text();
        c.set_font(font_name, SIZE);
        c.set_leading(LEADING);
        c.next_line(MARGIN, PAGE.1 - MARGIN);
        for (n, line) in chunk.iter().enumerate() {
            if n > 0 {
                c.next_line_using_leading();
            }
            c.show(Str(&win_ansi(line)));
        }
        c.end_text();
        pdf.stream(content_id, &c.finish());
    }
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("clw-gateway"));
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pdf_with_every_line_and_pages_when_long() {
        let lines: Vec<String> = (0..130).map(|i| format!("Line {i} – café")).collect();
        let pdf = render("T", &lines);
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Count 3"), "three pages for 130 lines");
        assert!(text.contains("/Helvetica"));
    }

    #[test]
    fn long_lines_wrap_at_spaces() {
        let long = "word ".repeat(60);
        let w = wrap(&format!("  {long}"), 40);
        assert!(w.len() > 5);
        assert!(w.iter().all(|l| l.chars().count() <= 44));
        assert!(w[0].starts_with("  word"));
        assert_eq!(
            win_ansi("£ é – €"),
            vec![0xA3, b' ', 0xE9, b' ', 0x96, b' ', 0x80]
        );
    }
}
