//! A minimal HTTP/1.1 server side: request parsing (Content-Length or chunked bodies, keep-alive) and
//! response writing. Only what salt-api clients send; anything else is a 400.

use std::io;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head (request line + headers).
const HEAD_MAX: usize = 64 * 1024;
/// Largest request body.
const BODY_MAX: usize = 16 * 1024 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: String,
    /// The path without the query string.
    pub(super) path: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    /// When the server started on the request (after any injected latency): simulated fleet latency
    /// counts from here.
    pub(super) received: std::time::Instant,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked to close the connection after this exchange.
    pub(super) fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Reads one line (without its `\r\n`), counting it against `budget`. `None` at a clean EOF.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    budget: &mut usize,
) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget || !line.ends_with(b"\n") {
        return Err(bad("request head too long or truncated"));
    }
    *budget -= n;
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad("request head is not UTF-8"))
}

/// Reads the next request of a connection; `Ok(None)` when the client closed it between requests.
pub(super) async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<Request>> {
    let mut budget = HEAD_MAX;
    let line = loop {
        match read_line(r, &mut budget).await? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // tolerate stray CRLF between requests
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        let Some(h) = read_line(r, &mut budget).await? else {
            return Err(bad("connection closed inside the request head"));
        };
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').ok_or_else(|| bad("malformed header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut req = Request {
        method: method.to_owned(),
        path,
        headers,
        body: Vec::new(),
        received: std::time::Instant::now(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(r).await?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if len > BODY_MAX {
            return Err(bad("request body too large"));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        req.body = body;
    }
    Ok(Some(req))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = HEAD_MAX;
        let size_line = read_line(r, &mut budget)
            .await?
            .ok_or_else(|| bad("connection closed inside a chunked body"))?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // trailers, then a blank line
            while let Some(l) = read_line(r, &mut budget).await? {
                if l.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > BODY_MAX {
            return Err(bad("request body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).await?;
    }
}

/// A complete (non-streaming) response.
#[derive(Debug, Clone)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    /// A JSON answer.
    pub(super) fn json(status: u16, v: &Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: v.to_string().into_bytes(),
        }
    }

    /// CherryPy's HTML error page with `message` in its `<p>`, as salt-api sends for 4xx and 5xx.
    pub(super) fn html_error(status: u16, message: &str) -> Self {
        let title = format!("{status} {}", reason(status));
        let body = format!(
            "<!DOCTYPE html PUBLIC\n\"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
             \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html>\n<head>\n    \
             <meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></meta>\n    \
             <title>{title}</title>\n</head>\n    <body>\n        <h2>{title}</h2>\n        \
             <p>{}</p>\n        <pre id=\"traceback\"></pre>\n    <div id=\"powered_by\">\n      \
             <span>\n        Powered by pushguide's fake salt-api\n      </span>\n    </div>\n    \
             </body>\n</html>\n",
            html_escape(message)
        );
        Response {
            status,
            content_type: "text/html;charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The reason phrase of the statuses the fake sends.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Writes `resp` with a Content-Length (and `Connection: close` when `close`).
pub(super) async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    resp: &Response,
    close: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: pushguide-fake-salt-api\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    w.write_all(&out).await?;
    w.flush().await
}

/// Writes the head of a chunked `text/event-stream` response.
pub(super) async fn write_sse_head<W: AsyncWrite + Unpin>(w: &mut W) -> io::Result<()> {
    w.write_all(
        b"HTTP/1.1 200 OK\r\nServer: pushguide-fake-salt-api\r\n\
          Content-Type: text/event-stream;charset=utf-8\r\nCache-Control: no-cache\r\n\
          Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await?;
    w.flush().await
}

/// Writes one chunk of a chunked body.
pub(super) async fn write_chunk<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn parse(raw: &[u8]) -> io::Result<Option<Request>> {
        let mut r = tokio::io::BufReader::new(raw);
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn parses_content_length_and_chunked_bodies() {
        let r = parse(b"POST /login?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/login"));
        assert_eq!(r.body, b"abcd");
        assert_eq!(r.header("HOST"), Some("a"));
        let r = parse(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(r.wants_close());
        assert!(parse(b"").await.unwrap().is_none());
        assert!(parse(b"GARBAGE\r\n\r\n").await.is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
            .await
            .is_err());
    }
}
