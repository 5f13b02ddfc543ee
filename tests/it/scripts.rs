//! Script handlers: executed directly, payload on stdin, four variables, and
//! the whole process group killed on timeout.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    dispatch::envelope,
    helpers::{TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(
    a_script_gets_the_envelope_and_its_variables,
    a_failing_script_is_retried_and_its_output_kept,
    a_script_past_its_timeout_dies_with_its_children
);

fn script_handler(name: &str, target: &str, timeout_ms: i64) -> Value {
    json!({"name": name, "events_id": "clients.subscriptions.renew", "type": "script", "target": target, "priority": 1, "timeout_ms": timeout_ms})
}

async fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with("END\n")
        {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "{} was not written", path.display());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_script_gets_the_envelope_and_its_variables(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let out = app.scripts_dir.join("out.txt");
    app.write_script(
        "hooks/renew.sh",
        &format!(
            "#!/bin/sh\n{{ cat; echo; echo \"cwd=$(pwd)\"; echo \"events_id=$PROVISIOND_EVENTS_ID\"; \
             echo \"object_id=$PROVISIOND_OBJECT_ID\"; echo \"delivery=$PROVISIOND_DELIVERY_ID\"; \
             echo \"attempt=$PROVISIOND_ATTEMPT\"; echo \"token=$PROVISIOND_API_TOKEN\"; echo END; }} > {}\necho provisioned\n",
            out.display()
        ),
        true,
    );
    let handler = app.create_handler(script_handler("renew", "hooks/renew.sh", 5000)).await;
    let body = envelope("clients.subscriptions.renew", json!(44), json!({"package": "gold"}));
    let (status, answer) = app.post_event(&body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let text = wait_for_file(&out).await;
    let mut lines = text.lines();
    let stdin: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(stdin, body, "stdin is the envelope");
    let rest: Vec<&str> = lines.collect();
    let dir = app.scripts_dir.canonicalize().unwrap();
    assert!(rest.contains(&format!("cwd={}", dir.display()).as_str()), "{rest:?}");
    assert!(rest.contains(&"events_id=clients.subscriptions.renew"));
    assert!(rest.contains(&"object_id=44"));
    assert!(rest.contains(&"attempt=1"));
    assert!(rest.contains(&"token="), "the server's own settings are not passed on");
    let event = app
        .api_until(&format!("/api/v1/events/{}", answer["id"]), "success", |e| {
            e["deliveries"][0]["state"] == "succeeded"
        })
        .await;
    assert!(rest.contains(&format!("delivery={}", event["deliveries"][0]["id"]).as_str()));
    let log = &app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await["logs"][0];
    assert_eq!((log["outcome"].as_str(), log["status_code"].as_i64()), (Some("success"), Some(0)));
    assert_eq!(log["response_body"], "provisioned\n");
}

async fn a_failing_script_is_retried_and_its_output_kept(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let marker = app.scripts_dir.join("tries");
    app.write_script(
        "flaky.sh",
        &format!(
            "#!/bin/sh\necho try >> {m}\nif [ $(wc -l < {m}) -lt 2 ]; then echo 'out of stock' >&2; echo partial; exit 3; fi\necho ok\n",
            m = marker.display()
        ),
        true,
    );
    let handler = app.create_handler(script_handler("flaky", "flaky.sh", 5000)).await;
    let (_, answer) = app.post_event(&envelope("clients.subscriptions.renew", json!(1), json!({}))).await;
    app.api_until(&format!("/api/v1/events/{}", answer["id"]), "success", |e| {
        e["deliveries"][0]["state"] == "succeeded"
    })
    .await;
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    let first = &logs["logs"][1];
    assert_eq!((first["outcome"].as_str(), first["status_code"].as_i64()), (Some("script_error"), Some(3)));
    assert_eq!(first["response_body"], "partial\n[stderr]\nout of stock\n");
    assert!(first["error"].as_str().unwrap().contains("exited with status 3"));
    assert_eq!(logs["logs"][0]["outcome"], "success");
    assert_eq!(logs["logs"][0]["attempt"], 2);
}

async fn a_script_past_its_timeout_dies_with_its_children(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let pids = app.scripts_dir.join("pids");
    app.write_script("hang.sh", &format!("#!/bin/sh\nsleep 60 &\necho $$ $! > {}\nwait\n", pids.display()), true);
    let handler = app.create_handler(script_handler("hang", "hang.sh", 400)).await;
    let (_, answer) = app.post_event(&envelope("clients.subscriptions.renew", json!(1), json!({}))).await;
    app.api_until(&format!("/api/v1/events/{}", answer["id"]), "failed", |e| e["deliveries"][0]["state"] == "failed")
        .await;
    let log = &app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await["logs"][0];
    assert_eq!(log["outcome"], "timeout");
    assert!(log["error"].as_str().unwrap().contains("process group was killed"));
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.split_whitespace() {
        let pid: i32 = pid.parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // The script and its child are gone (a zombie awaiting its parent counts as gone).
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "process {pid} survived the timeout");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}
