//! A Maven repository for the tests: a directory written by the test (metadata, checksums, WARs
//! built here) served over real HTTP by axum, with or without `Range` support and credentials.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Response, StatusCode, Uri};
use sha2::{Digest, Sha256, Sha512};

/// Credentials the server demands.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Auth {
    None,
    Basic(&'static str, &'static str),
    Bearer(&'static str),
}

/// One request seen: method, path, `Range` header.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) range: Option<String>,
}

#[derive(Clone)]
struct Shared {
    root: PathBuf,
    ranges: bool,
    auth: Auth,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// A running repository server.
pub(crate) struct Repo {
    pub(crate) url: String,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Repo {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

pub(crate) async fn serve_repo(root: &Path, ranges: bool, auth: Auth) -> Repo {
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        root: root.to_owned(),
        ranges,
        auth,
        log: log.clone(),
    };
    let app = axum::Router::new().fallback(handler).with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Repo {
        url: format!("http://{addr}/repository/releases/"),
        log,
    }
}

fn base64(input: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn handler(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.log.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        range: range.clone(),
    });
    let status = |code: StatusCode| {
        Response::builder()
            .status(code)
            .body(Body::empty())
            .unwrap()
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let ok = match s.auth {
        Auth::None => true,
        Auth::Basic(u, p) => {
            given == Some(&format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
        }
        Auth::Bearer(t) => given == Some(&format!("Bearer {t}")),
    };
    if !ok {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"repo\"")
            .body(Body::empty())
            .unwrap();
    }
    let Some(rel) = uri.path().strip_prefix("/repository/releases/") else {
        return status(StatusCode::NOT_FOUND);
    };
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return status(StatusCode::BAD_REQUEST);
    }
    let Ok(bytes) = std::fs::read(s.root.join(rel)) else {
        return status(StatusCode::NOT_FOUND);
    };
    let len = bytes.len();
    let mut r = Response::builder();
    if s.ranges {
        r = r.header(header::ACCEPT_RANGES, "bytes");
    }
    if let (true, Some(spec)) = (
        s.ranges,
        range.as_deref().and_then(|r| r.strip_prefix("bytes=")),
    ) {
        let (a, b) = spec.split_once('-').unwrap();
        let a: usize = a.parse().unwrap();
        let b: usize = b.parse::<usize>().unwrap().min(len - 1);
        if a > b {
            return status(StatusCode::RANGE_NOT_SATISFIABLE);
        }
        let part = bytes[a..=b].to_vec();
        return r
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))
            .header(header::CONTENT_LENGTH, part.len())
            .body(if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(part)
            })
            .unwrap();
    }
    r = r.status(StatusCode::OK).header(header::CONTENT_LENGTH, len);
    if method == Method::HEAD {
        r.body(Body::empty()).unwrap()
    } else {
        r.body(Body::from(bytes)).unwrap()
    }
}

/// Hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A WAR (stored zip) with `WEB-INF/web.xml`, `index.jsp` and `padding` bytes of a big file, so
/// that the central directory is a small part of the archive.
pub(crate) fn war_bytes(version: &str, padding: usize) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.add_directory("WEB-INF/", opts).unwrap();
        zip.start_file("WEB-INF/web.xml", opts).unwrap();
        zip.write_all(b"<web-app/>\n").unwrap();
        zip.start_file("index.jsp", opts).unwrap();
        zip.write_all(format!("version {version}\n").as_bytes())
            .unwrap();
        zip.start_file("WEB-INF/lib/big.jar", opts).unwrap();
        zip.write_all(&vec![7u8; padding]).unwrap();
        zip.finish().unwrap();
    }
    buf.into_inner()
}

/// Which checksum files to publish beside an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sums {
    Sha256,
    Sha512,
    Sha1,
    Md5Only,
    None,
}

/// Writes `bytes` at `rel` below `root`, with checksum files.
pub(crate) fn put(root: &Path, rel: &str, bytes: &[u8], sums: Sums) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let side = |ext: &str, text: String| {
        std::fs::write(format!("{}.{ext}", path.display()), text).unwrap()
    };
    match sums {
        Sums::Sha256 => side("sha256", format!("{}  {}\n", sha256(bytes), rel)),
        Sums::Sha512 => side("sha512", hex(&Sha512::digest(bytes))),
        Sums::Sha1 => side("sha1", sha1_hex(bytes)),
        Sums::Md5Only => side("md5", "0123456789abcdef0123456789abcdef".into()),
        Sums::None => {}
    }
}

/// SHA-1, written out here (the tests do not link a SHA-1 crate of their own).
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// `maven-metadata.xml` of an artifact listing `versions`.
pub(crate) fn metadata(group: &str, artifact: &str, versions: &[&str]) -> String {
    let list: String = versions
        .iter()
        .map(|v| format!("      <version>{v}</version>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata>\n  <groupId>{group}</groupId>\n  \
         <artifactId>{artifact}</artifactId>\n  <versioning>\n    <latest>{l}</latest>\n    \
         <versions>\n{list}    </versions>\n    <lastUpdated>20250301120000</lastUpdated>\n  \
         </versioning>\n</metadata>\n",
        l = versions.last().unwrap_or(&"")
    )
}

/// A snapshot's own `maven-metadata.xml`: `<snapshot>` and, when `list` is set, `<snapshotVersions>`
/// (`(classifier, extension, value)`).
pub(crate) fn snapshot_metadata(
    version: &str,
    timestamp: &str,
    build: u32,
    list: &[(&str, &str, &str)],
) -> String {
    let entries: String = list
        .iter()
        .map(|(c, e, v)| {
            let c = if c.is_empty() { String::new() } else { format!("<classifier>{c}</classifier>") };
            format!("      <snapshotVersion>{c}<extension>{e}</extension><value>{v}</value><updated>20250301120000</updated></snapshotVersion>\n")
        })
        .collect();
    let versions = if list.is_empty() {
        String::new()
    } else {
        format!("    <snapshotVersions>\n{entries}    </snapshotVersions>\n")
    };
    format!(
        "<?xml version=\"1.0\"?>\n<metadata modelVersion=\"1.1.0\">\n  <version>{version}</version>\n  \
         <versioning>\n    <snapshot><timestamp>{timestamp}</timestamp><buildNumber>{build}</buildNumber></snapshot>\n\
         {versions}  </versioning>\n</metadata>\n"
    )
}
