#!/usr/bin/env bash
# Sourced by tests/gpu/run.sh and tests/gpu/ab.sh (from the repository root): the environment of a CUDA machine
# that has the toolkit and the torch wheel but not every -dev package. Missing packages are carried as
# Debian .deb files in .debs/ (scripts/gpu-debs.sh downloads them on a Debian/Ubuntu machine with apt) and
# unpacked into /tmp/pn-deps, found through pkg-config; cuDNN comes from the torch wheel. Sets CUDNN_OPT
# (meson's -Dcudnn_dir when the wheel's cuDNN is used), PKG_CONFIG_PATH, CPATH, LIBRARY_PATH, LD_LIBRARY_PATH.
export PATH=$PATH:/opt/torch/.venv/bin:/usr/local/cuda/bin
have_blas() { pkg-config --exists openblas || [ -f /usr/include/x86_64-linux-gnu/cblas.h ] || [ -f /usr/include/cblas.h ]; }
if { ! pkg-config --exists jansson libutf8proc libpcre2-8 libfyaml || ! have_blas || [ ! -f /usr/include/csv.h ]; } &&
   ls .debs/*.deb > /dev/null 2>&1; then
  echo "unpacking carried packages: $(ls .debs)"
  P=/tmp/pn-deps
  for f in .debs/*.deb; do dpkg -x "$f" $P; done
  rm -rf $P/pc $P/rt # a second run on a warm machine: rewrite them from the packages, not from themselves
  mkdir -p $P/pc $P/rt
  for pc in $(find $P/usr -name '*.pc'); do
    sed -E "s#^(prefix|libdir|includedir)=/usr#\1=$P/usr#" "$pc" > "$P/pc/$(basename "$pc")"
  done
  # -dev symlinks whose runtime library the system holds (libjansson.so -> libjansson.so.4.14.0).
  for l in $(find $P -xtype l -name '*.so'); do
    t=$(ls /usr/lib/x86_64-linux-gnu/"$(basename "$l")".[0-9]* 2> /dev/null | head -1)
    [ -n "$t" ] && ln -sf "$t" "$l"
  done
  # Runtime libraries the system lacks (libopenblas.so.0, maybe libgfortran.so.5) are found through rt/.
  for so in $(find $P -name '*.so.[0-9]*'); do
    b=$(basename "$so")
    ldconfig -p | grep -q " $b " || ln -sf "$so" "$P/rt/$b"
  done
  export PKG_CONFIG_PATH=$P/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  # libraries without a .pc file (libcsv): the compiler's own search paths
  export CPATH=$P/usr/include${CPATH:+:$CPATH} LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$P/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

# cuDNN: the torch wheel carries it (headers and libraries) where the system has none.
CUDNN_OPT=""
CUDNN_WHL=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/cudnn 2> /dev/null | head -1)
if [ ! -e /usr/local/cuda/include/cudnn_graph.h ] && [ -n "$CUDNN_WHL" ]; then
  mkdir -p /tmp/pn-cudnn/lib
  ln -sfn "$CUDNN_WHL/include" /tmp/pn-cudnn/include
  for f in "$CUDNN_WHL"/lib/libcudnn*.so*; do ln -sf "$f" /tmp/pn-cudnn/lib/; done
  ln -sf "$(ls "$CUDNN_WHL"/lib/libcudnn.so.* | head -1)" /tmp/pn-cudnn/lib/libcudnn.so
  CUDNN_OPT=-Dcudnn_dir=/tmp/pn-cudnn
  # cuDNN's runtime-compiled engines load NVRTC: the toolkit's, or the wheel's.
  NVRTC_WHL=$(ls -d "$CUDNN_WHL"/../cuda_nvrtc/lib "$CUDNN_WHL"/../cu13/lib 2> /dev/null | head -1)
  export LD_LIBRARY_PATH=$CUDNN_WHL/lib:/usr/local/cuda/lib64${NVRTC_WHL:+:$NVRTC_WHL}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

# tests/check_deps.py checks the packages install-deps.sh installs; this machine's were not installed that way.
export PN_SKIP_DEPS_CHECK="the GPU machine's packages come from its image and carried .debs, not scripts/install-deps.sh"
