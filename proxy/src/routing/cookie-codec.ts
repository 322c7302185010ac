/**
 * The affinity cookie: versioned, HMAC-SHA256-signed, and carrying no address.
 *
 * Layout of the value (base64url, 62 characters):
 *
 * | bytes | field                                                     |
 * |-------|-----------------------------------------------------------|
 * | 1     | version (1)                                               |
 * | 12    | session id: random, the affinity key re-pins hash on      |
 * | 9     | endpoint tag: hash of pool + endpoint id, not its address |
 * | 4     | issued-at, Unix seconds (absolute timeout)                |
 * | 4     | last-seen, Unix seconds (idle timeout)                    |
 * | 16    | HMAC-SHA256(key, pool ‖ 0x00 ‖ the 30 bytes above), cut   |
 *
 * The pool name is signed but not stored, so a cookie of another pool fails
 * verification ("foreign"). Keys rotate as a list: the first signs, all
 * verify, so a new key logs nobody out (like Rails' secret rotation).
 */
import { createHmac, type KeyObject, timingSafeEqual } from 'node:crypto';

export const COOKIE_VERSION = 1;
const SID_BYTES = 12;
const TAG_BYTES = 9;
const BODY_BYTES = 1 + SID_BYTES + TAG_BYTES + 4 + 4;
const MAC_BYTES = 16;
const TOTAL_BYTES = BODY_BYTES + MAC_BYTES;
/** Length of an encoded cookie value, in characters. */
export const COOKIE_VALUE_LENGTH = Math.ceil((TOTAL_BYTES * 4) / 3);

/** The signed content of an affinity cookie. */
export interface AffinityCookie {
  /** 12 random bytes, base64url (16 characters): the session's affinity key. */
  readonly sessionId: string;
  /** 9 bytes, base64url (12 characters): names the pinned endpoint; see {@link endpointTag}. */
  readonly endpointTag: string;
  /** Unix time, s. */
  readonly issuedAt: number;
  /** Unix time, s. */
  readonly lastSeen: number;
}

/** Why a cookie value was refused. */
export type CookieProblem = 'malformed' | 'version' | 'signature';

export type DecodeResult = { ok: true; cookie: AffinityCookie } | { ok: false; problem: CookieProblem };

/**
 * Encodes and signs a cookie value with the first key.
 *
 * @param keys - signing keys, secret KeyObjects of ≥ 32 bytes; `keys[0]` signs. KeyObjects,
 *   not Buffers: Node imports a Buffer key afresh on every createHmac, ~9× the HMAC's own cost.
 * @param pool - `namespace/name`, bound into the MAC.
 * @throws {RangeError} on an empty key list or a field of the wrong size.
 */
export function encodeAffinityCookie(
  cookie: AffinityCookie,
  keys: readonly KeyObject[],
  pool: string,
): string {
  const key = keys[0];
  if (key === undefined) throw new RangeError('no cookie signing key');
  const sid = Buffer.from(cookie.sessionId, 'base64url');
  const tag = Buffer.from(cookie.endpointTag, 'base64url');
  if (sid.length !== SID_BYTES || tag.length !== TAG_BYTES)
    throw new RangeError('session id or endpoint tag of the wrong size');
  const buf = Buffer.allocUnsafe(TOTAL_BYTES);
  buf[0] = COOKIE_VERSION;
  sid.copy(buf, 1);
  tag.copy(buf, 1 + SID_BYTES);
  buf.writeUInt32BE(clampU32(cookie.issuedAt), 1 + SID_BYTES + TAG_BYTES);
  buf.writeUInt32BE(clampU32(cookie.lastSeen), 1 + SID_BYTES + TAG_BYTES + 4);
  mac(key, pool, buf.subarray(0, BODY_BYTES)).copy(buf, BODY_BYTES, 0, MAC_BYTES);
  return buf.toString('base64url');
}

/**
 * Decodes and verifies a cookie value against every key.
 *
 * Never throws: anything a client can send yields `{ ok: false }`.
 */
export function decodeAffinityCookie(value: string, keys: readonly KeyObject[], pool: string): DecodeResult {
  if (value.length !== COOKIE_VALUE_LENGTH) return { ok: false, problem: 'malformed' };
  // A pinned client sends the same value request after request: one HMAC
  // per value and key list, not per request (the cache only ever holds
  // values that verified; a new key list or pool starts it afresh).
  if (verified.keys !== keys || verified.pool !== pool) {
    verified.keys = keys;
    verified.pool = pool;
    verified.values.clear();
  }
  const known = verified.values.get(value);
  if (known !== undefined) return { ok: true, cookie: known };
  const d = verifyAffinityCookie(value, keys, pool);
  if (d.ok) {
    if (verified.values.size >= VERIFIED_CACHE_SIZE) verified.values.clear();
    verified.values.set(value, d.cookie);
  }
  return d;
}

/** Most verified cookie values remembered (~150 bytes each); the cache is emptied when full. */
const VERIFIED_CACHE_SIZE = 16_384;
const verified: {
  keys: readonly KeyObject[] | undefined;
  pool: string;
  values: Map<string, AffinityCookie>;
} = {
  keys: undefined,
  pool: '',
  values: new Map(),
};

function verifyAffinityCookie(value: string, keys: readonly KeyObject[], pool: string): DecodeResult {
  if (!/^[A-Za-z0-9_-]+$/.test(value)) return { ok: false, problem: 'malformed' };
  const buf = Buffer.from(value, 'base64url');
  if (buf.length !== TOTAL_BYTES) return { ok: false, problem: 'malformed' };
  if (buf[0] !== COOKIE_VERSION) return { ok: false, problem: 'version' };
  const body = buf.subarray(0, BODY_BYTES);
  const got = buf.subarray(BODY_BYTES);
  if (!keys.some((k) => timingSafeEqual(mac(k, pool, body).subarray(0, MAC_BYTES), got)))
    return { ok: false, problem: 'signature' };
  return {
    ok: true,
    cookie: {
      sessionId: buf.subarray(1, 1 + SID_BYTES).toString('base64url'),
      endpointTag: buf.subarray(1 + SID_BYTES, 1 + SID_BYTES + TAG_BYTES).toString('base64url'),
      issuedAt: buf.readUInt32BE(1 + SID_BYTES + TAG_BYTES),
      lastSeen: buf.readUInt32BE(1 + SID_BYTES + TAG_BYTES + 4),
    },
  };
}

/**
 * The tag a cookie stores for an endpoint: 9 bytes of SHA-256 over pool and
 * id. Stable across proxies and restarts; reveals neither address nor id.
 */
export function endpointTag(pool: string, endpointId: string): string {
  return createHmac('sha256', 'tether-endpoint-tag/v1')
    .update(`${pool}\u0000${endpointId}`)
    .digest()
    .subarray(0, TAG_BYTES)
    .toString('base64url');
}

export const SESSION_ID_BYTES = SID_BYTES;

function mac(key: KeyObject, pool: string, body: Buffer): Buffer {
  return createHmac('sha256', key).update(pool).update('\u0000').update(body).digest();
}

function clampU32(n: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor(n)));
}
