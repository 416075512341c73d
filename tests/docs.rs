//! Every TOML example of the documentation parses: each ```toml block of `README.md`, `*/README.md`
//! and `*/docs.md`. A block with a `[project]` table or a `name` is a template (parsed and validated
//! with the bundled kinds linked); a block with `store` or `[salt]` is a CLI config
//! (`pushguide_cli::config::Config::parse`); a block marked ```toml fragment is parsed as plain TOML.
//! Any other block fails, as does every block that does not parse: the message names the file and line.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use pushguide::Template;

/// One fenced block: file, line of its opening fence, info string, text.
struct Block {
    file: PathBuf,
    line: usize,
    info: String,
    text: String,
}

fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("target") && !p.ends_with(".git"))
        .collect();
    dirs.sort();
    for d in dirs {
        for name in ["README.md", "docs.md"] {
            let f = d.join(name);
            if f.is_file() {
                files.push(f);
            }
        }
    }
    files
}

fn toml_blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(b) => {
                    if b.info.split_whitespace().next() == Some("toml") {
                        out.push(b);
                    }
                }
                None => {
                    open = Some(Block {
                        file: file.to_owned(),
                        line: i + 1,
                        info: info.trim().to_owned(),
                        text: String::new(),
                    })
                }
            }
        } else if let Some(b) = open.as_mut() {
            b.text.push_str(line);
            b.text.push('\n');
        }
    }
    assert!(
        open.is_none(),
        "{}: a fenced block is never closed",
        file.display()
    );
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Template,
    Config,
    Fragment,
}

fn check(b: &Block) -> Result<Kind, String> {
    if b.info.split_whitespace().any(|w| w == "fragment") {
        return toml::from_str::<toml::Table>(&b.text)
            .map(|_| Kind::Fragment)
            .map_err(|e| e.to_string());
    }
    let table: toml::Table = toml::from_str(&b.text).map_err(|e| e.to_string())?;
    if table.contains_key("project") || table.contains_key("name") {
        let t = Template::from_toml_str(&b.text, "<doc>").map_err(|e| e.to_string())?;
        t.project.build().map_err(|e| e.to_string())?;
        return Ok(Kind::Template);
    }
    if table.contains_key("store") || table.contains_key("salt") {
        let file = b.file.with_file_name("pushguide.toml");
        pushguide_cli::config::Config::parse(&b.text, &file).map_err(|e| e.to_string())?;
        return Ok(Kind::Config);
    }
    Err(
        "neither a template (`[project]`, `name`) nor a CLI config (`store`, `[salt]`): \
         mark a partial example ```toml fragment"
            .to_owned(),
    )
}

#[test]
fn every_toml_example_in_the_docs_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let mut kinds = Vec::new();
    // the complete `[ci] type = "maven"` example is one of the configs parsed
    let mut maven = Vec::new();
    for file in doc_files(root) {
        for b in toml_blocks(&file) {
            let at = format!(
                "{}:{}",
                b.file.strip_prefix(root).unwrap_or(&b.file).display(),
                b.line
            );
            match check(&b) {
                Ok(Kind::Config) if b.text.contains("type = \"maven\"") => {
                    maven.push(at.clone());
                    kinds.push((at, Kind::Config));
                }
                Ok(k) => kinds.push((at, k)),
                Err(e) => failures.push(format!("{at}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "broken TOML examples:\n{}",
        failures.join("\n")
    );
    // the examples this test exists for are found (a moved file would otherwise pass silently)
    let found = |file: &str, kind: Kind| {
        kinds
            .iter()
            .any(|(at, k)| at.starts_with(&format!("{file}:")) && *k == kind)
    };
    assert!(found("README.md", Kind::Template), "{kinds:?}");
    assert!(found("pushguide-cli/README.md", Kind::Config), "{kinds:?}");
    assert!(
        maven.iter().any(|at| at.starts_with("README.md:")),
        "no config example with [ci] type = \"maven\" in README.md: {kinds:?}"
    );
    for f in [
        "pushguide-java/docs.md",
        "pushguide-dotnet/docs.md",
        "pushguide-wintask/docs.md",
    ] {
        assert!(found(f, Kind::Template), "{f}: {kinds:?}");
    }
}

/// The checker itself: a broken block fails with its file and line, an unmarked fragment fails, a
/// marked one passes.
#[test]
fn a_broken_example_is_reported_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("pushguide-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("README.md");
    std::fs::write(
        &file,
        "# x\n\n```toml\nname = \"a\"\n[targets]\nminions = [\"w\"]\n[project]\nkind = \"java-tomcat\"\nwebapps = \"/x\"\n```\n\n\
         ```toml\n[health]\nretries = 1\n```\n\n```toml fragment\n[health]\nretries = 1\n```\n",
    )
    .unwrap();
    let blocks = toml_blocks(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        blocks.iter().map(|b| b.line).collect::<Vec<_>>(),
        [3, 12, 17]
    );
    let err = check(&blocks[0]).unwrap_err();
    assert!(err.contains("webapps"), "{err}");
    assert!(check(&blocks[1]).unwrap_err().contains("fragment"));
    assert_eq!(check(&blocks[2]).unwrap(), Kind::Fragment);
}
