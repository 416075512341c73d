//! A line diff for the template editor's revision view: the common lines at both ends are kept as
//! they are, and the middle is compared by longest common subsequence.

use serde::Serialize;

/// Largest middle part (lines of one text × lines of the other) compared line by line; a bigger
/// change is shown as the old middle removed and the new middle added.
pub const MAX_CELLS: usize = 4_000_000;

/// What happened to one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// In both texts.
    Same,
    /// Only in the old text.
    Removed,
    /// Only in the new text.
    Added,
}

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// What happened to it.
    pub op: Op,
    /// The line, without its line end.
    pub text: String,
}

/// The lines of `old` and `new` in order, each marked same, removed or added (removals before
/// additions where lines were replaced).
pub fn diff_lines(old: &str, new: &str) -> Vec<Line> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let line = |op, text: &&str| Line {
        op,
        text: (*text).to_owned(),
    };
    let mut out: Vec<Line> = a[..prefix].iter().map(|t| line(Op::Same, t)).collect();
    if am.len().saturating_mul(bm.len()) > MAX_CELLS {
        out.extend(am.iter().map(|t| line(Op::Removed, t)));
        out.extend(bm.iter().map(|t| line(Op::Added, t)));
    } else {
        middle(am, bm, &mut out);
    }
    out.extend(a[a.len() - suffix..].iter().map(|t| line(Op::Same, t)));
    out
}

/// The LCS table from the end (`lcs[i][j]`: common lines of `a[i..]` and `b[j..]`), then a walk
/// from the start.
fn middle(a: &[&str], b: &[&str], out: &mut Vec<Line>) {
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut push = |op, text: &str| {
        out.push(Line {
            op,
            text: text.to_owned(),
        })
    };
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            push(Op::Same, a[i]);
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            push(Op::Removed, a[i]);
            i += 1;
        } else {
            push(Op::Added, b[j]);
            j += 1;
        }
    }
    for t in &a[i..] {
        push(Op::Removed, t);
    }
    for t in &b[j..] {
        push(Op::Added, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(d: &[Line]) -> String {
        d.iter()
            .map(|l| {
                let mark = match l.op {
                    Op::Same => ' ',
                    Op::Removed => '-',
                    Op::Added => '+',
                };
                format!("{mark}{}\n", l.text)
            })
            .collect()
    }

    #[test]
    fn equal_texts_are_all_same() {
        let d = diff_lines("a\nb\n", "a\nb");
        assert!(d.iter().all(|l| l.op == Op::Same));
        assert_eq!(d.len(), 2);
        assert!(diff_lines("", "").is_empty());
    }

    #[test]
    fn changes_insertions_and_deletions() {
        assert_eq!(
            show(&diff_lines("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n")),
            " a\n-b\n+B\n c\n d\n+e\n"
        );
        assert_eq!(show(&diff_lines("x\ny\n", "")), "-x\n-y\n");
        assert_eq!(show(&diff_lines("", "x\n")), "+x\n");
        // a moved line: the longest common part stays
        assert_eq!(
            show(&diff_lines("1\n2\n3\n4\n", "2\n3\n4\n1\n")),
            "-1\n 2\n 3\n 4\n+1\n"
        );
        assert_eq!(
            show(&diff_lines("k = 1\nx\nk = 1\n", "k = 1\nk = 1\n")),
            " k = 1\n-x\n k = 1\n"
        );
    }

    #[test]
    fn every_line_of_both_texts_is_there_in_order() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "b\nx\nd\ne\ny\ng\nh\n";
        let d = diff_lines(old, new);
        let olds: Vec<&str> = d
            .iter()
            .filter(|l| l.op != Op::Added)
            .map(|l| l.text.as_str())
            .collect();
        let news: Vec<&str> = d
            .iter()
            .filter(|l| l.op != Op::Removed)
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(olds, old.lines().collect::<Vec<_>>());
        assert_eq!(news, new.lines().collect::<Vec<_>>());
        // b, d, e, g are common: 4 same lines
        assert_eq!(d.iter().filter(|l| l.op == Op::Same).count(), 4);
    }

    #[test]
    fn a_huge_change_is_shown_whole() {
        let old: String = (0..2100).map(|i| format!("o{i}\n")).collect();
        let new: String = (0..2100).map(|i| format!("n{i}\n")).collect();
        let old = format!("head\n{old}tail\n");
        let new = format!("head\n{new}tail\n");
        let d = diff_lines(&old, &new);
        assert_eq!(d.len(), 2 + 4200);
        assert_eq!(d[0].op, Op::Same);
        assert!(d[1..2101].iter().all(|l| l.op == Op::Removed));
        assert!(d[2101..4201].iter().all(|l| l.op == Op::Added));
        assert_eq!(d[4201].text, "tail");
    }
}
