#!/bin/sh
# Fetch a pinned llama.cpp source tree for `make test-llama-cpp` and print its
# path. llama.cpp itself is not on PyPI, but the llama-cpp-python sdist
# vendors a complete tree (with convert_hf_to_gguf.py and gguf-py), so the
# one registry these machines reach is enough. The sha256 pins the exact tree.
#
#   scripts/fetch-llama-cpp.sh DEST_DIR
set -eu
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz

dest=${1:?usage: $0 DEST_DIR}
tree=$dest/llama_cpp_python-$VERSION/vendor/llama.cpp
if [ ! -f "$tree/include/llama.h" ]; then
	mkdir -p "$dest"
	sdist=$dest/llama_cpp_python-$VERSION.tar.gz
	if [ ! -f "$sdist" ] || ! echo "$SHA256  $sdist" | sha256sum -c --status; then
		echo "downloading llama.cpp (vendored in llama-cpp-python $VERSION, 73 MiB) from PyPI" >&2
		curl -fsSL --retry 3 -o "$sdist.part" "$URL" ||
			{ echo "could not download $URL: is the network to PyPI reachable?" >&2; exit 1; }
		echo "$SHA256  $sdist.part" | sha256sum -c --status ||
			{ echo "$URL: sha256 differs from the pinned $SHA256" >&2; rm -f "$sdist.part"; exit 1; }
		mv "$sdist.part" "$sdist"
	fi
	tar -xzf "$sdist" -C "$dest"
fi
echo "$tree"
