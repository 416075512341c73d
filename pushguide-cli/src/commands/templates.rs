//! `kinds`, `templates` and `versions`: what can be deployed.

use crate::app::App;
use crate::error::CliError;
use crate::results::{KindRow, TemplateRow, VersionsResult};

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
        .iter()
        .filter_map(|t| TemplateRow::viewable(&t.file, &t.template, app.principal()))
        .collect();
    rows.extend(
        broken
            .iter()
            .map(|b| TemplateRow::broken(&b.file, &b.error)),
    );
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
