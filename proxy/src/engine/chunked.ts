/**
 * Chunked transfer coding (RFC 9112 §7.1), both ways, pure.
 *
 * The decoder is strict: hex sizes only (no sign, no spaces, at most 12
 * digits), CRLF after the size line and after each chunk's data, chunk
 * extensions allowed but bounded, trailer fields parsed by the same rules
 * as header lines and then dropped: the engine re-frames every body, and
 * no endpoint or client seen relies on trailers (nginx drops them too
 * unless `proxy_pass_trailers`).
 */
import { type HeadError, parseHeaderLines } from './header-lines.ts';

/** Longest chunk-size line (size and extensions), bytes; Node answers 413 above 16 KiB of extensions. */
export const MAX_CHUNK_LINE = 4096;
/** Largest trailer section, bytes. */
export const MAX_TRAILER_BYTES = 16 * 1024;

/** A malformed chunked body; `code` is llhttp's for the same fault. */
export class ChunkedError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ChunkedError';
    this.code = code;
  }
}

const State = { Size: 0, Data: 1, DataCrlf: 2, Trailers: 3, Done: 4 } as const;
type State = (typeof State)[keyof typeof State];

/**
 * An incremental chunked-body decoder. Feed it bytes as they arrive; it
 * hands the body's data to `onData` (sub-arrays of the input, no copy) and
 * tells when the body ended.
 */
export class ChunkedDecoder {
  private state: State = State.Size;
  private remaining = 0;
  /** Bytes of a size line or trailer section split across feeds. */
  private pending: Buffer | undefined;

  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Consumes bytes of `buf` from `start`.
   *
   * @returns bytes consumed; less than offered only once the body ended
   *   (the rest belongs to the next message).
   * @throws {ChunkedError} on malformed framing.
   */
  feed(buf: Buffer, start: number, onData: (data: Buffer) => void): number {
    let at = start;
    while (at < buf.length && this.state !== State.Done) {
      switch (this.state) {
        case State.Size: {
          const line = this.takeLine(buf, at, MAX_CHUNK_LINE, 'HPE_CHUNK_EXTENSIONS_OVERFLOW');
          if (line === undefined) return buf.length;
          at = line.next;
          this.remaining = parseChunkSize(line.text);
          this.state = this.remaining === 0 ? State.Trailers : State.Data;
          break;
        }
        case State.Data: {
          const n = Math.min(this.remaining, buf.length - at);
          onData(buf.subarray(at, at + n));
          at += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.DataCrlf;
          break;
        }
        case State.DataCrlf: {
          const line = this.takeLine(buf, at, 2, 'HPE_STRICT');
          if (line === undefined) return buf.length;
          if (line.text !== '') throw new ChunkedError('HPE_STRICT', 'chunk data not followed by CRLF');
          at = line.next;
          this.state = State.Size;
          break;
        }
        case State.Trailers: {
          // The trailer section ends with an empty line; collect it whole, then check its fields.
          const joined =
            this.pending === undefined ? buf.subarray(at) : Buffer.concat([this.pending, buf.subarray(at)]);
          const base = this.pending === undefined ? at : at - this.pending.length;
          const end = joined.subarray(0, 2).toString('latin1') === '\r\n' ? 0 : joined.indexOf('\r\n\r\n');
          if (end < 0) {
            if (joined.length > MAX_TRAILER_BYTES)
              throw new ChunkedError('HPE_HEADER_OVERFLOW', 'trailers too large');
            checkNoBareLf(joined, joined.length);
            this.pending = Buffer.from(joined);
            return buf.length;
          }
          const stop = end === 0 ? 2 : end + 4;
          checkNoBareLf(joined, stop);
          if (end > 0) {
            try {
              parseHeaderLines(joined.toString('latin1', 0, end + 2));
            } catch (err) {
              throw new ChunkedError('HPE_INVALID_HEADER_TOKEN', (err as HeadError).message);
            }
          }
          this.pending = undefined;
          this.state = State.Done;
          return base + stop;
        }
      }
    }
    return at;
  }

  /** One CRLF-terminated line from `at` (joined with bytes left from the last feed), or undefined when incomplete. */
  private takeLine(
    buf: Buffer,
    at: number,
    max: number,
    overflowCode: string,
  ): { text: string; next: number } | undefined {
    const lf = buf.indexOf(10, at);
    const prior = this.pending;
    if (lf < 0) {
      const all = prior === undefined ? buf.subarray(at) : Buffer.concat([prior, buf.subarray(at)]);
      if (all.length > max + 1) throw new ChunkedError(overflowCode, 'chunk line too long');
      this.pending = Buffer.from(all);
      return undefined;
    }
    const all =
      prior === undefined ? buf.subarray(at, lf + 1) : Buffer.concat([prior, buf.subarray(at, lf + 1)]);
    this.pending = undefined;
    if (all.length > max + 2) throw new ChunkedError(overflowCode, 'chunk line too long');
    if (all.length < 2 || all[all.length - 2] !== 13)
      throw new ChunkedError('HPE_STRICT', 'bare LF in chunked framing');
    const text = all.toString('latin1', 0, all.length - 2);
    if (text.includes('\r')) throw new ChunkedError('HPE_STRICT', 'bare CR in chunked framing');
    return { text, next: lf + 1 };
  }
}

/** RFC 9112 §7.1.1 chunk extensions: `;name[=value]` with token names; values are tokens or quoted strings. */
const CHUNK_LINE =
  /^([0-9A-Fa-f]{1,12})((?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*)$/;

function parseChunkSize(line: string): number {
  const m = CHUNK_LINE.exec(line);
  if (m === null)
    throw new ChunkedError(
      'HPE_INVALID_CHUNK_SIZE',
      `bad chunk size line ${JSON.stringify(line.slice(0, 40))}`,
    );
  return Number.parseInt(m[1] as string, 16);
}

function checkNoBareLf(buf: Buffer, end: number): void {
  let lf = buf.indexOf(10);
  while (lf >= 0 && lf < end) {
    if (lf === 0 || buf[lf - 1] !== 13) throw new ChunkedError('HPE_STRICT', 'bare LF in trailers');
    lf = buf.indexOf(10, lf + 1);
  }
}

/** The framing of one chunk of `size` bytes: its size line (the data and a CRLF follow). */
export function chunkHeader(size: number): string {
  return `${size.toString(16)}\r\n`;
}

/** The last chunk with no trailers. */
export const LAST_CHUNK = '0\r\n\r\n';
