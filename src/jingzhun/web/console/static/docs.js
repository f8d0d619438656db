// Swagger UI over /openapi.json, sending the session's CSRF token on changes ("Try it out").
(function () {
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: function (request) {
      if (token && request.method && request.method.toUpperCase() !== "GET") {
        request.headers["X-CSRF-Token"] = token;
      }
      return request;
    },
  });
})();
