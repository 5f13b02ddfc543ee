//! Sign-in, sessions and what a signed-out visitor may reach.

use reqwest::StatusCode;

use crate::{
    helpers::{ADMIN_PASSWORD, ADMIN_USER, TestApp, TestDb, csrf_of, hidden_field},
    on_both_backends,
};

on_both_backends!(
    pages_need_a_session_and_redirect_to_login,
    a_wrong_password_is_refused,
    signing_in_and_out,
    the_login_form_needs_its_csrf_token,
    repeated_failures_lock_a_user_name_out_until_the_lockout_ends,
    repeated_failures_from_one_address_lock_it_out,
    an_unknown_user_costs_as_much_as_a_known_one,
    a_session_ends_at_its_absolute_lifetime_however_active,
    behind_tls_the_cookies_are_host_prefixed_and_secure,
    a_short_bootstrap_token_is_refused_at_start,
);

async fn pages_need_a_session_and_redirect_to_login(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for path in [
        "/provisioning",
        "/provisioning/new",
        "/provisioning/1/edit",
        "/provisioning/logs",
        "/provisioning/1/logs",
        "/provisioning/1/delete",
        "/provisioning?status=archived",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("/login?next="), "{path} -> {location}");
    }
    for path in ["/provisioning", "/provisioning/1", "/provisioning/1/status", "/provisioning/1/delete", "/logout"] {
        let res = app.post_form(path, &[("csrf_token", "x"), ("name", "n")]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "POST {path}");
    }
    // Open to everyone: the login page, health checks and static files.
    for path in ["/login", "/healthz", "/readyz", "/static/app.css", "/static/app.js"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    // A forged session cookie is no session.
    let forged = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = forged.get(app.url("/provisioning")).header("cookie", "provisiond_session=forged").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

async fn a_wrong_password_is_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for (user, password) in
        [(ADMIN_USER, "wrong"), (ADMIN_USER, ""), ("nobody", ADMIN_PASSWORD), ("ADMIN", ADMIN_PASSWORD)]
    {
        let res = app.try_sign_in(user, password).await;
        assert_eq!(res.status(), StatusCode::OK, "{user}/{password}: the login page again");
        assert!(
            res.headers().get("set-cookie").is_none_or(|c| !c.to_str().unwrap().starts_with("provisiond_session="))
        );
        let page = res.text().await.unwrap();
        assert!(page.contains("Wrong user name or password."));
        assert_eq!(hidden_field(&page, "username"), user, "the user name is kept");
        assert!(!page.contains(password) || password.is_empty() || password == ADMIN_USER);
    }
    assert_eq!(app.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "still signed out");
}

async fn signing_in_and_out(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let login = app.get_page("/login?next=/provisioning%3Fstatus%3Darchived").await;
    assert!(login.contains(r#"<label for="password">Password</label>"#));
    let token = hidden_field(&login, "csrf_token");
    let res = app
        .post_form(
            "/login",
            &[
                ("username", ADMIN_USER),
                ("password", ADMIN_PASSWORD),
                ("csrf_token", &token),
                ("next", "/provisioning?status=archived"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/provisioning?status=archived", "back where the visitor was going");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("provisiond_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let page = app.get_page("/provisioning").await;
    let csrf = csrf_of(&page);
    assert_eq!(csrf, csrf_of(&app.get_page("/provisioning/new").await), "one token per session");

    let res = app.post_form("/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/login");
    assert_eq!(app.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "signed out");

    // An open redirect through `next` is refused.
    let login = app.get_page("/login").await;
    let token = hidden_field(&login, "csrf_token");
    let res = app
        .post_form(
            "/login",
            &[
                ("username", ADMIN_USER),
                ("password", ADMIN_PASSWORD),
                ("csrf_token", &token),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(res.headers()["location"], "/provisioning");
}

async fn the_login_form_needs_its_csrf_token(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.get_page("/login").await;
    let res = app
        .post_form("/login", &[("username", ADMIN_USER), ("password", ADMIN_PASSWORD), ("csrf_token", "guess")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get("/provisioning").await.status(), StatusCode::SEE_OTHER);
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

async fn repeated_failures_lock_a_user_name_out_until_the_lockout_ends(db: TestDb) {
    let app = TestApp::spawn_with(db, tempdir(), |s| {
        s.login_max_failures = 3;
        s.login_lockout = std::time::Duration::from_secs(3);
    })
    .await;
    for n in 1..=2 {
        let res = app.try_sign_in(ADMIN_USER, "guess").await;
        assert_eq!(res.status(), StatusCode::OK, "failure {n}");
        assert!(res.text().await.unwrap().contains("Wrong user name or password."));
    }
    let res = app.try_sign_in(ADMIN_USER, "guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "the third failure locks");
    // Locked: even the right password is refused, and the page says until when.
    let res = app.try_sign_in(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().contains("provisiond_session=")));
    let page = res.text().await.unwrap();
    let re = regex::Regex::new(r"signing in is locked until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC").unwrap();
    let until =
        chrono::NaiveDateTime::parse_from_str(&re.captures(&page).expect("the unlock time")[1], "%Y-%m-%d %H:%M:%S")
            .unwrap();
    let now = chrono::Utc::now().naive_utc();
    assert!(until > now && until <= now + chrono::TimeDelta::seconds(4), "{until} vs {now}");
    assert_eq!(app.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "no session");
    // Another user name is not locked by it.
    assert_eq!(app.try_sign_in("someone-else", "guess").await.status(), StatusCode::OK);
    // The lockout ends.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(app.try_sign_in(ADMIN_USER, ADMIN_PASSWORD).await.status(), StatusCode::SEE_OTHER, "unlocked");
}

async fn repeated_failures_from_one_address_lock_it_out(db: TestDb) {
    let app = TestApp::spawn_with(db, tempdir(), |s| {
        s.login_max_failures_per_address = 4;
        s.login_lockout = std::time::Duration::from_secs(60);
    })
    .await;
    for n in 0..4 {
        let res = app.try_sign_in(&format!("user{n}"), "guess").await;
        let want = if n < 3 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(res.status(), want, "spraying user{n}");
    }
    let res = app.try_sign_in(ADMIN_USER, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "this address is locked out for every user name");
}

/// The password check runs argon2 for an unknown user name as for a known
/// one (the code-level check: `security::tests::an_unknown_user_costs_a_real_argon2_check`).
/// Medians of a few sign-ins each, compared loosely: an unknown user used to
/// answer 20 times faster.
async fn an_unknown_user_costs_as_much_as_a_known_one(db: TestDb) {
    let app = TestApp::spawn_with(db, tempdir(), |s| {
        (s.login_max_failures, s.login_max_failures_per_address) = (1000, 1000);
    })
    .await;
    let login = app.get_page("/login").await;
    let token = hidden_field(&login, "csrf_token");
    let time = |user: &'static str| {
        let (app, token) = (&app, token.clone());
        async move {
            let started = std::time::Instant::now();
            let res =
                app.post_form("/login", &[("username", user), ("password", "wrong"), ("csrf_token", &token)]).await;
            assert_eq!(res.status(), StatusCode::OK);
            started.elapsed()
        }
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for n in 0..8 {
        if n % 2 == 0 {
            known.push(time(ADMIN_USER).await);
        }
        unknown.push(time("nobody-at-all").await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[known.len() / 2], unknown[unknown.len() / 2]);
    assert!(u * 3 > k, "an unknown user answers in {u:?}, a known one in {k:?}");
}

async fn a_session_ends_at_its_absolute_lifetime_however_active(db: TestDb) {
    let app = TestApp::spawn_with(db, tempdir(), |s| s.session_max_age = std::time::Duration::from_secs(2)).await;
    app.sign_in().await;
    for _ in 0..3 {
        assert_eq!(app.get("/provisioning").await.status(), StatusCode::OK, "active");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(app.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "past its absolute lifetime");
}

async fn behind_tls_the_cookies_are_host_prefixed_and_secure(db: TestDb) {
    let app = TestApp::spawn_with(db, tempdir(), |s| s.secure_cookies = true).await;
    let res = app.get("/login").await;
    let cookies: Vec<String> =
        res.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    let csrf = cookies.iter().find(|c| c.starts_with("__Host-provisiond_login_csrf=")).expect("a __Host- cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(csrf.contains(attribute), "{csrf} lacks {attribute}");
    }
    assert!(!csrf.contains("Domain"), "{csrf}");
    let token = hidden_field(&res.text().await.unwrap(), "csrf_token");
    // The test client is on plain HTTP: send the cookie by hand, as a browser would over TLS.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = plain
        .post(app.url("/login"))
        .header("cookie", format!("__Host-provisiond_login_csrf={token}"))
        .form(&[("username", ADMIN_USER), ("password", ADMIN_PASSWORD), ("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-provisiond_session="))
        .expect("the session cookie is __Host-");
    assert!(session.contains("Secure") && session.contains("SameSite=Strict"), "{session}");
}

async fn a_short_bootstrap_token_is_refused_at_start(db: TestDb) {
    let scripts = tempdir();
    let mut settings = crate::helpers::settings(&db, scripts.path());
    settings.api_token = Some("short-token-23-chars-xx".into());
    let error = provisiond::app::Application::build(settings).await.err().expect("refused");
    assert!(error.to_string().contains("PROVISIOND_API_TOKEN must be at least 24 characters"), "{error}");
}
