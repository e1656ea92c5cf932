# Set-up and everyday commands. Everything lands in .venv inside the repository.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages for the RTSP test server (python3-gi + gst-rtsp-server), ffmpeg, Qt's X11/EGL libraries, and
# PostgreSQL (the shared-database tests start their own server from it in a temporary directory).
SYSTEM_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly ffmpeg xvfb xauth libxcb-cursor0 libxkbcommon-x11-0 \
	libegl1 libgl1 libfontconfig1 libdbus-1-3 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
	libxcb-shape0 libxcb-xkb1 libxcb-randr0 desktop-file-utils appstream binutils postgresql
export YOLO_AUTOINSTALL := false

.PHONY: run test test-fast install system-deps lint bench soak clean package package-test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Installs what is missing when we may (root, Debian); otherwise says which tests will skip.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "warning: missing system packages:$$missing (RTSP, X11 and PostgreSQL tests will be skipped)"; fi

run: $(STAMP)
	$(BIN)/reid-desktop --demo

test: $(STAMP) system-deps
	QT_QPA_PLATFORM=offscreen YOLO_OFFLINE=1 $(BIN)/python -m pytest --durations=30

# The daily lane: everything but the slow soaks, the GUI sessions and the packaging build (a few minutes).
test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen YOLO_OFFLINE=1 $(BIN)/python -m pytest -m "not slow and not packaging"

lint: $(STAMP)
	$(BIN)/ruff check reid_desktop trainer tests bench packaging
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	YOLO_OFFLINE=1 $(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/train_bench.py

# Long-run resource figures (bench/RESULTS.md): 4 looping real-time streams for 10 minutes.
soak: $(STAMP)
	YOLO_OFFLINE=1 $(BIN)/python bench/soak.py --streams 4 --minutes 10

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache

# Installers (packaging/README.md). `make package` builds the Linux bundle, .deb (and AppImage when
# appimagetool is on PATH) into dist/packaging; `make package-test` builds and smoke-tests the .deb.
package: $(STAMP)
	$(BIN)/python packaging/build.py linux

package-test: $(STAMP)
	$(BIN)/python -m pytest tests/packaging -m packaging -s
