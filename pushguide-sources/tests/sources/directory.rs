use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use pushguide_core::steps::Conventions;
use pushguide_sources::{ArtifactSource, DirectorySource, Error};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

use crate::support::temp_dir;

fn write_zip(path: &Path, entries: &[(&str, &[u8])], large: bool) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(large);
    for (name, data) in entries {
        if name.ends_with('/') {
            z.add_directory(*name, opts).unwrap();
        } else {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
    }
    z.finish().unwrap();
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

const WEB_XML: &[u8] = b"<web-app xmlns=\"https://jakarta.ee/xml/ns/jakartaee\"/>\n";

fn war_entries() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("META-INF/", b""),
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
        ("WEB-INF/", b""),
        ("WEB-INF/web.xml", WEB_XML),
        ("index.jsp", b"<html>hello</html>\n"),
    ]
}

#[tokio::test]
async fn war_in_a_directory_gives_url_sha256_size_and_manifest() {
    let root = temp_dir("war");
    for v in ["1.9.0", "1.10.0", "1.2.0"] {
        write_zip(
            &root.join(format!("shop-web/{v}/shop.war")),
            &war_entries(),
            false,
        );
    }
    fs::create_dir_all(root.join("shop-web/.incoming")).unwrap();
    fs::write(root.join("shop-web/README"), "not a version").unwrap();

    let src = DirectorySource::new(&root, "https://artifacts.example.com/ci").unwrap();
    assert_eq!(
        src.versions("shop-web").await.unwrap(),
        ["1.10.0", "1.9.0", "1.2.0"]
    );

    let a = src.resolve("shop-web", "1.10.0").await.unwrap();
    let war = root.join("shop-web/1.10.0/shop.war");
    assert_eq!(
        a.url,
        "https://artifacts.example.com/ci/shop-web/1.10.0/shop.war"
    );
    assert_eq!(a.sha256.as_deref(), Some(sha256sum(&war).as_str()));
    assert_eq!(a.size, Some(fs::metadata(&war).unwrap().len()));
    let m = a.manifest.unwrap();
    let paths: Vec<&str> = m.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"WEB-INF/web.xml"), "{paths:?}");
    assert!(paths.contains(&"WEB-INF/"), "{paths:?}");
    let web_xml = m.iter().find(|e| e.path == "WEB-INF/web.xml").unwrap();
    assert_eq!(web_xml.size, WEB_XML.len() as u64);
    // The java-tomcat conventions gate accepts it.
    assert!(Conventions::default()
        .requiring(&["WEB-INF/web.xml"])
        .check(&m)
        .is_empty());
}

#[tokio::test]
async fn salt_url_base_and_sidecar_manifest() {
    let root = temp_dir("sidecar");
    write_zip(
        &root.join("app/2.0.0/app.zip"),
        &[("bin/app.dll", b"MZ")],
        false,
    );
    fs::write(
        root.join("app/2.0.0/manifest.json"),
        r#"[{"path": "bin/app.dll", "size": 2}, {"path": "web.config", "size": 100}]"#,
    )
    .unwrap();
    let src = DirectorySource::new(&root, "salt://artifacts").unwrap();
    let a = src.resolve("app", "2.0.0").await.unwrap();
    assert_eq!(a.url, "salt://artifacts/app/2.0.0/app.zip");
    let m = a.manifest.unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].path, "web.config");

    fs::write(root.join("app/2.0.0/manifest.json"), "{oops").unwrap();
    let err = src.resolve("app", "2.0.0").await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

#[tokio::test]
async fn war_built_by_the_jdk_jar_tool() {
    let Ok(status) = Command::new("jar").arg("--version").output() else {
        eprintln!("jar tool not found: skipping the JDK-built WAR check");
        return;
    };
    assert!(status.status.success());
    let root = temp_dir("jar");
    let content = root.join("content");
    fs::create_dir_all(content.join("WEB-INF/classes")).unwrap();
    fs::write(content.join("WEB-INF/web.xml"), WEB_XML).unwrap();
    fs::write(content.join("index.jsp"), "x".repeat(10_000)).unwrap();
    let war = root.join("shop-web/3.1.0/shop.war");
    fs::create_dir_all(war.parent().unwrap()).unwrap();
    let ok = Command::new("jar")
        .arg("cf")
        .arg(&war)
        .arg("-C")
        .arg(&content)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let src = DirectorySource::new(&root, "http://127.0.0.1/a/").unwrap();
    let a = src.resolve("shop-web", "3.1.0").await.unwrap();
    assert_eq!(a.sha256.as_deref(), Some(sha256sum(&war).as_str()));
    let m = a.manifest.unwrap();
    let web_xml = m.iter().find(|e| e.path == "WEB-INF/web.xml").unwrap();
    assert_eq!(web_xml.size, WEB_XML.len() as u64);
    // Deflated entries report their uncompressed size.
    let jsp = m.iter().find(|e| e.path == "index.jsp").unwrap();
    assert_eq!(jsp.size, 10_000);
    assert!(m.iter().any(|e| e.path == "META-INF/MANIFEST.MF"));
}

#[tokio::test]
async fn zip64_archives_are_listed() {
    let root = temp_dir("zip64");
    let names: Vec<String> = (0..70_000).map(|i| format!("d/f{i}")).collect();
    let mut entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    entries.push(("WEB-INF/web.xml", WEB_XML));
    write_zip(&root.join("big/1.0.0/big.war"), &entries, true);
    let a = DirectorySource::new(&root, "http://h/")
        .unwrap()
        .resolve("big", "1.0.0")
        .await
        .unwrap();
    let m = a.manifest.unwrap();
    assert_eq!(m.len(), 70_001);
    assert_eq!(m[70_000].path, "WEB-INF/web.xml");
    assert_eq!(m[70_000].size, WEB_XML.len() as u64);
}

#[tokio::test]
async fn tar_is_listed_and_tar_gz_needs_a_sidecar() {
    let root = temp_dir("tar");
    let content = root.join("content");
    fs::create_dir_all(content.join("bin")).unwrap();
    fs::write(content.join("bin/task.exe"), b"MZ1234").unwrap();
    let long = format!("{}/file.txt", "deep".repeat(40));
    fs::create_dir_all(content.join(long.rsplit_once('/').unwrap().0)).unwrap();
    fs::write(content.join(&long), b"abc").unwrap();
    for (v, file, flag) in [
        ("1.0.0", "task.tar", "-cf"),
        ("1.1.0", "task.tar.gz", "-czf"),
    ] {
        let dir = root.join("task").join(v);
        fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("tar")
            .arg(flag)
            .arg(dir.join(file))
            .arg("-C")
            .arg(&content)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let src = DirectorySource::new(&root, "salt://a/").unwrap();
    let m = src
        .resolve("task", "1.0.0")
        .await
        .unwrap()
        .manifest
        .unwrap();
    assert!(
        m.iter().any(|e| e.path == "bin/task.exe" && e.size == 6),
        "{m:?}"
    );
    assert!(m.iter().any(|e| e.path == "bin/"), "{m:?}");
    assert!(m.iter().any(|e| e.path == long && e.size == 3), "{m:?}");
    let a = src.resolve("task", "1.1.0").await.unwrap();
    assert!(a.manifest.is_none());
    assert!(a.sha256.is_some());
}

#[tokio::test]
async fn bad_directories_give_errors_naming_source_and_version() {
    let root = temp_dir("bad");
    let src = DirectorySource::new(&root, "http://h/").unwrap();
    let name = src.name().to_owned();

    let err = src.versions("nothing").await.unwrap_err();
    assert!(matches!(err, Error::TemplateNotFound { .. }), "{err:?}");

    write_zip(&root.join("t/1.0.0/a.war"), &war_entries(), false);
    let err = src.resolve("t", "2.0.0").await.unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&name) && text.contains("2.0.0"), "{text}");

    let err = src.resolve("t", "../t/1.0.0").await.unwrap_err();
    assert!(matches!(err, Error::InvalidVersion { .. }), "{err:?}");

    write_zip(&root.join("t/1.1.0/a.war"), &war_entries(), false);
    write_zip(&root.join("t/1.1.0/b.war"), &war_entries(), false);
    let err = src.resolve("t", "1.1.0").await.unwrap_err();
    assert!(err.to_string().contains("more than one archive"), "{err}");

    fs::create_dir_all(root.join("t/1.2.0")).unwrap();
    let err = src.resolve("t", "1.2.0").await.unwrap_err();
    assert!(err.to_string().contains("no archive"), "{err}");

    fs::create_dir_all(root.join("t/1.3.0")).unwrap();
    fs::write(
        root.join("t/1.3.0/a.war"),
        "this is no zip at all, not even close",
    )
    .unwrap();
    let err = src.resolve("t", "1.3.0").await.unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err:?}");
    assert!(err.to_string().contains("not a zip"), "{err}");

    write_zip(
        &root.join("t/1.4.0/a.war"),
        &[
            ("WEB-INF/web.xml", WEB_XML),
            ("../../etc/cron.d/x", b"boom"),
        ],
        false,
    );
    let err = src.resolve("t", "1.4.0").await.unwrap_err();
    assert!(err.to_string().contains("`..`"), "{err}");

    fs::create_dir_all(root.join("t/1.0;reboot")).unwrap();
    let err = src.versions("t").await.unwrap_err();
    assert!(matches!(err, Error::InvalidVersion { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains("1.0;reboot"),
        "{text}"
    );

    let err = DirectorySource::new(&root, "file:///srv").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}
