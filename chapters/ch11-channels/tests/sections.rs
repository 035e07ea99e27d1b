//! Every section the matcher sends a reader to exists in the book.

use leakscope::matcher::{SHAPES, TASKS_WAITING};

/// The id mdBook gives a heading: lower case, spaces as dashes, other
/// punctuation dropped.
fn heading_id(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_section_a_shape_names_is_a_heading_of_its_page() {
    let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    let mut checked = 0;
    for shape in SHAPES.iter().chain([&TASKS_WAITING]) {
        // Rows for chapters not yet in the book name them in words.
        let Some((page, fragment)) = shape.section.split_once(".md#") else {
            continue;
        };
        let text = std::fs::read_to_string(book.join(format!("{page}.md")))
            .unwrap_or_else(|error| panic!("{}: {error}", shape.id));
        let found = text
            .lines()
            .filter_map(|line| line.strip_prefix('#'))
            .map(|heading| heading_id(heading.trim_start_matches('#')))
            .any(|id| id == fragment);
        assert!(found, "{}: no heading #{fragment} in {page}.md", shape.id);
        checked += 1;
    }
    assert!(checked >= 9, "{checked}");
}
