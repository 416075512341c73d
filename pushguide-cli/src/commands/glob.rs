//! Salt's glob (`fnmatch`), to refuse a `--hosts` host that a glob target cannot match without
//! asking salt.

/// Whether salt's glob (`fnmatch`: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`) `pattern` matches `text`.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    /// A `[…]` class: its length in the pattern, its ranges (`a-z`; a lone `c` is `c-c`) and
    /// whether it is negated (`[!…]`).
    struct Class {
        len: usize,
        ranges: Vec<(char, char)>,
        negated: bool,
    }
    fn class(p: &[char]) -> Option<Class> {
        // p[0] == '['; `None` when the class is not closed (then `[` is itself)
        let mut i = 1;
        let negated = p.get(i) == Some(&'!');
        if negated {
            i += 1;
        }
        let mut ranges = Vec::new();
        let first = i;
        while i < p.len() {
            if p[i] == ']' && i > first {
                return Some(Class {
                    len: i + 1,
                    ranges,
                    negated,
                });
            }
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                ranges.push((p[i], p[i + 2]));
                i += 3;
            } else {
                ranges.push((p[i], p[i]));
                i += 1;
            }
        }
        None
    }
    /// Whether `p[pi..]` matches `t[ti..]`. `tried` holds the states already explored: a state seen
    /// twice failed the first time (a success ends the search), so the work is bounded by
    /// pattern length × text length however many `*` the pattern has.
    fn go(
        p: &[char],
        t: &[char],
        pi: usize,
        ti: usize,
        tried: &mut std::collections::HashSet<(usize, usize)>,
    ) -> bool {
        if !tried.insert((pi, ti)) {
            return false;
        }
        match p.get(pi) {
            None => ti == t.len(),
            Some('*') => (ti..=t.len()).any(|k| go(p, t, pi + 1, k, tried)),
            Some('?') => ti < t.len() && go(p, t, pi + 1, ti + 1, tried),
            Some('[') => match class(&p[pi..]) {
                Some(class) => match t.get(ti) {
                    Some(c) => {
                        let inside = class.ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                        inside != class.negated && go(p, t, pi + class.len, ti + 1, tried)
                    }
                    None => false,
                },
                None => t.get(ti) == Some(&'[') && go(p, t, pi + 1, ti + 1, tried),
            },
            Some(c) => t.get(ti) == Some(c) && go(p, t, pi + 1, ti + 1, tried),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t, 0, 0, &mut std::collections::HashSet::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("*", "db-01"));
        assert!(!glob_match("web-*", "db-01"));
        assert!(glob_match("web-0?", "web-07"));
        assert!(!glob_match("web-0?", "web-107"));
        assert!(glob_match("web-0[12]", "web-02"));
        assert!(!glob_match("web-0[12]", "web-03"));
        assert!(glob_match("web-0[!12]", "web-03"));
        assert!(glob_match("web-[0-1][0-9]", "web-17"));
        assert!(!glob_match("web-[0-1][0-9]", "web-27"));
        assert!(glob_match("web-[", "web-["));
        assert!(glob_match("*-0[]]", "a-0]"));
        // many stars against a long id: bounded work, not exponential backtracking
        let pattern = format!("{}b", "*a".repeat(30));
        let begun = std::time::Instant::now();
        assert!(!glob_match(&pattern, &"a".repeat(200)));
        assert!(begun.elapsed() < std::time::Duration::from_secs(2));
    }
}
