//! The fake salt-api's HTTP/1.1 on a raw socket: chunked request bodies, keep-alive, `Connection:
//! close`, and requests that do not parse or are too large answered 400 (without being counted).
#![cfg(feature = "fake")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use pushguide_core::sim::SimFleet;
use pushguide_salt::fake::FakeSaltApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn fake() -> FakeSaltApi {
    FakeSaltApi::start(Arc::new(SimFleet::new(["web-01", "web-02"]).unwrap()))
        .await
        .unwrap()
}

/// One answer read off the socket: status, headers (names in lower case), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads exactly one answer with a Content-Length body (what the fake sends but for `/events`),
/// leaving the connection ready for the next one.
async fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>) -> Answer {
    let within = Duration::from_secs(10);
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(within, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed before an answer: {pending:?}");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while pending.len() < head_end + len {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(within, s.read(&mut buf))
            .await
            .expect("the body in time")
            .unwrap();
        assert!(n > 0, "closed inside the body");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending[head_end..head_end + len].to_vec();
    pending.drain(..head_end + len);
    Answer {
        status,
        headers,
        body,
    }
}

/// Whether the server closes the connection (EOF) within a second, nothing else arriving first.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_chunked_login_then_more_requests_on_the_same_connection() {
    let fake = fake().await;
    let mut s = TcpStream::connect(fake.addr()).await.unwrap();
    let mut pending = Vec::new();
    let body = r#"{"eauth": "pam", "username": "pushguide", "password": "fake-password"}"#;
    let (a, b) = body.split_at(20);
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let login = read_answer(&mut s, &mut pending).await;
    assert_eq!(
        login.status,
        200,
        "{}",
        String::from_utf8_lossy(&login.body)
    );
    assert_eq!(login.header("server"), Some("pushguide-fake-salt-api"));
    assert_eq!(login.header("content-type"), Some("application/json"));
    let token = login.header("x-auth-token").unwrap().to_owned();
    assert_eq!(login.json()["return"][0]["token"], token.as_str());

    // keep-alive: two more requests, one written before the answer to the other is read
    let minions = format!("GET /minions HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\r\n");
    s.write_all(format!("{minions}{minions}").as_bytes())
        .await
        .unwrap();
    for _ in 0..2 {
        let m = read_answer(&mut s, &mut pending).await;
        assert_eq!(m.status, 200);
        assert_eq!(m.json()["return"][0]["web-02"]["id"], "web-02");
    }
    // `Connection: close`: answered, then closed
    s.write_all(b"GET /?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let root = read_answer(&mut s, &mut pending).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.json()["return"], "Welcome");
    assert!(closed_by_server(&mut s).await);

    let n = fake.request_count();
    assert_eq!(n.get("POST /login"), 1, "{n:?}");
    assert_eq!(n.get("GET /minions"), 2, "{n:?}");
    assert_eq!(n.get("GET /"), 1, "{n:?}");
}

#[tokio::test]
async fn unparsable_and_oversized_requests_are_a_400_and_not_counted() {
    let fake = fake().await;
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(fake.addr()).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut pending = Vec::new();
        let a = read_answer(&mut s, &mut pending).await;
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(raw));
        assert!(
            closed_by_server(&mut s).await,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }

    // a body over 16 MiB
    let mut s = TcpStream::connect(fake.addr()).await.unwrap();
    let size = 17 * 1024 * 1024;
    let (mut rd, mut wr) = s.split();
    let send = async {
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.unwrap();
        let block = vec![b' '; 64 * 1024];
        for _ in 0..size / block.len() {
            // the server may stop reading once it has answered
            if wr.write_all(&block).await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let (got, ()) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(read, send) })
            .await
            .expect("an answer in time");
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(fake.request_count().total(), 0, "none was counted");
}
