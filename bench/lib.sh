# Sourced by the bench/run-*.sh scripts, after their `set -eu`:
#
#   . "$(dirname "$0")/lib.sh"
#
# It sets src (the source tree), build (the build directory: $BUILD_DIR, else
# build/ in the tree, configured with meson when it is missing), bench and
# whizbangd (the two programs in it), and defines bench_build TARGET..., which
# builds only what a script runs, with ninja's output on stderr so that the
# script's stdout holds only the figures.
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build}
bench=$build/bench/whizbang-bench
whizbangd=$build/server/whizbangd

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$src" >&2
fi

bench_build() {
	ninja -C "$build" "$@" >&2
}
