//! Property tests: the parsers of what arrives from outside — the envelope,
//! a handler's target, the deny list, a retry schedule, a duration, a
//! filter's instant — never panic, whatever the input, and what they accept
//! holds their rules.

use proptest::prelude::*;

use super::{
    RetrySchedule,
    duration::{parse_duration, parse_instant},
    envelope::parse_envelope,
    target::{DenyList, MAX_TARGET_LEN, parse_http_target, parse_script_target},
};

/// JSON text of any shape: nested arrays and objects, strings with any
/// character (NUL and controls too), numbers of any size.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        "[0-9]{1,40}(\\.[0-9]{1,10})?(e[+-]?[0-9]{1,4})?",
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((any::<String>(), inner), 0..6).prop_map(|kv| {
                let fields: Vec<String> =
                    kv.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap())).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Envelope-shaped JSON whose parts are anything.
fn envelope_text() -> impl Strategy<Value = String> {
    (json_text(), json_text(), json_text(), json_text()).prop_map(|(dt, events_id, object_id, data)| {
        format!(r#"{{"event":{{"dt":{dt},"events_id":{events_id},"object_id":{object_id}}},"data":{data}}}"#)
    })
}

fn catalogue_event() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["clients.create", "clients.subscriptions.renew", "payments.create", "nope", ""])
        .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_envelope_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_envelope(&body, || "2026-12-04T10:00:00Z".to_owned());
    }

    #[test]
    fn the_envelope_parser_never_panics_on_json(body in prop_oneof![json_text(), envelope_text()]) {
        let _ = parse_envelope(body.as_bytes(), || "2026-12-04T10:00:00Z".to_owned());
    }

    #[test]
    fn an_accepted_envelope_names_a_catalogue_event(
        events_id in catalogue_event(),
        object_id in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap())],
        data in json_text(),
    ) {
        let body = format!(r#"{{"event":{{"events_id":"{events_id}","object_id":{object_id}}},"data":{data}}}"#);
        if let Ok(event) = parse_envelope(body.as_bytes(), || "2026-12-04T10:00:00Z".to_owned()) {
            prop_assert!(crate::catalogue::find(event.event_type.id).is_some());
            prop_assert_eq!(event.event_type.id, events_id.as_str());
            prop_assert!(!event.object_id.contains('\0'));
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash(depth in 100usize..5000) {
        let body = format!(r#"{{"event":{{"events_id":"clients.create","object_id":1}},"data":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        let _ = parse_envelope(body.as_bytes(), || "2026-12-04T10:00:00Z".to_owned());
    }

    #[test]
    fn the_target_parser_never_panics_and_what_it_accepts_is_a_clean_url(text in any::<String>()) {
        let deny = DenyList::parse("169.254.0.0/16,fe80::/10,0.0.0.0/8").unwrap();
        if let Ok(url) = parse_http_target(&text, &deny) {
            prop_assert!(url.starts_with("http://") || url.starts_with("https://"), "{url}");
            prop_assert!(!url.chars().any(|c| c.is_whitespace() || c.is_control()), "{url:?}");
            let parsed = url::Url::parse(&url).unwrap();
            prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
            prop_assert!(deny.refusal(&parsed).is_none());
        }
        prop_assert!(text.trim().len() <= MAX_TARGET_LEN || parse_http_target(&text, &deny).is_err());
    }

    #[test]
    fn url_shaped_targets_never_panic(
        scheme in prop::sample::select(vec!["http://", "https://", "HTTP://", "", "ftp://"]),
        userinfo in prop::option::of("[a-z:%@]{0,8}@"),
        host in prop_oneof![
            "[0-9a-fA-FxX.]{1,30}",
            "\\[[0-9a-fA-F:.%]{0,45}\\]",
            "[a-z0-9.-]{1,30}",
            any::<u32>().prop_map(|n| n.to_string()),
        ],
        port in prop::option::of(any::<u32>()),
        path in "[/a-z0-9?#%&=._-]{0,20}",
    ) {
        let deny = DenyList::parse("169.254.0.0/16,fe80::/10,0.0.0.0/8,127.0.0.0/8").unwrap();
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let text = format!("{scheme}{}{host}{port}{path}", userinfo.unwrap_or_default());
        if let Ok(url) = parse_http_target(&text, &deny) {
            prop_assert!(deny.refusal(&url::Url::parse(&url).unwrap()).is_none(), "{text} → {url}");
        }
    }

    #[test]
    fn the_deny_list_parser_never_panics(text in any::<String>(), ranges in "[0-9a-f:./, ]{0,60}") {
        let _ = DenyList::parse(&text);
        if let Ok(list) = DenyList::parse(&ranges) {
            // What it prints, it reads back the same.
            prop_assert_eq!(DenyList::parse(&list.to_string()).unwrap(), list);
        }
    }

    #[test]
    fn the_script_target_parser_never_panics(text in any::<String>()) {
        let _ = parse_script_target(&text, std::path::Path::new("/nonexistent-scripts"));
    }

    #[test]
    fn the_schedule_parser_never_panics_and_keeps_what_it_reads(text in any::<String>(), shaped in "([0-9]{0,25}(ms|s|m|h|d|x)?,?){0,12}") {
        let _ = RetrySchedule::parse(&text);
        let _ = parse_duration(&text);
        if let Ok(schedule) = RetrySchedule::parse(&shaped) {
            prop_assert!(schedule.max_attempts() >= 1);
        }
    }

    #[test]
    fn the_instant_parser_never_panics(text in any::<String>(), shaped in "[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}([T ][0-9]{1,3}:[0-9]{1,3}(:[0-9]{1,3})?)?([+-][0-9]{2}:[0-9]{2}|Z)?", end in any::<bool>()) {
        let _ = parse_instant(&text, end);
        let _ = parse_instant(&shaped, end);
    }
}
