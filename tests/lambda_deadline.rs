//! The Lambda's deadline: a catch-up run that cannot finish in time answers before the
//! invocation's deadline, and the next invocation finishes the window.
//! The store answers a second after the deadline, so only a run that stops at its deadline
//! (`RunConfig::deadline`, set by `bootstrap` from `Lambda-Runtime-Deadline-Ms` less its margin)
//! answers in time.

use serde_json::json;

use crate::lambda::{Bootstrap, RuntimeApi, body, lambda_env, lambda_plugins};
use crate::support::{Engine, FakePlatform, TestDatabase};

/// Slack events the plugin turns into one row each.
const DOCUMENTS: i64 = 3_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_catch_up_run_answers_before_its_deadline_and_the_next_one_finishes() {
    let platform = FakePlatform::start();
    platform
        .put(
            "/control/generate/SlackType",
            &json!({"count": DOCUMENTS, "data": {"type": "event_callback", "team_id": "T061EG9R6",
                    "event_time": 1, "event": {"type": "message", "channel": "C012AB3CD", "ts": "1.000100"}}}),
        )
        .await;
    // The store answers after 3 s, a second after the invocation's deadline: only a run that
    // stops at its deadline (2 s less the 1 s margin) answers in time.
    platform
        .put("/control/faults", &json!({"slow_first_byte": 3}))
        .await;
    let database = TestDatabase::new(Engine::Mysql, "deadline").await;
    let plugins = lambda_plugins();
    let runtime = RuntimeApi::start();
    let _lambda = Bootstrap::start(
        &runtime,
        &lambda_env(&platform, &database, plugins.path(), 3306),
    );
    let event = json!({"types": ["SlackType"], "catch_up": true});
    runtime.enqueue(event.clone(), 2_000).await;
    let first = runtime.wait(1).await.remove(0);
    assert_eq!(first["late"], false, "answered after the deadline: {first}");

    platform.put("/control/faults", &json!({})).await;
    let second = runtime.invoke(event).await;
    body(&second);
    assert_eq!(database.count_rows("SlackType", "1 = 1").await, DOCUMENTS);
}
