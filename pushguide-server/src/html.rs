//! The HTML pages, built as strings: every value reaches a page through [`escape`].

use std::fmt::Write;

use crate::status::TemplateStatus;

/// `text` safe inside HTML text and inside a double- or single-quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one URL path segment: everything but unreserved characters percent-encoded.
pub(crate) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The logged-in user, as every page's header shows them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Viewer<'a> {
    /// The user name.
    pub(crate) user: &'a str,
    /// The session's CSRF token (for the page's forms).
    pub(crate) csrf: &'a str,
    /// Whether the user is an admin (the header links the admin page).
    pub(crate) admin: bool,
}

/// The header's links: path, label, admin only.
const NAV: &[(&str, &str, bool)] = &[
    ("/", "Templates", false),
    ("/history", "History", false),
    ("/stats", "Statistics", false),
    ("/monitor", "Monitor", false),
    ("/account/tokens", "API tokens", false),
    ("/templates/new", "New template", true),
    ("/admin", "Admin", true),
];

/// A whole page: `title`, the header (links and log-out form when a user is logged in) and `body`
/// (HTML built by the caller, every value escaped).
pub(crate) fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · pushguide</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         </head><body><header><strong>pushguide</strong>",
        escape(title)
    );
    if let Some(v) = viewer {
        page.push_str("<nav>");
        for (href, label, admin_only) in NAV {
            if *admin_only && !v.admin {
                continue;
            }
            let _ = write!(page, "<a href=\"{href}\">{label}</a>");
        }
        let _ = write!(
            page,
            "</nav><span class=\"who\">{}</span><form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            escape(v.user),
            escape(v.csrf)
        );
    }
    let _ = writeln!(page, "</header><main>{body}</main></body></html>");
    page
}

/// The login form, with the pre-session CSRF token and an optional error line.
pub(crate) fn login(csrf: &str, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Log in</h1>");
    if let Some(e) = error {
        let _ = write!(body, "<p role=\"alert\">{}</p>", escape(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>User <input name=\"user\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Log in</button></form>",
        escape(csrf)
    );
    layout("Log in", None, &body)
}

/// The templates page.
pub(crate) fn templates(viewer: &Viewer<'_>, rows: &[TemplateStatus]) -> String {
    let mut body = String::from(
        "<h1>Templates</h1><table><thead><tr><th>Template</th><th>Kind</th><th>Targets</th>\
         <th>Last deployment</th><th>Outcome</th><th>Running</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"6\">No template you may view.</td></tr>");
    }
    for r in rows {
        let t = &r.template;
        // admins edit a template (or fix a broken file) from its row
        let edit = if viewer.admin && crate::editor::check_name(&t.name).is_ok() {
            format!(" <a href=\"/templates/{}/edit\">edit</a>", escape(&t.name))
        } else {
            String::new()
        };
        if let Some(error) = &t.error {
            let _ = write!(
                body,
                "<tr class=\"broken\"><td>{}{edit}<br><small>{}</small></td>\
                 <td colspan=\"5\">does not load: {}</td></tr>",
                escape(&t.name),
                escape(&t.file),
                escape(error)
            );
            continue;
        }
        let (last, outcome) = match &r.last_deployment {
            Some(d) => (
                format!("{} {}", d.version, d.started),
                d.outcome.clone().unwrap_or_else(|| "running".into()),
            ),
            None => ("never".into(), String::new()),
        };
        let running = r
            .running
            .iter()
            .map(|v| {
                format!(
                    "{} on {} host{}{}",
                    v.version.as_deref().unwrap_or("unknown"),
                    v.hosts,
                    if v.hosts == 1 { "" } else { "s" },
                    if v.healthy { "" } else { " (failed)" }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = write!(
            body,
            "<tr><td>{}{edit}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&t.name),
            escape(&t.description),
            escape(&t.kind),
            escape(&t.targets),
            escape(&last),
            escape(&outcome),
            escape(&running)
        );
    }
    body.push_str("</tbody></table>");
    layout("Templates", Some(viewer), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
        let page = login("\"><script>", Some("<b>"));
        assert!(
            !page.contains("<script>") && !page.contains("<b>"),
            "{page}"
        );
    }
}
