//! `plan`, and what `plan` and `deploy` share: the version resolved into an artifact, the
//! `--batch` override.

use std::sync::Arc;

use pushguide_core::{Plan, Request, Threshold};

use crate::app::App;
use crate::error::CliError;

/// Resolves `version` from the CI source (when configured) into an artifact; an unknown version is
/// [`CliError::UnknownVersion`].
pub(crate) async fn artifact(
    app: &App,
    template: &str,
    version: &str,
) -> Result<Option<pushguide_core::Artifact>, CliError> {
    let Some(source) = app.artifact_source()? else {
        return Ok(None);
    };
    match source.resolve(template, version).await {
        Ok(a) => Ok(Some(a)),
        Err(
            pushguide_sources::Error::VersionNotFound { .. }
            | pushguide_sources::Error::TemplateNotFound { .. },
        ) => {
            let known = source
                .versions(template)
                .await
                .map(|v| v.into_iter().take(5).collect())
                .unwrap_or_default();
            Err(CliError::UnknownVersion {
                template: template.to_owned(),
                version: version.to_owned(),
                source_name: source.name().to_owned(),
                known,
            })
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn parse_batch(s: &str) -> Result<Threshold, CliError> {
    let v = match s.trim().parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(s.trim().to_owned()),
    };
    let t: Threshold = v.try_into().map_err(|e: toml::de::Error| {
        CliError::Usage(format!(
            "--batch {}: {} (give a count like 2 or a percentage like 25%)",
            pushguide_core::validate::quote(s),
            pushguide_core::validate::clean(e.message(), 300)
        ))
    })?;
    Ok(t)
}

/// `plan TEMPLATE VERSION`.
pub async fn plan(app: &mut App, name: &str, version: &str) -> Result<Plan, CliError> {
    let t = app.template(name)?;
    app.check_view(&t)?;
    let artifact = artifact(app, name, version).await?;
    let t = app.with_cmdb(t).await?;
    app.connect().await?;
    let engine = app.engine()?;
    let mut req = Request::new(Arc::new(t.template), version, app.principal().clone());
    if let Some(a) = artifact {
        req = req.artifact(a);
    }
    Ok(engine.plan(&req).await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batch_override_parses_counts_and_percentages() {
        assert!(parse_batch("2").is_ok());
        assert!(parse_batch("25%").is_ok());
        let e = parse_batch("lots").unwrap_err().to_string();
        assert!(e.contains("--batch") && e.contains("lots"), "{e}");
    }
}
