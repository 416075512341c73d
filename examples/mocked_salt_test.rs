//! Unit-testing stage logic with `MockTransport`: the exact salt calls of a deployment, in order,
//! with the targets of each, and what happens when one minion fails.
//!
//! Run: `cargo run --example mocked_salt_test` (the same code works as a `#[tokio::test]`).
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use mockall::Sequence;
use pushguide::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, KindInfo, MinionId, MockTransport,
    Outcome, Principal, Request, Returns, SaltCall, StageContext, StageError, Template,
};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MarkerConfig {}

/// Writes a marker file with the version, then checks it.
#[derive(Debug)]
struct Marker;

#[async_trait::async_trait]
impl Deployer for Marker {
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        cx.call(
            SaltCall::mutate("file.write")
                .arg("/etc/app-version")
                .arg(v),
        )
        .await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("file.file_exists").arg("/etc/app-version"))
            .await?;
        Ok(())
    }
    async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

#[typetag::serde(name = "marker")]
impl DeployerConfig for MarkerConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(Marker))
    }
}

inventory::submit! {
    KindInfo { kind: "marker", summary: "marker file", platforms: &[], example: "kind = \"marker\"\n" }
}

fn expect(
    mock: &mut MockTransport,
    seq: &mut Sequence,
    fun: &'static str,
    targets: &'static [&'static str],
) {
    mock.expect_call()
        .withf(move |tg, call| {
            call.fun == fun && tg.iter().map(MinionId::as_str).eq(targets.iter().copied())
        })
        .times(1)
        .in_sequence(seq)
        .returning(|tg, call| {
            // a-2 fails the write with salt's retcode
            let mut r = Returns::default();
            for m in tg {
                let o = if call.fun == "file.write" && m.as_str() == "a-2" {
                    Outcome::failed(Some(1), "Permission denied")
                } else {
                    Outcome::ok(true)
                };
                r.minions.insert(m.clone(), o);
            }
            Ok(r)
        });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let template = Arc::new(Template::from_toml_str(
        "name = \"app\"\n[acl.deployers]\nusers = [\"ci\"]\n[targets]\nminions = [\"a-1\", \"a-2\", \"a-3\"]\n\
         [rollout]\nbatch = 3\n[failure]\nmax_failed = 1\n[project]\nkind = \"marker\"\n",
        "app.toml",
    )?);
    let mut mock = MockTransport::new();
    let mut seq = Sequence::new();
    expect(&mut mock, &mut seq, "test.ping", &["a-1", "a-2", "a-3"]);
    expect(&mut mock, &mut seq, "file.write", &["a-1", "a-2", "a-3"]);
    // a-2 failed: it is left out of the next call
    expect(&mut mock, &mut seq, "file.file_exists", &["a-1", "a-3"]);

    let report = Engine::builder(Arc::new(mock))
        .build()
        .deploy(Request::new(template, "1.2.3", Principal::user("ci")))
        .await?;
    println!("{report}");
    assert_eq!(report.outcome, DeploymentOutcome::PartiallyApplied);
    let failure = report
        .host("a-2")
        .and_then(|h| h.failure.clone())
        .ok_or("a-2 should fail")?;
    assert_eq!(failure.reason, "retcode 1: Permission denied");
    println!("mocked salt: every expected call happened, in order");
    Ok(())
}
