//! A small XML reader for `maven-metadata.xml`: elements, text, comments, CDATA, the XML
//! declaration. Nothing is expanded: a DOCTYPE (and with it any entity declaration) is refused,
//! and only the five predefined entities and character references are decoded, so neither a
//! "billion laughs" document nor an external entity can make it read or allocate more than the
//! document itself.

/// Deepest element nesting accepted (maven-metadata.xml needs 5).
const MAX_DEPTH: usize = 32;

/// One element: its local name (namespace prefix dropped), its text and its children.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The first child called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children called `name`.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the child at `path` (`["versioning", "release"]`), if any.
    pub(crate) fn text_at(&self, path: &[&str]) -> Option<&str> {
        let mut e = self;
        for p in path {
            e = e.child(p)?;
        }
        Some(e.text.trim())
    }
}

/// Parses `doc` into its root element. The error says what is wrong and at which byte.
pub(crate) fn parse(doc: &str) -> Result<Element, String> {
    let b = doc.as_bytes();
    let mut i = 0;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    // a byte-order mark is allowed before anything else
    if doc.starts_with('\u{feff}') {
        i = 3;
    }
    while i < b.len() {
        let rest = &doc[i..];
        if rest.starts_with("<?") {
            i += find(rest, "?>", i)? + 2;
        } else if rest.starts_with("<!--") {
            i += find(rest, "-->", i)? + 3;
        } else if rest.starts_with("<![CDATA[") {
            let end = find(rest, "]]>", i)?;
            match stack.last_mut() {
                Some(top) => top.text.push_str(&rest[9..end]),
                None => {
                    return Err(format!(
                        "character data outside the root element at byte {i}"
                    ))
                }
            }
            i += end + 3;
        } else if rest.starts_with("<!") {
            let head = &rest.as_bytes()[2..];
            let starts = |w: &[u8]| {
                head.get(..w.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(w))
            };
            let what = if starts(b"DOCTYPE") {
                "a DOCTYPE"
            } else if starts(b"ENTITY") {
                "an ENTITY declaration"
            } else {
                "a markup declaration"
            };
            return Err(format!(
                "{what} at byte {i}: DOCTYPE and entity declarations are refused \
                 (entity expansion, external entities)"
            ));
        } else if let Some(tail) = rest.strip_prefix("</") {
            let end = find(tail, ">", i)?;
            let name = local(tail[..end].trim_end());
            let Some(done) = stack.pop() else {
                return Err(format!(
                    "closing tag </{name}> without an open element at byte {i}"
                ));
            };
            if done.name != name {
                return Err(format!(
                    "closing tag </{name}> at byte {i} does not match <{}>",
                    done.name
                ));
            }
            close(&mut stack, &mut root, done, i)?;
            i += 2 + end + 1;
        } else if let Some(tail) = rest.strip_prefix('<') {
            let (len, name, empty) = start_tag(tail, i)?;
            if stack.len() >= MAX_DEPTH {
                return Err(format!(
                    "elements nested deeper than {MAX_DEPTH} at byte {i}"
                ));
            }
            let e = Element {
                name,
                ..Element::default()
            };
            if empty {
                close(&mut stack, &mut root, e, i)?;
            } else {
                stack.push(e);
            }
            i += 1 + len;
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            match stack.last_mut() {
                Some(top) => decode_into(text, &mut top.text, i)?,
                None if text.trim().is_empty() => {}
                None => return Err(format!("text outside the root element at byte {i}")),
            }
            i += end;
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("the document ends inside <{}>", open.name));
    }
    root.ok_or_else(|| "no root element".to_owned())
}

fn find(rest: &str, needle: &str, at: usize) -> Result<usize, String> {
    rest.find(needle)
        .ok_or_else(|| format!("unterminated markup at byte {at} (no `{needle}`)"))
}

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or(name).to_owned()
}

fn close(
    stack: &mut [Element],
    root: &mut Option<Element>,
    e: Element,
    at: usize,
) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None if root.is_none() => *root = Some(e),
        None => return Err(format!("a second root element <{}> at byte {at}", e.name)),
    }
    Ok(())
}

/// Reads a start tag after its `<`: its length up to and including `>`, the local name, and
/// whether it is empty (`<a/>`). Attributes are skipped (their values may hold `>`).
fn start_tag(tail: &str, at: usize) -> Result<(usize, String, bool), String> {
    let b = tail.as_bytes();
    let name_end = tail
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .ok_or_else(|| format!("unterminated tag at byte {at}"))?;
    let name = &tail[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(format!("bad element name at byte {at}"));
    }
    let mut j = name_end;
    let mut quote: Option<u8> = None;
    while j < b.len() {
        match (quote, b[j]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), b'&') => {
                // an attribute value is not used, but an entity in it is refused all the same
                let end = tail[j..]
                    .find(';')
                    .ok_or_else(|| format!("bad entity reference at byte {}", at + j))?;
                entity(&tail[j + 1..j + end], at + j)?;
            }
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b[j]),
            (None, b'>') => return Ok((j + 1, local(name), false)),
            (None, b'/') if b.get(j + 1) == Some(&b'>') => return Ok((j + 2, local(name), true)),
            (None, b'<') => return Err(format!("`<` inside a tag at byte {}", at + j)),
            (None, _) => {}
        }
        j += 1;
    }
    Err(format!("unterminated tag at byte {at}"))
}

/// Appends `text` with its entity and character references decoded.
fn decode_into(text: &str, out: &mut String, at: usize) -> Result<(), String> {
    let mut rest = text;
    let mut pos = at;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after
            .find(';')
            .filter(|&e| e <= 12)
            .ok_or_else(|| format!("bad entity reference at byte {}", pos + amp))?;
        out.push(entity(&after[..end], pos + amp)?);
        rest = &after[end + 1..];
        pos += amp + 1 + end + 1;
    }
    out.push_str(rest);
    Ok(())
}

fn entity(name: &str, at: usize) -> Result<char, String> {
    let c = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
            .ok()
            .and_then(char::from_u32),
        n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
        _ => {
            return Err(format!(
                "undefined entity &{}; at byte {at} (only the predefined entities are read)",
                name.escape_debug()
            ))
        }
    };
    c.ok_or_else(|| {
        format!(
            "bad character reference &{}; at byte {at}",
            name.escape_debug()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metadata_shapes() {
        let doc = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->\n\
                   <metadata modelVersion=\"1.1.0\" a='x>y'><groupId>com.example</groupId>\
                   <versioning><versions><version>1.0</version><version> 1.1 </version>\
                   <version><![CDATA[2.0]]></version></versions><lastUpdated/></versioning>\
                   <x:y xmlns:x=\"u\">a&amp;b&#65;&#x42;</x:y></metadata>\n";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "metadata");
        assert_eq!(root.text_at(&["groupId"]), Some("com.example"));
        let versions: Vec<&str> = root
            .child("versioning")
            .unwrap()
            .child("versions")
            .unwrap()
            .all("version")
            .map(|v| v.text.trim())
            .collect();
        assert_eq!(versions, ["1.0", "1.1", "2.0"]);
        assert_eq!(root.text_at(&["y"]), Some("a&bAB"));
    }

    #[test]
    fn refuses_doctype_entities_and_broken_documents() {
        let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                      <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;\">]>\n<metadata>&lol2;</metadata>";
        let e = parse(laughs).unwrap_err();
        assert!(e.contains("DOCTYPE") && e.contains("refused"), "{e}");
        let e = parse("<metadata>&xxe;</metadata>").unwrap_err();
        assert!(e.contains("undefined entity &xxe;"), "{e}");
        let e = parse("<metadata a=\"&xxe;\"/>").unwrap_err();
        assert!(e.contains("&xxe;"), "{e}");
        for (bad, says) in [
            ("", "no root"),
            ("<a>", "ends inside"),
            ("<a></b>", "does not match"),
            ("<a/><b/>", "second root"),
            ("text", "outside the root"),
            ("<a>&#xD800;</a>", "bad character reference"),
            ("<a><!ENTITY x \"y\"></a>", "ENTITY"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(&deep).unwrap_err().contains("nested deeper"));
    }
}
