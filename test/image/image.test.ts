/**
 * The container image, built for real from the project's Dockerfile with
 * buildah (vfs storage, chroot isolation) on a locally made stand-in for
 * docker.io/library/node:24-slim, then run: every bin of package.json
 * answers `--help` inside it as the image's non-root user.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const TAG = 'localhost/tether:image-test';
const BUILDAH = ['--storage-driver', 'vfs'];
const bins = Object.entries(
  (JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string> }).bin,
);

async function buildah(...args: string[]): Promise<string> {
  const { stdout } = await run('buildah', [...BUILDAH, ...args], { maxBuffer: 64 << 20 });
  return stdout.trim();
}

interface ImageConfig {
  User: string;
  Entrypoint: string[] | null;
  Cmd: string[] | null;
  Env: string[];
}

describe('container image', () => {
  let container = '';
  let config: ImageConfig;

  beforeAll(async () => {
    await run('test/image/build-image.sh', [TAG], { maxBuffer: 64 << 20 });
    config = (
      JSON.parse(await buildah('inspect', '--type', 'image', TAG)) as { OCIv1: { config: ImageConfig } }
    ).OCIv1.config;
    container = await buildah('from', '--pull=never', TAG);
    // The size goes to the test log for the closing note; no bound is asserted (it depends on the base).
    console.log(`image ${TAG}: ${await buildah('images', '--format', '{{.Size}}', TAG)}`);
  }, 1_200_000);

  afterAll(async () => {
    if (container !== '') await buildah('rm', container).catch(() => {});
    await buildah('rmi', TAG).catch(() => {});
  });

  it('runs as a non-root numeric user, with the operator as the exec-form entrypoint', () => {
    expect(config.User).toMatch(/^[1-9][0-9]*:[1-9][0-9]*$/);
    expect(config.Entrypoint).toEqual(['tether-operator']);
    expect(config.Env).toContain('NODE_ENV=production');
  });

  it.each(bins)('%s --help answers from PATH inside the image as the non-root user', async (name) => {
    // By name, as a pod's `command` would: PATH, the symlink and the bin's
    // `#!/usr/bin/env node` line are all exercised.
    const { stdout } = await run(
      'buildah',
      [...BUILDAH, 'run', '--isolation', 'chroot', '--user', config.User, container, '--', name, '--help'],
      { maxBuffer: 1 << 20 },
    );
    expect(stdout).toContain(`usage: ${name}`);
  });

  it('runs the compiled JavaScript, with production dependencies only', async () => {
    const probe = `
      const fs = require('node:fs');
      console.log(JSON.stringify({
        uid: process.getuid(),
        dist: fs.existsSync('/app/dist/proxy/src/cli.js'),
        sources: fs.existsSync('/app/proxy'),
        dev: ['typescript', 'vitest', '@biomejs/biome', 'fast-check'].filter((p) => fs.existsSync('/app/node_modules/' + p)),
        prod: ['undici', 'zod', 'prom-client'].filter((p) => fs.existsSync('/app/node_modules/' + p)),
      }));`;
    const { stdout } = await run('buildah', [
      ...BUILDAH,
      'run',
      '--isolation',
      'chroot',
      '--user',
      config.User,
      container,
      '--',
      '/usr/local/bin/node',
      '-e',
      probe,
    ]);
    const seen = JSON.parse(stdout) as Record<string, unknown>;
    expect(seen).toEqual({
      uid: Number(config.User.split(':')[0]),
      dist: true,
      sources: false,
      dev: [],
      prod: ['undici', 'zod', 'prom-client'],
    });
  });
});
