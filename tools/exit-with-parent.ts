/**
 * Preloaded into each demo proxy (`node --import ./demo/exit-with-parent.ts
 * bin/tether-proxy.js …`): the demo holds the proxy's stdin open, and when it
 * closes, because the demo exited in any way, SIGKILL included, the proxy
 * gets a SIGTERM and stops through its own graceful shutdown. Without this
 * a demo killed with SIGKILL would leave proxies running. The proxy's code
 * is untouched; this only reads stdin, which the proxy never uses.
 */
process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.resume();
