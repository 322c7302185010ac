/**
 * A Node peer for `make bench`: `http-proxy-3` 2.0 (the maintained rewrite
 * of http-proxy that Tether itself uses for WebSocket upgrades) with a
 * keep-alive agent, doing the route-cookie job of route-cookie.ts. The same
 * code as http-proxy-peer.ts but for the import.
 *
 * Usage: node bench/peers/http-proxy-3-peer.ts PORT ID=PORT...
 */
import { Agent, createServer } from 'node:http';
import { createProxyServer } from 'http-proxy-3';
import { listeningLine, peerArgsOrExit } from './peer-args.ts';
import { appendSetCookie, RouteCookieRouter } from './route-cookie.ts';

const NAME = 'http-proxy-3-peer';
const { port, endpoints } = peerArgsOrExit(NAME);
const router = new RouteCookieRouter(endpoints);
// Keep-alive to the endpoints, 128 connections each: the size of Tether's undici pools.
const agent = new Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 128 });
const targets = new Map(endpoints.map((e) => [e.id, `http://127.0.0.1:${e.port}`]));
/** The Set-Cookie of a new pin, kept on the request until the endpoint's answer arrives. */
const pendingCookie = new WeakMap<object, string>();

const proxy = createProxyServer({ agent, xfwd: true });
// 'proxyRes' comes before the headers are copied to the client's answer: the place to add ours.
proxy.on('proxyRes', (proxyRes, req) => {
  const cookie = pendingCookie.get(req);
  if (cookie !== undefined)
    proxyRes.headers['set-cookie'] = appendSetCookie(proxyRes.headers['set-cookie'], cookie);
});
proxy.on('error', (err, _req, res) => {
  process.stderr.write(`${NAME}: ${err.message}\n`);
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});

createServer({ keepAlive: true }, (req, res) => {
  const choice = router.choose(req.headers.cookie);
  if (choice.setCookie !== undefined) pendingCookie.set(req, choice.setCookie);
  proxy.web(req, res, { target: targets.get(choice.endpoint.id) });
}).listen(port, '127.0.0.1', () => process.stdout.write(listeningLine(port)));
