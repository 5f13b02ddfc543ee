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
