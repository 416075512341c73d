//! `kinds`, `templates` and `versions`: what can be deployed.

use std::path::Path;

use crate::app::App;
use crate::error::CliError;
use crate::results::{KindRow, TemplateRow, VersionsResult};

use super::kind_of;
use super::targets_text;

/// `kinds`.
pub fn kinds() -> Vec<KindRow> {
    pushguide_core::registered_kinds()
        .into_iter()
        .map(|k| KindRow {
            kind: k.kind.to_owned(),
            summary: k.summary.to_owned(),
            platforms: k.platforms.iter().map(ToString::to_string).collect(),
            example: k.example.to_owned(),
        })
        .collect()
}

/// `templates`: those the user may view, then the files that do not load.
pub fn templates(app: &App) -> Result<Vec<TemplateRow>, CliError> {
    let (good, broken) = app.scan_templates()?;
    let mut rows: Vec<TemplateRow> = good
        .into_iter()
        .filter(|t| t.template.acl.may_view(app.principal()))
        .map(|t| TemplateRow {
            name: t.template.name.clone(),
            description: t.template.description.clone(),
            kind: kind_of(&t.template),
            targets: targets_text(&t.template),
            may_deploy: t.template.acl.may_deploy(app.principal()),
            file: t.file.display().to_string(),
            error: None,
        })
        .collect();
    rows.extend(broken.into_iter().map(|b| {
        TemplateRow {
            name: Path::new(&b.file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            description: String::new(),
            kind: String::new(),
            targets: String::new(),
            may_deploy: false,
            file: b.file,
            error: Some(b.error),
        }
    }));
    Ok(rows)
}

/// `versions TEMPLATE`.
pub async fn versions(app: &App, name: &str) -> Result<VersionsResult, CliError> {
    let t = app.template(name)?;
    app.check_view(&t)?;
    let source = app.artifact_source()?.ok_or_else(|| CliError::NoCiSource {
        file: app.config.file.display().to_string(),
        command: "versions".into(),
    })?;
    Ok(VersionsResult {
        template: name.to_owned(),
        source: source.name().to_owned(),
        versions: source.versions(name).await?,
    })
}
