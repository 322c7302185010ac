# One image, both bins: tether-operator and tether-proxy.
#
#   docker build -t tether:dev .
#   docker run --rm tether:dev --help                                   # the operator
#   docker run --rm --entrypoint tether-proxy tether:dev --help         # the proxy
#
# Both bins are on PATH (/usr/local/bin). ENTRYPOINT is the operator, as in a
# kubebuilder image; a proxy container sets `command: [tether-proxy]`. Exec
# form throughout: the bins start node through their `#!/usr/bin/env node`
# line, so no shell is needed at run time.

# Compile TypeScript to dist/ with the dev dependencies.
FROM docker.io/library/node:24-slim AS build
ENV npm_config_update_notifier=false
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the only install script is the `node` devDependency's
# download of a second Node binary, which the image already has.
# The optional secret `npm-ca` is a CA bundle for a registry behind a
# TLS-intercepting proxy (`--secret id=npm-ca,src=/etc/ssl/certs/ca-certificates.crt`);
# without it the file is absent and Node only warns.
RUN --mount=type=secret,id=npm-ca NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca \
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
COPY tsconfig.json tsconfig.build.json ./
COPY proxy/ proxy/
COPY operator/ operator/
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

# Production dependencies only.
FROM docker.io/library/node:24-slim AS deps
ENV npm_config_update_notifier=false
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm-ca NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca \
    npm ci --omit=dev --no-audit --no-fund --ignore-scripts --loglevel=error && rm -rf /root/.npm

FROM docker.io/library/node:24-slim
LABEL org.opencontainers.image.title="tether" \
      org.opencontainers.image.description="Kubernetes operator for sticky load balancing: tether-operator and tether-proxy" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY bin/ ./bin/
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
RUN for b in /app/bin/*.js; do ln -s "$b" "/usr/local/bin/$(basename "$b" .js)"; done
# 65532: the non-root uid of distroless and kubebuilder images; numeric so
# that runAsNonRoot can verify it without an /etc/passwd entry.
USER 65532:65532
EXPOSE 8080 9901
ENTRYPOINT ["tether-operator"]
