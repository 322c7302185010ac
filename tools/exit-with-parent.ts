/**
 * Preloaded into a `tether-proxy` that must not outlive the process that
 * started it (`node --import <this file> bin/tether-proxy.js …`; see
 * `exitWithParent` in `tether-proxy-process.ts`). The parent holds the
 * proxy's stdin open (`stdin: 'pipe'`); when it closes, because the parent
 * exited in any way, SIGKILL included, the proxy gets a SIGTERM and stops
 * through its own graceful shutdown. Without this a parent killed with
 * SIGKILL would leave proxies running. The proxy's code is untouched; this
 * only reads stdin, which the proxy never uses.
 */
process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.resume();
