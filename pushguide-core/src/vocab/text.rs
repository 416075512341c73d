//! Showing untrusted text: [`quote`] and [`clean`] escape and cut a value before an error or a log
//! line echoes it; [`is_hidden`] names the characters no grammar accepts. Imports nothing of the crate,
//! so every floor above (errors first) can use it.

use std::fmt::Write as _;

/// Characters of a value an error message shows before cutting it (see [`quote`]).
pub const MAX_SHOWN_CHARS: usize = 200;

/// `General_Category=Cf` (Unicode 16.0), as inclusive code point ranges.
const FORMAT_RANGES: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Other characters that render as nothing or reorder text: the combining grapheme joiner, Hangul and
/// Khmer fillers, Mongolian variation selectors, the line and paragraph separators, variation
/// selectors (including the supplement) and the rest of the tag block.
const OTHER_HIDDEN_RANGES: &[(u32, u32)] = &[
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2028, 0x2029),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE0FFF),
];

fn in_ranges(c: char, ranges: &[(u32, u32)]) -> bool {
    let c = u32::from(c);
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether `c` is a Unicode format character (`General_Category=Cf`).
///
/// ```
/// use pushguide_core::validate::is_format;
/// assert!(is_format('\u{202E}')); // RIGHT-TO-LEFT OVERRIDE
/// assert!(is_format('\u{FEFF}')); // BYTE ORDER MARK
/// assert!(!is_format('a'));
/// ```
pub fn is_format(c: char) -> bool {
    in_ranges(c, FORMAT_RANGES)
}

/// Whether `c` is a character no grammar accepts because it is invisible or changes how the text
/// around it is shown: a control character (C0, DEL, C1), a format character ([`is_format`]: bidi
/// controls, zero-width characters, U+FEFF, tags, …), a variation selector, the line or paragraph
/// separator, or another default-ignorable filler.
///
/// ```
/// use pushguide_core::validate::is_hidden;
/// for c in ['\u{1b}', '\u{85}', '\u{200B}', '\u{2067}', '\u{FE0F}', '\u{E0041}', '\u{2028}'] {
///     assert!(is_hidden(c), "{c:?}");
/// }
/// assert!(!is_hidden('é') && !is_hidden(' '));
/// ```
pub fn is_hidden(c: char) -> bool {
    c.is_control() || is_format(c) || in_ranges(c, OTHER_HIDDEN_RANGES)
}

fn push_escaped(out: &mut String, c: char, quotes: bool) {
    match c {
        '"' | '\\' if quotes => {
            out.push('\\');
            out.push(c);
        }
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_hidden(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

fn escape_cut(value: &str, max_chars: usize, quotes: bool) -> String {
    let mut out = String::with_capacity(value.len().min(max_chars * 2) + 24);
    if quotes {
        out.push('"');
    }
    let mut cut = false;
    for (n, c) in value.chars().enumerate() {
        if n == max_chars {
            cut = true;
            break;
        }
        push_escaped(&mut out, c, quotes);
    }
    if quotes {
        out.push('"');
    }
    if cut {
        let _ = write!(out, "… ({} bytes)", value.len());
    }
    out
}

/// How an error message shows a value: in double quotes, with `"` and `\` escaped, control and
/// invisible characters ([`is_hidden`]) written as `\n`, `\t`, `\u{202e}`, and cut after
/// [`MAX_SHOWN_CHARS`] characters with the value's full size appended. The result never holds a raw
/// control or bidirectional character and is at most about 2 KB, whatever the value.
///
/// ```
/// use pushguide_core::validate::quote;
/// assert_eq!(quote("shop"), r#""shop""#);
/// assert_eq!(quote("a\u{1b}[2J\nb"), r#""a\u{1b}[2J\nb""#);
/// assert_eq!(quote("x\u{202e}y"), r#""x\u{202e}y""#);
/// let long = "y".repeat(100_000);
/// assert!(quote(&long).ends_with("\"… (100000 bytes)"));
/// ```
pub fn quote(value: &str) -> String {
    escape_cut(value, MAX_SHOWN_CHARS, true)
}

/// Like [`quote`] without the quotes and with a limit of `max_chars` characters: for text that is
/// part of a message (a field path holding a minion id, a parser's message), not a value of its own.
///
/// ```
/// use pushguide_core::validate::clean;
/// assert_eq!(clean("line 1\nline 2", 100), r"line 1\nline 2");
/// assert_eq!(clean("abcdef", 3), "abc… (6 bytes)");
/// ```
pub fn clean(text: &str, max_chars: usize) -> String {
    escape_cut(text, max_chars, false)
}
