/**
 * A Node peer for `make bench`: fastify 5 + `@fastify/reply-from` 12 (undici
 * underneath, 128 keep-alive connections per endpoint like Tether's pools),
 * doing the route-cookie job of route-cookie.ts.
 *
 * Usage: node bench/peers/fastify-peer.ts PORT ID=PORT...
 */
import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';
import { listeningLine, peerArgsOrExit } from './peer-args.ts';
import { appendSetCookie, RouteCookieRouter } from './route-cookie.ts';

const NAME = 'fastify-peer';
const { port, endpoints } = peerArgsOrExit(NAME);
const router = new RouteCookieRouter(endpoints);
const origins = new Map(endpoints.map((e) => [e.id, `http://127.0.0.1:${e.port}`]));

const app = Fastify({ logger: false, keepAliveTimeout: 60_000 });
// No base: one undici Agent, a Pool per endpoint origin.
await app.register(replyFrom, { undici: { connections: 128, pipelining: 1 } });
// Bodies pass through as streams, whatever their type (reply-from's advice for a proxy).
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

app.all('/*', (req, reply) => {
  const choice = router.choose(req.headers.cookie);
  const cookie = choice.setCookie;
  const xff = req.headers['x-forwarded-for'];
  return reply.from(`${origins.get(choice.endpoint.id)}${req.url}`, {
    // X-Forwarded-For, as Tether, HAProxy `option forwardfor` and http-proxy's xfwd add it.
    rewriteRequestHeaders: (_r, headers) => ({
      ...headers,
      'x-forwarded-for': xff === undefined ? req.ip : `${xff}, ${req.ip}`,
    }),
    rewriteHeaders:
      cookie === undefined
        ? (headers) => headers
        : (headers) => ({ ...headers, 'set-cookie': appendSetCookie(headers['set-cookie'], cookie) }),
  });
});

await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(listeningLine(port));
