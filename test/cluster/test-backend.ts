/**
 * The test backend the pod runner starts for the image `tether-test-backend`:
 * the HTTP/WebSocket backend of test/helpers/backends.ts, answering with its
 * pod name, bound to the pod IP.
 *
 *   test-backend.ts [--port 8080] [--host IP] [--drain SECONDS] [--serve-file PATH]...
 *                   [--session-cookie NAME]
 *
 * - `--host`: default `$POD_IP`, else 127.0.0.1. `--port`: default `$PORT`, else 8080.
 * - Every answer names the pod: JSON `{ endpoint: $POD_NAME, … }`; WebSocket
 *   upgrades get one text frame with the pod name.
 * - `GET /files` → JSON `[{ path, content }]` of each `--serve-file` read now
 *   (to see mounted Secrets and ConfigMaps as the process sees them).
 * - `--session-cookie NAME`: like a Java app's `JSESSIONID`, a request
 *   without cookie NAME gets `Set-Cookie: NAME=<random>.<pod name>; Path=/;
 *   HttpOnly` (the value names the endpoint that issued it, so a test can
 *   tell where the session was made); a request with it gets none.
 * - On SIGTERM it prints `SIGTERM received`, keeps serving for `--drain`
 *   seconds (default 0; -1: until SIGKILL), then closes and exits 0.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startBackend } from '../helpers/backends.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    host: { type: 'string', default: process.env.POD_IP || '127.0.0.1' },
    drain: { type: 'string', default: '0' },
    'serve-file': { type: 'string', multiple: true, default: [] },
    'session-cookie': { type: 'string' },
  },
});
const podName = process.env.POD_NAME || process.env.HOSTNAME || 'test-backend';
const port = Number(values.port);
const drainS = Number(values.drain);
if (!Number.isInteger(port) || port < 0 || port > 65535 || Number.isNaN(drainS)) {
  process.stderr.write('test-backend: --port must be 0..65535 and --drain a number of seconds\n');
  process.exit(2);
}

const backend = await startBackend(
  podName,
  port,
  (req, res) => {
    const sessionCookie = values['session-cookie'];
    if (sessionCookie !== undefined && !hasCookie(req.headers.cookie, sessionCookie)) {
      res.setHeader(
        'set-cookie',
        `${sessionCookie}=${randomBytes(12).toString('hex')}.${podName}; Path=/; HttpOnly`,
      );
    }
    if (!req.url?.startsWith('/files')) return false;
    const files = (values['serve-file'] ?? []).map((path) => {
      try {
        return { path, content: readFileSync(path, 'utf8') };
      } catch (err) {
        return { path, error: String(err) };
      }
    });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(files));
    return true;
  },
  values.host,
);
function hasCookie(header: string | undefined, name: string): boolean {
  return (header ?? '').split(';').some((part) => part.trim().startsWith(`${name}=`));
}

process.stdout.write(`test-backend ${podName} listening on ${values.host}:${backend.port}\n`);

process.once('SIGTERM', () => {
  process.stdout.write(`SIGTERM received; draining for ${drainS < 0 ? 'ever' : `${drainS} s`}\n`);
  if (drainS < 0) return;
  setTimeout(async () => {
    await backend.kill();
    process.stdout.write('stopped\n');
    process.exit(0);
  }, drainS * 1000);
});
