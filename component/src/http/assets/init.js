// Starts Swagger UI on Portcullis' own OpenAPI document. Served as a file of its own so
// that the page's Content-Security-Policy can forbid inline scripts.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No calls to the public validator service: everything stays on this origin.
    validatorUrl: null,
    persistAuthorization: false,
  });
});
