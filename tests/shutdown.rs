//! SIGTERM during a burst: the gateway stops taking messages, finishes what is in
//! flight, acks it and exits; nothing is lost and nothing is delivered twice.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clw_gateway::app;
use common::*;

#[tokio::test]
async fn sigterm_during_a_burst_loses_nothing() {
    const N: usize = 150;
    let s = Setup::new("sigterm");
    let hook = Receiver::start(&[]).await;
    hook.set_delay(Duration::from_millis(40));
    let config = s.broker_config(&hook.url, &["300ms"]);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;

    // The binary, as an operator runs it, with the same settings in a file.
    let path = s.dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ninstance = \"{p}\"\ndata_dir = \"{d}\"\n[store]\nurl = \"{u}\"\n[http]\nenabled = false\n\
             [broker]\nurl = \"{a}\"\nprefix = \"{p}\"\nprefetch = 16\n[retry]\ntiers = [\"300ms\"]\n\
             [referrals]\ndestinations = [\"clw\"]\n[destinations.clw]\nkind = \"webhook\"\nurl = \"{h}\"\nallow = {PRSB_ALLOW}\n",
            p = s.prefix,
            d = s.dir.path().display(),
            u = s.store_url,
            a = amqp_url(),
            h = hook.url,
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let ids: Vec<String> = (0..N).map(|i| format!("{}-{i}", s.prefix)).collect();
    let body = referral().to_string().into_bytes();
    let messages: Vec<_> = ids
        .iter()
        .map(|id| (body.clone(), ce_headers(id)))
        .collect();
    rabbit.publish_many(&t.exchange(), &messages).await;

    eventually("some deliveries", Duration::from_secs(30), || async {
        (hook.count() >= 20).then_some(())
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not stop within 30s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit, got {exit:?}");
    let delivered_before = hook.count();
    assert!(
        delivered_before < N,
        "stopped mid-burst ({delivered_before} of {N} delivered)"
    );

    // Every delivery made before the stop was recorded, and everything else is still queued.
    let store = clw_gateway::store::Store::connect(&s.store_url, 2, 16)
        .await
        .unwrap();
    let counts = store.count_by_state("referral").await.unwrap();
    let recorded: i64 = counts
        .iter()
        .filter(|(st, _)| st == "delivered")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        recorded as usize, delivered_before,
        "in-flight work finished and was recorded"
    );
    let queued = rabbit.queue_len(&t.queue()).await as usize;
    assert_eq!(
        recorded as usize + queued,
        N,
        "nothing unacked was lost: {recorded} delivered + {queued} queued"
    );
    store.close().await;

    // A fresh gateway finishes the rest, each exactly once.
    let gw = app::start(config).await.unwrap();
    eventually("all delivered", Duration::from_secs(60), || async {
        (hook.count() >= N).then_some(())
    })
    .await;
    eventually("queue drained", Duration::from_secs(30), || async {
        (rabbit.queue_len(&t.queue()).await == 0).then_some(())
    })
    .await;
    let mut seen: Vec<String> = hook
        .received()
        .iter()
        .map(|r| r.body["message_id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every referral delivered exactly once");
    gw.stop().await.unwrap();
    rabbit.cleanup(&t).await;
}
