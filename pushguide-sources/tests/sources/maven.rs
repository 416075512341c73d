//! `MavenSource` against a Maven repository layout written here and served over real HTTP.

use std::path::Path;

use pushguide_sources::{ArtifactSource, Error, MavenArtifact, MavenAuth, MavenSource, Packaging};

use crate::maven_repo::{
    metadata, put, serve_repo, sha256, snapshot_metadata, war_bytes, Auth, Repo, Sums,
};
use crate::support::temp_dir;

const DIR: &str = "com/example/shop";

/// The `shop` artifact of group `com.example`: releases 1.2, 1.9, 1.10-rc1, 1.10 (WARs with
/// `.sha256`), and 2.0-SNAPSHOT (two timestamped builds, the newest named by the snapshot's
/// metadata).
fn write_repo(root: &Path) -> Vec<u8> {
    let mut newest = Vec::new();
    for v in ["1.2", "1.9", "1.10-rc1", "1.10"] {
        let war = war_bytes(v, 200_000);
        put(root, &format!("{DIR}/{v}/shop-{v}.war"), &war, Sums::Sha256);
        if v == "1.10" {
            newest = war;
        }
    }
    for (ts, build) in [("20250301.120000", 1), ("20250302.093000", 2)] {
        let v = format!("2.0-{ts}-{build}");
        put(
            root,
            &format!("{DIR}/2.0-SNAPSHOT/shop-{v}.war"),
            &war_bytes(&v, 10),
            Sums::Sha256,
        );
    }
    std::fs::write(
        root.join(format!("{DIR}/2.0-SNAPSHOT/maven-metadata.xml")),
        snapshot_metadata(
            "2.0-SNAPSHOT",
            "20250302.093000",
            2,
            &[
                ("", "pom", "2.0-20250302.093000-2"),
                ("", "war", "2.0-20250302.093000-2"),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("{DIR}/maven-metadata.xml")),
        metadata(
            "com.example",
            "shop",
            &["1.9", "1.2", "1.10", "2.0-SNAPSHOT", "1.10-rc1"],
        ),
    )
    .unwrap();
    newest
}

fn source(repo: &Repo) -> MavenSource {
    MavenSource::new(&repo.url, MavenArtifact::new("com.example", Packaging::War)).unwrap()
}

#[tokio::test]
async fn versions_newest_first_in_maven_order_and_restricted_by_a_pattern() {
    let root = temp_dir("maven-versions");
    write_repo(&root);
    let repo = serve_repo(&root, true, Auth::None).await;
    let versions = source(&repo).versions("shop").await.unwrap();
    assert_eq!(versions, ["2.0-SNAPSHOT", "1.10", "1.10-rc1", "1.9", "1.2"]);

    let only_1x = MavenSource::new(
        &repo.url,
        MavenArtifact::new("com.example", Packaging::War).versions("1.*"),
    )
    .unwrap();
    assert_eq!(
        only_1x.versions("shop").await.unwrap(),
        ["1.10", "1.10-rc1", "1.9", "1.2"]
    );
    // a version outside the pattern is not a release of the template
    let e = only_1x.resolve("shop", "2.0-SNAPSHOT").await.unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e}");

    // per template coordinates: template `web` is artifact `shop`
    let web = MavenSource::new(&repo.url, MavenArtifact::new("org.other", Packaging::War))
        .unwrap()
        .template(
            "web",
            MavenArtifact::new("com.example", Packaging::War).artifact("shop"),
        )
        .unwrap();
    assert_eq!(web.versions("web").await.unwrap().len(), 5);
    let e = web.versions("shop").await.unwrap_err();
    assert!(matches!(e, Error::TemplateNotFound { .. }), "{e}");
    let e = source(&repo).resolve("shop", "3.0").await.unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e}");
}

#[tokio::test]
async fn a_release_is_resolved_with_ranged_reads_of_the_central_directory() {
    let root = temp_dir("maven-range");
    let war = write_repo(&root);
    let repo = serve_repo(&root, true, Auth::None).await;
    let a = source(&repo).resolve("shop", "1.10").await.unwrap();
    assert_eq!(a.url, format!("{}{DIR}/1.10/shop-1.10.war", repo.url));
    assert_eq!(a.sha256.as_deref(), Some(sha256(&war).as_str()));
    assert_eq!(a.size, Some(war.len() as u64));
    let paths: Vec<&str> = a
        .manifest
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "WEB-INF/",
            "WEB-INF/web.xml",
            "index.jsp",
            "WEB-INF/lib/big.jar"
        ]
    );
    assert_eq!(a.manifest.as_ref().unwrap()[3].size, 200_000);

    // the WAR itself was only HEADed and read in ranges, far less than its size
    let war_requests: Vec<_> = repo
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with(".war"))
        .collect();
    assert!(
        war_requests.iter().any(|s| s.method == "HEAD"),
        "{war_requests:?}"
    );
    let gets: Vec<_> = war_requests.iter().filter(|s| s.method == "GET").collect();
    assert!(
        !gets.is_empty() && gets.iter().all(|s| s.range.is_some()),
        "{war_requests:?}"
    );
    let read: u64 = gets
        .iter()
        .map(|s| {
            let (a, b) = s.range.as_ref().unwrap()["bytes=".len()..]
                .split_once('-')
                .unwrap();
            b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
        })
        .sum();
    assert!(
        read < war.len() as u64 / 2,
        "read {read} of {} bytes",
        war.len()
    );
}

#[tokio::test]
async fn without_range_support_the_manifest_comes_from_a_bounded_download() {
    let root = temp_dir("maven-norange");
    let war = write_repo(&root);
    let repo = serve_repo(&root, false, Auth::None).await;
    let a = source(&repo).resolve("shop", "1.10").await.unwrap();
    assert_eq!(a.sha256.as_deref(), Some(sha256(&war).as_str()));
    assert_eq!(a.manifest.as_ref().unwrap().len(), 4);
    assert!(repo
        .seen()
        .iter()
        .any(|s| s.method == "GET" && s.path.ends_with(".war")));

    // the download is bounded
    let small = source(&repo).max_download(1000);
    let e = small.resolve("shop", "1.10").await.unwrap_err();
    assert!(e.to_string().contains("larger than 1000 bytes"), "{e}");
}

#[tokio::test]
async fn a_snapshot_resolves_to_its_newest_timestamped_file() {
    let root = temp_dir("maven-snapshot");
    write_repo(&root);
    let repo = serve_repo(&root, true, Auth::None).await;
    let a = source(&repo).resolve("shop", "2.0-SNAPSHOT").await.unwrap();
    assert_eq!(
        a.url,
        format!(
            "{}{DIR}/2.0-SNAPSHOT/shop-2.0-20250302.093000-2.war",
            repo.url
        )
    );
    let bytes =
        std::fs::read(root.join(format!("{DIR}/2.0-SNAPSHOT/shop-2.0-20250302.093000-2.war")))
            .unwrap();
    assert_eq!(a.sha256.as_deref(), Some(sha256(&bytes).as_str()));

    // without <snapshotVersions>: <snapshot>'s timestamp and build number
    std::fs::write(
        root.join(format!("{DIR}/2.0-SNAPSHOT/maven-metadata.xml")),
        snapshot_metadata("2.0-SNAPSHOT", "20250301.120000", 1, &[]),
    )
    .unwrap();
    let a = source(&repo).resolve("shop", "2.0-SNAPSHOT").await.unwrap();
    assert!(
        a.url.ends_with("/shop-2.0-20250301.120000-1.war"),
        "{}",
        a.url
    );

    // a classifier picks its own <snapshotVersion>
    let dist = war_bytes("dist", 10);
    put(
        &root,
        &format!("{DIR}/2.0-SNAPSHOT/shop-2.0-20250302.093000-2-dist.zip"),
        &dist,
        Sums::Sha256,
    );
    std::fs::write(
        root.join(format!("{DIR}/2.0-SNAPSHOT/maven-metadata.xml")),
        snapshot_metadata(
            "2.0-SNAPSHOT",
            "20250302.093000",
            2,
            &[
                ("", "war", "2.0-20250302.093000-2"),
                ("dist", "zip", "2.0-20250302.093000-2"),
            ],
        ),
    )
    .unwrap();
    let zip = MavenSource::new(
        &repo.url,
        MavenArtifact::new("com.example", Packaging::Zip).classifier("dist"),
    )
    .unwrap();
    let a = zip.resolve("shop", "2.0-SNAPSHOT").await.unwrap();
    assert!(
        a.url.ends_with("/shop-2.0-20250302.093000-2-dist.zip"),
        "{}",
        a.url
    );
    assert_eq!(a.sha256.as_deref(), Some(sha256(&dist).as_str()));
}

#[tokio::test]
async fn checksums_sha512_then_sha1_md5_alone_is_refused() {
    let root = temp_dir("maven-sums");
    let versions = ["1.0", "1.1", "1.2", "1.3"];
    std::fs::create_dir_all(root.join(DIR)).unwrap();
    std::fs::write(
        root.join(format!("{DIR}/maven-metadata.xml")),
        metadata("com.example", "shop", &versions),
    )
    .unwrap();
    let mut wars = Vec::new();
    for (v, sums) in versions
        .iter()
        .zip([Sums::Sha512, Sums::Sha1, Sums::Md5Only, Sums::None])
    {
        let war = war_bytes(v, 100);
        put(&root, &format!("{DIR}/{v}/shop-{v}.war"), &war, sums);
        wars.push(war);
    }
    let repo = serve_repo(&root, true, Auth::None).await;
    let s = source(&repo);
    // no .sha256: the download is checked against .sha512 (or .sha1) and its SHA-256 computed;
    // only the SHA-1 one is warned about
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    for (i, v) in ["1.0", "1.1"].iter().enumerate() {
        let a = s.resolve("shop", v).await.unwrap();
        assert_eq!(a.sha256.as_deref(), Some(sha256(&wars[i]).as_str()), "{v}");
        let text = logs.text();
        let warned = text.contains("WARN") && text.contains("SHA-1");
        assert_eq!(warned, *v == "1.1", "{v}: {text}");
    }
    drop(guard);
    let e = s.resolve("shop", "1.2").await.unwrap_err();
    assert!(e.to_string().contains("only an MD5 checksum"), "{e}");
    let e = s.resolve("shop", "1.3").await.unwrap_err();
    assert!(e.to_string().contains("no checksum"), "{e}");

    // a .sha512 that does not match the file
    std::fs::write(
        root.join(format!("{DIR}/1.0/shop-1.0.war.sha512")),
        "ab".repeat(64),
    )
    .unwrap();
    let e = s.resolve("shop", "1.0").await.unwrap_err();
    assert!(
        matches!(e, Error::Archive { .. }) && e.to_string().contains("SHA-512"),
        "{e}"
    );
    // a .sha256 that is not a digest
    std::fs::write(
        root.join(format!("{DIR}/1.0/shop-1.0.war.sha256")),
        "$(reboot)",
    )
    .unwrap();
    let e = s.resolve("shop", "1.0").await.unwrap_err();
    assert!(
        e.to_string().contains("$(reboot)") && e.to_string().contains("64 hex"),
        "{e}"
    );
}

#[tokio::test]
async fn hostile_metadata_is_refused_with_the_value_named() {
    let root = temp_dir("maven-hostile");
    write_repo(&root);
    let repo = serve_repo(&root, true, Auth::None).await;
    let meta = root.join(format!("{DIR}/maven-metadata.xml"));
    let s = source(&repo);

    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n\
                  <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n\
                  <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n]>\n\
                  <metadata><versioning><versions><version>&lol2;</version></versions></versioning></metadata>";
    std::fs::write(&meta, laughs).unwrap();
    let e = s.versions("shop").await.unwrap_err();
    assert!(
        matches!(e, Error::Malformed { .. }) && e.to_string().contains("DOCTYPE"),
        "{e}"
    );

    let xxe = "<metadata><versioning><versions><version>&xxe;</version></versions></versioning></metadata>";
    std::fs::write(&meta, xxe).unwrap();
    let e = s.versions("shop").await.unwrap_err();
    assert!(e.to_string().contains("undefined entity &xxe;"), "{e}");

    // huge metadata: refused at the cap, not read on
    let huge = metadata("com.example", "shop", &vec!["1.0"; 200_000]);
    std::fs::write(&meta, &huge).unwrap();
    let e = s
        .clone()
        .max_metadata(64 * 1024)
        .versions("shop")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("larger than 65536 bytes"), "{e}");

    for (bad, shown) in [
        ("1.0;reboot", "1.0;reboot"),
        ("$(curl evil)", "$(curl evil)"),
        ("../../etc/passwd", "../../etc/passwd"),
        ("1.0/../../x", "1.0/../../x"),
        ("1.0 rc", "1.0 rc"),
        ("1.0&#7;", "1.0\\u{7}"),
        ("1.0&#x202e;", "1.0\\u{202e}"),
        ("`id`", "`id`"),
    ] {
        std::fs::write(&meta, metadata("com.example", "shop", &["1.0", bad])).unwrap();
        let e = s.versions("shop").await.unwrap_err();
        assert!(matches!(e, Error::InvalidVersion { .. }), "{bad}: {e}");
        assert!(
            e.to_string().contains(&format!("\"{shown}\"")),
            "{bad}: {e}"
        );
        // resolving even a good version reads the same list and fails the same way
        let e = s.resolve("shop", "1.0").await.unwrap_err();
        assert!(matches!(e, Error::InvalidVersion { .. }), "{bad}: {e}");
    }
    let long = "1".repeat(5000);
    std::fs::write(&meta, metadata("com.example", "shop", &[&long])).unwrap();
    let e = s.versions("shop").await.unwrap_err().to_string();
    assert!(e.len() < 600 && e.contains('…'), "{e}");

    // a hostile timestamp in a snapshot's metadata
    std::fs::write(&meta, metadata("com.example", "shop", &["2.0-SNAPSHOT"])).unwrap();
    std::fs::write(
        root.join(format!("{DIR}/2.0-SNAPSHOT/maven-metadata.xml")),
        snapshot_metadata(
            "2.0-SNAPSHOT",
            "x",
            1,
            &[("", "war", "2.0-1/../../../../x")],
        ),
    )
    .unwrap();
    let e = s.resolve("shop", "2.0-SNAPSHOT").await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidVersion { .. }) && e.to_string().contains("2.0-1/../../../../x"),
        "{e}"
    );
}

#[tokio::test]
async fn basic_and_bearer_credentials_stage_the_artifact_for_the_minions() {
    let root = temp_dir("maven-auth");
    let war = write_repo(&root);
    for (auth, given, wrong) in [
        (
            Auth::Basic("deployer", "pa55-w0rd"),
            MavenAuth::Basic {
                user: "deployer".into(),
                password: "pa55-w0rd".into(),
            },
            MavenAuth::Basic {
                user: "deployer".into(),
                password: "nope".into(),
            },
        ),
        (
            Auth::Bearer("t0ken-xyz"),
            MavenAuth::Bearer("t0ken-xyz".into()),
            MavenAuth::Bearer("other".into()),
        ),
    ] {
        let repo = serve_repo(&root, true, auth).await;
        let stage = temp_dir("maven-auth-stage");
        // no credentials: the repository's 401
        let e = source(&repo).versions("shop").await.unwrap_err();
        assert!(matches!(e, Error::Status { status: 401, .. }), "{e}");
        let e = source(&repo)
            .auth(wrong)
            .versions("shop")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Status { status: 401, .. }), "{e}");
        // credentials but nowhere to stage: the minions could not fetch the file
        let e = source(&repo)
            .auth(given.clone())
            .resolve("shop", "1.10")
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains("stage"),
            "{e}"
        );

        let s = source(&repo)
            .auth(given.clone())
            .stage_into(&stage, "salt://pushguide-maven/")
            .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("pa55-w0rd") && !debug.contains("t0ken-xyz"),
            "{debug}"
        );
        assert_eq!(s.versions("shop").await.unwrap()[1], "1.10");
        let a = s.resolve("shop", "1.10").await.unwrap();
        assert_eq!(
            a.url,
            format!("salt://pushguide-maven/{DIR}/1.10/shop-1.10.war")
        );
        assert_eq!(a.manifest.as_ref().unwrap().len(), 4);
        let staged = stage.join(format!("{DIR}/1.10/shop-1.10.war"));
        assert!(
            !staged.exists(),
            "resolve (plans, the version list) copies nothing"
        );
        s.stage("shop", "1.10", &a).await.unwrap();
        assert_eq!(std::fs::read(&staged).unwrap(), war);
        // staged again: kept as it is (same bytes), no second download
        repo.clear();
        s.stage("shop", "1.10", &a).await.unwrap();
        assert!(!repo
            .seen()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(".war")));
        // a checksum that does not match what the repository serves: nothing is left behind
        let mut bad = a.clone();
        bad.sha256 = Some("0".repeat(64));
        std::fs::remove_file(&staged).unwrap();
        let e = s.stage("shop", "1.10", &bad).await.unwrap_err();
        assert!(e.to_string().contains("differs"), "{e}");
        assert_eq!(
            std::fs::read_dir(staged.parent().unwrap()).unwrap().count(),
            0
        );
    }
}

#[tokio::test]
async fn bad_configuration_is_refused_naming_the_field() {
    let e = MavenSource::new(
        "ftp://repo/",
        MavenArtifact::new("com.example", Packaging::War),
    )
    .unwrap_err();
    assert!(e.to_string().contains("http://"), "{e}");
    let e = MavenSource::new(
        "https://u:secret@repo/",
        MavenArtifact::new("com.example", Packaging::War),
    )
    .unwrap_err();
    assert!(
        !e.to_string().contains("secret") && e.to_string().contains("credentials in the URL"),
        "{e}"
    );
    for (a, field) in [
        (MavenArtifact::new("com..example", Packaging::War), "group"),
        (MavenArtifact::new("com/example", Packaging::War), "group"),
        (
            MavenArtifact::new("com.example", Packaging::War).artifact("../x"),
            "artifact",
        ),
        (
            MavenArtifact::new("com.example", Packaging::War).classifier("a b"),
            "classifier",
        ),
        (
            MavenArtifact::new("com.example", Packaging::War).versions("1.*;rm"),
            "versions",
        ),
    ] {
        let e = a.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    let e = Packaging::parse("ear").unwrap_err().to_string();
    assert!(e.contains("packaging") && e.contains("ear"), "{e}");
}

/// Log lines written by a test's subscriber.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
