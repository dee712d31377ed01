//! `GET /docs`: a page to read and try the API (Swagger UI on `/openapi.json`), and its
//! assets under `/docs/assets/`, all served by Portcullis itself (no CDN). The page's
//! Content-Security-Policy allows scripts, styles, images and requests from this origin
//! only; Swagger UI's start-up script is a file of its own, so no inline script is
//! needed. Swagger UI sets inline `style` attributes, hence `style-src 'unsafe-inline'`.

use super::handlers::Context;
use super::{Response, header};
use crate::error::Error;

const PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>Portcullis API</title>\
<link rel=\"stylesheet\" href=\"docs/assets/swagger-ui.css\"></head>\
<body><div id=\"swagger-ui\"></div>\
<script src=\"docs/assets/swagger-ui-bundle.js\"></script>\
<script src=\"docs/assets/init.js\"></script></body></html>";

/// The policy of the page: this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file under `/docs/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/swagger-ui-bundle.js"),
    },
    Asset {
        name: "swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/swagger-ui.css"),
    },
    Asset {
        name: "init.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/init.js"),
    },
    Asset {
        name: "LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("assets/LICENSE"),
    },
    Asset {
        name: "NOTICE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("assets/NOTICE"),
    },
    Asset {
        name: "swagger-ui-bundle.js.LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("assets/swagger-ui-bundle.js.LICENSE.txt"),
    },
];

/// Assets change only with a new build; browsers may keep them a day.
const ASSET_CACHE_CONTROL: &str = "public, max-age=86400";

/// The page to read and try the API.
#[utoipa::path(get, path = "/docs", tag = "documentation", responses(
    (status = 200, description = "Swagger UI on `/openapi.json`; its assets are served \
        under `/docs/assets/`.", content_type = "text/html"),
))]
pub fn page(_: &Context<'_>) -> Result<Response, Error> {
    Ok(Response {
        status: 200,
        headers: vec![
            (
                header::CONTENT_TYPE.into(),
                "text/html; charset=utf-8".into(),
            ),
            (
                "content-security-policy".into(),
                CONTENT_SECURITY_POLICY.into(),
            ),
            ("x-frame-options".into(), "DENY".into()),
        ],
        body: PAGE.as_bytes().to_vec(),
    })
}

/// A script, style sheet or licence of the `/docs` page.
#[utoipa::path(get, path = "/docs/assets/{file}", tag = "documentation",
    params(("file" = String, Path, description = "One of the page's files.",
        pattern = "^(swagger-ui-bundle\\.js|swagger-ui\\.css|init\\.js|LICENSE|NOTICE|swagger-ui-bundle\\.js\\.LICENSE\\.txt)$")),
    responses(
        (status = 200, description = "The file.", content(
            ("text/javascript"), ("text/css"), ("text/plain"))),
        (status = 404, description = "`not_found`: no such file."),
    ))]
pub fn asset(context: &Context<'_>) -> Result<Response, Error> {
    let name = context.params.first().ok_or(Error::NotFound)?;
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .ok_or(Error::NotFound)?;
    Ok(Response {
        status: 200,
        headers: vec![
            (header::CONTENT_TYPE.into(), asset.content_type.into()),
            ("cache-control".into(), ASSET_CACHE_CONTROL.into()),
        ],
        body: asset.bytes.to_vec(),
    })
}
