# The two commands that set everything up on a fresh machine:
#   make demo   — venv, install, generate a demo workspace, run the pipeline, show what was produced
#   make test   — venv, install what the tests need (Python extras, Java for Spark), run pytest

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-workspace
DEMO_PERSONS ?= 20000
DEMO_SEED ?= 42
DEMO_PORT ?= 8000

.PHONY: demo test test-spark-full test-fast lint bench venv java node chromium clean console-vendor console-tour

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-base: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-base

venv: $(VENV)/.installed-base

# Spark needs a Java runtime (17+); install Debian's when the machine has none.
java:
	@if ! command -v java >/dev/null 2>&1; then \
		echo "Java not found: installing openjdk-17-jre-headless (needed by the Spark engine tests)"; \
		(apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless) || \
		{ echo "Could not install Java. Install a Java 17+ runtime, then rerun make test."; exit 1; }; \
	fi
	@java -version 2>&1 | head -n 1

# The console tests drive Debian's Chromium through Playwright (no browser download); a CJK
# font lets it (and the PNG charts of `jingzhun report`) draw Chinese instead of boxes.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
		echo "Installing Debian's chromium and fonts-wqy-microhei (needed by the console tests)"; \
		(apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei) || \
		{ echo "Could not install them. Install Debian's chromium and fonts-wqy-microhei, then rerun make test."; exit 1; }; \
	fi
	@chromium --version 2>/dev/null | head -n 1

demo: $(VENV)/.installed-base
	$(BIN)/jingzhun demo generate $(DEMO_DIR) --persons $(DEMO_PERSONS) --seed $(DEMO_SEED)
	$(BIN)/jingzhun demo load $(DEMO_DIR)
	$(BIN)/jingzhun pipeline --workspace $(DEMO_DIR)
	$(BIN)/jingzhun import prospects $(DEMO_DIR)/data/leads/prospects.csv --workspace $(DEMO_DIR)  # for `jingzhun lead` (docs/leads.md)
	@$(BIN)/jingzhun user add admin --role admin --display-name "Demo admin" --generate-password --update \
		--workspace $(DEMO_DIR) > $(DEMO_DIR)/.jingzhun/demo-admin.txt
	@echo
	@echo "Demo workspace ready: $(DEMO_DIR)/  (source files in $(DEMO_DIR)/data, database $(DEMO_DIR)/warehouse.duckdb)"
	@echo "Console: http://127.0.0.1:$(DEMO_PORT)/   (API docs: http://127.0.0.1:$(DEMO_PORT)/docs; Ctrl-C stops the server)"
	@echo "Demo admin login (also in $(DEMO_DIR)/.jingzhun/demo-admin.txt):"
	@sed -e 's/^/  /' -e 's/（仅显示一次）//' -e 's/ (shown once)//' $(DEMO_DIR)/.jingzhun/demo-admin.txt
	$(BIN)/jingzhun serve --workspace $(DEMO_DIR) --port $(DEMO_PORT)

# The console's front-end libraries come from npm (web/package.json, locked) and are committed
# under static/vendor, so the console works offline and `pip install` ships them; rerun this
# after changing a version in web/package.json (then commit the vendored files).
CONSOLE_VENDOR := src/jingzhun/web/console/static/vendor
console-vendor:
	npm ci --prefix web --ignore-scripts --no-audit --no-fund
	mkdir -p $(CONSOLE_VENDOR)/echarts $(CONSOLE_VENDOR)/swagger-ui
	cp web/node_modules/echarts/dist/echarts.min.js web/node_modules/echarts/LICENSE \
		web/node_modules/echarts/NOTICE $(CONSOLE_VENDOR)/echarts/
	cp web/node_modules/swagger-ui-dist/swagger-ui-bundle.js web/node_modules/swagger-ui-dist/swagger-ui.css \
		web/node_modules/swagger-ui-dist/LICENSE web/node_modules/swagger-ui-dist/NOTICE $(CONSOLE_VENDOR)/swagger-ui/
	echo "echarts $$(node -p "require('./web/node_modules/echarts/package.json').version") (npm), Apache-2.0: echarts.min.js, LICENSE, NOTICE" \
		> $(CONSOLE_VENDOR)/echarts/VERSION
	echo "swagger-ui-dist $$(node -p "require('./web/node_modules/swagger-ui-dist/package.json').version") (npm), Apache-2.0: swagger-ui-bundle.js, swagger-ui.css, LICENSE, NOTICE" \
		> $(CONSOLE_VENDOR)/swagger-ui/VERSION

# The screenshots of docs/console.md, from the demo workspace (after make demo, its server
# stopped): the tour serves a copy on a free port and drives it in Chromium (web/console_tour.py).
console-tour: $(VENV)/.installed-dev chromium
	$(BIN)/python web/console_tour.py --workspace $(DEMO_DIR)

# The collector tests drive the official @segment/analytics-node SDK as a real client.
NODE_CLIENT := tests/collect/collector/node
node:
	npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund

test: $(VENV)/.installed-dev java node chromium
	$(BIN)/python -m pytest -m "(spark or not spark) and not spark_full" -p no:cacheprovider

test-spark-full: $(VENV)/.installed-dev java node chromium  ## every Spark variant of the stage tests too (slow)
	$(BIN)/python -m pytest -m "spark or not spark" -p no:cacheprovider

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not spark"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.installed-base
	$(BIN)/python benchmarks/generate_demo.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
