/**
 * Fault suite: requests the proxy accepts but that the client got wrong
 * never count against an endpoint's passive health (issue 7, item 1).
 * Raw TCP, since HTTP clients refuse to send most of these.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type FaultBackend, rawExchange, startFaultBackend } from '../helpers/fault-backend.ts';
import {
  get,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
} from '../helpers/proxy-process.ts';

let backends: FaultBackend[] = [];
let proxy: ProxyProcess | undefined;
let s: Scratch | undefined;

afterEach(async () => {
  await proxy?.stop();
  await Promise.all(backends.map((b) => b.stop()));
  s?.cleanup();
  proxy = undefined;
  backends = [];
});

async function setup(): Promise<ProxyProcess> {
  backends = await Promise.all(['cl-a', 'cl-b', 'cl-c'].map((id) => startFaultBackend(id)));
  s = scratch();
  const config = s.write(
    'pool.yaml',
    // maxFails 1 (the default) and a long failTimeout: one wrongly counted failure shows.
    poolYaml(
      backends.map((b, i) => ({ name: `cl-${'abc'[i]}`, port: b.port })),
      { healthCheck: { passive: { maxFails: 1, failTimeout: '60s' } } },
    ),
  );
  proxy = await startProxy(['--config', config]);
  return proxy;
}

async function healthyEndpoints(p: ProxyProcess): Promise<number> {
  const m = (await get(`${p.adminUrl}/metrics`)).text;
  return m.split('\n').filter((l) => l.startsWith('tether_proxy_endpoint_healthy{') && l.endsWith(' 1'))
    .length;
}

const status = (raw: string): number[] => [...raw.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));

describe('client mistakes are the client’s problem', () => {
  it('Expect: 100-continue is answered 100 by the proxy, the body is forwarded without Expect', async () => {
    const p = await setup();
    for (let i = 0; i < 6; i++) {
      const body = `hello-${i}`;
      const raw = await rawExchange(
        p.port,
        `POST /upload HTTP/1.1\r\nHost: shop\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        { steps: [{ afterMs: 100, bytes: body }] },
      );
      expect(status(raw)).toEqual([100, 200]);
    }
    const seen = backends.flatMap((b) => b.requests);
    expect(seen).toHaveLength(6);
    for (const r of seen) {
      expect(r.headers.find(([k]) => k === 'expect')).toBeUndefined();
      expect(r.body.toString()).toMatch(/^hello-\d$/);
    }
    expect(await healthyEndpoints(p)).toBe(3);
  });

  it('two Host headers get 400 (like nginx) and no endpoint is marked down', async () => {
    const p = await setup();
    for (let i = 0; i < 6; i++) {
      const raw = await rawExchange(
        p.port,
        `GET /x${i} HTTP/1.1\r\nHost: shop\r\nHost: evil\r\nConnection: close\r\n\r\n`,
      );
      expect(status(raw)).toEqual([400]);
    }
    expect(backends.flatMap((b) => b.requests)).toHaveLength(0);
    expect(await healthyEndpoints(p)).toBe(3);
    for (let i = 0; i < 10; i++) expect((await get(`${p.url}/after${i}`)).status).toBe(200);
  });

  it('an Expect other than 100-continue is refused 417 and no endpoint is marked down', async () => {
    const p = await setup();
    for (let i = 0; i < 4; i++) {
      const raw = await rawExchange(
        p.port,
        `GET /x HTTP/1.1\r\nHost: shop\r\nExpect: something-else\r\nConnection: close\r\n\r\n`,
      );
      expect(status(raw)).toEqual([417]);
    }
    expect(await healthyEndpoints(p)).toBe(3);
  });
});
