/**
 * Cookie signing keys: a file with one base64 key per line (a mounted
 * Secret), the first signing and all verifying, so a key can be added
 * first, rolled out, and the old one dropped later without logging anyone out.
 */
import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** Shortest key accepted, bytes: HMAC-SHA256's block-size guidance (RFC 2104 §3) wants ≥ 32. */
export const MIN_KEY_BYTES = 32;

/**
 * Parses a key file's text. Blank lines and `#` comments are skipped.
 *
 * @returns the keys, in file order, as secret KeyObjects (imported once, not per HMAC).
 * @throws {Error} naming the line of a key that is not base64 or shorter than 32 bytes, or when there is none.
 */
export function parseCookieKeys(text: string): KeyObject[] {
  const keys: KeyObject[] = [];
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) throw new Error(`cookie keys line ${i + 1}: not base64`);
    const key = Buffer.from(t, t.includes('-') || t.includes('_') ? 'base64url' : 'base64');
    if (key.length < MIN_KEY_BYTES)
      throw new Error(`cookie keys line ${i + 1}: ${key.length} bytes, want at least ${MIN_KEY_BYTES}`);
    keys.push(createSecretKey(key));
  }
  if (keys.length === 0) throw new Error('cookie keys file holds no key');
  return keys;
}

/** Reads and parses a key file. @throws {Error} as {@link parseCookieKeys}, or when unreadable. */
export async function loadCookieKeys(path: string): Promise<KeyObject[]> {
  return parseCookieKeys(await readFile(path, 'utf8'));
}

/** A random key for a proxy started without a key file: cookies die with the process. */
export function ephemeralKey(): KeyObject {
  return createSecretKey(randomBytes(MIN_KEY_BYTES));
}
