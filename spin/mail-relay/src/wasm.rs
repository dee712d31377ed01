//! The WIT side (wasm32 only): exports `wasi:http/incoming-handler`, forwards each
//! request to the imported handler (the auth component's, plugged in at composition),
//! and then delivers due mail over outgoing `wasi:http`, or writes it to stderr (Spin's
//! log). Settings come from `wasi:config`, which Spin fills from its variables.

use crate::{
    BATCH, FROM_SETTING, LEASE_SECONDS, LOG_SETTING, PRUNE_ROWS, Payload, Route, TIMEOUT_NANOS,
    TOKEN_SETTING, URL_SETTING, Webhook,
};

wit_bindgen::generate!({
    path: ["../../wit", "../wit"],
    world: "portcullis:spin/mail-relay",
    // wasi:cli 0.2.12 (a dependency of the `platform` world) names an interface behind
    // this gate; the relay never imports it.
    features: ["clocks-timezone"],
    generate_all,
});

use portcullis::auth::api;
use wasi::config::store as config;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    ResponseOutparam, Scheme,
};

/// The most bytes one `blocking-write-and-flush` takes.
const WRITE_CHUNK: usize = 4096;

struct Relay;

impl exports::wasi::http::incoming_handler::Guest for Relay {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        wasi::http::incoming_handler::handle(request, response_out);
        deliver_due_mail();
        prune_when_due();
    }
}

export!(Relay);

/// Claims due mail and delivers each as the settings say, when they say to deliver.
fn deliver_due_mail() {
    let (route, from) = match configured() {
        Ok((Some(route), from)) => (route, from),
        Ok((None, _)) => return,
        Err(problem) => {
            eprintln!("mail relay: {problem}; mail stays in the outbox");
            return;
        }
    };
    let from = crate::sender(from.as_deref());
    let mails = match api::claim_mail(BATCH, LEASE_SECONDS) {
        Ok(mails) => mails,
        Err(error) => {
            eprintln!("mail relay: claiming mail failed: {error:?}");
            return;
        }
    };
    for mail in mails {
        let payload = Payload {
            id: &mail.id,
            from,
            to: &mail.to,
            subject: &mail.subject,
            text: &mail.text_body,
            html: &mail.html_body,
        };
        let delivered = match &route {
            Route::Webhook(webhook) => post(webhook, &payload),
            Route::Log => {
                eprintln!("{}", payload.log_line());
                Ok(())
            }
        };
        let recorded = match delivered {
            Ok(()) => api::mail_sent(&mail.id, &mail.claim),
            Err(reason) => api::mail_failed(&mail.id, &mail.claim, &reason),
        };
        if let Err(error) = recorded {
            eprintln!(
                "mail relay: recording the outcome of mail {} failed: {error:?}",
                mail.id
            );
        }
    }
}

/// Asks the auth component for one retention round (docs/reference.md section 13): it
/// runs one only when one is due and no other instance runs one, so most requests cost
/// one read of the lease row. A round that deleted something is one line in Spin's log.
fn prune_when_due() {
    match api::prune(PRUNE_ROWS, false, 0) {
        Ok(pruned) => {
            let removed: Vec<(&str, u64)> = pruned
                .removed
                .iter()
                .map(|table| (table.table.as_str(), table.rows))
                .collect();
            if let Some(line) = crate::round_line(&removed) {
                eprintln!("{line}");
            }
        }
        Err(error) => eprintln!("retention: the round failed: {error:?}"),
    }
}

/// The route and the `mail_from` setting.
fn configured() -> Result<(Option<Route>, Option<String>), String> {
    let route = crate::route(
        setting(URL_SETTING)?.as_deref(),
        setting(TOKEN_SETTING)?.as_deref(),
        setting(LOG_SETTING)?.as_deref(),
    )?;
    Ok((route, setting(FROM_SETTING)?))
}

fn setting(key: &str) -> Result<Option<String>, String> {
    config::get(key).map_err(|_| format!("reading the setting {key} failed"))
}

/// POSTs one mail; `Err` carries a short reason without the URL, token or body.
fn post(webhook: &Webhook, mail: &Payload<'_>) -> Result<(), String> {
    let body = mail.to_json()?;
    let request = request(webhook)?;
    let outgoing_body = request
        .body()
        .map_err(|()| "the request body was taken".to_owned())?;
    let response = outgoing_handler::handle(request, Some(options()))
        .map_err(|code| format!("the webhook could not be reached ({code:?})"))?;
    write_body(outgoing_body, &body)?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(answer))) => crate::outcome(answer.status()),
        Some(Ok(Err(code))) => Err(format!("the webhook could not be reached ({code:?})")),
        Some(Err(())) | None => Err("the webhook's answer was lost".to_owned()),
    }
}

fn request(webhook: &Webhook) -> Result<OutgoingRequest, String> {
    let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
    if let Some(authorization) = &webhook.authorization {
        headers.push((
            "authorization".to_owned(),
            authorization.as_bytes().to_vec(),
        ));
    }
    let fields = Fields::from_list(&headers)
        .map_err(|_| format!("{TOKEN_SETTING} is not a valid header value"))?;
    let request = OutgoingRequest::new(fields);
    let scheme = if webhook.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let parts = [
        request.set_method(&Method::Post),
        request.set_scheme(Some(&scheme)),
        request.set_authority(Some(&webhook.authority)),
        request.set_path_with_query(Some(&webhook.path_with_query)),
    ];
    if parts.iter().any(Result::is_err) {
        return Err(format!("{URL_SETTING} does not make a valid request"));
    }
    Ok(request)
}

/// Timeouts on connecting and on the answer; a host that does not support one keeps
/// its own bound.
fn options() -> RequestOptions {
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(TIMEOUT_NANOS));
    let _ = options.set_first_byte_timeout(Some(TIMEOUT_NANOS));
    let _ = options.set_between_bytes_timeout(Some(TIMEOUT_NANOS));
    options
}

fn write_body(outgoing_body: OutgoingBody, body: &[u8]) -> Result<(), String> {
    let failed = |_| "sending the mail to the webhook failed".to_owned();
    {
        let stream = outgoing_body
            .write()
            .map_err(|()| "the body stream was taken".to_owned())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(failed)?;
        }
    }
    OutgoingBody::finish(outgoing_body, None)
        .map_err(|code| format!("finishing the request failed ({code:?})"))
}
