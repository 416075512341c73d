//! `stats`: success rates, durations and failures over a window of days.

use std::time::{Duration, SystemTime};

use pushguide_store::Window;

use crate::app::App;
use crate::config::UtcOffset;
use crate::error::CliError;
use crate::results::StatsResult;

/// `stats [TEMPLATE] [--since DAYS] [--tz OFFSET]`: over one template, or every template the user
/// may view.
pub async fn stats(
    app: &mut App,
    template: Option<&str>,
    days: u64,
    tz: Option<&str>,
) -> Result<StatsResult, CliError> {
    let tz = match tz {
        Some(text) => UtcOffset::parse(text).map_err(|e| CliError::Usage(format!("--tz: {e}")))?,
        None => app.config.stats_tz,
    };
    let visible: Vec<String> = match template {
        Some(n) => {
            let t = app.template(n)?;
            app.check_view(&t)?;
            vec![t.template.name]
        }
        None => app
            .templates()?
            .into_iter()
            .filter(|t| t.template.acl.may_view(app.principal()))
            .map(|t| t.template.name)
            .collect(),
    };
    let to = SystemTime::now() + Duration::from_secs(1);
    let from = to
        .checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let w = Window::new(from, to)
        .templates(visible.iter().cloned())
        .utc_offset(tz.seconds);
    let s = app.server_store().await?.stats(&w).await?;
    Ok(StatsResult::new(
        template.map(str::to_owned),
        visible,
        &w,
        tz.to_string(),
        s,
    ))
}
