/** Starting a listener, the same for both engines and the admin API's caller. */
import type { Server } from 'node:net';

/**
 * Listens on `host:port` and resolves once bound.
 *
 * @returns the bound port (the kernel's choice when `port` is 0).
 * @throws the listen error (EADDRINUSE, EACCES, …), with no listener left behind.
 */
export async function listenOn(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  return typeof addr === 'object' && addr !== null ? addr.port : port;
}
