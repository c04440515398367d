# deut: one image for every role; `deut` is the entrypoint.
# Build: docker build -t deut .   Run: docker run --rm deut --help
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
COPY scripts ./scripts
COPY test ./test
RUN npm ci --no-audit --no-fund && npm run build
# The runtime tree, staged in image/: only what the product runs. npm links every workspace
# as if it were a production dependency, so the dev-only test kit is left out by name (with
# its link in node_modules, which would dangle); of each product package only its compiled
# sources and package.json. test/image.test.ts replays these lines and checks the result.
RUN npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@deut/testkit \
 && mkdir image \
 && mv node_modules image/ \
 && for pkg in packages/*; do \
      if [ "$pkg" != packages/testkit ]; then \
        mkdir -p "image/$pkg/dist" && cp "$pkg/package.json" "image/$pkg/" && cp -a "$pkg/dist/src" "image/$pkg/dist/" && if [ -d "$pkg/bin" ]; then cp -a "$pkg/bin" "image/$pkg/"; fi; \
      fi; \
    done

FROM node:20-bookworm-slim
# A system user with a home for ~/.deut (control file); /keys is where compose shares keys.
RUN groupadd --system --gid 999 deut \
 && useradd --system --uid 999 --gid deut --create-home --home-dir /home/deut deut \
 && mkdir -p /keys && chown deut:deut /keys
WORKDIR /app
COPY --from=build /src/image ./
USER deut
EXPOSE 7500/udp
# Healthy while the daemon's control API answers: `deut status` finds it through the control
# file that `deut run` writes in the user's home (~deut/.deut/control.json), runs as the same
# user, and needs nothing beyond node (no curl in this image). A daemon started with its own
# --control-file is found if DEUT_CONTROL_FILE names that file instead (both read it). Its
# output goes nowhere: Docker keeps a healthcheck's output, and status lists peers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD node /app/packages/cli/dist/src/bin.js status --json >/dev/null || exit 1
ENTRYPOINT ["node", "/app/packages/cli/dist/src/bin.js"]
CMD ["--help"]
