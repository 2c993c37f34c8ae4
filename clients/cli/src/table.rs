//! Aligned plain-text tables: a header row and columns padded to their widest cell, numbers
//! right-aligned so their units line up.

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

    /// The table as lines separated by `\n`, with a trailing newline; the last column is never
    /// padded so free text does not leave trailing spaces.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                let cells = self.rows.iter().map(|r| width(&r[c]));
                cells.chain([width(&self.header[c])]).max().unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            out.push_str(self.line(row, &widths).trim_end());
            out.push('\n');
        }
        out
    }

    fn line(&self, row: &[String], widths: &[usize]) -> String {
        let last = row.len().saturating_sub(1);
        let cells = row.iter().enumerate().map(|(c, cell)| {
            let pad = " ".repeat(widths[c].saturating_sub(width(cell)));
            match (self.right[c], c == last) {
                (true, _) => format!("{pad}{cell}"),
                (false, true) => cell.clone(),
                (false, false) => format!("{cell}{pad}"),
            }
        });
        cells.collect::<Vec<_>>().join("  ")
    }
}

/// A two-column block of `label  value` lines, labels padded to the longest.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k}{}  {v}\n", " ".repeat(w - width(k))));
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
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

    #[test]
    fn pairs_pad_their_labels() {
        assert_eq!(pairs(&[("a", "1".into()), ("bcd", "2".into())]), "a    1\nbcd  2\n");
    }
}
