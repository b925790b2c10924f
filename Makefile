# svcca — build, test, demo, bench. `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
NODE_MODULES_STAMP := node_modules/.package-lock.json
ESBUILD_FLAGS := --bundle --platform=node --format=esm --target=node20 \
  --external:better-sqlite3 --log-level=warning \
  --banner:js="import { createRequire as __svccaCreateRequire } from 'node:module'; const require = __svccaCreateRequire(import.meta.url);"
TEST_CONCURRENCY ?= 1

.PHONY: all install build typecheck test test-unit test-integration demo bench clean

all: build

$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES_STAMP)

# tsc type-checks and emits dist/ (tests run from there); esbuild then bundles each
# binary into one file, which starts about 50 ms faster than loading the module graph.
build: install
	npx tsc -p tsconfig.json
	npx esbuild dist/cli/main.js $(ESBUILD_FLAGS) --outfile=dist/bin/svcca.mjs
	npx esbuild dist/sidecar/main.js $(ESBUILD_FLAGS) --outfile=dist/bin/svcca-sidecar.mjs
	chmod +x dist/bin/svcca.mjs dist/bin/svcca-sidecar.mjs

test: build
	node --test --test-concurrency=$(TEST_CONCURRENCY) dist/test/

test-unit: build
	node --test dist/test/unit/

test-integration: build
	node --test --test-concurrency=$(TEST_CONCURRENCY) dist/test/integration/

demo: build
	bash examples/demo.sh

bench: build
	bash bench/run.sh

clean:
	rm -rf dist
