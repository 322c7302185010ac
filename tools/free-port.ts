/** Free loopback ports for servers a test, the demo or the bench starts. */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';

/**
 * Asks the kernel for a free TCP port on 127.0.0.1 (bind port 0, read it,
 * close). Another process may take it before the caller binds it: use it at
 * once, for servers that cannot report a port 0 binding themselves.
 */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  srv.close();
  await once(srv, 'close');
  return port;
}
