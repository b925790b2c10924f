# syntax=docker/dockerfile:1
# svcca and svcca-sidecar in one image.
#
#   docker build -t svcca:0.1.0 .
#   docker run --rm svcca:0.1.0 svcca --help
#
# Two stages: better-sqlite3 (the ledger) is a native addon that compiles from source in
# `npm ci`, which needs python3, make and g++; the final image carries only Node, the
# pruned production node_modules and the two bundled binaries, and runs as a non-root user.

FROM node:20-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not recompile better-sqlite3.
# npm runs the install scripts of better-sqlite3 (the native build) and esbuild (its
# binary); npm 11 runs them only because package.json lists both under "allowScripts" —
# keep those entries when adding dependencies with install scripts.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# `make build`: tsc type-checks and emits dist/, esbuild bundles dist/bin/svcca.mjs and
# dist/bin/svcca-sidecar.mjs (better-sqlite3 stays outside the bundles). The touch keeps
# make from re-running `npm ci` when COPY gave package.json a newer time than the stamp.
RUN touch node_modules/.package-lock.json \
 && make build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production \
    SVCCA_DIR=/var/lib/svcca/ca-data
# A dedicated user with a fixed id, so volumes and Kubernetes' runAsUser/fsGroup can name it.
# /var/lib/svcca/ca-data and /var/lib/svcca/sets exist (owned by that user) so that a
# named volume mounted there starts with the right owner; `svcca init` accepts the empty
# directory, and `svcca issue --out /var/lib/svcca/sets/<service>` fills the other.
RUN groupadd --system --gid 10001 svcca \
 && useradd --system --uid 10001 --gid svcca --home-dir /var/lib/svcca --shell /usr/sbin/nologin svcca \
 && mkdir -p /var/lib/svcca/ca-data /var/lib/svcca/sets /etc/svcca \
 && chown -R svcca:svcca /var/lib/svcca \
 && chmod 0700 /var/lib/svcca/ca-data
WORKDIR /opt/svcca
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/bin ./dist/bin
RUN ln -s /opt/svcca/dist/bin/svcca.mjs /usr/local/bin/svcca \
 && ln -s /opt/svcca/dist/bin/svcca-sidecar.mjs /usr/local/bin/svcca-sidecar \
 && svcca --version
USER 10001:10001
WORKDIR /var/lib/svcca
# No ENTRYPOINT: the same image runs `svcca …` (init, rotate) and `svcca-sidecar --config …`.
CMD ["svcca", "--help"]
