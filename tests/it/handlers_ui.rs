//! The handler pages, driven through their forms as a browser without JavaScript would.

use reqwest::StatusCode;

use crate::{
    helpers::{TestApp, TestDb, field_error, flash_of, hidden_field, listed_ids},
    on_both_backends,
};

on_both_backends!(
    create_edit_toggle_archive_and_delete_a_handler,
    an_invalid_form_keeps_the_values_shows_each_message_and_creates_nothing,
    advanced_search_filters_by_event_type_and_status,
    the_list_is_sorted_by_priority_then_id_and_paginated,
    names_are_escaped,
    a_post_without_the_csrf_token_is_refused_and_changes_nothing,
    script_targets_must_be_executables_inside_the_scripts_directory,
    a_backlog_past_ten_thousand_is_shown_as_10_000_plus,
    the_integrator_guide_is_linked_from_the_pages,
    a_handler_is_found_by_name_or_target_and_the_list_sorts_by_its_columns,
);

fn handler_fields<'a>(csrf: &'a str, name: &'a str, target: &'a str, priority: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", csrf),
        ("name", name),
        ("events_id", "clients.create"),
        ("type", "http"),
        ("target", target),
        ("status", "enabled"),
        ("priority", priority),
        ("timeout_ms", "5000"),
    ]
}

/// Creates a handler through the form; returns its id, read from the flash
/// message the next page shows.
async fn create(app: &TestApp, fields: &[(&str, &str)]) -> i64 {
    let res = app.post_form("/provisioning", fields).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let flash = flash_of(&app.get_page("/provisioning").await).expect("a flash message");
    let id = flash.split("(#").nth(1).and_then(|rest| rest.split(')').next()).expect("the id in the flash");
    assert!(location.ends_with(&format!("#handler-{id}")), "back to the new row: {location}");
    id.parse().unwrap()
}

async fn create_edit_toggle_archive_and_delete_a_handler(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;

    let new_form = app.get_page("/provisioning/new").await;
    assert!(new_form.contains(r#"<form method="post" action="/provisioning""#));
    assert!(new_form.contains(r#"<optgroup label="Clients">"#), "events grouped by the catalogue's groups");

    let res = app.post_form("/provisioning", &handler_fields(&csrf, "CRM sync", "127.0.0.1:5000/api", "10")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = app.get_page("/provisioning").await;
    let id = listed_ids(&page)[0];
    assert_eq!(
        flash_of(&page).as_deref(),
        Some(&*format!("Handler “CRM sync” created (#{id}). It applies to the next event."))
    );
    assert!(page.contains("<code>http://127.0.0.1:5000/api</code>"), "the target is shown with its scheme");
    assert!(page.contains("Clients: create"));
    assert!(page.contains("Changes take effect immediately"));
    assert_eq!(flash_of(&app.get_page("/provisioning").await), None, "a flash is shown once");

    // Edit: the form comes back filled, and a change is saved.
    let edit = app.get_page(&format!("/provisioning/{id}/edit")).await;
    assert_eq!(hidden_field(&edit, "name"), "CRM sync");
    assert!(edit.contains(r#"<option value="clients.create" selected>"#));
    assert!(edit.contains("whsec_"), "the signing secret is shown to the administrator");
    let mut fields = handler_fields(&csrf, "CRM sync v2", "https://crm.example/hooks", "3");
    fields[2] = ("events_id", "clients.update");
    let res = app.post_form(&format!("/provisioning/{id}"), &fields).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = app.get_page("/provisioning").await;
    assert!(
        page.contains("CRM sync v2") && page.contains("https://crm.example/hooks") && page.contains("Clients: update")
    );

    // Toggle: enabled -> disabled -> enabled, back to the page it came from.
    let toggle = |status: &'static str| {
        let csrf = csrf.clone();
        let app = &app;
        async move {
            let mut f = vec![("csrf_token", csrf.as_str()), ("return_to", "/provisioning?type=http")];
            if !status.is_empty() {
                f.push(("status", status));
            }
            let res = app.post_form(&format!("/provisioning/{id}/status"), &f).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
            let back = format!("/provisioning?type=http#handler-{id}");
            assert_eq!(res.headers()["location"], back.as_str(), "back to the row in the list it was toggled in");
        }
    };
    let ids = |path: &'static str| {
        let app = &app;
        async move { listed_ids(&app.get_page(path).await) }
    };
    toggle("").await;
    assert_eq!(
        flash_of(&app.get_page("/provisioning").await).as_deref(),
        Some("Handler “CRM sync v2” is now disabled.")
    );
    assert_eq!(ids("/provisioning?status=disabled").await, vec![id]);
    assert!(ids("/provisioning?status=enabled").await.is_empty());
    toggle("").await;
    assert_eq!(ids("/provisioning?status=enabled").await, vec![id]);

    // Archive: gone from the default list, shown when asked for.
    toggle("archived").await;
    assert!(ids("/provisioning").await.is_empty());
    let archived = app.get_page("/provisioning?status=archived").await;
    assert_eq!(listed_ids(&archived), vec![id]);
    assert!(archived.contains("Archived — click to restore as disabled"));

    // Delete: a confirmation first, then the POST.
    let confirm = app.get_page(&format!("/provisioning/{id}/delete")).await;
    assert!(confirm.contains("Delete Handler #") && confirm.contains("cannot be undone"));
    let res = app.post_form(&format!("/provisioning/{id}/delete"), &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = app.get_page("/provisioning?status=archived").await;
    assert!(listed_ids(&page).is_empty());
    assert_eq!(app.get(&format!("/provisioning/{id}/edit")).await.status(), StatusCode::NOT_FOUND);
    let res = app.post_form(&format!("/provisioning/{id}/delete"), &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "deleting twice is a clear 404");
}

async fn an_invalid_form_keeps_the_values_shows_each_message_and_creates_nothing(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let long = "x".repeat(201);
    let cases: &[(&str, &str, &str)] = &[
        ("name", "   ", "Enter a name"),
        ("name", &long, "The name must be at most 200 characters"),
        ("events_id", "clients.explode", "Choose an event from the list"),
        ("type", "ftp", "Choose a handler type: http or script"),
        ("target", "ftp://x/y", "Use an http:// or https:// URL, not ftp://"),
        ("target", "", "Enter the URL to call, e.g. 127.0.0.1:5000/api"),
        ("status", "sleeping", "Choose a status: enabled, paused, disabled or archived"),
        ("priority", "-1", "Enter a whole number from 0 to 1000000"),
        ("priority", "1000001", "Enter a whole number from 0 to 1000000"),
        ("priority", "ten", "Enter a whole number from 0 to 1000000"),
        ("timeout_ms", "99", "Enter a timeout in milliseconds from 100 to 300000"),
        ("timeout_ms", "300001", "Enter a timeout in milliseconds from 100 to 300000"),
        ("ordering_group", &long, "The ordering group must be at most 200 characters"),
    ];
    for (field, value, message) in cases {
        let mut fields = handler_fields(&csrf, "Keep me", "127.0.0.1:5000/api", "7");
        fields.retain(|(k, _)| k != field);
        fields.push((field, value));
        let res = app.post_form("/provisioning", &fields).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}");
        let page = res.text().await.unwrap();
        assert_eq!(field_error(&page, field).as_deref(), Some(*message), "{field}={value}");
        if *field != "name" {
            assert_eq!(hidden_field(&page, "name"), "Keep me", "values are kept");
        }
        if *field != "priority" {
            assert_eq!(hidden_field(&page, "priority"), "7");
        }
    }
    // Several errors at once, each beside its own field.
    let res = app
        .post_form(
            "/provisioning",
            &[("csrf_token", &csrf), ("name", ""), ("events_id", ""), ("type", "http"), ("target", "")],
        )
        .await;
    let page = res.text().await.unwrap();
    for field in ["name", "events_id", "target"] {
        assert!(field_error(&page, field).is_some(), "{field}");
    }
    let list = app.get_page("/provisioning?status=").await;
    assert!(listed_ids(&list).is_empty(), "no invalid form created a handler");
    for status in ["enabled", "disabled", "archived"] {
        assert!(listed_ids(&app.get_page(&format!("/provisioning?status={status}")).await).is_empty());
    }

    // An invalid edit changes nothing either.
    let id = create(&app, &handler_fields(&csrf, "Stable", "127.0.0.1:5000/api", "1")).await;
    let res = app.post_form(&format!("/provisioning/{id}"), &handler_fields(&csrf, "", "127.0.0.1:1/x", "1")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let edit = app.get_page(&format!("/provisioning/{id}/edit")).await;
    assert_eq!(hidden_field(&edit, "name"), "Stable");
    assert!(edit.contains("http://127.0.0.1:5000/api"));
}

async fn advanced_search_filters_by_event_type_and_status(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let script = app.write_script("provision.sh", "#!/bin/sh\nexit 0\n", true);
    assert!(script.exists());
    let specs = [
        ("A http create enabled", "clients.create", "http", "127.0.0.1:5000/a", "enabled"),
        ("B script create enabled", "clients.create", "script", "provision.sh", "enabled"),
        ("C http update disabled", "clients.update", "http", "127.0.0.1:5000/c", "disabled"),
        ("D http create archived", "clients.create", "http", "127.0.0.1:5000/d", "archived"),
    ];
    for (name, event, kind, target, status) in specs {
        let res = app
            .post_form(
                "/provisioning",
                &[
                    ("csrf_token", &csrf),
                    ("name", name),
                    ("events_id", event),
                    ("type", kind),
                    ("target", target),
                    ("status", status),
                    ("priority", "1"),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{name}");
    }
    app.get_page("/provisioning").await; // shows (and so clears) the last flash message
    let names = |page: String| -> Vec<char> {
        specs.iter().filter(|s| page.contains(s.0)).map(|s| s.0.chars().next().unwrap()).collect()
    };
    assert_eq!(names(app.get_page("/provisioning").await), vec!['A', 'B', 'C'], "blank status: enabled and disabled");
    assert_eq!(names(app.get_page("/provisioning?event=clients.create").await), vec!['A', 'B']);
    assert_eq!(names(app.get_page("/provisioning?type=script").await), vec!['B']);
    assert_eq!(names(app.get_page("/provisioning?type=http&status=").await), vec!['A', 'C']);
    assert_eq!(names(app.get_page("/provisioning?status=archived").await), vec!['D']);
    assert_eq!(names(app.get_page("/provisioning?event=clients.create&type=http&status=enabled").await), vec!['A']);
    let filtered = app.get_page("/provisioning?event=clients.update").await;
    assert!(filtered.contains(r#"<option value="clients.update" selected>"#), "the drop-down shows the filter");
    // A bad filter is a clear 400, not an empty list.
    for bad in
        ["/provisioning?status=sleeping", "/provisioning?type=ftp", "/provisioning?event=nope", "/provisioning?page=0"]
    {
        let res = app.get(bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

async fn the_list_is_sorted_by_priority_then_id_and_paginated(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    // 60 handlers with priorities 59..0 in creation order, and a tie.
    for i in 0..60 {
        let priority = (59 - i).to_string();
        let name = format!("H{i}");
        create(&app, &handler_fields(&csrf, &name, "127.0.0.1:5000/api", &priority)).await;
    }
    let tie = create(&app, &handler_fields(&csrf, "Tie", "127.0.0.1:5000/api", "0")).await;
    let first = app.get_page("/provisioning").await;
    let ids = listed_ids(&first);
    assert_eq!(ids.len(), 50);
    assert_eq!(ids[0], tie - 1, "priority 0 first, lower id first on a tie");
    assert_eq!(ids[1], tie);
    assert!(first.contains("1–50 of 61"));
    assert!(first.contains(r#"href="/provisioning?page=2" rel="next""#));
    let second = app.get_page("/provisioning?page=2").await;
    let ids2 = listed_ids(&second);
    assert_eq!(ids2.len(), 11);
    assert_eq!(*ids2.last().unwrap(), tie - 60, "priority 59 last");
    assert!(second.contains("51–61 of 61") && second.contains(r#"rel="prev""#) && !second.contains(r#"rel="next""#));
    let filtered = app.get_page("/provisioning?type=http").await;
    assert!(filtered.contains(r#"href="/provisioning?type=http&#38;page=2""#), "pages keep the filters");
}

async fn names_are_escaped(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let evil = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    let id = create(&app, &handler_fields(&csrf, evil, "127.0.0.1:5000/api", "1")).await;
    for page in [
        app.get_page("/provisioning").await,
        app.get_page(&format!("/provisioning/{id}/edit")).await,
        app.get_page(&format!("/provisioning/{id}/delete")).await,
    ] {
        assert!(!page.contains("<script>alert"), "no live script tag");
        assert!(!page.contains("<img src=x"), "no live img tag");
        assert!(page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"));
    }
    let invalid = app.post_form("/provisioning", &handler_fields(&csrf, evil, "ftp://<b>x</b>", "1")).await;
    let page = invalid.text().await.unwrap();
    assert!(!page.contains("<b>x</b>") && !page.contains("<script>alert"));
}

async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let id = create(&app, &handler_fields(&csrf, "Guarded", "127.0.0.1:5000/api", "1")).await;
    let no_token = handler_fields("", "Forged", "127.0.0.1:6000/x", "1");
    let wrong: Vec<_> = handler_fields("forged-token", "Forged", "127.0.0.1:6000/x", "1");
    let without: Vec<_> = no_token.into_iter().filter(|(k, _)| *k != "csrf_token").collect();
    for fields in [&without, &wrong] {
        for path in ["/provisioning".to_owned(), format!("/provisioning/{id}")] {
            let res = app.post_form(&path, fields).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
        for path in [
            format!("/provisioning/{id}/status"),
            format!("/provisioning/{id}/delete"),
            format!("/provisioning/{id}/secret"),
        ] {
            let res = app.post_form(&path, &fields[..1]).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
    }
    let page = app.get_page("/provisioning").await;
    assert_eq!(listed_ids(&page), vec![id]);
    assert!(page.contains("Guarded") && !page.contains("Forged"));
    assert!(page.contains("Enabled — click to disable"), "the status did not change");
    let res = app.post_form("/logout", &[("csrf_token", "nope")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get("/provisioning").await.status(), StatusCode::OK, "still signed in");
}

async fn script_targets_must_be_executables_inside_the_scripts_directory(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    app.write_script("ok.sh", "#!/bin/sh\nexit 0\n", true);
    app.write_script("sub/deep.sh", "#!/bin/sh\nexit 0\n", true);
    app.write_script("plain.txt", "not executable", false);
    let outside = tempfile::tempdir().unwrap();
    let evil = outside.path().join("evil.sh");
    std::fs::write(&evil, "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink(&evil, app.scripts_dir.join("link.sh")).unwrap();

    let post = |target: String| {
        let csrf = csrf.clone();
        let app = &app;
        async move {
            let fields = [
                ("csrf_token", csrf.as_str()),
                ("name", "S"),
                ("events_id", "clients.create"),
                ("type", "script"),
                ("target", target.as_str()),
                ("priority", "1"),
            ];
            app.post_form("/provisioning", &fields).await
        }
    };
    for good in ["ok.sh", "./sub/deep.sh"] {
        assert_eq!(post(good.into()).await.status(), StatusCode::SEE_OTHER, "{good}");
    }
    let page = app.get_page("/provisioning?type=script").await;
    assert!(page.contains("<code>ok.sh</code>") && page.contains("<code>sub/deep.sh</code>"));
    for bad in [
        "../ok.sh".to_owned(),
        "sub/../../x.sh".into(),
        "missing.sh".into(),
        "plain.txt".into(),
        "link.sh".into(),
        evil.display().to_string(),
        "".into(),
    ] {
        let res = post(bad.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(field_error(&res.text().await.unwrap(), "target").is_some(), "{bad}");
    }
    assert_eq!(listed_ids(&app.get_page("/provisioning?type=script").await).len(), 2);
}

/// The list counts a handler's backlog up to 10,000 (so that a backlog of
/// millions costs it no more than one of 10,000) and shows more as "10,000+".
async fn a_backlog_past_ten_thousand_is_shown_as_10_000_plus(db: TestDb) {
    let (app, _) = TestApp::signed_in(db).await;
    let busy = app
        .create_handler(serde_json::json!({"name": "busy", "events_id": "clients.create", "type": "http", "target": "http://127.0.0.1:9/b", "priority": 1}))
        .await["id"]
        .as_i64()
        .unwrap();
    let small = app
        .create_handler(serde_json::json!({"name": "small", "events_id": "clients.create", "type": "http", "target": "http://127.0.0.1:9/s", "priority": 2}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.raw_sql(
        "INSERT INTO events (events_id, entity, object_id, payload, received_at)
         VALUES ('clients.create', 'clients', '1', '{}', '2026-01-01 00:00:00')",
    );
    // Due in a century: never attempted during the test.
    let rows = |handler: i64, n: i64, attempts: i64| {
        format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n})
             INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                 max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
             SELECT (SELECT MAX(id) FROM events), {handler}, 'msg_t_{handler}_{attempts}_' || g, 1, 'clients', 'o' || g,
                 'pending', {attempts}, 9, TRUE, '2126-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00',
                 'h{handler}'
             FROM s"
        )
    };
    app.raw_sql(&rows(busy, 10_500, 0));
    app.raw_sql(&rows(busy, 10_200, 1));
    app.raw_sql(&rows(small, 7, 0));
    app.raw_sql(&rows(small, 3, 1));
    let page = app.get_page("/provisioning").await;
    assert!(page.contains("10,000+ failing"), "the busy handler's retrying deliveries");
    assert!(page.contains("10,000+ pending"), "the busy handler's waiting deliveries");
    assert!(page.contains(">3 failing<"), "exact under the cap");
    assert!(page.contains(">7 pending<"), "exact under the cap");
}

async fn the_integrator_guide_is_linked_from_the_pages(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let list = app.get_page("/provisioning").await;
    assert!(list.contains(r#"href="/provisioning/help/handlers""#), "in the navigation");
    create(&app, &handler_fields(&csrf, "CRM", "127.0.0.1:5000/api", "1")).await;
    let id = listed_ids(&app.get_page("/provisioning").await)[0];
    let form = app.get_page(&format!("/provisioning/{id}/edit")).await;
    assert!(form.contains(r#"href="/provisioning/help/handlers#verifying-the-signature""#), "beside the secret");
    let guide = app.get_page("/provisioning/help/handlers").await;
    assert!(guide.contains(r#"<h2 id="verifying-the-signature">"#), "the anchor the form links to");
    assert!(guide.contains("webhook-id") && guide.contains("standardwebhooks"), "the guide itself");
    app.post_form("/logout", &[("csrf_token", &csrf)]).await;
    let res = app.get("/provisioning/help/handlers").await;
    assert!(res.url().path().starts_with("/login") || res.status() == reqwest::StatusCode::SEE_OTHER, "signed in only");
}

async fn a_handler_is_found_by_name_or_target_and_the_list_sorts_by_its_columns(db: TestDb) {
    let (app, _) = TestApp::signed_in(db).await;
    let mut ids = std::collections::HashMap::new();
    for (name, target, priority) in [
        ("Billing CRM", "http://10.0.0.1/crm", 5),
        ("radius sync", "http://10.0.0.2/radius", 1),
        ("Mailer", "http://mail.example/100%_done", 3),
    ] {
        let h = app.create_handler(crate::dispatch::http_handler(name, "clients.create", target, priority)).await;
        ids.insert(name, h["id"].as_i64().unwrap());
    }
    let listed = |path: &'static str| {
        let app = &app;
        async move { listed_ids(&app.get_page(path).await) }
    };
    // By name or target, in any case; LIKE's wildcards are literal.
    assert_eq!(listed("/provisioning?q=crm").await, [ids["Billing CRM"]]);
    assert_eq!(listed("/provisioning?q=RADIUS").await, [ids["radius sync"]]);
    assert_eq!(listed("/provisioning?q=10.0.0").await.len(), 2);
    assert_eq!(listed("/provisioning?q=100%25_").await, [ids["Mailer"]]);
    assert!(listed("/provisioning?q=%25").await == [ids["Mailer"]], "a % is a %");
    assert!(listed("/provisioning?q=nothing-like-it").await.is_empty());
    let page = app.get_page("/provisioning?q=crm").await;
    assert!(page.contains(r#"<input id="f-q" name="q" type="search" value="crm""#));
    assert!(page.contains("Filtered list"));
    let api = app.api_json("/api/v1/handlers?q=radius").await;
    assert_eq!(api["handlers"].as_array().unwrap().len(), 1);

    // Sorted by priority (the chain's order) unless a column is chosen; a second click turns it.
    assert_eq!(listed("/provisioning").await, [ids["radius sync"], ids["Mailer"], ids["Billing CRM"]]);
    assert_eq!(listed("/provisioning?sort=name").await, [ids["Billing CRM"], ids["Mailer"], ids["radius sync"]]);
    assert_eq!(
        listed("/provisioning?sort=name&dir=desc").await,
        [ids["radius sync"], ids["Mailer"], ids["Billing CRM"]]
    );
    assert_eq!(listed("/provisioning?sort=id").await, {
        let mut all: Vec<i64> = ids.values().copied().collect();
        all.sort();
        all
    });
    let page = app.get_page("/provisioning?sort=name&q=i").await;
    let header = page.replace("&#38;", "&amp;");
    assert!(
        header.contains(r#"aria-sort="ascending"><a href="/provisioning?q=i&amp;sort=name&amp;dir=desc">Name</a>"#),
        "the header sorts the other way, the filter kept: {page}"
    );
    assert_eq!(app.get("/provisioning?sort=colour").await.status(), StatusCode::BAD_REQUEST);
}
