//! Maven's version order (`org.apache.maven.artifact.versioning.ComparableVersion`, Maven 3.8),
//! rewritten: a version is split into items (numbers, qualifiers, sub-lists started by `-` or by a
//! change between digits and letters), trailing "null" items (`0`, `ga`, `final`, `release`, ``)
//! are dropped, and lists are compared item by item.
//!
//! Qualifiers order as `alpha < beta < milestone < rc (= cr) < snapshot < "" (= ga = final =
//! release) < sp`, then any other qualifier (alphabetically); `a1`, `b1`, `m1` are `alpha-1`,
//! `beta-1`, `milestone-1`. A number is newer than a qualifier (`1-1 > 1-sp`), a sub-list sits
//! between both.

use std::cmp::Ordering;

/// One item of a parsed version.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// A number, without leading zeros (`"0"` for zero), any length.
    Int(String),
    /// A qualifier, lower case, aliases applied.
    Str(String),
    /// A sub-list (after `-`, or after a digit/letter transition).
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
/// `comparable_qualifier("")`: where a release stands.
const RELEASE_INDEX: &str = "5";

fn comparable_qualifier(q: &str) -> String {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn string_item(value: &str, followed_by_digit: bool) -> Item {
    let v = match (followed_by_digit, value) {
        (true, "a") => "alpha",
        (true, "b") => "beta",
        (true, "m") => "milestone",
        (_, "ga" | "final" | "release") => "",
        (_, "cr") => "rc",
        (_, other) => other,
    };
    Item::Str(v.to_owned())
}

fn parse_item(is_digit: bool, text: &str) -> Item {
    if is_digit {
        let stripped = text.trim_start_matches('0');
        Item::Int(if stripped.is_empty() { "0" } else { stripped }.to_owned())
    } else {
        string_item(text, false)
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Int(n) => n == "0",
            Item::Str(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// `self` against `other`; `None` stands for a missing item (the shorter list's end).
    fn cmp_opt(&self, other: Option<&Item>) -> Ordering {
        match (self, other) {
            (Item::Int(n), None) => {
                if n == "0" {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Int(a), Some(Item::Int(b))) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Item::Int(_), Some(_)) => Ordering::Greater,
            (Item::Str(s), None) => comparable_qualifier(s).as_str().cmp(RELEASE_INDEX),
            (Item::Str(a), Some(Item::Str(b))) => {
                comparable_qualifier(a).cmp(&comparable_qualifier(b))
            }
            (Item::Str(_), Some(_)) => Ordering::Less,
            (Item::List(l), None) => l
                .iter()
                .map(|i| i.cmp_opt(None))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal),
            (Item::List(_), Some(Item::Int(_))) => Ordering::Less,
            (Item::List(_), Some(Item::Str(_))) => Ordering::Greater,
            (Item::List(a), Some(Item::List(b))) => cmp_lists(a, b),
        }
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let r = match (a.get(i), b.get(i)) {
            (None, None) => Ordering::Equal,
            (None, Some(r)) => r.cmp_opt(None).reverse(),
            (Some(l), r) => l.cmp_opt(r),
        };
        if r.is_ne() {
            return r;
        }
    }
    Ordering::Equal
}

/// Drops trailing null items (looking through trailing sub-lists, which are normalized first).
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if let Item::List(sub) = &mut list[i] {
            normalize(sub);
        }
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
    // sub-lists before the first non-null trailing item still need normalizing
    for item in list.iter_mut() {
        if let Item::List(sub) = item {
            normalize(sub);
        }
    }
}

/// The list items are added to, and the lists it is nested in: the Java original only ever moves
/// to a new sub-list of the current one (the last item of its parent), so the parents are
/// complete once a sub-list is opened and the tree is folded together at the end.
struct Builder {
    current: Vec<Item>,
    parents: Vec<Vec<Item>>,
}

impl Builder {
    fn current(&mut self) -> &mut Vec<Item> {
        &mut self.current
    }

    fn add(&mut self, item: Item) {
        self.current.push(item);
    }

    /// Starts a new sub-list of the current list and makes it current.
    fn open(&mut self) {
        self.parents.push(std::mem::take(&mut self.current));
    }

    /// The root list.
    fn finish(mut self) -> Vec<Item> {
        while let Some(mut parent) = self.parents.pop() {
            parent.push(Item::List(self.current));
            self.current = parent;
        }
        self.current
    }
}

fn parse(version: &str) -> Vec<Item> {
    let v = version.to_ascii_lowercase();
    let b = v.as_bytes();
    let mut out = Builder {
        current: Vec::new(),
        parents: Vec::new(),
    };
    let mut is_digit = false;
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'.' | b'-' => {
                if i == start {
                    out.add(Item::Int("0".into()));
                } else {
                    out.add(parse_item(is_digit, &v[start..i]));
                }
                start = i + 1;
                if c == b'-' {
                    out.open();
                }
            }
            c if c.is_ascii_digit() => {
                if !is_digit && i > start {
                    // `.X1` is read as `-X1` (1.0.0.X1 < 1.0.0-X2)
                    if !out.current().is_empty() {
                        out.open();
                    }
                    out.add(string_item(&v[start..i], true));
                    start = i;
                    out.open();
                }
                is_digit = true;
            }
            _ => {
                if is_digit && i > start {
                    out.add(parse_item(true, &v[start..i]));
                    start = i;
                    out.open();
                }
                is_digit = false;
            }
        }
    }
    if b.len() > start {
        if !is_digit && !out.current().is_empty() {
            out.open();
        }
        out.add(parse_item(is_digit, &v[start..]));
    }
    let mut root = out.finish();
    normalize(&mut root);
    root
}

/// Compares two Maven versions the way Maven does (`1.10 > 1.9`, `1.0-rc1 < 1.0`,
/// `1.0-SNAPSHOT < 1.0`, `1.0 = 1.0.0 = 1-ga`).
///
/// ```
/// use std::cmp::Ordering;
/// use pushguide_sources::maven_version_cmp;
///
/// assert_eq!(maven_version_cmp("1.10", "1.9"), Ordering::Greater);
/// assert_eq!(maven_version_cmp("2.0-rc1", "2.0"), Ordering::Less);
/// assert_eq!(maven_version_cmp("2.0-SNAPSHOT", "2.0-rc1"), Ordering::Greater);
/// assert_eq!(maven_version_cmp("1.0", "1.0.0-final"), Ordering::Equal);
/// ```
pub fn maven_version_cmp(a: &str, b: &str) -> Ordering {
    cmp_lists(&parse(a), &parse(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maven's canonical rendering (`ComparableVersion.getCanonical`), to check the parse itself.
    fn canonical(items: &[Item]) -> String {
        let mut out = String::new();
        for item in items {
            if !out.is_empty() {
                out.push(if matches!(item, Item::List(_)) {
                    '-'
                } else {
                    '.'
                });
            }
            match item {
                Item::Int(i) => out.push_str(i),
                Item::Str(s) => out.push_str(s),
                Item::List(sub) => out.push_str(&canonical(sub)),
            }
        }
        out
    }

    /// Maven's own `ComparableVersionTest` tables (qualifiers, numbers, equal spellings) plus
    /// common real-world versions, sorted oldest first into groups of equal versions. The order
    /// and the groups were produced by Maven 3.8.7's `ComparableVersion` (maven-artifact), not by
    /// this code.
    const GROUPS: &[&[&str]] = &[
        &["0.0.1"],
        &["0.9"],
        &["1a1", "1-alpha-1"],
        &["1-alpha2snapshot"],
        &["1-alpha2"],
        &["1-alpha-123"],
        &["1-beta-2", "1b2"],
        &["1-beta123"],
        &["1-m2"],
        &["1m3", "1-milestone-3", "1Milestone3", "1MileStone3"],
        &["1-m11"],
        &["1-rc", "1cr", "1rc", "1Cr", "1Rc"],
        &["1-cr2"],
        &["1-rc123"],
        &["1-SNAPSHOT"],
        &[
            "1",
            "1.0",
            "1.0.0",
            "1-0",
            "1.0-0",
            "1ga",
            "1release",
            "1final",
            "1Ga",
            "1GA",
            "1RELEASE",
            "1RELeaSE",
            "1Final",
            "1FINAL",
            "00001.000",
        ],
        &["1-sp"],
        &["1-sp2"],
        &["1-sp123"],
        &["1a", "1-a", "1.0-a", "1.0.0-a", "1.0a", "1.0.0a", "1A"],
        &["1-abc"],
        &["1.0-android"],
        &["1B"],
        &["1-def"],
        &["1.0-jre"],
        &["1M"],
        &["1-pom-1"],
        &["1x", "1-x", "1.0-x", "1.0.0-x", "1.0x", "1.0.0x", "1X"],
        &["1.0.0.x1"],
        &["1.0.0-x2"],
        &["1-ga-1"],
        &["1-1-snapshot"],
        &["1-1"],
        &["1-2"],
        &["1-123"],
        &["1.9"],
        &["1.9.9"],
        &["1.10-alpha"],
        &["1.10-beta-1"],
        &["1.10-rc1"],
        &["1.10-RC2"],
        &["1.10-SNAPSHOT"],
        &["1.10", "1.10.Final"],
        &["1.10-sp1"],
        &["1.10.1"],
        &["2.0-SNAPSHOT"],
        &["2.0", "2.0.0.RELEASE"],
        &["2.0.a"],
        &["2-1", "2.0.0-1"],
        &["2.0.0-2"],
        &["2.0-20250301.120000-3"],
        &["2.0.2"],
        &["2.0.123"],
        &["2.1.0"],
        &["2.1-a"],
        &["2.1b"],
        &["2.1-c"],
        &["2.1-1"],
        &["2.1.0.1"],
        &["2.2"],
        &["2.123"],
        &["3.0-M1"],
        &["3.0-M2"],
        &["3.0-RC1"],
        &["3.0"],
        &["4.0.0-alpha-13"],
        &["4.0.0-beta-3"],
        &["11.a2"],
        &["11.a11"],
        &["11.b2"],
        &["11.b11"],
        &["11.m2"],
        &["11.m11"],
        &["11"],
        &["11.a"],
        &["11b"],
        &["11c"],
        &["11m"],
        &["9999999999999999999"],
        &["10000000000000000000"],
    ];

    #[test]
    fn order_matches_maven() {
        for (gi, group) in GROUPS.iter().enumerate() {
            for a in *group {
                for b in *group {
                    assert_eq!(maven_version_cmp(a, b), Ordering::Equal, "{a} = {b}");
                }
                for (gj, other) in GROUPS.iter().enumerate() {
                    if gi == gj {
                        continue;
                    }
                    for b in *other {
                        assert_eq!(maven_version_cmp(a, b), gi.cmp(&gj), "{a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn canonical_forms_match_maven() {
        // (input, what Maven 3.8.7's `ComparableVersion.getCanonical` answers)
        for (v, want) in [
            ("1-alpha2snapshot", "1-alpha-2-snapshot"),
            ("1-alpha2", "1-alpha-2"),
            ("1-alpha-123", "1-alpha-123"),
            ("1-beta-2", "1-beta-2"),
            ("1-beta123", "1-beta-123"),
            ("1-m2", "1-milestone-2"),
            ("1-m11", "1-milestone-11"),
            ("1-rc", "1-rc"),
            ("1-cr2", "1-rc-2"),
            ("1-rc123", "1-rc-123"),
            ("1-SNAPSHOT", "1-snapshot"),
            ("1", "1"),
            ("1-sp", "1-sp"),
            ("1-sp2", "1-sp-2"),
            ("1-sp123", "1-sp-123"),
            ("1-abc", "1-abc"),
            ("1-def", "1-def"),
            ("1-pom-1", "1-pom-1"),
            ("1-1-snapshot", "1-1-snapshot"),
            ("1-1", "1-1"),
            ("1-2", "1-2"),
            ("1-123", "1-123"),
            ("2.0", "2"),
            ("2.0.a", "2-a"),
            ("2-1", "2-1"),
            ("2.0.2", "2.0.2"),
            ("2.0.123", "2.0.123"),
            ("2.1.0", "2.1"),
            ("2.1-a", "2.1-a"),
            ("2.1b", "2.1-b"),
            ("2.1-c", "2.1-c"),
            ("2.1-1", "2.1-1"),
            ("2.1.0.1", "2.1.0.1"),
            ("2.2", "2.2"),
            ("2.123", "2.123"),
            ("11.a2", "11-alpha-2"),
            ("11.a11", "11-alpha-11"),
            ("11.b2", "11-beta-2"),
            ("11.b11", "11-beta-11"),
            ("11.m2", "11-milestone-2"),
            ("11.m11", "11-milestone-11"),
            ("11", "11"),
            ("11.a", "11-a"),
            ("11b", "11-b"),
            ("11c", "11-c"),
            ("11m", "11-m"),
            ("1.0", "1"),
            ("1.0.0", "1"),
            ("1-0", "1"),
            ("1.0-0", "1"),
            ("1a", "1-a"),
            ("1-a", "1-a"),
            ("1.0-a", "1-a"),
            ("1.0.0-a", "1-a"),
            ("1.0a", "1-a"),
            ("1.0.0a", "1-a"),
            ("1x", "1-x"),
            ("1-x", "1-x"),
            ("1.0-x", "1-x"),
            ("1.0.0-x", "1-x"),
            ("1.0x", "1-x"),
            ("1.0.0x", "1-x"),
            ("1ga", "1"),
            ("1release", "1"),
            ("1final", "1"),
            ("1cr", "1-rc"),
            ("1rc", "1-rc"),
            ("1a1", "1-alpha-1"),
            ("1-alpha-1", "1-alpha-1"),
            ("1b2", "1-beta-2"),
            ("1-beta-2", "1-beta-2"),
            ("1m3", "1-milestone-3"),
            ("1-milestone-3", "1-milestone-3"),
            ("1X", "1-x"),
            ("1A", "1-a"),
            ("1B", "1-b"),
            ("1M", "1-m"),
            ("1Ga", "1"),
            ("1GA", "1"),
            ("1RELEASE", "1"),
            ("1RELeaSE", "1"),
            ("1Final", "1"),
            ("1FINAL", "1"),
            ("1Cr", "1-rc"),
            ("1Rc", "1-rc"),
            ("1Milestone3", "1-milestone-3"),
            ("1MileStone3", "1-milestone-3"),
            ("1.9", "1.9"),
            ("1.10", "1.10"),
            ("1.9.9", "1.9.9"),
            ("1.10-SNAPSHOT", "1.10-snapshot"),
            ("1.10-rc1", "1.10-rc-1"),
            ("1.10-RC2", "1.10-rc-2"),
            ("1.10-beta-1", "1.10-beta-1"),
            ("1.10-alpha", "1.10-alpha"),
            ("1.10.Final", "1.10"),
            ("1.10-sp1", "1.10-sp-1"),
            ("1.10.1", "1.10.1"),
            ("1.0.0.x1", "1-x-1"),
            ("1.0.0-x2", "1-x-2"),
            ("1-ga-1", "1-1"),
            ("2.0-SNAPSHOT", "2-snapshot"),
            ("2.0-20250301.120000-3", "2-20250301.120000-3"),
            ("2.0.0.RELEASE", "2"),
            ("3.0-M1", "3-milestone-1"),
            ("3.0-M2", "3-milestone-2"),
            ("3.0-RC1", "3-rc-1"),
            ("3.0", "3"),
            ("00001.000", "1"),
            ("0.9", "0.9"),
            ("0.0.1", "0.0.1"),
            ("1.0-jre", "1-jre"),
            ("1.0-android", "1-android"),
            ("2.0.0-2", "2-2"),
            ("2.0.0-1", "2-1"),
            ("4.0.0-beta-3", "4-beta-3"),
            ("4.0.0-alpha-13", "4-alpha-13"),
        ] {
            assert_eq!(canonical(&parse(v)), want, "{v}");
        }
    }

    #[test]
    fn newest_first_examples() {
        let mut v = vec![
            "1.9",
            "1.10",
            "1.10-SNAPSHOT",
            "1.10-rc1",
            "1.2",
            "2.0-beta",
            "1.10.1",
        ];
        v.sort_by(|a, b| maven_version_cmp(b, a));
        assert_eq!(
            v,
            [
                "2.0-beta",
                "1.10.1",
                "1.10",
                "1.10-SNAPSHOT",
                "1.10-rc1",
                "1.9",
                "1.2"
            ]
        );
    }
}
