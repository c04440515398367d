# deut: one image for every role; `deut` is the entrypoint.
# Build: docker build -t deut .   Run: docker run --rm deut --help
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
COPY scripts ./scripts
COPY test ./test
RUN npm ci --no-audit --no-fund \
 && npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf packages/*/src packages/*/test packages/*/dist/test packages/*/dist/.tsbuildinfo

FROM node:20-bookworm-slim
# A system user with a home for ~/.deut (control file); /keys is where compose shares keys.
RUN groupadd --system deut \
 && useradd --system --gid deut --create-home --home-dir /home/deut deut \
 && mkdir -p /keys && chown deut:deut /keys
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/packages ./packages
USER deut
EXPOSE 7500/udp
ENTRYPOINT ["node", "/app/packages/cli/dist/src/bin.js"]
CMD ["--help"]
