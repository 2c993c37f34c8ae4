//! Aligned plain-text tables: a header row and columns padded to their widest cell, numbers
//! right-aligned so their units line up. Laid out by `comfy-table`, which measures cells by their
//! display width, so a CJK model name or an emoji in a message keeps the columns straight.

use comfy_table::{presets::NOTHING, CellAlignment, Row};

/// Spaces between two columns.
const GAP: u16 = 2;

/// A table built row by row and rendered once.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column titles, every column left-aligned.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// Right-aligns the columns at these indices (numbers with units).
    pub fn right(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    /// Appends a row; missing cells are blank, extra ones are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines separated by `\n`, with a trailing newline; no line ends in spaces, so
    /// free text in the last column leaves none.
    pub fn render(&self) -> String {
        layout(Some(&self.header), &self.rows, &self.right)
    }
}

/// A two-column block of `label  value` lines, labels padded to the longest.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let rows: Vec<[&str; 2]> = rows.iter().map(|(k, v)| [*k, v.as_str()]).collect();
    layout(None::<&[&str]>, &rows, &[false, false])
}

/// Lays out `rows` (under `header`, when given) in columns [`GAP`] spaces apart, the columns
/// flagged in `right` right-aligned.
fn layout<C: AsRef<str>>(header: Option<&[C]>, rows: &[impl AsRef<[C]>], right: &[bool]) -> String {
    let cells = |r: &[C]| Row::from(r.iter().map(|c| c.as_ref()).collect::<Vec<_>>());
    let mut t = comfy_table::Table::new();
    t.load_style(NOTHING);
    if let Some(h) = header {
        t.set_header(cells(h));
    }
    for r in rows {
        t.add_row(cells(r.as_ref()));
    }
    let last = right.len().saturating_sub(1);
    for (c, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if c == last { 0 } else { GAP }));
        if right.get(c) == Some(&true) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.lines().map(|line| format!("{}\n", line.trim_end())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_sit_right() {
        let mut t = Table::new(&["NAME", "SIZE", "NOTE"]).right(&[1]);
        t.row(vec!["a".into(), "1.0 MiB".into(), "x".into()]);
        t.row(vec!["longer".into(), "12.00 GB".into(), String::new()]);
        assert_eq!(t.render(), "NAME        SIZE  NOTE\na        1.0 MiB  x\nlonger  12.00 GB\n");
    }

    /// CJK characters and emoji take two terminal columns each: the next column starts where the
    /// display width says, not after a count of `char`s.
    #[test]
    fn wide_characters_align_by_display_width() {
        let mut t = Table::new(&["MODEL", "SIZE", "NOTE"]).right(&[1]);
        t.row(vec!["音楽".into(), "1.0 GB".into(), "ok".into()]);
        t.row(vec!["🎹 piano".into(), "12.0 GB".into(), "🔥".into()]);
        t.row(vec!["plain".into(), "3 B".into(), String::new()]);
        // Aligned on screen: each wide character fills two columns.
        let want = [
            "MODEL        SIZE  NOTE",
            "音楽       1.0 GB  ok",
            "🎹 piano  12.0 GB  🔥",
            "plain         3 B",
        ];
        assert_eq!(t.render(), want.map(|l| format!("{l}\n")).concat());
    }

    #[test]
    fn pairs_pad_their_labels() {
        assert_eq!(pairs(&[("a", "1".into()), ("bcd", "2".into())]), "a    1\nbcd  2\n");
        assert_eq!(pairs(&[("温度", "61 °C".into()), ("gpu", "ok".into())]), "温度  61 °C\ngpu   ok\n");
    }
}
