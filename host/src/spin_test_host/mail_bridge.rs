//! The mail webhook a Spin deployment provides, played by the Spin test host when it is
//! given `PORTCULLIS_SMTP_URL`: Spin has no SMTP client, so the artifact's mail relay
//! POSTs each due mail as JSON (`{"id","from","to","subject","text","html"}`) to
//! `mail_webhook_url`, and the deployer's webhook sends it on. This one sends it with
//! the native host's SMTP mailer (`crate::mail`, from `PORTCULLIS_MAIL_FROM` as the
//! relay's `mail_from`) and answers 204 once the server took it, 502 with the reason
//! otherwise, so that the relay records the outcome as it would with any webhook.

use std::collections::HashMap;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use tokio::net::TcpListener;

use crate::api::Mail;
use crate::mail::{MailSettings, Mailer};
use crate::settings::Settings;

/// The largest body the webhook reads.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Starts the webhook on a free port of 127.0.0.1, sending to the SMTP server
/// `smtp_url` from `from`; returns the URL to give the relay as `mail_webhook_url`.
pub async fn start(smtp_url: &str, from: &str) -> Result<String, String> {
    let settings = Settings::from(HashMap::from([
        ("smtp_url".to_owned(), smtp_url.to_owned()),
        ("mail_from".to_owned(), from.to_owned()),
    ]));
    let mail_settings = MailSettings::parse(&settings).map_err(|rejected| rejected.to_string())?;
    let mailer = Arc::new(Mailer::new(mail_settings).map_err(|rejected| rejected.to_string())?);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("binding the mail webhook: {error}"))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("the mail webhook's address: {error}"))?;
    tokio::spawn(serve(listener, mailer));
    Ok(format!("http://{address}/mail"))
}

async fn serve(listener: TcpListener, mailer: Arc<Mailer>) {
    while let Ok((stream, _)) = listener.accept().await {
        let mailer = Arc::clone(&mailer);
        let service = service_fn(move |request| {
            let mailer = Arc::clone(&mailer);
            async move { Ok::<_, std::convert::Infallible>(receive(request, &mailer).await) }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

/// Sends the mail a POST carries; the answer says whether the SMTP server took it.
async fn receive(request: Request<Incoming>, mailer: &Mailer) -> Response<Full<Bytes>> {
    let outcome = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => match mail(&body.to_bytes()) {
            Some(mail) => mailer.deliver(&mail).await,
            None => Err("not a mail: expected {id, to, subject, text, html}".to_owned()),
        },
        Err(error) => Err(format!("reading the body: {error}")),
    };
    let (status, body) = match outcome {
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err(reason) => (StatusCode::BAD_GATEWAY, reason),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The relay's JSON as the mail the SMTP mailer sends.
fn mail(body: &[u8]) -> Option<Mail> {
    let json: Json = serde_json::from_slice(body).ok()?;
    let field = |name: &str| json.get(name)?.as_str().map(str::to_owned);
    Some(Mail {
        id: field("id")?,
        claim: String::new(),
        to: field("to")?,
        subject: field("subject")?,
        text_body: field("text")?,
        html_body: field("html")?,
        attempts: 0,
    })
}
