# syntax=docker/dockerfile:1
# Switchyard: a reverse proxy with load balancing, splits, a shared HTTP cache and metrics.
#
#   docker build -t switchyard .
#   docker run --rm -p 8080:8080 -p 9901:9901 switchyard              # the demo upstreams.yaml
#   docker run --rm -v $PWD/my.yaml:/etc/switchyard/upstreams.yaml:ro -p 8080:8080 -p 9901:9901 \
#     switchyard start --config /etc/switchyard/upstreams.yaml
#
# Three stages: `build` compiles TypeScript with every dependency, `deps` installs the production
# dependencies alone (in parallel with `build` under BuildKit), and the runtime image holds only
# those, package.json (it declares "type": "module") and the compiled dist/src: no compiler, no
# tests, no benchmarks, no sources.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script runs tsc, and the sources are not copied yet (they come
# after, so a change to them does not invalidate this cached layer).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# tsconfig also includes test/ and bench/; they are not in the build context (.dockerignore),
# so this compiles src/ alone into dist/src.
RUN npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: production dependencies only. --ignore-scripts: `prepare` (tsc) is a dev tool, and
# no production dependency has an install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
# tini as PID 1: it forwards SIGTERM/SIGINT/SIGHUP to node and reaps orphaned grandchildren of
# sidecars, which node (waiting only for its own children) would leave as zombies. Node as PID 1
# would still stop and reload on signals, since `switchyard start` installs handlers for SIGTERM,
# SIGINT and SIGHUP (PID 1 gets no default signal actions), but nothing would reap orphans.
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    SWITCHYARD_ADMIN_HOST=0.0.0.0
WORKDIR /app
# Owned by root and read-only to the process: it writes nothing (logs go to stdout).
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY upstreams.yaml ./
USER node
# 8080 HTTP, 8443 HTTPS (the shipped upstreams.yaml), 9901 admin: /metrics, /healthz, /readyz, /admin/*.
EXPOSE 8080 8443 9901
# No curl in slim images: node asks the admin listener. SWITCHYARD_ADMIN_PORT if the config uses it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "require('node:http').get('http://127.0.0.1:' + (process.env.SWITCHYARD_ADMIN_PORT || 9901) + '/healthz', { timeout: 2000 }, (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('timeout', () => process.exit(1)).on('error', () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/src/cli/main.js"]
CMD ["start", "--config", "upstreams.yaml"]
