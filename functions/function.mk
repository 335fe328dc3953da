# The build recipe shared by every function's Makefile (sam build, BuildMethod
# makefile, ProjectRootDirectory "."). The including Makefile sets FUNCTION_DIR.
#
# The artifact is the thin handler plus the runtime package modelwatch taken from
# src/, so the handler imports it exactly as tests do. Developer tooling never ships:
# modelwatch.cli and modelwatch.local (argparse commands, the moto cloud) import
# packages the runtime layer deliberately does not carry, and modelwatch.modeling
# (training and packaging a model) runs before deployment, never in a function.
# Third-party packages come from the layers, never from here.
#
# Paths are resolved from the including file's location, so the build works
# whatever directory sam (or a test) runs make in.
ROOT := $(abspath $(FUNCTION_DIR)/../..)

.PHONY: build-function

build-function:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run 'sam build' (or pass ARTIFACTS_DIR=...)" >&2; exit 1; }
	@test -f "$(FUNCTION_DIR)/app.py" || { echo "$(FUNCTION_DIR)/app.py is missing: it holds the handler app.lambda_handler" >&2; exit 1; }
	mkdir -p "$(ARTIFACTS_DIR)"
	rm -rf "$(ARTIFACTS_DIR)/modelwatch"
	cp "$(FUNCTION_DIR)/app.py" "$(ARTIFACTS_DIR)/app.py"
	tar -C "$(ROOT)/src" --exclude=modelwatch/cli --exclude=modelwatch/local \
		--exclude=modelwatch/modeling \
		--exclude=__pycache__ --exclude='*.pyc' -cf - modelwatch | tar -C "$(ARTIFACTS_DIR)" -xf -
