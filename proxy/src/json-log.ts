/**
 * The one-line JSON log both bins write on stderr: `{"time", "level",
 * "msg", ...fields}` per line, so that `kubectl logs` output can be parsed
 * (as klog's `--logging-format=json` does).
 */

/** Log levels, lowest first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger that drops lines below `min`. */
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/** @returns a {@link Logger} writing lines at `min` and above to stderr. */
export function makeLogger(min: LogLevel): Logger {
  return (level, msg, fields = {}) => {
    if (LEVELS[level] < LEVELS[min]) return;
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
}
