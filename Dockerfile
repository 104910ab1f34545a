# Switchyard: a reverse proxy with load balancing, splits, a shared HTTP cache and metrics.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npm ci --no-audit --no-fund && npm prune --omit=dev
COPY upstreams.yaml ./
EXPOSE 8080 9901
USER node
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["start", "--config", "upstreams.yaml"]
