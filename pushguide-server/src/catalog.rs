//! Where templates come from, and the row each one is listed as (shared with `pushguide templates`).

use std::path::Path;

use pushguide_core::{Action, Principal, Template};
use serde::Serialize;

/// A template as listed by `pushguide templates --json` and `GET /api/v1/templates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateRow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Project type.
    pub kind: String,
    /// Minion list or target expression.
    pub targets: String,
    /// Whether the user may deploy it.
    pub may_deploy: bool,
    /// The file.
    pub file: String,
    /// Why the file does not load (`null` for a good template). A broken file is listed with its
    /// file name (without `.toml`) as name, empty kind, description and targets, and no deploy
    /// permission; the other templates are listed as usual.
    pub error: Option<String>,
}

impl TemplateRow {
    /// The row of `template` (loaded from `file`) for `who`; `None` when `who` may not view it.
    pub fn viewable(file: &Path, template: &Template, who: &Principal) -> Option<Self> {
        if !template.acl.allows(who, Action::View) {
            return None;
        }
        Some(TemplateRow {
            name: template.name.clone(),
            description: template.description.clone(),
            kind: kind_of(template),
            targets: targets_text(template),
            may_deploy: template.acl.allows(who, Action::Deploy),
            file: file.display().to_string(),
            error: None,
        })
    }

    /// The row of a template `file` that does not load, with why.
    pub fn broken(file: &str, error: &str) -> Self {
        TemplateRow {
            name: Path::new(file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            description: String::new(),
            kind: String::new(),
            targets: String::new(),
            may_deploy: false,
            file: file.to_owned(),
            error: Some(error.to_owned()),
        }
    }
}

/// A template's project type (`java`, `dotnet`, …), `?` when it names none.
pub fn kind_of(t: &Template) -> String {
    serde_json::to_value(&t.project)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// A template's targets in one line: the expression and its type, or the minion list.
pub fn targets_text(t: &Template) -> String {
    match &t.targets.expression {
        Some(e) => format!(
            "{} ({})",
            e,
            t.targets.tgt_type.map(|x| x.as_str()).unwrap_or("glob")
        ),
        None => t.targets.minions.join(","),
    }
}

/// One template file as a [`Catalog`] found it.
#[derive(Debug)]
pub enum CatalogEntry {
    /// A template that loads.
    Loaded {
        /// Its file.
        file: std::path::PathBuf,
        /// The template.
        template: Box<Template>,
    },
    /// A file that does not load.
    Broken {
        /// The file.
        file: String,
        /// Why (one line).
        error: String,
    },
}

/// Why a [`Catalog`] could not list templates (the templates directory cannot be read).
pub type CatalogError = Box<dyn std::error::Error + Send + Sync>;

/// The templates the service lists: `pushguide serve` reads its templates directory on every
/// request (as each CLI command does), so an edited file shows at once.
pub trait Catalog: Send + Sync + 'static {
    /// Every template file, loaded or broken, sorted by name (broken files last).
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError>;

    /// The directory the templates are files in, for the template editor: it writes
    /// `<dir>/<name>.toml` (atomically) and removes such files. `None` (the default): the catalog
    /// is read-only and the editor refuses to save.
    fn dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}
