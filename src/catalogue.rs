//! The event catalogue: the 27 business events a producer may post and a
//! handler may subscribe to. One table, used by the handler form (grouped
//! select), the Advanced Search filter, ingestion validation and the docs.

/// One event of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    /// The id as delivered in `event.events_id`, e.g. `clients.create`.
    pub id: &'static str,
    /// The group it is listed under in the handler form.
    pub group: &'static str,
    /// A short label within its group, as the form shows it.
    pub label: &'static str,
    /// What happened.
    pub description: &'static str,
    /// A payload sample (the envelope a handler receives), as JSON text.
    pub sample: &'static str,
}

impl EventType {
    /// The entity the event is about, the kind of object its `object_id`
    /// names (DESIGN §3.1): see [`entity_of`].
    pub fn entity(&self) -> &'static str {
        entity_of(self.id)
    }
}

/// The kinds of object a client has, whose events name one of them
/// (`clients.accounts.create` is about an account).
const CLIENT_PARTS: &[&str] = &["clients.accounts", "clients.subscriptions"];

/// The entity of an events id: everything before the last dot
/// (`clients.accounts.create` -> `clients.accounts`), except that a
/// `clients.*` event about the client itself is about `clients`
/// (`clients.custom_fields.update` for object 12 is about client 12).
pub fn entity_of(events_id: &str) -> &str {
    let entity = events_id.rsplit_once('.').map_or(events_id, |(entity, _)| entity);
    if entity.starts_with("clients.") && !CLIENT_PARTS.contains(&entity) { "clients" } else { entity }
}

/// The groups in the order the form lists them.
pub const GROUPS: &[&str] =
    &["Clients", "Accounts", "Subscriptions", "Email Rates Manager", "Import Manager", "Charges", "Payments"];

/// Every event, grouped as in [`GROUPS`].
pub const EVENTS: &[EventType] = &[
    EventType {
        id: "clients.create",
        group: "Clients",
        label: "create",
        description: "The client has been created",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.create","object_id":12},"data":{"id":12,"name":"My name","companies_id":3}}"#,
    },
    EventType {
        id: "clients.update",
        group: "Clients",
        label: "update",
        description: "The client's details have been updated",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.update","object_id":12},"data":{"id":12,"name":"My changed name"}}"#,
    },
    EventType {
        id: "clients.archive",
        group: "Clients",
        label: "archive",
        description: "The client has been archived",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.archive","object_id":12},"data":{}}"#,
    },
    EventType {
        id: "clients.delete",
        group: "Clients",
        label: "delete",
        description: "The client has been completely deleted (not to be confused with archived)",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.delete","object_id":12},"data":{}}"#,
    },
    EventType {
        id: "clients.balance_zero",
        group: "Clients",
        label: "balance became <=0",
        description: "The client's balance became <= 0",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.balance_zero","object_id":12},"data":{}}"#,
    },
    EventType {
        id: "clients.balance_notzero",
        group: "Clients",
        label: "balance became >0",
        description: "The client's balance became > 0",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.balance_notzero","object_id":12},"data":{}}"#,
    },
    EventType {
        id: "clients.custom_fields.update",
        group: "Clients",
        label: "custom fields update",
        description: "The client's Custom Field has been updated",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.custom_fields.update","object_id":12},"data":{"id":12,"custom-field-name":"custom-field-value"}}"#,
    },
    EventType {
        id: "clients.accounts.create",
        group: "Accounts",
        label: "create",
        description: "The account has been created",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.accounts.create","object_id":12},"data":{"id":12,"clients_id":7,"name":"My account","auth_type":"name"}}"#,
    },
    EventType {
        id: "clients.accounts.update",
        group: "Accounts",
        label: "update",
        description: "The account's details have been updated",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.accounts.update","object_id":12},"data":{"id":12,"name":"My changed account"}}"#,
    },
    EventType {
        id: "clients.accounts.delete",
        group: "Accounts",
        label: "delete",
        description: "The account has been completely deleted",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.accounts.delete","object_id":12},"data":{}}"#,
    },
    EventType {
        id: "clients.subscriptions.assign",
        group: "Subscriptions",
        label: "assign",
        description: "The subscription has been assigned",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.subscriptions.assign","object_id":12},"data":{"id":12,"clients_id":34,"packages_id":56,"stop_dt":"2023-01-01T00:00:00+00:00"}}"#,
    },
    EventType {
        id: "clients.subscriptions.activate",
        group: "Subscriptions",
        label: "activate",
        description: "The subscription has been activated",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.subscriptions.activate","object_id":12},"data":{"id":12,"clients_id":34,"packages_id":56,"stop_dt":"2023-01-01T00:00:00+00:00","condition":"activated"}}"#,
    },
    EventType {
        id: "clients.subscriptions.deactivate",
        group: "Subscriptions",
        label: "deactivate",
        description: "The subscription has been deactivated",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.subscriptions.deactivate","object_id":12},"data":{"id":12,"clients_id":34,"packages_id":56,"stop_dt":"2023-01-01T00:00:00+00:00","condition":"deactivated"}}"#,
    },
    EventType {
        id: "clients.subscriptions.renew",
        group: "Subscriptions",
        label: "renew",
        description: "The subscription has been renewed",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.subscriptions.renew","object_id":12},"data":{"id":12,"clients_id":34,"packages_id":56,"stop_dt":"2023-01-01T00:00:00+00:00","renew_count":1}}"#,
    },
    EventType {
        id: "clients.subscriptions.close",
        group: "Subscriptions",
        label: "close",
        description: "The subscription has been closed",
        sample: r#"{"event":{"dt":"2000-01-01T00:00:00+00:00","events_id":"clients.subscriptions.close","object_id":12},"data":{"id":12,"clients_id":34,"packages_id":56,"stop_dt":"2000-01-01T00:00:00+00:00"}}"#,
    },
    EventType {
        id: "email_rates_manager.import",
        group: "Email Rates Manager",
        label: "import",
        description: "The import file has been prepared for further processing by the task specified in the handler settings, and the import process was stopped",
        sample: r#"{"event":{"dt":"2022-01-24T15:44:47.216756+00:00","events_id":"email_rates_manager.import","object_id":"77798"},"data":{"mailbox":{"login":"rates@example.com","host":"imap.example.com"},"message":{"from":"Sender <sender@example.com>","id":"77798","subject":"Subject of the message"},"queue":{"id":62,"object":"rate_tables","object_id":64,"status":"enqueued"}}}"#,
    },
    EventType {
        id: "email_rates_manager.rate_tables_no_match",
        group: "Email Rates Manager",
        label: "rate tables no match",
        description: "No Rate Tables match received email",
        sample: r#"{"event":{"dt":"2022-01-24T15:44:47.216756+00:00","events_id":"email_rates_manager.rate_tables_no_match","object_id":"77798"},"data":{"credentials":{"login":"rates@example.com","host":"imap.example.com"},"message":{"from":"Sender <sender@example.com>","id":"77798","subject":"Subject of the message"}}}"#,
    },
    EventType {
        id: "email_rates_manager.no_attachments",
        group: "Email Rates Manager",
        label: "no attachments",
        description: "No attachments have been identified",
        sample: r#"{"event":{"dt":"2022-01-24T15:44:47.216756+00:00","events_id":"email_rates_manager.no_attachments","object_id":"77798"},"data":{"credentials":{"login":"rates@example.com","host":"imap.example.com"},"message":{"from":"Sender <sender@example.com>","id":"77798","subject":"Subject of the message"},"rate_tables":[{"id":74,"name":"Rate Table A"},{"id":7,"name":"Rate TAble B"}]}}"#,
    },
    EventType {
        id: "email_rates_manager.file_processing_error",
        group: "Email Rates Manager",
        label: "file processing error",
        description: "The file processing error",
        sample: r#"{"event":{"dt":"2022-01-24T15:44:47.216756+00:00","events_id":"email_rates_manager.file_processing_error","object_id":"77798"},"data":{"error":{"code":"incorrect-file-ext","message":"Can't process file: test_import_9999.zip. File is not a zip file"},"credentials":{"login":"rates@example.com","host":"imap.example.com"},"message":{"from":"Sender <sender@example.com>","id":"77798","subject":"Subject of the message"},"rate_tables":[{"id":74,"name":"Rate Table A"},{"id":7,"name":"Rate TAble B"}]}}"#,
    },
    EventType {
        id: "importd.process_success",
        group: "Import Manager",
        label: "process success",
        description: "The import attempt was successful",
        sample: r#"{"event":{"dt":"2022-07-14T13:12:02.918034+00:00","events_id":"importd.process_success","object_id":"62"},"data":{"main":{"code_decks_id":1,"codes_import_key":"import-rates-62","datetime_format":"mdy","error_mode":"skip_rows","rate_table":{"id":64,"name":"0parent","currencies_id":26,"companies_id":3,"tags":["@"],"with_taxes":false},"sheets":[{"columns":["code","code_name","value","effective_from"],"file_meta":{"count":10313,"id":0,"name":"rates-1_RT_for_services-2222-05-13_073122.csv"},"skip_rows_bottom":0,"skip_rows_top":1,"type":"rates"}],"unchanged_mode":"skip_rows","warning_mode":"save_rows"},"queue":{"dt":"2022-07-14T13:11:46.567390+00:00","id":62,"object":"rate_tables","object_id":64,"messages":[],"stats":{"closed_by_az":0,"decreased":2,"duplicates":10307,"errors":5,"increased":3,"overlaid":10312,"processed":10312,"stashed_by_az":0,"successful":10312},"status":"enqueued","users_id":6}}}"#,
    },
    EventType {
        id: "importd.process_failed",
        group: "Import Manager",
        label: "process failed",
        description: "The import attempt has failed",
        sample: r#"{"event":{"dt":"2022-07-14T13:12:02.918034+00:00","events_id":"importd.process_failed","object_id":"62"},"data":{"main":{"codes_import_key":"import-rates-62"},"queue":{"id":62,"object":"rate_tables","object_id":64,"status":"failed"}}}"#,
    },
    EventType {
        id: "accounting.charges.create",
        group: "Charges",
        label: "create",
        description: "The Transaction of Type Charge has been created",
        sample: r#"{"event":{"dt":"2022-07-22T11:41:09.253251+00:00","events_id":"accounting.charges.create","object_id":"2220"},"data":{"id":2220,"c_dt":"2022-07-06 00:00:00+0000","tags":[],"type":"charge","notes":"t","taxes":null,"amount":10}}"#,
    },
    EventType {
        id: "accounting.charges.update",
        group: "Charges",
        label: "update",
        description: "The Transaction of Type Charge has been edited",
        sample: r#"{"event":{"dt":"2022-07-22T11:41:27.298884+00:00","events_id":"accounting.charges.update","object_id":"2220"},"data":{"id":2220,"c_dt":"2022-07-06 00:00:00+0000","tags":[],"type":"charge","notes":"t_1","taxes":null,"amount":10}}"#,
    },
    EventType {
        id: "accounting.charges.delete",
        group: "Charges",
        label: "delete",
        description: "The Transaction of Type Charge has been removed",
        sample: r#"{"event":{"dt":"2022-07-22T11:41:44.650430+00:00","events_id":"accounting.charges.delete","object_id":"2220"},"data":[]}"#,
    },
    EventType {
        id: "accounting.payments.create",
        group: "Payments",
        label: "create",
        description: "The Transaction of Type Payment has been created",
        sample: r#"{"event":{"dt":"2022-07-22T11:49:41.212852+00:00","events_id":"accounting.payments.create","object_id":"2223"},"data":{"id":2223,"c_dt":"2022-07-14 00:00:00+0000","tags":[],"type":"payment","notes":"test","taxes":null,"amount":1,"status":"approved"}}"#,
    },
    EventType {
        id: "accounting.payments.update",
        group: "Payments",
        label: "update",
        description: "The Transaction of Type Payment has been edited",
        sample: r#"{"event":{"dt":"2022-07-22T11:49:45.263719+00:00","events_id":"accounting.payments.update","object_id":"2223"},"data":{"id":2223,"c_dt":"2022-07-14 00:00:00+0000","tags":[],"type":"payment","notes":"test","taxes":null,"amount":10}}"#,
    },
    EventType {
        id: "accounting.payments.delete",
        group: "Payments",
        label: "delete",
        description: "The Transaction of Type Payment has been removed",
        sample: r#"{"event":{"dt":"2022-07-22T11:49:53.178009+00:00","events_id":"accounting.payments.delete","object_id":"2223"},"data":[]}"#,
    },
];

/// Looks an event up by its id.
pub fn find(id: &str) -> Option<&'static EventType> {
    EVENTS.iter().find(|e| e.id == id)
}

/// The distinct entities events are about (`clients`, `clients.accounts`, …), in catalogue order.
pub fn entities() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for e in EVENTS {
        if !out.contains(&e.entity()) {
            out.push(e.entity());
        }
    }
    out
}

/// The events of one group, in catalogue order.
pub fn in_group(group: &str) -> impl Iterator<Item = &'static EventType> + '_ {
    EVENTS.iter().filter(move |e| e.group == group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_27_events_with_unique_ids_in_known_groups() {
        assert_eq!(EVENTS.len(), 27);
        let mut ids: Vec<_> = EVENTS.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 27);
        assert!(EVENTS.iter().all(|e| GROUPS.contains(&e.group)));
        assert_eq!(GROUPS.iter().map(|g| in_group(g).count()).sum::<usize>(), 27);
    }

    #[test]
    fn samples_are_envelopes_of_their_own_event() {
        for e in EVENTS {
            let v: serde_json::Value = serde_json::from_str(e.sample).unwrap();
            assert_eq!(v["event"]["events_id"], e.id, "{}", e.id);
            assert!(v.get("data").is_some(), "{}", e.id);
        }
    }

    #[test]
    fn entity_drops_the_last_part() {
        assert_eq!(find("clients.accounts.create").unwrap().entity(), "clients.accounts");
        assert_eq!(find("clients.create").unwrap().entity(), "clients");
        assert_eq!(find("clients.subscriptions.renew").unwrap().entity(), "clients.subscriptions");
        assert_eq!(find("accounting.charges.update").unwrap().entity(), "accounting.charges");
    }

    #[test]
    fn events_about_the_client_itself_are_about_clients() {
        for id in ["clients.custom_fields.update", "clients.balance_zero", "clients.balance_notzero", "clients.archive"]
        {
            assert_eq!(find(id).unwrap().entity(), "clients", "{id}");
        }
        let entities = EVENTS.iter().map(|e| e.entity()).filter(|e| e.starts_with("clients")).collect::<Vec<_>>();
        assert!(entities.iter().all(|e| ["clients", "clients.accounts", "clients.subscriptions"].contains(e)));
        assert_eq!(entity_of("accounting.payments.delete"), "accounting.payments");
        assert!(find("clients.explode").is_none());
    }
}
