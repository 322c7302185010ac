/**
 * The command line every Node peer in `make bench` takes:
 *
 *     node bench/peers/<peer>.ts PORT ID=PORT...
 *
 * PORT is where the peer listens (127.0.0.1), each ID=PORT an endpoint on
 * 127.0.0.1. A peer prints `listening PORT` on stdout once it accepts
 * connections, and exits 2 on a bad command line.
 */
import { type PeerEndpoint, parseEndpointArgs } from './route-cookie.ts';

/** What a peer's command line asks for. */
export interface PeerArgs {
  readonly port: number;
  readonly endpoints: PeerEndpoint[];
}

/**
 * Parses `PORT ID=PORT...`.
 *
 * @throws {Error} on a missing or bad listen port, or bad endpoints (see {@link parseEndpointArgs}).
 */
export function parsePeerArgs(argv: readonly string[]): PeerArgs {
  const [portText, ...rest] = argv;
  const port = Number(portText);
  if (portText === undefined || !Number.isInteger(port) || port < 1 || port > 65_535)
    throw new Error(`listen port ${JSON.stringify(portText ?? '')}: expected 1..65535`);
  return { port, endpoints: parseEndpointArgs(rest) };
}

/** {@link parsePeerArgs} of this process's arguments; a usage line and exit 2 when they are bad. */
export function peerArgsOrExit(name: string): PeerArgs {
  try {
    return parsePeerArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${name}: ${(err as Error).message}\nusage: ${name} PORT ID=PORT...\n`);
    process.exit(2);
  }
}

/** The line the bench waits for once a peer listens. */
export function listeningLine(port: number): string {
  return `listening ${port}\n`;
}
