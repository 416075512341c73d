//! The template editor (admins only): choose a project type among the registered plugins, edit a
//! template's TOML, validate it as the CLI loads it ([`Template::from_toml_str`]), write it
//! atomically into the templates directory, keep every saved text as a revision (who, when,
//! content) with a diff against the current file, restore a revision, delete a template.
//!
//! - Names: a template name (from the URL or the text) passes [`validate::name`] before it is
//!   used: letters, digits, `.`, `_`, `-`, at most 64 bytes, no `..`; the file is always
//!   `<dir>/<name>.toml`, or the file in `<dir>` the catalog found the template in. Anything else
//!   is `400`.
//! - Concurrent edits: the form carries the revision it was opened at (`base`); a save whose base
//!   is no longer the newest revision is refused with `409` and the text sent back, so nobody's
//!   work is silently lost. Saves of one service are also serialized.
//! - Atomic write: a temporary file in the same directory, flushed to disk, renamed over the
//!   template, then the directory flushed. A failed write leaves the old file as it was and takes
//!   the revision back.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use axum::extract::{Extension, Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use pushguide_core::{registered_kinds, validate, KindInfo, Template};
use pushguide_store::RevisionWrite;
use serde::{Deserialize, Serialize};

use crate::app::{api_error, internal, with_cookies, Access, AppState, AuthSession};
use crate::catalog::CatalogEntry;
use crate::diff::{diff_lines, Op};
use crate::html::{escape, layout};
use crate::status::rfc3339;

/// Largest request body of the editor's routes: a template of
/// [`validate::MAX_TEMPLATE_BYTES`], URL-encoded, and the other fields.
pub(crate) const BODY_LIMIT: usize = 3 * validate::MAX_TEMPLATE_BYTES + 64 * 1024;
/// Characters of one error message shown.
const MAX_ERROR_CHARS: usize = 300;
/// Revisions listed.
const REVISIONS_SHOWN: usize = 500;

/// One save at a time per service (the store's base check covers several services).
static SAVE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One problem of a template text, at the path of the field it concerns (`rollout.batch`,
/// `project.context`; empty when it concerns the whole text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's path.
    pub field: String,
    /// What is wrong (escaped of control characters, cut to a few hundred characters).
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: &str) -> Self {
        FieldError {
            field: validate::clean(field, MAX_ERROR_CHARS),
            message: validate::clean(message, MAX_ERROR_CHARS),
        }
    }
}

/// Why an editor request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The template name is not one a file may be named after (`400`).
    #[error("{0}")]
    BadName(#[source] pushguide_core::Error),
    /// No such template (`404`).
    #[error("no template `{0}` in the templates directory")]
    NotFound(String),
    /// No such revision (`404`).
    #[error("template `{template}` has no revision {revision}")]
    NoRevision {
        /// The template.
        template: String,
        /// The revision asked for.
        revision: i64,
    },
    /// The text does not validate (`422`); nothing was written.
    #[error("the template does not validate ({} error(s))", .0.len())]
    Invalid(Vec<FieldError>),
    /// Someone saved the template since the editor was opened (`409`); nothing was written.
    #[error(
        "template `{template}` was saved by someone else after you opened it: revision {current} \
         is newer than the revision {base} you edited. Nothing was written; your text is kept \
         below: open the template again and apply your change to the newest revision"
    )]
    Stale {
        /// The template.
        template: String,
        /// The revision the editor was opened at.
        base: i64,
        /// The newest revision.
        current: i64,
    },
    /// The service's templates are not files it may write (`409`).
    #[error("this service's templates are read-only (no templates directory)")]
    ReadOnly,
    /// The file could not be written or removed (`500`); the old file is as it was.
    #[error("cannot write template file {file}: {source}")]
    Write {
        /// The file name inside the templates directory.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The template file could not be read (`500`).
    #[error("cannot read template file {file}: {source}")]
    Read {
        /// The file name inside the templates directory.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store or the catalog failed (`500`).
    #[error(transparent)]
    Server(#[from] crate::Error),
}

impl From<pushguide_store::Error> for EditError {
    fn from(e: pushguide_store::Error) -> Self {
        EditError::Server(e.into())
    }
}

impl EditError {
    fn status(&self) -> StatusCode {
        match self {
            EditError::BadName(_) => StatusCode::BAD_REQUEST,
            EditError::NotFound(_) | EditError::NoRevision { .. } => StatusCode::NOT_FOUND,
            EditError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EditError::Stale { .. } | EditError::ReadOnly => StatusCode::CONFLICT,
            EditError::Write { .. } | EditError::Read { .. } | EditError::Server(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            EditError::BadName(_) => "bad-name",
            EditError::NotFound(_) | EditError::NoRevision { .. } => "not-found",
            EditError::Invalid(_) => "invalid",
            EditError::Stale { .. } => "stale",
            EditError::ReadOnly => "read-only",
            EditError::Write { .. } => "write",
            EditError::Read { .. } => "read",
            EditError::Server(_) => "internal",
        }
    }

    fn api(&self) -> Response {
        if let EditError::Server(e) = self {
            return internal(Access::Api, e);
        }
        if let EditError::Write { .. } | EditError::Read { .. } = self {
            tracing::error!(error = %self, "template file access failed");
        }
        let mut body =
            serde_json::json!({"error": {"kind": self.kind(), "message": self.to_string()}});
        match self {
            EditError::Invalid(errors) => body["errors"] = serde_json::json!(errors),
            EditError::Stale { current, .. } => {
                body["current_revision"] = serde_json::json!(current)
            }
            _ => {}
        }
        with_cookies((self.status(), Json(body)).into_response(), &[])
    }

    fn page(&self, s: &AuthSession) -> Response {
        if let EditError::Server(e) = self {
            return internal(Access::Page, e);
        }
        if let EditError::Write { .. } | EditError::Read { .. } = self {
            tracing::error!(error = %self, "template file access failed");
        }
        let body = format!(
            "<h1>Template editor</h1><p role=\"alert\">{}</p><p><a href=\"/\">Templates</a></p>",
            escape(&self.to_string())
        );
        with_cookies(
            (
                self.status(),
                Html(layout("Template editor", Some(&s.viewer()), &body)),
            )
                .into_response(),
            &[],
        )
    }
}

/// Refuses a name a template file may not be named after.
pub fn check_name(name: &str) -> Result<(), EditError> {
    validate::name("template", name).map_err(EditError::BadName)
}

/// Parses and validates `text` as the CLI loads a template file; with `expected`, its `name` must
/// be that. Every problem found, at its field path.
pub fn validate_text(text: &str, expected: Option<&str>) -> Result<Template, Vec<FieldError>> {
    match Template::from_toml_str(text, "template") {
        Ok(t) => match expected {
            Some(name) if t.name != name => Err(vec![FieldError::new(
                "name",
                &format!(
                    "must stay {} (a template is renamed by creating the new one and deleting \
                     the old one), got {}",
                    validate::quote(name),
                    validate::quote(&t.name)
                ),
            )]),
            _ => Ok(t),
        },
        Err(e) => Err(vec![field_error(&e, text)]),
    }
}

fn field_error(e: &pushguide_core::Error, text: &str) -> FieldError {
    use pushguide_core::Error as E;
    match e {
        E::Invalid {
            field,
            value,
            reason,
        } => FieldError::new(field, &format!("{reason} (got {value})")),
        E::UnknownKind { field, .. } => FieldError::new(field, &e.to_string()),
        E::Parse { message, .. } => {
            let mut field = line_of(message)
                .and_then(|n| field_at_line(text, n))
                .unwrap_or_default();
            // a project type's unknown key is reported at its table: name the key too
            if let Some(key) = message
                .split_once("unknown field `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(key, _)| key)
            {
                if !field.is_empty() && !field.ends_with(&format!(".{key}")) && field != key {
                    field = format!("{field}.{key}");
                }
            }
            FieldError::new(&field, message)
        }
        other => FieldError::new("", &other.to_string()),
    }
}

/// The line number of a parser message (`line 3, column 5: …`).
fn line_of(message: &str) -> Option<usize> {
    let rest = message.strip_prefix("line ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The path of the key on line `n` (1-based) of a TOML text: the table header above it and the
/// key before `=`; the header itself when the line is one.
fn field_at_line(text: &str, n: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(n.checked_sub(1)?)?.trim();
    let header = |l: &str| -> Option<String> {
        let t = l.trim();
        t.starts_with('[').then(|| {
            t.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .split('.')
                .map(|p| p.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join(".")
        })
    };
    if let Some(h) = header(line) {
        return Some(h);
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| {
            k.split('.')
                .map(|p| p.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|k| !k.is_empty());
    let table = lines[..n - 1].iter().rev().find_map(|l| header(l));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// Writes `text` to `dir/file_name` atomically: a new temporary file in `dir`, flushed, renamed
/// over the target, then `dir` flushed. On failure the temporary file is removed and the target is
/// as it was.
pub fn write_atomic(dir: &Path, file_name: &str, text: &str) -> std::io::Result<()> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(std::io::Error::other)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // not `*.toml`: a scan of the directory never takes it for a template
    let tmp = dir.join(format!(".{file_name}.{suffix}.tmp"));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(file_name))
    })();
    if let Err(e) = written {
        if let Err(rm) = std::fs::remove_file(&tmp) {
            if rm.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %tmp.display(), error = %rm, "cannot remove a temporary file");
            }
        }
        return Err(e);
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Where a template's file is.
struct Located {
    dir: PathBuf,
    file_name: String,
}

impl Located {
    fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }
}

fn templates_dir(app: &AppState) -> Result<PathBuf, EditError> {
    app.0.catalog.dir().ok_or(EditError::ReadOnly)
}

/// The file of template `name`: the file the catalog loaded it from (inside the directory), else
/// `<name>.toml` (a file that does not load).
fn locate(app: &AppState, name: &str) -> Result<Located, EditError> {
    check_name(name)?;
    let dir = templates_dir(app)?;
    let entries = app.0.catalog.scan().map_err(crate::Error::Catalog)?;
    for e in entries {
        if let CatalogEntry::Loaded { file, template } = e {
            if template.name != name {
                continue;
            }
            let inside = file.parent() == Some(dir.as_path());
            match file.file_name().and_then(|f| f.to_str()) {
                Some(f) if inside && validate::name("file", f).is_ok() => {
                    return Ok(Located {
                        dir,
                        file_name: f.to_owned(),
                    })
                }
                _ => {
                    tracing::warn!(file = %file.display(), "a template file outside the templates directory is not edited");
                    return Err(EditError::NotFound(name.to_owned()));
                }
            }
        }
    }
    let file_name = format!("{name}.toml");
    if dir.join(&file_name).is_file() {
        Ok(Located { dir, file_name })
    } else {
        Err(EditError::NotFound(name.to_owned()))
    }
}

fn read_text(path: &Path) -> Result<String, EditError> {
    use std::io::Read as _;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let io = |source| EditError::Read {
        file: file_name.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(validate::MAX_TEMPLATE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What to save.
struct Save<'a> {
    /// The template being edited (`None`: a new one).
    editing: Option<&'a str>,
    text: String,
    /// The revision the text was edited from (`None`: new template).
    base: Option<i64>,
    action: &'static str,
    detail: String,
}

/// Validates and saves; the new revision.
async fn save(app: &AppState, s: &AuthSession, req: Save<'_>) -> Result<(String, i64), EditError> {
    if let Some(name) = req.editing {
        check_name(name)?;
    }
    if req.text.len() > validate::MAX_TEMPLATE_BYTES {
        return Err(EditError::Invalid(vec![FieldError::new(
            "",
            &format!(
                "the template is {} bytes, more than the {} allowed",
                req.text.len(),
                validate::MAX_TEMPLATE_BYTES
            ),
        )]));
    }
    let template = validate_text(&req.text, req.editing).map_err(EditError::Invalid)?;
    let name = template.name.clone();
    check_name(&name)?;
    let _one_at_a_time = SAVE_LOCK.lock().await;
    let (a, user, text, base, editing) = (
        app.clone(),
        s.user.clone(),
        req.text,
        req.base,
        req.editing.is_some(),
    );
    let n = name.clone();
    let located = blocking_edit(move || {
        let located = if editing {
            locate(&a, &n)?
        } else {
            let dir = templates_dir(&a)?;
            let file_name = format!("{n}.toml");
            let taken = dir.join(&file_name).is_file()
                || a.0
                    .catalog
                    .scan()
                    .map_err(crate::Error::Catalog)?
                    .iter()
                    .any(|e| matches!(e, CatalogEntry::Loaded { template, .. } if template.name == n));
            if taken {
                return Err(EditError::Invalid(vec![FieldError::new(
                    "name",
                    &format!("a template named {} exists already", validate::quote(&n)),
                )]));
            }
            Located { dir, file_name }
        };
        Ok(located)
    })
    .await?;
    let store = &app.0.store;
    let revision = match store
        .add_template_revision(
            &name,
            base,
            &user,
            &located.file_name,
            &text,
            SystemTime::now(),
        )
        .await?
    {
        RevisionWrite::Added(r) => r,
        RevisionWrite::Stale { current } => {
            return Err(EditError::Stale {
                template: name,
                base: base.unwrap_or_default(),
                current,
            })
        }
    };
    let written = blocking_edit(move || {
        write_atomic(&located.dir, &located.file_name, &text).map_err(|source| EditError::Write {
            file: located.file_name,
            source,
        })
    })
    .await;
    if let Err(e) = written {
        if let Err(err) = store.remove_template_revision(&name, revision).await {
            tracing::error!(error = %err, template = name, revision, "cannot take back the revision of a failed write");
        }
        return Err(e);
    }
    tracing::info!(
        user = s.user,
        template = name,
        revision,
        action = req.action,
        "template saved"
    );
    let detail = if req.detail.is_empty() {
        format!("revision {revision}")
    } else {
        format!("revision {revision} ({})", req.detail)
    };
    app.audit(s, req.action, &name, &detail).await;
    Ok((name, revision))
}

async fn blocking_edit<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EditError> + Send + 'static,
) -> Result<T, EditError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(EditError::Server(crate::Error::Task(e.to_string()))),
    }
}

async fn delete(app: &AppState, s: &AuthSession, name: &str) -> Result<(), EditError> {
    check_name(name)?;
    let _one_at_a_time = SAVE_LOCK.lock().await;
    let (a, n) = (app.clone(), name.to_owned());
    blocking_edit(move || {
        let located = locate(&a, &n)?;
        std::fs::remove_file(located.path())
            .and_then(|()| sync_dir(&located.dir))
            .map_err(|source| EditError::Write {
                file: located.file_name,
                source,
            })
    })
    .await?;
    tracing::info!(user = s.user, template = name, "template deleted");
    app.audit(s, "template.delete", name, "file removed, revisions kept")
        .await;
    Ok(())
}

/// The text of a template and the newest revision (the editor's base).
async fn current(app: &AppState, name: &str) -> Result<(Located, String, i64), EditError> {
    let (a, n) = (app.clone(), name.to_owned());
    let (located, text) = blocking_edit(move || {
        let located = locate(&a, &n)?;
        let text = read_text(&located.path())?;
        Ok((located, text))
    })
    .await?;
    let base = app.0.store.latest_template_revision(name).await?;
    Ok((located, text, base))
}

/// The revisions of `name`, newest first (kept when the template was deleted).
async fn revisions(
    app: &AppState,
    name: &str,
) -> Result<Vec<pushguide_store::TemplateRevision>, EditError> {
    check_name(name)?;
    Ok(app
        .0
        .store
        .template_revisions(name, REVISIONS_SHOWN)
        .await?)
}

async fn revision(
    app: &AppState,
    name: &str,
    number: i64,
) -> Result<pushguide_store::TemplateRevision, EditError> {
    check_name(name)?;
    app.0
        .store
        .template_revision(name, number)
        .await?
        .ok_or_else(|| EditError::NoRevision {
            template: name.to_owned(),
            revision: number,
        })
}

/// The text of the current file, or empty when the template was deleted.
async fn current_or_empty(app: &AppState, name: &str) -> Result<(String, i64), EditError> {
    match current(app, name).await {
        Ok((_, text, base)) => Ok((text, base)),
        Err(EditError::NotFound(_)) => {
            let base = app.0.store.latest_template_revision(name).await?;
            Ok((String::new(), base))
        }
        Err(e) => Err(e),
    }
}

// ---- the project types ----

/// A registered project type, as the editor offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindOffer {
    /// The `kind` tag.
    pub kind: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Supported platforms.
    pub platforms: Vec<String>,
    /// The plugin's example `[project]` table.
    pub example: &'static str,
    /// A whole template around the example: what the editor opens with.
    pub template: String,
}

/// A new template's text for `kind`: name, ACL, targets to fill in, and the plugin's example.
pub fn skeleton(kind: &KindInfo) -> String {
    format!(
        "name = \"new-{}\"\ndescription = \"\"\n\n[acl.viewers]\ngroups = []\n\n\
         [acl.deployers]\ngroups = []\n\n[targets]\nminions = [\"web-01\"]\n\n[project]\n{}",
        kind.kind, kind.example
    )
}

fn offers() -> Vec<KindOffer> {
    registered_kinds()
        .into_iter()
        .map(|k| KindOffer {
            kind: k.kind,
            summary: k.summary,
            platforms: k.platforms.iter().map(|p| p.to_string()).collect(),
            example: k.example,
            template: skeleton(k),
        })
        .collect()
}

// ---- pages ----

/// `?kind=` of the new-template page.
#[derive(Debug, Deserialize)]
pub(crate) struct KindQuery {
    kind: Option<String>,
}

/// The editor form's fields.
#[derive(Deserialize)]
pub(crate) struct SaveForm {
    /// The text as the browser sends a textarea: CRLF line ends (see [`SaveForm::text`]).
    #[serde(default, rename = "text")]
    raw_text: String,
    #[serde(default)]
    base: Option<String>,
}

impl SaveForm {
    /// The text with the line ends of the templates directory (LF).
    fn text(&self) -> String {
        self.raw_text.replace("\r\n", "\n")
    }
}

impl std::fmt::Debug for SaveForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveForm")
            .field("bytes", &self.raw_text.len())
            .field("base", &self.base)
            .finish()
    }
}

/// The base revision of a form (`0` when absent or not a number: a save on it is refused as stale
/// unless the template has no revision).
fn base_of(field: &Option<String>) -> i64 {
    field
        .as_deref()
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or(0)
}

struct EditorView<'a> {
    title: String,
    action: String,
    text: &'a str,
    base: Option<i64>,
    errors: &'a [FieldError],
    alert: Option<String>,
    name: Option<&'a str>,
}

fn editor_html(s: &AuthSession, v: &EditorView<'_>) -> String {
    let mut body = format!("<h1>{}</h1>", escape(&v.title));
    if let Some(a) = &v.alert {
        let _ = write!(body, "<p role=\"alert\">{}</p>", escape(a));
    }
    if !v.errors.is_empty() {
        body.push_str(
            "<section class=\"errors\" role=\"alert\"><h2>Not saved: the template does not \
             validate</h2><table><thead><tr><th>Field</th><th>Problem</th></tr></thead><tbody>",
        );
        for e in v.errors {
            let field = if e.field.is_empty() {
                "(whole template)"
            } else {
                &e.field
            };
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(field),
                escape(&e.message)
            );
        }
        body.push_str("</tbody></table></section>");
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\" class=\"editor\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&v.action),
        escape(s.csrf.as_str())
    );
    if let Some(b) = v.base {
        let _ = write!(body, "<input type=\"hidden\" name=\"base\" value=\"{b}\">");
    }
    let _ = write!(
        body,
        "<label for=\"text\">Template (TOML)</label>\
         <textarea id=\"text\" name=\"text\" rows=\"30\" cols=\"100\" spellcheck=\"false\">{}</textarea>\
         <button type=\"submit\">Save</button></form>",
        escape(v.text)
    );
    if let Some(name) = v.name {
        let n = escape(name);
        let _ = write!(
            body,
            "<p><a href=\"/templates/{n}/revisions\">Revisions</a></p>\
             <form method=\"post\" action=\"/templates/{n}/delete\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Delete this template</button></form>",
            escape(s.csrf.as_str())
        );
    }
    layout(&v.title, Some(&s.viewer()), &body)
}

fn page(status: StatusCode, html: String) -> Response {
    with_cookies((status, Html(html)).into_response(), &[])
}

fn see_other(to: String) -> Response {
    with_cookies(
        (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
        &[],
    )
}

/// `GET /templates/new[?kind=…]`: the registered project types, or the editor prefilled with one.
pub(crate) async fn new_page(
    Extension(s): Extension<AuthSession>,
    Query(q): Query<KindQuery>,
) -> Response {
    let kinds = offers();
    if let Some(kind) = q.kind.as_deref() {
        let Some(k) = kinds.iter().find(|k| k.kind == kind) else {
            let e = pushguide_core::unknown_kind("kind", kind);
            let body = format!(
                "<h1>New template</h1><p role=\"alert\">{}</p>",
                escape(&e.to_string())
            );
            return page(
                StatusCode::BAD_REQUEST,
                layout("New template", Some(&s.viewer()), &body),
            );
        };
        return page(
            StatusCode::OK,
            editor_html(
                &s,
                &EditorView {
                    title: format!("New {} template", k.kind),
                    action: "/templates/new".into(),
                    text: &k.template,
                    base: None,
                    errors: &[],
                    alert: None,
                    name: None,
                },
            ),
        );
    }
    let mut body = String::from(
        "<h1>New template</h1><p>Choose the project type.</p><table><thead><tr><th>Kind</th>\
         <th>Summary</th><th>Platforms</th><th>Example</th></tr></thead><tbody>",
    );
    for k in &kinds {
        let _ = write!(
            body,
            "<tr><td><a href=\"/templates/new?kind={}\">{}</a></td><td>{}</td><td>{}</td>\
             <td><pre>{}</pre></td></tr>",
            escape(k.kind),
            escape(k.kind),
            escape(k.summary),
            escape(&k.platforms.join(", ")),
            escape(k.example)
        );
    }
    if kinds.is_empty() {
        body.push_str("<tr><td colspan=\"4\">No project type is registered.</td></tr>");
    }
    body.push_str("</tbody></table>");
    page(
        StatusCode::OK,
        layout("New template", Some(&s.viewer()), &body),
    )
}

/// `POST /templates/new`.
pub(crate) async fn create_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    form: Result<Form<SaveForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "expected the editor's form\n").into_response();
    };
    let req = Save {
        editing: None,
        text: form.text(),
        base: None,
        action: "template.create",
        detail: String::new(),
    };
    match save(&app, &s, req).await {
        Ok((name, _)) => see_other(format!("/templates/{name}/revisions")),
        Err(e) => refused_editor(
            &s,
            e,
            "New template",
            "/templates/new".into(),
            &form.text(),
            None,
            None,
        ),
    }
}

fn refused_editor(
    s: &AuthSession,
    e: EditError,
    title: &str,
    action: String,
    text: &str,
    base: Option<i64>,
    name: Option<&str>,
) -> Response {
    let (errors, alert) = match &e {
        EditError::Invalid(errors) => (errors.clone(), None),
        EditError::Stale { .. } => (Vec::new(), Some(e.to_string())),
        _ => return e.page(s),
    };
    page(
        e.status(),
        editor_html(
            s,
            &EditorView {
                title: title.to_owned(),
                action,
                text,
                base,
                errors: &errors,
                alert,
                name,
            },
        ),
    )
}

/// `GET /templates/{template}/edit`.
pub(crate) async fn edit_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    match current(&app, &name).await {
        Ok((located, text, base)) => page(
            StatusCode::OK,
            editor_html(
                &s,
                &EditorView {
                    title: format!("Edit {name} ({})", located.file_name),
                    action: format!("/templates/{name}/edit"),
                    text: &text,
                    base: Some(base),
                    errors: &[],
                    alert: None,
                    name: Some(&name),
                },
            ),
        ),
        Err(e) => e.page(&s),
    }
}

/// `POST /templates/{template}/edit`.
pub(crate) async fn save_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(name): UrlPath<String>,
    form: Result<Form<SaveForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "expected the editor's form\n").into_response();
    };
    if let Err(e) = check_name(&name) {
        return e.page(&s);
    }
    let base = base_of(&form.base);
    let req = Save {
        editing: Some(&name),
        text: form.text(),
        base: Some(base),
        action: "template.save",
        detail: String::new(),
    };
    match save(&app, &s, req).await {
        Ok(_) => see_other(format!("/templates/{name}/revisions")),
        Err(e) => refused_editor(
            &s,
            e,
            &format!("Edit {name}"),
            format!("/templates/{name}/edit"),
            &form.text(),
            Some(base),
            Some(&name),
        ),
    }
}

/// `POST /templates/{template}/delete`.
pub(crate) async fn delete_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    match delete(&app, &s, &name).await {
        Ok(()) => see_other("/".into()),
        Err(e) => e.page(&s),
    }
}

/// `GET /templates/{template}/revisions`.
pub(crate) async fn revisions_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let list = match revisions(&app, &name).await {
        Ok(l) => l,
        Err(e) => return e.page(&s),
    };
    let n = escape(&name);
    let mut body = format!(
        "<h1>Revisions of {n}</h1><p><a href=\"/templates/{n}/edit\">Edit</a></p>\
         <table><thead><tr><th>Revision</th><th>Saved by</th><th>At</th><th>File</th></tr>\
         </thead><tbody>"
    );
    if list.is_empty() {
        body.push_str("<tr><td colspan=\"4\">No revision saved through the editor.</td></tr>");
    }
    for r in &list {
        let _ = write!(
            body,
            "<tr><td><a href=\"/templates/{n}/revisions/{rev}\">{rev}</a></td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&r.user),
            escape(&rfc3339(r.at)),
            escape(&r.file),
            rev = r.revision
        );
    }
    body.push_str("</tbody></table>");
    page(
        StatusCode::OK,
        layout(&format!("Revisions of {name}"), Some(&s.viewer()), &body),
    )
}

/// Unchanged lines shown around a change; longer unchanged runs are folded.
const CONTEXT: usize = 3;

fn diff_html(old: &str, new: &str) -> String {
    let d = diff_lines(old, new);
    let mut out = String::from("<pre class=\"diff\">");
    let changed: Vec<bool> = d.iter().map(|l| l.op != Op::Same).collect();
    let near = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(d.len());
        changed[lo..hi].iter().any(|c| *c)
    };
    let mut folded = false;
    for (i, l) in d.iter().enumerate() {
        if l.op == Op::Same && !near(i) {
            if !folded {
                out.push_str("<span class=\"fold\">  …</span>\n");
                folded = true;
            }
            continue;
        }
        folded = false;
        let (class, mark) = match l.op {
            Op::Same => ("same", ' '),
            Op::Removed => ("removed", '-'),
            Op::Added => ("added", '+'),
        };
        let _ = writeln!(
            out,
            "<span class=\"{class}\">{mark} {}</span>",
            escape(&l.text)
        );
    }
    if !changed.iter().any(|c| *c) {
        out.push_str("(no difference)\n");
    }
    out.push_str("</pre>");
    out
}

/// The path segments of a revision URL.
#[derive(Debug, Deserialize)]
pub(crate) struct RevisionPath {
    template: String,
    revision: i64,
}

/// `GET /templates/{template}/revisions/{revision}`: the revision against the current file.
pub(crate) async fn revision_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(p): UrlPath<RevisionPath>,
) -> Response {
    let r = match revision(&app, &p.template, p.revision).await {
        Ok(r) => r,
        Err(e) => return e.page(&s),
    };
    let (now, base) = match current_or_empty(&app, &p.template).await {
        Ok(c) => c,
        Err(e) => return e.page(&s),
    };
    let n = escape(&p.template);
    let mut body = format!(
        "<h1>{n}: revision {}</h1><p>Saved by {} at {} into {}.</p>\
         <h2>From this revision to the current file</h2>{}",
        r.revision,
        escape(&r.user),
        escape(&rfc3339(r.at)),
        escape(&r.file),
        diff_html(&r.content, &now)
    );
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/templates/{n}/revisions/{rev}/restore\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"base\" value=\"{base}\">\
         <button type=\"submit\">Restore revision {rev}</button></form>\
         <h2>Text of revision {rev}</h2><pre>{}</pre>\
         <p><a href=\"/templates/{n}/revisions\">All revisions</a></p>",
        escape(s.csrf.as_str()),
        escape(&r.content),
        rev = r.revision
    );
    page(
        StatusCode::OK,
        layout(
            &format!("{} revision {}", p.template, r.revision),
            Some(&s.viewer()),
            &body,
        ),
    )
}

/// The restore form.
#[derive(Debug, Deserialize)]
pub(crate) struct RestoreForm {
    #[serde(default)]
    base: Option<String>,
}

async fn restore(
    app: &AppState,
    s: &AuthSession,
    name: &str,
    number: i64,
    base: i64,
) -> Result<(String, i64), EditError> {
    let r = revision(app, name, number).await?;
    let editing = match current(app, name).await {
        Ok(_) => Some(name),
        // a deleted template comes back as a new one
        Err(EditError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    if editing.is_none() {
        let current = app.0.store.latest_template_revision(name).await?;
        if current != base {
            return Err(EditError::Stale {
                template: name.to_owned(),
                base,
                current,
            });
        }
    }
    save(
        app,
        s,
        Save {
            editing,
            text: r.content,
            base: editing.map(|_| base),
            action: "template.restore",
            detail: format!("restored revision {number}"),
        },
    )
    .await
}

/// `POST /templates/{template}/revisions/{revision}/restore`.
pub(crate) async fn restore_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(p): UrlPath<RevisionPath>,
    form: Result<Form<RestoreForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let base = form.map(|Form(f)| base_of(&f.base)).unwrap_or(0);
    match restore(&app, &s, &p.template, p.revision, base).await {
        Ok((name, _)) => see_other(format!("/templates/{name}/revisions")),
        Err(e) => e.page(&s),
    }
}

// ---- JSON twins ----

/// `GET /api/v1/kinds`: the registered project types with a starting template each.
pub(crate) async fn api_kinds() -> Response {
    with_cookies(Json(offers()).into_response(), &[])
}

/// The JSON body of a save.
#[derive(Deserialize)]
pub(crate) struct SaveBody {
    text: String,
    #[serde(default)]
    base_revision: Option<i64>,
}

/// The JSON body of a restore.
#[derive(Debug, Deserialize)]
pub(crate) struct RestoreBody {
    #[serde(default)]
    base_revision: i64,
}

/// What a save answers.
#[derive(Debug, Serialize)]
struct Saved {
    name: String,
    revision: i64,
}

/// One revision as the API lists it.
#[derive(Debug, Serialize)]
struct RevisionRow {
    template: String,
    revision: i64,
    user: String,
    at: String,
    file: String,
}

impl From<&pushguide_store::TemplateRevision> for RevisionRow {
    fn from(r: &pushguide_store::TemplateRevision) -> Self {
        RevisionRow {
            template: r.template.clone(),
            revision: r.revision,
            user: r.user.clone(),
            at: rfc3339(r.at),
            file: r.file.clone(),
        }
    }
}

fn bad_json(e: axum::extract::rejection::JsonRejection) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad-request", &e.body_text())
}

/// `POST /api/v1/templates/new` (`{"text": …}`): `201` with the name and revision.
pub(crate) async fn api_create(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    body: Result<Json<SaveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return bad_json(e),
    };
    let req = Save {
        editing: None,
        text: body.text,
        base: None,
        action: "template.create",
        detail: String::new(),
    };
    match save(&app, &s, req).await {
        Ok((name, revision)) => with_cookies(
            (StatusCode::CREATED, Json(Saved { name, revision })).into_response(),
            &[],
        ),
        Err(e) => e.api(),
    }
}

/// `GET /api/v1/templates/{template}/source`: the file's text and the newest revision.
pub(crate) async fn api_source(
    State(app): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    match current(&app, &name).await {
        Ok((located, text, revision)) => with_cookies(
            Json(serde_json::json!({
                "name": name, "file": located.file_name, "text": text, "revision": revision
            }))
            .into_response(),
            &[],
        ),
        Err(e) => e.api(),
    }
}

/// `POST /api/v1/templates/{template}/source` (`{"text": …, "base_revision": n}`).
pub(crate) async fn api_save(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<SaveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return bad_json(e),
    };
    if let Err(e) = check_name(&name) {
        return e.api();
    }
    let req = Save {
        editing: Some(&name),
        text: body.text,
        base: Some(body.base_revision.unwrap_or(0)),
        action: "template.save",
        detail: String::new(),
    };
    match save(&app, &s, req).await {
        Ok((name, revision)) => with_cookies(Json(Saved { name, revision }).into_response(), &[]),
        Err(e) => e.api(),
    }
}

/// `POST /api/v1/templates/{template}/delete`.
pub(crate) async fn api_delete(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    match delete(&app, &s, &name).await {
        Ok(()) => with_cookies(
            Json(serde_json::json!({"name": name, "deleted": true})).into_response(),
            &[],
        ),
        Err(e) => e.api(),
    }
}

/// `GET /api/v1/templates/{template}/revisions`.
pub(crate) async fn api_revisions(
    State(app): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    match revisions(&app, &name).await {
        Ok(list) => with_cookies(
            Json(list.iter().map(RevisionRow::from).collect::<Vec<_>>()).into_response(),
            &[],
        ),
        Err(e) => e.api(),
    }
}

/// `GET /api/v1/templates/{template}/revisions/{revision}`: the revision, its text and the diff
/// from it to the current file.
pub(crate) async fn api_revision(
    State(app): State<AppState>,
    UrlPath(p): UrlPath<RevisionPath>,
) -> Response {
    let r = match revision(&app, &p.template, p.revision).await {
        Ok(r) => r,
        Err(e) => return e.api(),
    };
    let (now, current_revision) = match current_or_empty(&app, &p.template).await {
        Ok(c) => c,
        Err(e) => return e.api(),
    };
    let mut v = serde_json::json!(RevisionRow::from(&r));
    v["content"] = serde_json::json!(r.content);
    v["current_revision"] = serde_json::json!(current_revision);
    v["diff"] = serde_json::json!(diff_lines(&r.content, &now));
    with_cookies(Json(v).into_response(), &[])
}

/// `POST /api/v1/templates/{template}/revisions/{revision}/restore` (`{"base_revision": n}`).
pub(crate) async fn api_restore(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    UrlPath(p): UrlPath<RevisionPath>,
    body: Result<Json<RestoreBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return bad_json(e),
    };
    match restore(&app, &s, &p.template, p.revision, body.base_revision).await {
        Ok((name, revision)) => with_cookies(Json(Saved { name, revision }).into_response(), &[]),
        Err(e) => e.api(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn field_paths_come_from_the_line_of_a_parse_error() {
        let text =
            "name = \"a\"\n[targets]\nminions = [\"w\"]\n[project]\nkind = \"x\"\ncolour = 1\n";
        assert_eq!(field_at_line(text, 1).as_deref(), Some("name"));
        assert_eq!(field_at_line(text, 2).as_deref(), Some("targets"));
        assert_eq!(field_at_line(text, 6).as_deref(), Some("project.colour"));
        assert_eq!(
            field_at_line("[a.\"b\"]\nc.d = 1\n", 2).as_deref(),
            Some("a.b.c.d")
        );
        assert_eq!(field_at_line(text, 99), None);
        assert_eq!(field_at_line(text, 0), None);
        assert_eq!(line_of("line 12, column 3: oops"), Some(12));
        assert_eq!(line_of("no line"), None);
    }

    #[test]
    fn names_that_would_leave_the_directory_are_refused() {
        for bad in [
            "..",
            "../etc",
            "a/b",
            "a\\b",
            "a\0b",
            ".hidden",
            "",
            "shop\u{202e}",
            "ünï",
            &"x".repeat(65),
            "a..b",
        ] {
            assert!(
                matches!(check_name(bad), Err(EditError::BadName(_))),
                "{bad:?}"
            );
        }
        for good in ["shop", "shop-web_2.prod", "A1"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn an_atomic_write_replaces_the_file_or_leaves_it_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a.toml", "one").unwrap();
        write_atomic(dir.path(), "a.toml", "two").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.toml")).unwrap(),
            "two"
        );
        // the target is a directory that is not empty: the rename fails
        std::fs::create_dir(dir.path().join("b.toml")).unwrap();
        std::fs::write(dir.path().join("b.toml").join("keep"), "k").unwrap();
        let e = write_atomic(dir.path(), "b.toml", "three").unwrap_err();
        assert_ne!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.toml", "b.toml"]);
        // a directory that is gone
        let gone = dir.path().join("gone");
        assert!(write_atomic(&gone, "c.toml", "x").is_err());
        assert!(!gone.exists());
    }
}
