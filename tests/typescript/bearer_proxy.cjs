// A loopback proxy that adds `Authorization: Bearer TOKEN` to every request and streams both
// ways (server-sent events included), for MCP clients that cannot send a header themselves (the
// MCP conformance runner). Every other header, Host and Origin included, passes unchanged, so
// the server's own Host/Origin checks are what a client meets; only a Host or Origin naming
// the proxy itself (a loopback name with the proxy's port) is moved to the server's port, as a
// reverse proxy does, since the server accepts its own port alone.
//
//   node bearer_proxy.cjs http://127.0.0.1:PORT TOKEN   (prints the proxy's port, one line)
"use strict";
const http = require("node:http");

const [upstream, token] = process.argv.slice(2);
if (!upstream || !token) {
  console.error("usage: node bearer_proxy.cjs UPSTREAM_BASE_URL TOKEN");
  process.exit(2);
}
const target = new URL(upstream);

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const own = /^(localhost|127\.0\.0\.1|\[::1\]):(\d+)$/.exec(headers.host || "");
  if (own && Number(own[2]) === server.address().port) {
    headers.host = `${own[1]}:${target.port}`;
  }
  const origin = /^(https?:\/\/(?:localhost|127\.0\.0\.1|\[::1\])):(\d+)$/.exec(headers.origin || "");
  if (origin && Number(origin[2]) === server.address().port) {
    headers.origin = `${origin[1]}:${target.port}`;
  }
  const out = http.request(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers,
    },
    (up) => {
      res.writeHead(up.statusCode || 502, up.headers);
      up.pipe(res);
    },
  );
  out.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(`proxy: ${e.message}`);
  });
  req.pipe(out);
  res.on("close", () => out.destroy());
});
server.listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
});
